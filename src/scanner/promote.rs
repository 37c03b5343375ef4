//! Delayed and backed-off executions become claimable when due.

use ff_core::engine_error::EngineError;

use crate::ops::Ctx;
use crate::repo::ExecRepo;

/// Promote every due execution, a batch per statement. Returns how many.
pub(crate) async fn run(ctx: &Ctx, batch_size: i64) -> Result<u64, EngineError> {
    let mut total = 0;
    loop {
        let now = ctx.now();
        let moved = ctx
            .db
            .single("scan_promote", |conn| {
                Box::pin(async move { Ok(ExecRepo::promote_due(conn, batch_size, now).await?) })
            })
            .await?;
        total += moved;
        if moved < batch_size.unsigned_abs() {
            return Ok(total);
        }
    }
}
