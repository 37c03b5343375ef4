//! `ff_idempotency_key`: which execution an idempotency key stands for,
//! within its dedup window.

use sqlx::PgConnection;
use uuid::Uuid;

/// Repository of `ff_idempotency_key`.
pub(crate) struct IdempotencyRepo;

/// An idempotency key, scoped to a partition and namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdemKey<'a> {
    pub partition: i16,
    pub namespace: &'a str,
    pub key: &'a str,
}

impl IdempotencyRepo {
    /// Bind `key` to `execution_id` for `window_ms`, unless it is bound to
    /// another execution whose window has not passed. Returns the execution
    /// the key stands for afterwards: `execution_id` when this call bound it,
    /// the earlier one otherwise.
    pub(crate) async fn bind(
        conn: &mut PgConnection,
        key: IdemKey<'_>,
        execution_id: Uuid,
        window_ms: i64,
        now: Option<i64>,
    ) -> Result<Uuid, sqlx::Error> {
        let bound = sqlx::query_scalar!(
            r#"
            INSERT INTO ff_idempotency_key (partition_key, namespace, idempotency_key, execution_id, expires_at_ms)
            SELECT $1, $2, $3, $4, t.now + $5
              FROM (SELECT COALESCE($6, ff_now_ms()) AS now) t
            ON CONFLICT ON CONSTRAINT ff_idempotency_key_pkey DO UPDATE
               SET execution_id = EXCLUDED.execution_id, expires_at_ms = EXCLUDED.expires_at_ms
             WHERE ff_idempotency_key.expires_at_ms <= COALESCE($6, ff_now_ms())
            RETURNING execution_id
            "#,
            key.partition,
            key.namespace,
            key.key,
            execution_id,
            window_ms,
            now,
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(bound) = bound {
            return Ok(bound);
        }
        // The conflicting row is locked by the statement above, so it is
        // still there to read.
        sqlx::query_scalar!(
            r#"
            SELECT execution_id FROM ff_idempotency_key
             WHERE partition_key = $1 AND namespace = $2 AND idempotency_key = $3
            "#,
            key.partition,
            key.namespace,
            key.key,
        )
        .fetch_one(conn)
        .await
    }
}
