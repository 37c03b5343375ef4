//! Background scanners: the time-based transitions nobody calls for.
//!
//! * promotion: delayed and backed-off executions become claimable when due;
//! * lease expiry: an execution whose lease expired (its worker crashed or
//!   stalled) goes back to the queue; its attempt resumes under the next
//!   claim with a higher lease epoch, which fences the old holder out;
//! * a sweep of stale `ff_listener` registrations.
//!
//! A [`PostgresBackend`](crate::PostgresBackend) runs them on a timer by
//! default (see [`ScannerConfig`]). Several processes may scan the same
//! database: each pass takes its rows with `FOR UPDATE SKIP LOCKED`, so
//! passes never collide and never move a row twice. A failed pass is logged
//! and retried on the next tick.

use std::time::Duration;

use ff_core::engine_error::EngineError;
use tokio::task::JoinHandle;

use crate::ops::Ctx;
use crate::repo::{ExecRepo, ListenerRepo, TransitionRepo};

/// How the background scanners run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScannerConfig {
    /// Run the scanners on a timer. Turn off to drive them by hand with
    /// [`PostgresBackend::run_scanners_once`](crate::PostgresBackend::run_scanners_once)
    /// (deterministic tests) or to leave scanning to other processes.
    pub enabled: bool,
    /// Time between passes. It bounds how late a due execution becomes
    /// claimable and how long an expired lease blocks its execution.
    pub interval: Duration,
    /// Rows moved per statement; a pass repeats until a batch comes back short.
    pub batch_size: i64,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_millis(250),
            batch_size: 1000,
        }
    }
}

impl ScannerConfig {
    /// Scanners off: nothing runs unless driven by hand.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// What one pass of the scanners did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanReport {
    /// Delayed or backed-off executions made claimable.
    pub promoted: u64,
    /// Expired leases ended (their executions requeued, or failed when
    /// reclaimed too often).
    pub leases_expired: u64,
    /// Executions failed because one more reclaim would exceed their
    /// policy's `max_reclaim_count` (100 when it sets none).
    pub reclaims_exhausted: u64,
}

/// Run every scanner once. Each pass moves up to `batch_size` rows per
/// statement and repeats until a batch comes back short.
pub(crate) async fn scan_once(ctx: &Ctx, batch_size: i64) -> Result<ScanReport, EngineError> {
    let batch = batch_size.unsigned_abs();
    let mut report = ScanReport::default();
    loop {
        let now = ctx.now();
        let expired = ctx
            .db
            .single("scan_lease_expiry", |conn| {
                Box::pin(async move { Ok(TransitionRepo::expire_due(conn, batch_size, now).await?) })
            })
            .await?;
        report.leases_expired += expired.total();
        report.reclaims_exhausted += expired.failed;
        if expired.total() < batch {
            break;
        }
    }
    loop {
        let now = ctx.now();
        let promoted = ctx
            .db
            .single("scan_promote", |conn| {
                Box::pin(async move { Ok(ExecRepo::promote_due(conn, batch_size, now).await?) })
            })
            .await?;
        report.promoted += promoted;
        if promoted < batch {
            break;
        }
    }
    // Forget listener registrations no one has renewed for a minute.
    ctx.db
        .single("scan_listeners", |conn| {
            Box::pin(async move { Ok(ListenerRepo::sweep(conn, 60_000).await?) })
        })
        .await?;
    Ok(report)
}

/// Start the timer. The task stops when its handle is aborted.
pub(crate) fn spawn(ctx: Ctx, config: ScannerConfig) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match scan_once(&ctx, config.batch_size).await {
                Ok(report) if report != ScanReport::default() => tracing::debug!(?report, "scanner pass"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "scanner pass failed; retrying next tick"),
            }
        }
    })
}
