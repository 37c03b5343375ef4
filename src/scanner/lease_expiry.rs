//! Expired leases end; their executions go back to the queue.

use ff_core::engine_error::EngineError;

use crate::ops::Ctx;
use crate::repo::TransitionRepo;

/// End every expired lease, a batch per statement. Returns how many.
pub(crate) async fn run(ctx: &Ctx, batch_size: i64) -> Result<u64, EngineError> {
    let mut total = 0;
    loop {
        let now = ctx.now();
        let expired = ctx
            .db
            .single("scan_lease_expiry", |conn| {
                Box::pin(async move { Ok(TransitionRepo::expire_due(conn, batch_size, now).await?) })
            })
            .await?;
        total += expired;
        if expired < batch_size.unsigned_abs() {
            return Ok(total);
        }
    }
}
