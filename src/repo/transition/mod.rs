//! Lease transitions: the statements that move an execution, its attempt
//! and the outboxes together (`ff_exec_core`, `ff_attempt`,
//! `ff_lease_event`, `ff_completion_event`).
//!
//! They are the hot path of every worker: a claim, and the call that ends
//! the lease. Each is **one statement** whose common table expressions write
//! every table the transition touches, so it is atomic on its own and runs
//! in autocommit: one round trip and one commit, where `BEGIN`, three
//! statements and `COMMIT` would take five round trips. Writing the events
//! here is also cheaper than from row triggers: a PL/pgSQL trigger inserting
//! through SPI took a fifth of the server's time on the claim → complete
//! path (measured with `perf`). This is the one place
//! where a statement writes more than one table; elsewhere a repository
//! writes only its own.
//!
//! Every statement that grants or ends a lease lives here and writes its
//! lease event, and every statement that makes an execution terminal writes
//! its completion event (`tests/outbox_invariants.rs` checks both against
//! the rows).
//!
//! Lock order: an existing attempt before its execution (the fenced attempt
//! update feeds the execution update); for a claim, the execution before its
//! new attempt row. The scanners follow the same order, so these statements
//! cannot deadlock each other.
//!
//! A fenced statement that matches no live lease changes nothing.

mod claim;
mod expire;
mod release;

use uuid::Uuid;

use crate::model::ExecKey;

/// Repository of the lease transitions.
pub(crate) struct TransitionRepo;

/// Who takes a lease, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseGrant<'a> {
    pub lease_id: Uuid,
    pub ttl_ms: i64,
    pub worker_id: &'a str,
    pub worker_instance_id: &'a str,
}

/// A lease just granted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrantedLease {
    pub key: ExecKey,
    pub attempt_index: i32,
    /// An interrupted attempt resumed (else a new attempt started).
    pub resumed: bool,
    pub attempt_id: Uuid,
    pub lease_epoch: i64,
}

/// How an execution ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Terminal {
    Success,
    Failed,
    Cancelled,
}

impl Terminal {
    /// The literals a terminal transition writes.
    fn literals(self) -> TerminalLiterals {
        let (terminal_outcome, attempt_lifecycle, lease_end_reason, completion_outcome) = match self {
            Terminal::Success => ("success", "ended_success", "completed", "success"),
            Terminal::Failed => ("failed", "ended_failure", "failed", "failure"),
            Terminal::Cancelled => ("cancelled", "ended_cancelled", "cancelled", "cancelled"),
        };
        TerminalLiterals {
            terminal_outcome,
            attempt_lifecycle,
            lease_end_reason,
            completion_outcome,
        }
    }
}

struct TerminalLiterals {
    /// `ff_exec_core.terminal_outcome`.
    terminal_outcome: &'static str,
    /// `ff_attempt.lifecycle`.
    attempt_lifecycle: &'static str,
    /// `ff_attempt.lease_end_reason` and `ff_lease_event.reason`.
    lease_end_reason: &'static str,
    /// `ff_completion_event.outcome` (ff-core's `CompletionOutcome` wire form).
    completion_outcome: &'static str,
}

/// Where a lease holder parks its execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Park {
    /// Until this time (Unix ms).
    Until(i64),
    /// Until its dependencies resolve.
    Children,
}

/// What a terminal transition stores.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome<'a> {
    pub result_payload: Option<&'a [u8]>,
    pub failure_reason: Option<&'a str>,
    pub failure_class: Option<&'a str>,
    pub cancel_reason: Option<&'a str>,
}
