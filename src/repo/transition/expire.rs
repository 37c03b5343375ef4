//! Expired leases: ended by the scanner, their executions requeued, or
//! failed once they have been reclaimed more often than their policy allows.

use sqlx::PgConnection;

use super::TransitionRepo;

/// What one pass of [`TransitionRepo::expire_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Expired {
    /// Executions sent back to the queue.
    pub requeued: u64,
    /// Executions failed for good: one more reclaim would exceed their
    /// policy's `max_reclaim_count` (100 when it sets none).
    pub failed: u64,
}

impl Expired {
    pub(crate) fn total(&self) -> u64 {
        self.requeued + self.failed
    }
}

impl TransitionRepo {
    /// End up to `limit` leases that expired. Each execution goes back to
    /// the queue (its attempt pauses and resumes under the next claim), or,
    /// when one more reclaim would exceed its policy's `max_reclaim_count`,
    /// fails for good: an execution that keeps killing its workers must not
    /// keep coming back. Writes an `expired` lease event for each, and a
    /// completion event for each failure.
    ///
    /// Expired leases are found through the active executions
    /// (`ff_exec_core_active_idx`): the lease columns are not indexed, so
    /// that renewals stay in-place updates.
    pub(crate) async fn expire_due(
        conn: &mut PgConnection,
        limit: i64,
        now: Option<i64>,
    ) -> Result<Expired, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($2, ff_now_ms()) AS now),
            due AS (
                SELECT a.partition_key, a.execution_id, a.attempt_index,
                       e.reclaim_count >= COALESCE((e.policy->>'max_reclaim_count')::int, 100) AS exhausted
                  FROM ff_exec_core e
                  JOIN ff_attempt a
                    ON a.partition_key = e.partition_key AND a.execution_id = e.execution_id
                   AND a.attempt_index = e.attempt_index, t
                 WHERE e.lifecycle_phase = 'active'
                   AND a.lease_expires_at_ms <= t.now
                 ORDER BY a.lease_expires_at_ms
                 LIMIT $1
                 FOR UPDATE OF a SKIP LOCKED
            ),
            att AS (
                UPDATE ff_attempt a
                   SET lifecycle = CASE WHEN due.exhausted THEN 'interrupted_reclaimed' ELSE 'suspended' END,
                       ended_at_ms = CASE WHEN due.exhausted THEN t.now END,
                       failure_reason = CASE WHEN due.exhausted THEN 'max reclaims exceeded' END,
                       lease_expires_at_ms = NULL, lease_end_reason = 'expired'
                  FROM due, t
                 WHERE a.partition_key = due.partition_key AND a.execution_id = due.execution_id
                   AND a.attempt_index = due.attempt_index
                RETURNING a.partition_key, a.execution_id, a.attempt_index, a.lease_id, a.lease_epoch,
                          a.worker_instance_id, due.exhausted
            ),
            requeued AS (
                UPDATE ff_exec_core e
                   SET lifecycle_phase = 'runnable', ownership_state = 'unowned',
                       eligibility_state = 'eligible_now', blocking_reason = 'waiting_for_worker',
                       blocking_detail = 'lease expired', public_state = 'waiting',
                       attempt_state = 'attempt_interrupted', reclaim_count = e.reclaim_count + 1,
                       last_mutation_at_ms = t.now
                  FROM att, t
                 WHERE e.partition_key = att.partition_key AND e.execution_id = att.execution_id
                   AND NOT att.exhausted
                RETURNING e.lane_id
            ),
            failed AS (
                UPDATE ff_exec_core e
                   SET lifecycle_phase = 'terminal', ownership_state = 'unowned',
                       eligibility_state = 'not_applicable', blocking_reason = 'none', blocking_detail = NULL,
                       terminal_outcome = 'failed', public_state = 'failed', attempt_state = 'attempt_terminal',
                       failure_reason = 'max reclaims exceeded', completed_at_ms = t.now, last_mutation_at_ms = t.now
                  FROM att, t
                 WHERE e.partition_key = att.partition_key AND e.execution_id = att.execution_id
                   AND att.exhausted
                RETURNING e.partition_key, e.execution_id, e.flow_id, e.lane_id, e.namespace, e.attempt_index
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, reason, occurred_at_ms)
                SELECT att.partition_key, att.execution_id, att.attempt_index, att.lease_id, att.lease_epoch,
                       'expired', att.worker_instance_id, 'expired', t.now
                  FROM att, t
            ),
            completion AS (
                INSERT INTO ff_completion_event (partition_key, execution_id, flow_id, lane_id, namespace,
                                                 outcome, attempt_index, occurred_at_ms)
                SELECT failed.partition_key, failed.execution_id, failed.flow_id, failed.lane_id, failed.namespace,
                       'failure', failed.attempt_index, t.now
                  FROM failed, t
                RETURNING event_id, lane_id
            ),
            notified_work AS (
                SELECT pg_notify('ff_work', w.lane_id)
                  FROM (SELECT DISTINCT lane_id FROM requeued) w
                 WHERE ff_has_listener('ff_work', w.lane_id)
            ),
            notified_completion AS (
                SELECT pg_notify('ff_completion', completion.event_id::text)
                  FROM completion
                 WHERE ff_has_listener('ff_completion', completion.lane_id)
            )
            SELECT (SELECT count(*) FROM requeued) AS "requeued!",
                   (SELECT count(*) FROM failed) AS "failed!",
                   (SELECT count(*) FROM notified_work) + (SELECT count(*) FROM notified_completion) AS "notified!"
            "#,
            limit,
            now,
        )
        .fetch_one(conn)
        .await?;
        Ok(Expired {
            requeued: row.requeued.unsigned_abs(),
            failed: row.failed.unsigned_abs(),
        })
    }
}
