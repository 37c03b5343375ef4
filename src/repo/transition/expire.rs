//! Expired leases: ended by the scanner, their executions requeued.

use sqlx::PgConnection;

use super::TransitionRepo;

impl TransitionRepo {
    /// End up to `limit` leases that expired and send their executions back
    /// to the queue; their attempts pause and resume under the next claim.
    /// Returns how many. Writes an `expired` lease event for each.
    ///
    /// Expired leases are found through the active executions
    /// (`ff_exec_core_active_idx`): the lease columns are not indexed, so
    /// that renewals stay in-place updates.
    pub(crate) async fn expire_due(conn: &mut PgConnection, limit: i64, now: Option<i64>) -> Result<u64, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($2, ff_now_ms()) AS now),
            due AS (
                SELECT a.partition_key, a.execution_id, a.attempt_index
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
                   SET lifecycle = 'suspended', lease_expires_at_ms = NULL, lease_end_reason = 'expired'
                  FROM due
                 WHERE a.partition_key = due.partition_key AND a.execution_id = due.execution_id
                   AND a.attempt_index = due.attempt_index
                RETURNING a.partition_key, a.execution_id, a.attempt_index, a.lease_id, a.lease_epoch,
                          a.worker_instance_id
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
                RETURNING e.lane_id
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, reason, occurred_at_ms)
                SELECT att.partition_key, att.execution_id, att.attempt_index, att.lease_id, att.lease_epoch,
                       'expired', att.worker_instance_id, 'expired', t.now
                  FROM att, t
            ),
            notified AS (
                SELECT pg_notify('ff_work', w.lane_id)
                  FROM (SELECT DISTINCT lane_id FROM requeued) w
                 WHERE ff_has_listener('ff_work', w.lane_id)
            )
            SELECT (SELECT count(*) FROM requeued) AS "expired!", (SELECT count(*) FROM notified) AS "notified!"
            "#,
            limit,
            now,
        )
        .fetch_one(conn)
        .await?;
        Ok(row.expired.unsigned_abs())
    }
}
