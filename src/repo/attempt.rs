//! `ff_attempt`: attempts and the leases held on them.
//!
//! A lease-bound statement is a guarded update: it names the fence
//! `(execution, attempt_index, lease_epoch)` and requires the lease to be
//! live by the database clock. Zero rows means the caller no longer holds
//! the lease; the caller then asks [`ExecRepo::fence_view`] why.
//!
//! Statements that grant or end a lease live in [`TransitionRepo`], which
//! writes the lease events with them; a renewal only moves the expiry.
//!
//! [`TransitionRepo`]: crate::repo::TransitionRepo
//! [`ExecRepo::fence_view`]: crate::repo::ExecRepo::fence_view

use crate::model::Fence;
use sqlx::PgConnection;

/// Repository of `ff_attempt`.
pub(crate) struct AttemptRepo;

impl AttemptRepo {
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
}
