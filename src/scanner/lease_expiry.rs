//! Expired leases end; their executions go back to the queue.

use ff_core::engine_error::EngineError;

use crate::ops::Ctx;
use crate::repo::{AttemptRepo, ExecRepo};
use crate::tx::Isolation;

/// End every expired lease, a batch per transaction. Returns how many.
pub(crate) async fn run(ctx: &Ctx, batch_size: i64) -> Result<u64, EngineError> {
    let mut total = 0;
    loop {
        let now = ctx.now();
        let expired = ctx
            .db
            .tx("scan_lease_expiry", Isolation::ReadCommitted, |conn| {
                Box::pin(async move {
                    let expired = AttemptRepo::expire_due(conn, batch_size, now).await?;
                    let partitions: Vec<i16> = expired.iter().map(|e| e.key.partition).collect();
                    let ids: Vec<uuid::Uuid> = expired.iter().map(|e| e.key.id).collect();
                    if !ids.is_empty() {
                        ExecRepo::requeue_expired(conn, &partitions, &ids, now).await?;
                    }
                    Ok(expired.len() as u64)
                })
            })
            .await?;
        total += expired;
        if expired < batch_size.unsigned_abs() {
            return Ok(total);
        }
    }
}
