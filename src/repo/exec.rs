//! `ff_exec_core`: executions and their state vector.
//!
//! Every statement that moves an execution writes the whole state vector it
//! moves to, so `public_state` and the other state columns stay true; the
//! table's `ff_exec_core_public_state_derived` constraint refuses any
//! statement that gets the derivation wrong.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::{ClaimedExec, ExecKey, ExecRow, Fence, FenceView, RetryState, State};

/// Repository of `ff_exec_core`.
pub(crate) struct ExecRepo;

/// A new execution, as `create_execution` inserts it.
pub(crate) struct NewExec<'a> {
    pub key: ExecKey,
    pub lane_id: &'a str,
    pub namespace: &'a str,
    pub execution_kind: &'a str,
    pub creator_identity: &'a str,
    pub required_capabilities: &'a [String],
    pub priority: i32,
    /// Not claimable before this time; `None` or a past time means now.
    pub delay_until_ms: Option<i64>,
    pub deadline_at_ms: Option<i64>,
    pub input_payload: &'a [u8],
    pub payload_encoding: Option<&'a str>,
    pub policy: Option<serde_json::Value>,
    pub tags: serde_json::Value,
}

/// How an execution leaves `active` for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Terminal {
    Success,
    Failed,
    Cancelled,
}

impl Terminal {
    /// The `terminal_outcome` literal.
    fn outcome(self) -> &'static str {
        match self {
            Terminal::Success => "success",
            Terminal::Failed => "failed",
            Terminal::Cancelled => "cancelled",
        }
    }
}

/// Details stored with a terminal transition.
pub(crate) struct TerminalDetail<'a> {
    pub result_payload: Option<&'a [u8]>,
    pub failure_reason: Option<&'a str>,
    pub cancel_reason: Option<&'a str>,
}

