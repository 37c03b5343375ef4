//! Granting leases: claims and reclaims.

use sqlx::PgConnection;

use super::{GrantedLease, LeaseGrant, TransitionRepo};
use crate::model::ExecKey;

impl TransitionRepo {
    /// Claim the best execution of `lane_id` whose required capabilities are
    /// a subset of `capabilities` (highest priority, then oldest; rows other
    /// claimers hold are skipped, never waited for), and grant `grant` on it:
    /// its interrupted attempt resumes under the next epoch, or its next
    /// attempt starts at epoch 1. Writes the `acquired` lease event.
    pub(crate) async fn claim_next(
        conn: &mut PgConnection,
        lane_id: &str,
        capabilities: &[String],
        grant: LeaseGrant<'_>,
        now: Option<i64>,
    ) -> Result<Option<GrantedLease>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($3, ff_now_ms()) AS now),
            cand AS (
                SELECT partition_key, execution_id, attempt_state
                  FROM ff_exec_core
                 WHERE lane_id = $1
                   AND lifecycle_phase = 'runnable'
                   AND eligibility_state = 'eligible_now'
                   AND ff_caps_satisfied(required_capabilities, $2::text[])
                 ORDER BY priority DESC, created_at_ms
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
            ),
            exec AS (
                UPDATE ff_exec_core e
                   SET lifecycle_phase = 'active', ownership_state = 'leased',
                       eligibility_state = 'not_applicable', blocking_reason = 'none',
                       blocking_detail = NULL, attempt_state = 'running_attempt',
                       public_state = 'active', eligible_at_ms = NULL,
                       started_at_ms = COALESCE(e.started_at_ms, t.now), last_mutation_at_ms = t.now
                  FROM cand, t
                 WHERE e.partition_key = cand.partition_key AND e.execution_id = cand.execution_id
                RETURNING e.partition_key, e.execution_id, e.attempt_index, cand.attempt_state AS prev_attempt_state
            ),
            resumed AS (
                UPDATE ff_attempt a
                   SET lifecycle = 'started', lease_id = $4, lease_epoch = a.lease_epoch + 1,
                       lease_expires_at_ms = t.now + $5, lease_ttl_ms = $5,
                       worker_id = $6, worker_instance_id = $7, lease_end_reason = NULL,
                       last_renewed_at_ms = t.now
                  FROM exec, t
                 WHERE exec.prev_attempt_state = 'attempt_interrupted'
                   AND a.partition_key = exec.partition_key AND a.execution_id = exec.execution_id
                   AND a.attempt_index = exec.attempt_index
                   AND a.lifecycle = 'suspended' AND a.lease_expires_at_ms IS NULL
                RETURNING a.attempt_id, a.lease_epoch
            ),
            started AS (
                INSERT INTO ff_attempt (
                    partition_key, execution_id, attempt_index, attempt_type, lifecycle,
                    lease_id, lease_epoch, lease_expires_at_ms, lease_ttl_ms,
                    worker_id, worker_instance_id, started_at_ms, last_renewed_at_ms)
                SELECT exec.partition_key, exec.execution_id, exec.attempt_index,
                       CASE exec.prev_attempt_state
                           WHEN 'pending_retry_attempt' THEN 'retry'
                           WHEN 'pending_replay_attempt' THEN 'replay'
                           ELSE 'initial' END,
                       'started', $4, 1, t.now + $5, $5, $6, $7, t.now, t.now
                  FROM exec, t
                 WHERE NOT EXISTS (SELECT 1 FROM resumed)
                RETURNING attempt_id, lease_epoch
            ),
            granted AS (
                SELECT attempt_id, lease_epoch, true AS resumed FROM resumed
                UNION ALL
                SELECT attempt_id, lease_epoch, false FROM started
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, occurred_at_ms)
                SELECT exec.partition_key, exec.execution_id, exec.attempt_index, $4, granted.lease_epoch,
                       'acquired', $7, t.now
                  FROM exec, granted, t
            )
            SELECT exec.partition_key, exec.execution_id, exec.attempt_index,
                   granted.resumed AS "resumed!", granted.attempt_id AS "attempt_id!",
                   granted.lease_epoch AS "lease_epoch!"
              FROM exec, granted
            "#,
            lane_id,
            capabilities,
            now,
            grant.lease_id,
            grant.ttl_ms,
            grant.worker_id,
            grant.worker_instance_id,
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| GrantedLease {
            key: ExecKey {
                partition: r.partition_key,
                id: r.execution_id,
            },
            attempt_index: r.attempt_index,
            resumed: r.resumed,
            attempt_id: r.attempt_id,
            lease_epoch: r.lease_epoch,
        }))
    }

    /// Take over the lease of an `active` execution of `lane_id` whose lease
    /// has expired: the same attempt, the next epoch, which fences the old
    /// holder out. `None` when its lease is live or it is not active. Writes
    /// the `reclaimed` lease event.
    pub(crate) async fn take_over_expired(
        conn: &mut PgConnection,
        key: ExecKey,
        lane_id: &str,
        grant: LeaseGrant<'_>,
        now: Option<i64>,
    ) -> Result<Option<GrantedLease>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($8, ff_now_ms()) AS now),
            att AS (
                UPDATE ff_attempt a
                   SET lease_id = $4, lease_epoch = a.lease_epoch + 1,
                       lease_expires_at_ms = t.now + $5, lease_ttl_ms = $5,
                       worker_id = $6, worker_instance_id = $7, last_renewed_at_ms = t.now
                  FROM ff_exec_core e, t
                 WHERE e.partition_key = $1 AND e.execution_id = $2 AND e.lane_id = $3
                   AND e.lifecycle_phase = 'active'
                   AND a.partition_key = e.partition_key AND a.execution_id = e.execution_id
                   AND a.attempt_index = e.attempt_index
                   AND a.lease_expires_at_ms <= t.now
                RETURNING a.partition_key, a.execution_id, a.attempt_index, a.attempt_id, a.lease_epoch
            ),
            exec AS (
                UPDATE ff_exec_core e
                   SET reclaim_count = e.reclaim_count + 1, ownership_state = 'leased', last_mutation_at_ms = t.now
                  FROM att, t
                 WHERE e.partition_key = att.partition_key AND e.execution_id = att.execution_id
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, reason, occurred_at_ms)
                SELECT att.partition_key, att.execution_id, att.attempt_index, $4, att.lease_epoch,
                       'reclaimed', $7, 'lease expired', t.now
                  FROM att, t
            )
            SELECT att.attempt_index, att.attempt_id, att.lease_epoch FROM att
            "#,
            key.partition,
            key.id,
            lane_id,
            grant.lease_id,
            grant.ttl_ms,
            grant.worker_id,
            grant.worker_instance_id,
            now,
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| GrantedLease {
            key,
            attempt_index: r.attempt_index,
            resumed: true,
            attempt_id: r.attempt_id,
            lease_epoch: r.lease_epoch,
        }))
    }

    /// Claim one specific execution of `lane_id` if it waits in the queue
    /// with an interrupted attempt (its lease expired and was requeued), and
    /// resume that attempt under the next epoch. Writes the `acquired` lease
    /// event.
    pub(crate) async fn claim_interrupted(
        conn: &mut PgConnection,
        key: ExecKey,
        lane_id: &str,
        grant: LeaseGrant<'_>,
        now: Option<i64>,
    ) -> Result<Option<GrantedLease>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($8, ff_now_ms()) AS now),
            -- The execution first, as a claim locks it, and skipped when
            -- another claimer holds it.
            cand AS (
                SELECT partition_key, execution_id, attempt_index
                  FROM ff_exec_core
                 WHERE partition_key = $1 AND execution_id = $2 AND lane_id = $3
                   AND lifecycle_phase = 'runnable' AND eligibility_state = 'eligible_now'
                   AND attempt_state = 'attempt_interrupted'
                   FOR UPDATE SKIP LOCKED
            ),
            att AS (
                UPDATE ff_attempt a
                   SET lifecycle = 'started', lease_id = $4, lease_epoch = a.lease_epoch + 1,
                       lease_expires_at_ms = t.now + $5, lease_ttl_ms = $5,
                       worker_id = $6, worker_instance_id = $7, lease_end_reason = NULL,
                       last_renewed_at_ms = t.now
                  FROM cand, t
                 WHERE a.partition_key = cand.partition_key AND a.execution_id = cand.execution_id
                   AND a.attempt_index = cand.attempt_index
                   AND a.lifecycle = 'suspended' AND a.lease_expires_at_ms IS NULL
                RETURNING a.partition_key, a.execution_id, a.attempt_index, a.attempt_id, a.lease_epoch
            ),
            exec AS (
                UPDATE ff_exec_core e
                   SET lifecycle_phase = 'active', ownership_state = 'leased',
                       eligibility_state = 'not_applicable', blocking_reason = 'none',
                       blocking_detail = NULL, attempt_state = 'running_attempt',
                       public_state = 'active', eligible_at_ms = NULL,
                       reclaim_count = e.reclaim_count + 1, last_mutation_at_ms = t.now
                  FROM att, t
                 WHERE e.partition_key = att.partition_key AND e.execution_id = att.execution_id
            ),
            lease_event AS (
                INSERT INTO ff_lease_event (partition_key, execution_id, attempt_index, lease_id, lease_epoch,
                                            event_kind, worker_instance_id, reason, occurred_at_ms)
                SELECT att.partition_key, att.execution_id, att.attempt_index, $4, att.lease_epoch,
                       'acquired', $7, 'reclaim grant', t.now
                  FROM att, t
            )
            SELECT att.attempt_index, att.attempt_id, att.lease_epoch FROM att
            "#,
            key.partition,
            key.id,
            lane_id,
            grant.lease_id,
            grant.ttl_ms,
            grant.worker_id,
            grant.worker_instance_id,
            now,
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| GrantedLease {
            key,
            attempt_index: r.attempt_index,
            resumed: true,
            attempt_id: r.attempt_id,
            lease_epoch: r.lease_epoch,
        }))
    }
}
