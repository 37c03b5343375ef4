//! Ending leases: complete, fail (retried or terminal), cancel, delay,
//! wait for children.
//!
//! The final query counts what moved, so it returns one row whether or not
//! the fence matched: zero means nothing changed. (Data-modifying CTEs run to
//! completion whether the final query reads them or not; the `notified` CTEs,
//! which only read, run because the final query counts them.)

use sqlx::PgConnection;

use super::{Outcome, Park, Terminal, TransitionRepo};
use crate::model::Fence;

impl TransitionRepo {
    /// End the live lease `fence` names and make the execution terminal.
    /// Returns whether it did. Writes the `released` lease event and the
    /// completion event, and notifies the completion when a feed listens.
    pub(crate) async fn finish_if_live(
        conn: &mut PgConnection,
        fence: Fence,
        terminal: Terminal,
        outcome: Outcome<'_>,
        now: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let literals = terminal.literals();
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($5, ff_now_ms()) AS now),
            att AS (
                UPDATE ff_attempt a
                   SET lifecycle = $6, lease_expires_at_ms = NULL, lease_end_reason = $7,
                       ended_at_ms = t.now, failure_reason = $8, failure_class = $9
                  FROM t
                 WHERE a.partition_key = $1 AND a.execution_id = $2 AND a.attempt_index = $3
                   AND a.lease_epoch = $4 AND a.lease_expires_at_ms > t.now
                RETURNING a.partition_key, a.execution_id, a.attempt_index, a.lease_id, a.lease_epoch,
                          a.worker_instance_id
            ),
            moved AS (
                UPDATE ff_exec_core e
                   SET lifecycle_phase = 'terminal', ownership_state = 'unowned',
                       eligibility_state = 'not_applicable', blocking_reason = 'none', blocking_detail = NULL,
                       terminal_outcome = $10,
                       public_state = CASE $10::text WHEN 'success' THEN 'completed' ELSE $10::text END,
                       attempt_state = 'attempt_terminal', eligible_at_ms = NULL,
                       result_payload = COALESCE($11, e.result_payload),
                       -- A success clears the last failure; the attempts keep theirs.
                       failure_reason = CASE WHEN $10::text = 'success' THEN NULL
                                             ELSE COALESCE($8, e.failure_reason) END,
                       cancel_reason = COALESCE($12, e.cancel_reason),
                       completed_at_ms = t.now, last_mutation_at_ms = t.now
                  FROM att, t
                 WHERE e.partition_key = att.partition_key AND e.execution_id = att.execution_id
                RETURNING e.partition_key, e.execution_id, e.flow_id, e.lane_id, e.namespace, e.attempt_index
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, reason, occurred_at_ms)
                SELECT att.partition_key, att.execution_id, att.attempt_index, att.lease_id, att.lease_epoch,
                       'released', att.worker_instance_id, $7, t.now
                  FROM att, t
            ),
            completion AS (
                INSERT INTO ff_completion_event (partition_key, execution_id, flow_id, lane_id, namespace,
                                                 outcome, attempt_index, occurred_at_ms)
                SELECT moved.partition_key, moved.execution_id, moved.flow_id, moved.lane_id, moved.namespace,
                       $13, moved.attempt_index, t.now
                  FROM moved, t
                RETURNING event_id, lane_id
            ),
            notified AS (
                SELECT pg_notify('ff_completion', completion.event_id::text)
                  FROM completion
                 WHERE ff_has_listener('ff_completion', completion.lane_id)
            )
            SELECT (SELECT count(*) FROM moved) AS "moved!", (SELECT count(*) FROM notified) AS "notified!"
            "#,
            fence.key.partition,
            fence.key.id,
            fence.attempt_index,
            fence.lease_epoch,
            now,
            literals.attempt_lifecycle,
            literals.lease_end_reason,
            outcome.failure_reason,
            outcome.failure_class,
            literals.terminal_outcome,
            outcome.result_payload,
            outcome.cancel_reason,
            literals.completion_outcome,
        )
        .fetch_one(conn)
        .await?;
        tracing::trace!(notified = row.notified, "completion");
        Ok(row.moved == 1)
    }

    /// End the live lease `fence` names after a failure and queue the next
    /// attempt, claimable `delay_ms` from now (at once when zero). Returns
    /// when it becomes claimable, or `None` when the fence named no live
    /// lease. Writes the `released` lease event.
    pub(crate) async fn retry_if_live(
        conn: &mut PgConnection,
        fence: Fence,
        delay_ms: i64,
        failure_reason: &str,
        failure_class: &str,
        now: Option<i64>,
    ) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($5, ff_now_ms()) AS now),
            att AS (
                UPDATE ff_attempt a
                   SET lifecycle = 'ended_failure', lease_expires_at_ms = NULL, lease_end_reason = 'failed',
                       ended_at_ms = t.now, failure_reason = $7, failure_class = $8
                  FROM t
                 WHERE a.partition_key = $1 AND a.execution_id = $2 AND a.attempt_index = $3
                   AND a.lease_epoch = $4 AND a.lease_expires_at_ms > t.now
                RETURNING a.partition_key, a.execution_id, a.attempt_index, a.lease_id, a.lease_epoch,
                          a.worker_instance_id
            ),
            moved AS (
                UPDATE ff_exec_core e
                   SET lifecycle_phase = 'runnable', ownership_state = 'unowned',
                       eligibility_state = CASE WHEN $6 <= 0 THEN 'eligible_now' ELSE 'not_eligible_until_time' END,
                       blocking_reason = CASE WHEN $6 <= 0 THEN 'waiting_for_worker' ELSE 'waiting_for_retry_backoff' END,
                       public_state = CASE WHEN $6 <= 0 THEN 'waiting' ELSE 'delayed' END,
                       eligible_at_ms = CASE WHEN $6 <= 0 THEN NULL ELSE t.now + $6 END,
                       blocking_detail = NULL, attempt_state = 'pending_retry_attempt',
                       attempt_index = e.attempt_index + 1, retry_count = e.retry_count + 1,
                       failure_reason = $7, last_mutation_at_ms = t.now
                  FROM att, t
                 WHERE e.partition_key = att.partition_key AND e.execution_id = att.execution_id
                RETURNING t.now + $6 AS retry_at_ms, e.lane_id, e.eligibility_state
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, reason, occurred_at_ms)
                SELECT att.partition_key, att.execution_id, att.attempt_index, att.lease_id, att.lease_epoch,
                       'released', att.worker_instance_id, 'failed', t.now
                  FROM att, t
            ),
            -- Claimable at once: wake the lane's waiting claimers.
            notified AS (
                SELECT pg_notify('ff_work', moved.lane_id)
                  FROM moved
                 WHERE moved.eligibility_state = 'eligible_now' AND ff_has_listener('ff_work', moved.lane_id)
            )
            SELECT retry_at_ms AS "retry_at_ms!", (SELECT count(*) FROM notified) AS "notified!" FROM moved
            "#,
            fence.key.partition,
            fence.key.id,
            fence.attempt_index,
            fence.lease_epoch,
            now,
            delay_ms,
            failure_reason,
            failure_class,
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| r.retry_at_ms))
    }

    /// End the live lease `fence` names and park the execution: until a time
    /// (claimable at once when that has passed), or until its dependencies
    /// resolve. The same attempt resumes under the next claim. Writes the
    /// `released` lease event.
    pub(crate) async fn park_if_live(
        conn: &mut PgConnection,
        fence: Fence,
        park: Park,
        now: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let (reason, until_ms) = match park {
            Park::Until(until_ms) => ("delayed", Some(until_ms)),
            Park::Children => ("waiting_children", None),
        };
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($5, ff_now_ms()) AS now),
            att AS (
                UPDATE ff_attempt a
                   SET lifecycle = 'suspended', lease_expires_at_ms = NULL, lease_end_reason = $6
                  FROM t
                 WHERE a.partition_key = $1 AND a.execution_id = $2 AND a.attempt_index = $3
                   AND a.lease_epoch = $4 AND a.lease_expires_at_ms > t.now
                RETURNING a.partition_key, a.execution_id, a.attempt_index, a.lease_id, a.lease_epoch,
                          a.worker_instance_id
            ),
            moved AS (
                -- Parked until a time ($7), or, without one, until its children finish.
                UPDATE ff_exec_core e
                   SET lifecycle_phase = 'runnable', ownership_state = 'unowned',
                       eligibility_state = CASE WHEN $7::bigint IS NULL THEN 'blocked_by_dependencies'
                                                WHEN $7 <= t.now THEN 'eligible_now'
                                                ELSE 'not_eligible_until_time' END,
                       blocking_reason = CASE WHEN $7::bigint IS NULL THEN 'waiting_for_children'
                                              WHEN $7 <= t.now THEN 'waiting_for_worker'
                                              ELSE 'waiting_for_delay' END,
                       public_state = CASE WHEN $7::bigint IS NULL THEN 'waiting_children'
                                           WHEN $7 <= t.now THEN 'waiting'
                                           ELSE 'delayed' END,
                       eligible_at_ms = CASE WHEN $7 > t.now THEN $7 END,
                       blocking_detail = NULL, attempt_state = 'attempt_interrupted',
                       last_mutation_at_ms = t.now
                  FROM att, t
                 WHERE e.partition_key = att.partition_key AND e.execution_id = att.execution_id
                RETURNING e.lane_id, e.eligibility_state
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, reason, occurred_at_ms)
                SELECT att.partition_key, att.execution_id, att.attempt_index, att.lease_id, att.lease_epoch,
                       'released', att.worker_instance_id, $6, t.now
                  FROM att, t
            ),
            -- Due already: wake the lane's waiting claimers.
            notified AS (
                SELECT pg_notify('ff_work', moved.lane_id)
                  FROM moved
                 WHERE moved.eligibility_state = 'eligible_now' AND ff_has_listener('ff_work', moved.lane_id)
            )
            SELECT (SELECT count(*) FROM moved) AS "moved!", (SELECT count(*) FROM notified) AS "notified!"
            "#,
            fence.key.partition,
            fence.key.id,
            fence.attempt_index,
            fence.lease_epoch,
            now,
            reason,
            until_ms,
        )
        .fetch_one(conn)
        .await?;
        Ok(row.moved == 1)
    }
}