impl ExecRepo {
    /// Insert a new execution. Returns its `public_state`, or `None` when an
    /// execution with this id already exists (nothing is written then).
    pub(crate) async fn insert(
        conn: &mut PgConnection,
        new: NewExec<'_>,
        now: Option<i64>,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"
            INSERT INTO ff_exec_core (
                partition_key, execution_id, lane_id, namespace, execution_kind, creator_identity,
                required_capabilities, priority,
                eligibility_state, blocking_reason, public_state, eligible_at_ms,
                deadline_at_ms, created_at_ms, last_mutation_at_ms,
                input_payload, payload_encoding, policy, tags)
            SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                   CASE WHEN d.due THEN 'eligible_now' ELSE 'not_eligible_until_time' END,
                   CASE WHEN d.due THEN 'waiting_for_worker' ELSE 'waiting_for_delay' END,
                   CASE WHEN d.due THEN 'waiting' ELSE 'delayed' END,
                   CASE WHEN d.due THEN NULL ELSE $9 END,
                   $10, t.now, t.now,
                   $11, $12, $13, $14
              FROM (SELECT COALESCE($15, ff_now_ms()) AS now) t,
                   LATERAL (SELECT $9::bigint IS NULL OR $9::bigint <= t.now AS due) d
            ON CONFLICT ON CONSTRAINT ff_exec_core_pkey DO NOTHING
            RETURNING public_state
            "#,
            new.key.partition,
            new.key.id,
            new.lane_id,
            new.namespace,
            new.execution_kind,
            new.creator_identity,
            new.required_capabilities,
            new.priority,
            new.delay_until_ms,
            new.deadline_at_ms,
            new.input_payload,
            new.payload_encoding,
            new.policy,
            new.tags,
            now,
        )
        .fetch_optional(conn)
        .await
    }

    /// Take the best claimable execution of `lane` whose required
    /// capabilities are a subset of `capabilities`: highest priority first,
    /// then oldest. Rows other claimers hold are skipped, never waited for.
    /// The execution becomes `active`; the caller grants the lease.
    pub(crate) async fn claim_next(
        conn: &mut PgConnection,
        lane_id: &str,
        capabilities: &[String],
        now: Option<i64>,
    ) -> Result<Option<ClaimedExec>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH cand AS (
                SELECT partition_key, execution_id, attempt_state
                  FROM ff_exec_core
                 WHERE lane_id = $1
                   AND lifecycle_phase = 'runnable'
                   AND eligibility_state = 'eligible_now'
                   AND ff_caps_satisfied(required_capabilities, $2::text[])
                 ORDER BY priority DESC, created_at_ms
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
            )
            UPDATE ff_exec_core e
               SET lifecycle_phase = 'active', ownership_state = 'leased',
                   eligibility_state = 'not_applicable', blocking_reason = 'none',
                   blocking_detail = NULL, attempt_state = 'running_attempt',
                   public_state = 'active', eligible_at_ms = NULL,
                   started_at_ms = COALESCE(e.started_at_ms, t.now), last_mutation_at_ms = t.now
              FROM cand, (SELECT COALESCE($3, ff_now_ms()) AS now) t
             WHERE e.partition_key = cand.partition_key AND e.execution_id = cand.execution_id
            RETURNING e.partition_key, e.execution_id, e.attempt_index, cand.attempt_state AS prev_attempt_state
            "#,
            lane_id,
            capabilities,
            now,
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| ClaimedExec {
            key: ExecKey {
                partition: r.partition_key,
                id: r.execution_id,
            },
            attempt_index: r.attempt_index,
            resumes_attempt: r.prev_attempt_state == "attempt_interrupted",
            is_retry: r.prev_attempt_state == "pending_retry_attempt",
        }))
    }

    /// Take one specific execution of `lane` if it is claimable and its
    /// attempt was interrupted (the reclaim path for a requeued lease).
    pub(crate) async fn claim_interrupted(
        conn: &mut PgConnection,
        key: ExecKey,
        lane_id: &str,
        now: Option<i64>,
    ) -> Result<Option<i32>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"
            UPDATE ff_exec_core e
               SET lifecycle_phase = 'active', ownership_state = 'leased',
                   eligibility_state = 'not_applicable', blocking_reason = 'none',
                   blocking_detail = NULL, attempt_state = 'running_attempt',
                   public_state = 'active', eligible_at_ms = NULL,
                   reclaim_count = e.reclaim_count + 1, last_mutation_at_ms = t.now
              FROM (SELECT COALESCE($4, ff_now_ms()) AS now) t
             WHERE e.partition_key = $1 AND e.execution_id = $2 AND e.lane_id = $3
               AND e.lifecycle_phase = 'runnable' AND e.eligibility_state = 'eligible_now'
               AND e.attempt_state = 'attempt_interrupted'
            RETURNING e.attempt_index
            "#,
            key.partition,
            key.id,
            lane_id,
            now,
        )
        .fetch_optional(conn)
        .await
    }

    /// Count a lease taken over from an expired holder.
    pub(crate) async fn note_reclaim(
        conn: &mut PgConnection,
        key: ExecKey,
        now: Option<i64>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            r#"
            UPDATE ff_exec_core
               SET reclaim_count = reclaim_count + 1, ownership_state = 'leased',
                   last_mutation_at_ms = COALESCE($3, ff_now_ms())
             WHERE partition_key = $1 AND execution_id = $2 AND lifecycle_phase = 'active'
            "#,
            key.partition,
            key.id,
            now,
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Move an `active` execution to `terminal`. Returns whether it moved.
    /// The completion event is written by the table's trigger.
    pub(crate) async fn mark_terminal(
        conn: &mut PgConnection,
        key: ExecKey,
        terminal: Terminal,
        detail: TerminalDetail<'_>,
        now: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            r#"
            UPDATE ff_exec_core
               SET lifecycle_phase = 'terminal', ownership_state = 'unowned',
                   eligibility_state = 'not_applicable', blocking_reason = 'none', blocking_detail = NULL,
                   terminal_outcome = $3,
                   public_state = CASE $3::text WHEN 'success' THEN 'completed' ELSE $3::text END,
                   attempt_state = 'attempt_terminal', eligible_at_ms = NULL,
                   result_payload = COALESCE($4, result_payload),
                   -- A success clears the last failure; the attempts keep theirs.
                   failure_reason = CASE WHEN $3::text = 'success' THEN NULL ELSE COALESCE($5, failure_reason) END,
                   cancel_reason = COALESCE($6, cancel_reason),
                   completed_at_ms = t.now, last_mutation_at_ms = t.now
              FROM (SELECT COALESCE($7, ff_now_ms()) AS now) t
             WHERE partition_key = $1 AND execution_id = $2 AND lifecycle_phase = 'active'
            "#,
            key.partition,
            key.id,
            terminal.outcome(),
            detail.result_payload,
            detail.failure_reason,
            detail.cancel_reason,
            now,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Send an `active` execution back to the queue for its next attempt,
    /// claimable `delay_ms` from now (at once when that is zero). Returns the
    /// time it becomes claimable, or `None` when the execution was not active.
    pub(crate) async fn schedule_retry(
        conn: &mut PgConnection,
        key: ExecKey,
        delay_ms: i64,
        failure_reason: &str,
        now: Option<i64>,
    ) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"
            UPDATE ff_exec_core e
               SET lifecycle_phase = 'runnable', ownership_state = 'unowned',
                   eligibility_state = CASE WHEN d.due THEN 'eligible_now' ELSE 'not_eligible_until_time' END,
                   blocking_reason = CASE WHEN d.due THEN 'waiting_for_worker' ELSE 'waiting_for_retry_backoff' END,
                   public_state = CASE WHEN d.due THEN 'waiting' ELSE 'delayed' END,
                   eligible_at_ms = CASE WHEN d.due THEN NULL ELSE t.now + $3 END,
                   blocking_detail = NULL, attempt_state = 'pending_retry_attempt',
                   attempt_index = e.attempt_index + 1, retry_count = e.retry_count + 1,
                   failure_reason = $4, last_mutation_at_ms = t.now
              FROM (SELECT COALESCE($5, ff_now_ms()) AS now) t,
                   LATERAL (SELECT $3::bigint <= 0 AS due) d
             WHERE e.partition_key = $1 AND e.execution_id = $2 AND e.lifecycle_phase = 'active'
            RETURNING t.now + $3 AS "retry_at_ms!"
            "#,
            key.partition,
            key.id,
            delay_ms,
            failure_reason,
            now,
        )
        .fetch_optional(conn)
        .await
    }

    /// Park an `active` execution until `until_ms`; its attempt resumes then.
    pub(crate) async fn park_delayed(
        conn: &mut PgConnection,
        key: ExecKey,
        until_ms: i64,
        now: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            r#"
            UPDATE ff_exec_core e
               SET lifecycle_phase = 'runnable', ownership_state = 'unowned',
                   eligibility_state = CASE WHEN d.due THEN 'eligible_now' ELSE 'not_eligible_until_time' END,
                   blocking_reason = CASE WHEN d.due THEN 'waiting_for_worker' ELSE 'waiting_for_delay' END,
                   public_state = CASE WHEN d.due THEN 'waiting' ELSE 'delayed' END,
                   eligible_at_ms = CASE WHEN d.due THEN NULL ELSE $3 END,
                   blocking_detail = NULL, attempt_state = 'attempt_interrupted',
                   last_mutation_at_ms = t.now
              FROM (SELECT COALESCE($4, ff_now_ms()) AS now) t,
                   LATERAL (SELECT $3::bigint <= t.now AS due) d
             WHERE e.partition_key = $1 AND e.execution_id = $2 AND e.lifecycle_phase = 'active'
            "#,
            key.partition,
            key.id,
            until_ms,
            now,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Park an `active` execution until its dependencies resolve.
    pub(crate) async fn park_waiting_children(
        conn: &mut PgConnection,
        key: ExecKey,
        now: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            r#"
            UPDATE ff_exec_core
               SET lifecycle_phase = 'runnable', ownership_state = 'unowned',
                   eligibility_state = 'blocked_by_dependencies', blocking_reason = 'waiting_for_children',
                   public_state = 'waiting_children', blocking_detail = NULL, eligible_at_ms = NULL,
                   attempt_state = 'attempt_interrupted',
                   last_mutation_at_ms = COALESCE($3, ff_now_ms())
             WHERE partition_key = $1 AND execution_id = $2 AND lifecycle_phase = 'active'
            "#,
            key.partition,
            key.id,
            now,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Record progress if `fence` names the live lease. Returns whether it
    /// did. One statement: the fence is read in the same snapshot as the write.
    pub(crate) async fn set_progress_if_live(
        conn: &mut PgConnection,
        fence: Fence,
        percent: Option<i16>,
        message: Option<&str>,
        now: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            r#"
            UPDATE ff_exec_core e
               SET progress_percent = COALESCE($5, e.progress_percent),
                   progress_message = COALESCE($6, e.progress_message),
                   last_mutation_at_ms = t.now
              FROM (SELECT COALESCE($7, ff_now_ms()) AS now) t
             WHERE e.partition_key = $1 AND e.execution_id = $2 AND e.lifecycle_phase = 'active'
               AND EXISTS (
                   SELECT 1 FROM ff_attempt a
                    WHERE a.partition_key = e.partition_key AND a.execution_id = e.execution_id
                      AND a.attempt_index = $3 AND a.lease_epoch = $4
                      AND a.lease_expires_at_ms > t.now)
            "#,
            fence.key.partition,
            fence.key.id,
            fence.attempt_index,
            fence.lease_epoch,
            percent,
            message,
            now,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lock an execution and read what decides the fate of a failure.
    pub(crate) async fn retry_state_for_update(
        conn: &mut PgConnection,
        key: ExecKey,
    ) -> Result<Option<RetryState>, sqlx::Error> {
        sqlx::query_as!(
            RetryState,
            r#"
            SELECT policy, retry_count
              FROM ff_exec_core
             WHERE partition_key = $1 AND execution_id = $2
               FOR UPDATE
            "#,
            key.partition,
            key.id,
        )
        .fetch_optional(conn)
        .await
    }

    /// What stands in the way of a fenced call that matched no live lease:
    /// the execution's phase and the attempt the fence names.
    pub(crate) async fn fence_view(
        conn: &mut PgConnection,
        fence: Fence,
        now: Option<i64>,
    ) -> Result<Option<FenceView>, sqlx::Error> {
        sqlx::query_as!(
            FenceView,
            r#"
            SELECT e.lifecycle_phase AS "lifecycle_phase: State<_>",
                   e.terminal_outcome AS "terminal_outcome: State<_>",
                   e.attempt_index AS current_attempt_index,
                   a.attempt_id AS "attempt_id?",
                   a.lease_epoch AS "lease_epoch?",
                   a.lease_expires_at_ms,
                   COALESCE($4, ff_now_ms()) AS "now_ms!"
              FROM ff_exec_core e
              LEFT JOIN ff_attempt a
                ON a.partition_key = e.partition_key AND a.execution_id = e.execution_id
               AND a.attempt_index = $3
             WHERE e.partition_key = $1 AND e.execution_id = $2
            "#,
            fence.key.partition,
            fence.key.id,
            fence.attempt_index,
            now,
        )
        .fetch_optional(conn)
        .await
    }

    /// Read one execution and its current attempt.
    pub(crate) async fn get(conn: &mut PgConnection, key: ExecKey) -> Result<Option<ExecRow>, sqlx::Error> {
        sqlx::query_as!(
            ExecRow,
            r#"
            SELECT e.flow_id, e.lane_id, e.namespace,
                   e.public_state AS "public_state: State<_>",
                   e.blocking_reason, e.blocking_detail, e.attempt_index,
                   e.created_at_ms, e.last_mutation_at_ms, e.tags,
                   a.attempt_id AS "attempt_id?", a.lease_id, a.lease_epoch AS "lease_epoch?",
                   a.lease_expires_at_ms, a.worker_instance_id, a.last_renewed_at_ms
              FROM ff_exec_core e
              LEFT JOIN ff_attempt a
                ON a.partition_key = e.partition_key AND a.execution_id = e.execution_id
               AND a.attempt_index = e.attempt_index
             WHERE e.partition_key = $1 AND e.execution_id = $2
            "#,
            key.partition,
            key.id,
        )
        .fetch_optional(conn)
        .await
    }

    /// Make up to `limit` delayed or backed-off executions that are due
    /// claimable. Returns how many moved.
    pub(crate) async fn promote_due(conn: &mut PgConnection, limit: i64, now: Option<i64>) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($2, ff_now_ms()) AS now),
            due AS (
                SELECT partition_key, execution_id
                  FROM ff_exec_core, t
                 WHERE eligibility_state = 'not_eligible_until_time'
                   AND eligible_at_ms <= t.now
                   AND lifecycle_phase = 'runnable'
                 ORDER BY eligible_at_ms
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
            )
            UPDATE ff_exec_core e
               SET eligibility_state = 'eligible_now', blocking_reason = 'waiting_for_worker',
                   public_state = 'waiting', eligible_at_ms = NULL, last_mutation_at_ms = t.now
              FROM due, t
             WHERE e.partition_key = due.partition_key AND e.execution_id = due.execution_id
            "#,
            limit,
            now,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }

    /// Put executions whose lease expired back in the queue; their attempts
    /// resume under the next claim.
    pub(crate) async fn requeue_expired(
        conn: &mut PgConnection,
        partitions: &[i16],
        ids: &[Uuid],
        now: Option<i64>,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            r#"
            UPDATE ff_exec_core e
               SET lifecycle_phase = 'runnable', ownership_state = 'unowned',
                   eligibility_state = 'eligible_now', blocking_reason = 'waiting_for_worker',
                   blocking_detail = 'lease expired', public_state = 'waiting',
                   attempt_state = 'attempt_interrupted', reclaim_count = e.reclaim_count + 1,
                   last_mutation_at_ms = COALESCE($3, ff_now_ms())
              FROM unnest($1::smallint[], $2::uuid[]) AS x(partition_key, execution_id)
             WHERE e.partition_key = x.partition_key AND e.execution_id = x.execution_id
               AND e.lifecycle_phase = 'active'
            "#,
            partitions,
            ids,
            now,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }
}
