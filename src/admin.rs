//! Operator views: what `ffpg status` and `ffpg inspect` show. Not part of
//! the `EngineBackend` trait; reached through [`PostgresBackend`] methods.
//!
//! [`PostgresBackend`]: crate::PostgresBackend

use std::collections::BTreeMap;

use ff_core::contracts::ExecutionSnapshot;

/// One lane: how many executions it holds in each public state, and its
/// leases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LaneStatus {
    /// The lane.
    pub lane_id: String,
    /// Executions per public state (`waiting`, `active`, `completed`, ...).
    pub executions: BTreeMap<String, i64>,
    /// Creation time of the oldest execution still waiting to be claimed.
    pub oldest_waiting_created_at_ms: Option<i64>,
    /// Leases held and not expired.
    pub live_leases: i64,
    /// Leases past their expiry that the scanner has not yet requeued.
    pub expired_leases: i64,
}

/// Everything about one execution, for a person to read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionReport {
    /// The trait's view of the execution.
    pub snapshot: ExecutionSnapshot,
    /// The `execution_kind` it was created with.
    pub execution_kind: String,
    /// Its priority (higher is claimed first).
    pub priority: i32,
    /// Capabilities a worker must offer to claim it.
    pub required_capabilities: Vec<String>,
    /// Retries used so far.
    pub retry_count: i32,
    /// Leases taken over from expired holders.
    pub reclaim_count: i32,
    /// Last reported progress.
    pub progress_percent: Option<i16>,
    /// Last reported progress message.
    pub progress_message: Option<String>,
    /// The last failure, while it has not since succeeded.
    pub failure_reason: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptReport>,
    /// Its most recent lease and completion events, newest first.
    pub recent_events: Vec<EventReport>,
}

/// One attempt of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptReport {
    /// 0 for the first attempt; a retry adds one.
    pub attempt_index: i32,
    /// `initial`, `retry`, `reclaim`, ...
    pub attempt_type: String,
    /// `started`, `suspended`, `ended_success`, `ended_failure`, ...
    pub lifecycle: String,
    /// Leases granted on this attempt so far.
    pub lease_epoch: i64,
    /// Expiry of the lease held on it, if one is.
    pub lease_expires_at_ms: Option<i64>,
    /// The worker instance that last held it.
    pub worker_instance_id: Option<String>,
    /// When it started.
    pub started_at_ms: i64,
    /// When it ended.
    pub ended_at_ms: Option<i64>,
    /// Class of its failure (`transient`, `permanent`, ...).
    pub failure_class: Option<String>,
    /// Its failure message.
    pub failure_reason: Option<String>,
}

/// One outbox event of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventReport {
    /// `lease` or `completion`.
    pub family: String,
    /// Position in its outbox.
    pub event_id: i64,
    /// `acquired`, `released`, `expired`, ... or the completion outcome.
    pub kind: String,
    /// The attempt it concerns.
    pub attempt_index: i32,
    /// Epoch, holder and reason, for lease events.
    pub detail: Option<String>,
    /// When it happened.
    pub occurred_at_ms: i64,
}
