//! Calls that end the lease: `complete`, `fail`, `cancel`, `delay`,
//! `wait_children`.
//!
//! Each ends the lease the handle names and moves the execution on in one
//! guarded statement (see [`TransitionRepo`]): zero rows means the caller no
//! longer holds the lease, nothing was written, and a read-only follow-up
//! says why. The lease event and, for terminal moves, the completion event
//! are written by the same statement. A replayed call finds the
//! lease gone and changes nothing.

use ff_core::backend::{FailOutcome, FailureClass, FailureReason, Handle};
use ff_core::engine_error::EngineError;
use ff_core::types::TimestampMs;
use uuid::Uuid;

use crate::model::Fence;
use crate::ops::fence::{self, why_not_live};
use crate::ops::retry::{self, Fate};
use crate::ops::{Ctx, validate};
use crate::repo::{ExecRepo, Outcome, Park, Terminal, TransitionRepo};
use crate::tx::{Conn, TxError};

/// Terminal success, storing `payload` as the result.
pub(crate) async fn complete(ctx: &Ctx, handle: &Handle, payload: Option<&[u8]>) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    if let Some(payload) = payload {
        validate::payload("result payload", payload)?;
    }
    let outcome = Outcome {
        result_payload: payload,
        ..Outcome::default()
    };
    finish(ctx, "complete", fence, Terminal::Success, outcome).await
}

/// Cooperative cancel by the lease holder: terminal, outcome `cancelled`.
pub(crate) async fn cancel(ctx: &Ctx, handle: &Handle, reason: &str) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    validate::text("cancel reason", reason)?;
    let outcome = Outcome {
        cancel_reason: Some(reason),
        ..Outcome::default()
    };
    finish(ctx, "cancel", fence, Terminal::Cancelled, outcome).await
}

async fn finish(
    ctx: &Ctx,
    op: &'static str,
    fence: Fence,
    terminal: Terminal,
    outcome: Outcome<'_>,
) -> Result<(), EngineError> {
    let now = ctx.now();
    ctx.db
        .single(op, |conn| {
            Box::pin(async move {
                let done = TransitionRepo::finish_if_live(conn, fence, terminal, outcome, now).await?;
                held(conn, done, fence, now).await
            })
        })
        .await
}

/// Failure: retried with backoff under the execution's retry policy, or
/// terminal when the class is permanent or retries are exhausted.
pub(crate) async fn fail(
    ctx: &Ctx,
    handle: &Handle,
    reason: &FailureReason,
    class: FailureClass,
) -> Result<FailOutcome, EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    validate::text("failure reason", &reason.message)?;
    if let Some(detail) = &reason.detail {
        validate::payload("failure detail", detail)?;
    }
    let now = ctx.now();
    let message = reason.message.as_str();
    let class_literal = retry::class_literal(class);
    ctx.db
        .single("fail", |conn| {
            Box::pin(async move {
                // Only the lease holder changes the retry state, and the
                // write below re-checks the lease, so this read needs no lock.
                let state = ExecRepo::retry_state(conn, fence.key)
                    .await?
                    .ok_or(EngineError::NotFound { entity: "execution" })?;
                let policy = retry::retry_policy(state.policy.as_ref())?;
                let used = u32::try_from(state.retry_count).unwrap_or(0);
                match retry::decide(&policy, class, used, entropy()) {
                    Fate::Retry { delay_ms } => {
                        match TransitionRepo::retry_if_live(conn, fence, delay_ms, message, class_literal, now).await? {
                            Some(retry_at) => Ok(FailOutcome::RetryScheduled {
                                delay_until: TimestampMs::from_millis(retry_at),
                            }),
                            None => Err(why_not_live(conn, fence, now).await?.into()),
                        }
                    }
                    Fate::Terminal => {
                        let outcome = Outcome {
                            failure_reason: Some(message),
                            failure_class: Some(class_literal),
                            ..Outcome::default()
                        };
                        let done = TransitionRepo::finish_if_live(conn, fence, Terminal::Failed, outcome, now).await?;
                        held(conn, done, fence, now).await?;
                        Ok(FailOutcome::TerminalFailed)
                    }
                }
            })
        })
        .await
}

/// Release the lease and park the execution until `until`; the same attempt
/// resumes under the next claim once it is due.
pub(crate) async fn delay(ctx: &Ctx, handle: &Handle, until: TimestampMs) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    let now = ctx.now();
    ctx.db
        .single("delay", |conn| {
            Box::pin(async move {
                let done = TransitionRepo::park_if_live(conn, fence, Park::Until(until.0), now).await?;
                held(conn, done, fence, now).await
            })
        })
        .await
}

/// Release the lease and park the execution until its dependencies resolve.
pub(crate) async fn wait_children(ctx: &Ctx, handle: &Handle) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    let now = ctx.now();
    ctx.db
        .single("wait_children", |conn| {
            Box::pin(async move {
                let done = TransitionRepo::park_if_live(conn, fence, Park::Children, now).await?;
                held(conn, done, fence, now).await
            })
        })
        .await
}

/// `Ok` when the guarded statement matched the live lease; otherwise the
/// typed error saying why it did not.
async fn held(conn: &mut Conn<'_>, done: bool, fence: Fence, now: Option<i64>) -> Result<(), TxError> {
    if done {
        Ok(())
    } else {
        Err(why_not_live(conn, fence, now).await?.into())
    }
}

/// A number in 0..=1 for retry jitter.
fn entropy() -> f64 {
    (Uuid::new_v4().as_u128() as u64) as f64 / u64::MAX as f64
}
