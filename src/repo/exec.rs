//! `ff_exec_core`: executions and their state vector.
//!
//! Every statement that moves an execution writes the whole state vector it
//! moves to, so `public_state` and the other state columns stay true; the
//! table's `ff_exec_core_public_state_derived` constraint refuses any
//! statement that gets the derivation wrong.

use sqlx::PgConnection;

use crate::model::{ExecKey, ExecRow, Fence, FenceView, RetryState, State};

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

impl ExecRepo {
    /// Insert a new execution and register its lane, in one statement.
    /// Returns its `public_state`, or `None` when an execution with this id
    /// already exists (nothing is written then).
    pub(crate) async fn insert(
        conn: &mut PgConnection,
        new: NewExec<'_>,
        now: Option<i64>,
    ) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($15, ff_now_ms()) AS now),
            inserted AS (
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
                  FROM t, LATERAL (SELECT $9::bigint IS NULL OR $9::bigint <= t.now AS due) d
                ON CONFLICT ON CONSTRAINT ff_exec_core_pkey DO NOTHING
                RETURNING public_state, lane_id
            ),
            -- The lane registry (`ff_lane_registry`) learns the lane with its
            -- first execution.
            lane AS (
                INSERT INTO ff_lane_registry (lane_id, registered_at_ms)
                SELECT inserted.lane_id, t.now FROM inserted, t
                ON CONFLICT ON CONSTRAINT ff_lane_registry_pkey DO NOTHING
            ),
            -- Claimable at once: wake the lane's waiting claimers.
            notified AS (
                SELECT pg_notify('ff_work', inserted.lane_id)
                  FROM inserted
                 WHERE inserted.public_state = 'waiting' AND ff_has_listener('ff_work', inserted.lane_id)
            )
            SELECT public_state AS "public_state!", (SELECT count(*) FROM notified) AS "notified!" FROM inserted
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
        .await?;
        Ok(row.map(|r| r.public_state))
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

    /// Read what decides the fate of a failure. Only the holder of the
    /// execution's lease changes these, so the caller's fenced write that
    /// follows needs no lock taken here.
    pub(crate) async fn retry_state(conn: &mut PgConnection, key: ExecKey) -> Result<Option<RetryState>, sqlx::Error> {
        sqlx::query_as!(
            RetryState,
            r#"
            SELECT policy, retry_count
              FROM ff_exec_core
             WHERE partition_key = $1 AND execution_id = $2
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
        let row = sqlx::query!(
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
            ),
            promoted AS (
                UPDATE ff_exec_core e
                   SET eligibility_state = 'eligible_now', blocking_reason = 'waiting_for_worker',
                       public_state = 'waiting', eligible_at_ms = NULL, last_mutation_at_ms = t.now
                  FROM due, t
                 WHERE e.partition_key = due.partition_key AND e.execution_id = due.execution_id
                RETURNING e.lane_id
            ),
            notified AS (
                SELECT pg_notify('ff_work', w.lane_id)
                  FROM (SELECT DISTINCT lane_id FROM promoted) w
                 WHERE ff_has_listener('ff_work', w.lane_id)
            )
            SELECT (SELECT count(*) FROM promoted) AS "promoted!", (SELECT count(*) FROM notified) AS "notified!"
            "#,
            limit,
            now,
        )
        .fetch_one(conn)
        .await?;
        Ok(row.promoted.unsigned_abs())
    }
}
