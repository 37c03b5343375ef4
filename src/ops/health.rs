//! `ping`, `prepare`, `shutdown_prepare`.

use std::time::Duration;

use ff_core::backend::PrepareOutcome;
use ff_core::engine_error::EngineError;

use crate::migrate::{MigrationError, apply_migrations_report};
use crate::ops::Ctx;

/// One round trip to the database.
pub(crate) async fn ping(ctx: &Ctx) -> Result<(), EngineError> {
    ctx.db
        .single("ping", |conn| {
            Box::pin(async move {
                sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
                    .fetch_one(&mut **conn)
                    .await?;
                Ok(())
            })
        })
        .await
}

/// Apply pending migrations.
pub(crate) async fn prepare(ctx: &Ctx) -> Result<PrepareOutcome, EngineError> {
    let applied = apply_migrations_report(ctx.db.pool()).await.map_err(|err| match err {
        MigrationError::Database(source) => EngineError::Transport {
            backend: crate::error::BACKEND,
            source: Box::new(source),
        },
        other => EngineError::Transport {
            backend: crate::error::BACKEND,
            source: Box::new(other),
        },
    })?;
    if applied.is_empty() {
        return Ok(PrepareOutcome::NoOp);
    }
    let names: Vec<String> = applied.iter().map(|(v, name)| format!("V{v}__{name}")).collect();
    Ok(PrepareOutcome::applied(format!(
        "applied migrations {}",
        names.join(", ")
    )))
}

/// Close the pool, waiting up to `grace` for connections in use to come back.
pub(crate) async fn drain(ctx: &Ctx, grace: Duration) -> Result<(), EngineError> {
    match tokio::time::timeout(grace, ctx.db.pool().close()).await {
        Ok(()) => Ok(()),
        Err(_) => Err(EngineError::Timeout {
            op: "shutdown_prepare",
            elapsed: grace,
        }),
    }
}
