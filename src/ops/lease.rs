//! `renew` and `progress`: calls made under a live lease that keep it.
//!
//! Each is one guarded statement in autocommit; only when it matches no live
//! lease does a second, read-only statement find out why.

use ff_core::backend::{Handle, LeaseRenewal};
use ff_core::engine_error::EngineError;

use crate::ops::fence::{self, why_not_live};
use crate::ops::{Ctx, validate};
use crate::repo::{AttemptRepo, ExecRepo};

/// Extend the lease by its TTL from now.
pub(crate) async fn renew(ctx: &Ctx, handle: &Handle) -> Result<LeaseRenewal, EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    let now = ctx.now();
    let renewed = ctx
        .db
        .single("renew", |conn| {
            Box::pin(async move {
                match AttemptRepo::renew_if_live(conn, fence, now).await? {
                    Some(renewed) => Ok(renewed),
                    None => Err(why_not_live(conn, fence, now).await?.into()),
                }
            })
        })
        .await?;
    let (expires_at_ms, epoch) = renewed;
    Ok(LeaseRenewal::new(expires_at_ms.unsigned_abs(), epoch.unsigned_abs()))
}

/// Record progress (percent 0..=100 and/or a message) on the execution.
pub(crate) async fn progress(
    ctx: &Ctx,
    handle: &Handle,
    percent: Option<u8>,
    message: Option<String>,
) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    if let Some(p) = percent.filter(|p| *p > 100) {
        return Err(crate::error::invalid_input(format!(
            "progress percent {p} is above 100"
        )));
    }
    if let Some(m) = &message {
        validate::text("progress message", m)?;
    }
    let now = ctx.now();
    let percent = percent.map(i16::from);
    let message = message.as_deref();
    ctx.db
        .single("progress", |conn| {
            Box::pin(async move {
                if ExecRepo::set_progress_if_live(conn, fence, percent, message, now).await? {
                    Ok(())
                } else {
                    Err(why_not_live(conn, fence, now).await?.into())
                }
            })
        })
        .await
}
