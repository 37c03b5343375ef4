//! `ff_listener`: who waits for notifications, so that statements notify
//! only when someone listens (see the table's comment in `migrations/`).
//! Heartbeats use the database clock, as `ff_has_listener` does.

use sqlx::PgConnection;
use uuid::Uuid;

/// Repository of `ff_listener`.
pub(crate) struct ListenerRepo;

impl ListenerRepo {
    /// Record that `listener_id` listens on `channel` for `key` (`'*'`: all),
    /// now.
    pub(crate) async fn heartbeat(
        conn: &mut PgConnection,
        channel: &str,
        key: &str,
        listener_id: Uuid,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            r#"
            INSERT INTO ff_listener (channel, key, listener_id, heartbeat_at_ms)
            VALUES ($1, $2, $3, ff_now_ms())
            ON CONFLICT ON CONSTRAINT ff_listener_pkey DO UPDATE SET heartbeat_at_ms = EXCLUDED.heartbeat_at_ms
            "#,
            channel,
            key,
            listener_id,
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Delete registrations whose heartbeat is older than `max_age_ms`.
    pub(crate) async fn sweep(conn: &mut PgConnection, max_age_ms: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query!(
            "DELETE FROM ff_listener WHERE heartbeat_at_ms < ff_now_ms() - $1",
            max_age_ms
        )
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }
}
