//! Calls that end the lease: `complete`, `fail`, `cancel`, `delay`,
//! `wait_children`.
//!
//! Each is one transaction: a guarded update ends the lease the handle names
//! (zero rows: the caller no longer holds it, nothing is written, and the
//! typed error says why), then the execution moves on. The lease event and,
//! for terminal moves, the completion event are written by triggers in the
//! same transaction. A replayed call finds the lease gone and changes nothing.

use ff_core::backend::{FailOutcome, FailureClass, FailureReason, Handle};
use ff_core::engine_error::EngineError;
use ff_core::types::TimestampMs;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::corruption;
use crate::model::{ExecKey, Fence};
use crate::ops::fence::{self, why_not_live};
use crate::ops::retry::{self, Fate};
use crate::ops::{Ctx, validate};
use crate::repo::{AttemptRepo, ExecRepo, FailureNote, LeaseEnd, Terminal, TerminalDetail};
use crate::tx::{Isolation, TxError};

/// Terminal success, storing `payload` as the result.
pub(crate) async fn complete(ctx: &Ctx, handle: &Handle, payload: Option<&[u8]>) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    if let Some(payload) = payload {
        validate::payload("result payload", payload)?;
    }
    let now = ctx.now();
    ctx.db
        .tx("complete", Isolation::ReadCommitted, |conn| {
            Box::pin(async move {
                release(conn, fence, LeaseEnd::Completed, FailureNote::default(), now).await?;
                let detail = TerminalDetail {
                    result_payload: payload,
                    failure_reason: None,
                    cancel_reason: None,
                };
                let moved = ExecRepo::mark_terminal(conn, fence.key, Terminal::Success, detail, now).await?;
                ensure_moved(moved, fence.key)
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
    let note = FailureNote {
        reason: Some(message),
        class: Some(retry::class_literal(class)),
    };
    ctx.db
        .tx("fail", Isolation::ReadCommitted, |conn| {
            Box::pin(async move {
                release(conn, fence, LeaseEnd::Failed, note, now).await?;
                let state = ExecRepo::retry_state_for_update(conn, fence.key)
                    .await?
                    .ok_or(EngineError::NotFound { entity: "execution" })?;
                let policy = retry::retry_policy(state.policy.as_ref())?;
                let used = u32::try_from(state.retry_count).unwrap_or(0);
                match retry::decide(&policy, class, used, entropy()) {
                    Fate::Retry { delay_ms } => {
                        let retry_at = ExecRepo::schedule_retry(conn, fence.key, delay_ms, message, now).await?;
                        let retry_at = retry_at.ok_or_else(|| not_active_with_lease(fence.key))?;
                        Ok(FailOutcome::RetryScheduled {
                            delay_until: TimestampMs::from_millis(retry_at),
                        })
                    }
                    Fate::Terminal => {
                        let detail = TerminalDetail {
                            result_payload: None,
                            failure_reason: Some(message),
                            cancel_reason: None,
                        };
                        let moved = ExecRepo::mark_terminal(conn, fence.key, Terminal::Failed, detail, now).await?;
                        ensure_moved(moved, fence.key)?;
                        Ok(FailOutcome::TerminalFailed)
                    }
                }
            })
        })
        .await
}

/// Cooperative cancel by the lease holder: terminal, outcome `cancelled`.
pub(crate) async fn cancel(ctx: &Ctx, handle: &Handle, reason: &str) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    validate::text("cancel reason", reason)?;
    let now = ctx.now();
    ctx.db
        .tx("cancel", Isolation::ReadCommitted, |conn| {
            Box::pin(async move {
                release(conn, fence, LeaseEnd::Cancelled, FailureNote::default(), now).await?;
                let detail = TerminalDetail {
                    result_payload: None,
                    failure_reason: None,
                    cancel_reason: Some(reason),
                };
                let moved = ExecRepo::mark_terminal(conn, fence.key, Terminal::Cancelled, detail, now).await?;
                ensure_moved(moved, fence.key)
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
        .tx("delay", Isolation::ReadCommitted, |conn| {
            Box::pin(async move {
                release(conn, fence, LeaseEnd::Delayed, FailureNote::default(), now).await?;
                let moved = ExecRepo::park_delayed(conn, fence.key, until.0, now).await?;
                ensure_moved(moved, fence.key)
            })
        })
        .await
}

/// Release the lease and park the execution until its dependencies resolve.
pub(crate) async fn wait_children(ctx: &Ctx, handle: &Handle) -> Result<(), EngineError> {
    let fence = fence::decode(handle, &ctx.partitions)?;
    let now = ctx.now();
    ctx.db
        .tx("wait_children", Isolation::ReadCommitted, |conn| {
            Box::pin(async move {
                release(conn, fence, LeaseEnd::WaitingChildren, FailureNote::default(), now).await?;
                let moved = ExecRepo::park_waiting_children(conn, fence.key, now).await?;
                ensure_moved(moved, fence.key)
            })
        })
        .await
}

/// End the live lease `fence` names, or fail with why it is not live.
async fn release(
    conn: &mut PgConnection,
    fence: Fence,
    end: LeaseEnd,
    failure: FailureNote<'_>,
    now: Option<i64>,
) -> Result<(), TxError> {
    if AttemptRepo::release_if_live(conn, fence, end, failure, now).await? {
        Ok(())
    } else {
        Err(why_not_live(conn, fence, now).await?.into())
    }
}

/// The execution must have moved: its attempt held a live lease, and a live
/// lease implies an active execution.
fn ensure_moved(moved: bool, key: ExecKey) -> Result<(), TxError> {
    if moved {
        Ok(())
    } else {
        Err(not_active_with_lease(key).into())
    }
}

fn not_active_with_lease(key: ExecKey) -> EngineError {
    corruption(format!(
        "ff_exec_core ({}, {}): not active while its attempt held a live lease",
        key.partition, key.id
    ))
}

/// A number in 0..=1 for retry jitter.
fn entropy() -> f64 {
    (Uuid::new_v4().as_u128() as u64) as f64 / u64::MAX as f64
}
