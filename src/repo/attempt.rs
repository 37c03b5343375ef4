//! `ff_attempt`: attempts and the leases held on them.
//!
//! A lease-bound statement is a guarded update: it names the fence
//! `(execution, attempt_index, lease_epoch)` and requires the lease to be
//! live by the database clock. Zero rows means the caller no longer holds
//! the lease; the caller then asks [`ExecRepo::fence_view`] why.
//!
//! Lease events are written by the table's triggers, so no statement here
//! can change a lease without leaving a record.
//!
//! [`ExecRepo::fence_view`]: crate::repo::ExecRepo::fence_view

use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::{ExecKey, Fence, GrantedLease};

/// Repository of `ff_attempt`.
pub(crate) struct AttemptRepo;

/// Who takes a lease, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseGrant<'a> {
    pub lease_id: Uuid,
    pub ttl_ms: i64,
    pub worker_id: &'a str,
    pub worker_instance_id: &'a str,
}

/// How a lease ends, and what becomes of its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    Completed,
    Failed,
    Cancelled,
    /// The attempt pauses and resumes under a later lease.
    Delayed,
    /// The attempt pauses until its dependencies resolve.
    WaitingChildren,
}

impl LeaseEnd {
    /// The attempt's `lifecycle` afterwards.
    fn lifecycle(self) -> &'static str {
        match self {
            LeaseEnd::Completed => "ended_success",
            LeaseEnd::Failed => "ended_failure",
            LeaseEnd::Cancelled => "ended_cancelled",
            LeaseEnd::Delayed | LeaseEnd::WaitingChildren => "suspended",
        }
    }

    /// The `lease_end_reason` literal.
    fn reason(self) -> &'static str {
        match self {
            LeaseEnd::Completed => "completed",
            LeaseEnd::Failed => "failed",
            LeaseEnd::Cancelled => "cancelled",
            LeaseEnd::Delayed => "delayed",
            LeaseEnd::WaitingChildren => "waiting_children",
        }
    }
}

/// Failure details stored on an attempt that ended in failure.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FailureNote<'a> {
    pub reason: Option<&'a str>,
    pub class: Option<&'a str>,
}

/// An expired lease found by the expiry scanner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpiredLease {
    pub key: ExecKey,
}

impl AttemptRepo {
    /// Start attempt `attempt_index` under a new lease (epoch 1).
    pub(crate) async fn insert_started(
        conn: &mut PgConnection,
        key: ExecKey,
        attempt_index: i32,
        attempt_type: &str,
        grant: LeaseGrant<'_>,
        now: Option<i64>,
    ) -> Result<GrantedLease, sqlx::Error> {
        sqlx::query_as!(
            GrantedLease,
            r#"
            INSERT INTO ff_attempt (
                partition_key, execution_id, attempt_index, attempt_type, lifecycle,
                lease_id, lease_epoch, lease_expires_at_ms, lease_ttl_ms,
                worker_id, worker_instance_id, started_at_ms, last_renewed_at_ms)
            SELECT $1, $2, $3, $4, 'started', $5, 1, t.now + $6, $6, $7, $8, t.now, t.now
              FROM (SELECT COALESCE($9, ff_now_ms()) AS now) t
            RETURNING attempt_id, lease_epoch
            "#,
            key.partition,
            key.id,
            attempt_index,
            attempt_type,
            grant.lease_id,
            grant.ttl_ms,
            grant.worker_id,
            grant.worker_instance_id,
            now,
        )
        .fetch_one(conn)
        .await
    }

    /// Resume a paused attempt under a new lease (its epoch moves on by one).
    /// `None` when the attempt is not paused.
    pub(crate) async fn resume(
        conn: &mut PgConnection,
        key: ExecKey,
        attempt_index: i32,
        grant: LeaseGrant<'_>,
        now: Option<i64>,
    ) -> Result<Option<GrantedLease>, sqlx::Error> {
        sqlx::query_as!(
            GrantedLease,
            r#"
            UPDATE ff_attempt a
               SET lifecycle = 'started', lease_id = $4, lease_epoch = a.lease_epoch + 1,
                   lease_expires_at_ms = t.now + $5, lease_ttl_ms = $5,
                   worker_id = $6, worker_instance_id = $7, lease_end_reason = NULL,
                   last_renewed_at_ms = t.now
              FROM (SELECT COALESCE($8, ff_now_ms()) AS now) t
             WHERE a.partition_key = $1 AND a.execution_id = $2 AND a.attempt_index = $3
               AND a.lifecycle = 'suspended' AND a.lease_expires_at_ms IS NULL
            RETURNING a.attempt_id, a.lease_epoch
            "#,
            key.partition,
            key.id,
            attempt_index,
            grant.lease_id,
            grant.ttl_ms,
            grant.worker_id,
            grant.worker_instance_id,
            now,
        )
        .fetch_optional(conn)
        .await
    }

    /// Take over the lease of the current attempt of an `active` execution
    /// whose lease has expired (the epoch moves on by one, fencing the old
    /// holder). Returns the attempt index and the new lease, or `None` when
    /// the lease is still live or the execution is not active.
    pub(crate) async fn take_over_expired(
        conn: &mut PgConnection,
        key: ExecKey,
        lane_id: &str,
        grant: LeaseGrant<'_>,
        now: Option<i64>,
    ) -> Result<Option<(i32, GrantedLease)>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            UPDATE ff_attempt a
               SET lease_id = $4, lease_epoch = a.lease_epoch + 1,
                   lease_expires_at_ms = t.now + $5, lease_ttl_ms = $5,
                   worker_id = $6, worker_instance_id = $7, last_renewed_at_ms = t.now
              FROM ff_exec_core e, (SELECT COALESCE($8, ff_now_ms()) AS now) t
             WHERE e.partition_key = $1 AND e.execution_id = $2 AND e.lane_id = $3
               AND e.lifecycle_phase = 'active'
               AND a.partition_key = e.partition_key AND a.execution_id = e.execution_id
               AND a.attempt_index = e.attempt_index
               AND a.lease_expires_at_ms <= t.now
            RETURNING a.attempt_index, a.attempt_id, a.lease_epoch
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
        Ok(row.map(|r| {
            (
                r.attempt_index,
                GrantedLease {
                    attempt_id: r.attempt_id,
                    lease_epoch: r.lease_epoch,
                },
            )
        }))
    }

    /// Extend the live lease `fence` names by its TTL. Returns the new expiry
    /// and the epoch, or `None` when the fence does not name a live lease.
    pub(crate) async fn renew_if_live(
        conn: &mut PgConnection,
        fence: Fence,
        now: Option<i64>,
    ) -> Result<Option<(i64, i64)>, sqlx::Error> {
        let row = sqlx::query!(
            r#"
            UPDATE ff_attempt a
               SET lease_expires_at_ms = t.now + a.lease_ttl_ms, last_renewed_at_ms = t.now
              FROM (SELECT COALESCE($5, ff_now_ms()) AS now) t
             WHERE a.partition_key = $1 AND a.execution_id = $2 AND a.attempt_index = $3
               AND a.lease_epoch = $4 AND a.lease_expires_at_ms > t.now
            RETURNING a.lease_expires_at_ms AS "lease_expires_at_ms!", a.lease_epoch
            "#,
            fence.key.partition,
            fence.key.id,
            fence.attempt_index,
            fence.lease_epoch,
            now,
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| (r.lease_expires_at_ms, r.lease_epoch)))
    }

    /// End the live lease `fence` names. Returns whether it did; `false`
    /// means the fence does not name a live lease and nothing changed.
    pub(crate) async fn release_if_live(
        conn: &mut PgConnection,
        fence: Fence,
        end: LeaseEnd,
        failure: FailureNote<'_>,
        now: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query!(
            r#"
            UPDATE ff_attempt a
               SET lifecycle = $5, lease_expires_at_ms = NULL, lease_end_reason = $6,
                   ended_at_ms = CASE WHEN $5::text = 'suspended' THEN NULL ELSE t.now END,
                   failure_reason = $7, failure_class = $8
              FROM (SELECT COALESCE($9, ff_now_ms()) AS now) t
             WHERE a.partition_key = $1 AND a.execution_id = $2 AND a.attempt_index = $3
               AND a.lease_epoch = $4 AND a.lease_expires_at_ms > t.now
            "#,
            fence.key.partition,
            fence.key.id,
            fence.attempt_index,
            fence.lease_epoch,
            end.lifecycle(),
            end.reason(),
            failure.reason,
            failure.class,
            now,
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// End up to `limit` leases that expired, pausing their attempts. Returns
    /// the executions concerned; their rows must be requeued in the same
    /// transaction.
    pub(crate) async fn expire_due(
        conn: &mut PgConnection,
        limit: i64,
        now: Option<i64>,
    ) -> Result<Vec<ExpiredLease>, sqlx::Error> {
        let rows = sqlx::query!(
            r#"
            WITH t AS (SELECT COALESCE($2, ff_now_ms()) AS now),
            due AS (
                SELECT a.partition_key, a.execution_id, a.attempt_index
                  FROM ff_attempt a, t
                 WHERE a.lease_expires_at_ms <= t.now
                 ORDER BY a.lease_expires_at_ms
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
            )
            UPDATE ff_attempt a
               SET lifecycle = 'suspended', lease_expires_at_ms = NULL, lease_end_reason = 'expired'
              FROM due
             WHERE a.partition_key = due.partition_key AND a.execution_id = due.execution_id
               AND a.attempt_index = due.attempt_index
            RETURNING a.partition_key, a.execution_id
            "#,
            limit,
            now,
        )
        .fetch_all(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExpiredLease {
                key: ExecKey {
                    partition: r.partition_key,
                    id: r.execution_id,
                },
            })
            .collect())
    }
}
