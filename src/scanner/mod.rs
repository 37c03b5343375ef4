//! Background scanners: the time-based transitions nobody calls for.
//!
//! * [`promote`]: delayed and backed-off executions become claimable when due.
//! * [`lease_expiry`]: an execution whose lease expired (its worker crashed or
//!   stalled) goes back to the queue; its attempt resumes under the next
//!   claim with a higher lease epoch, which fences the old holder out.
//!
//! A [`PostgresBackend`](crate::PostgresBackend) runs them on a timer by
//! default (see [`ScannerConfig`]). Several processes may scan the same
//! database: each pass takes its rows with `FOR UPDATE SKIP LOCKED`, so
//! passes never collide and never move a row twice. A failed pass is logged
//! and retried on the next tick.

pub(crate) mod lease_expiry;
pub(crate) mod promote;

use std::time::Duration;

use ff_core::engine_error::EngineError;
use tokio::task::JoinHandle;

use crate::ops::Ctx;

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
    /// Expired leases ended and their executions requeued.
    pub leases_expired: u64,
}

/// Run every scanner once.
pub(crate) async fn scan_once(ctx: &Ctx, batch_size: i64) -> Result<ScanReport, EngineError> {
    let report = ScanReport {
        leases_expired: lease_expiry::run(ctx, batch_size).await?,
        promoted: promote::run(ctx, batch_size).await?,
    };
    sweep_listeners(ctx).await?;
    Ok(report)
}

/// Forget listener registrations no one has renewed for a minute.
async fn sweep_listeners(ctx: &Ctx) -> Result<u64, EngineError> {
    ctx.db
        .single("scan_listeners", |conn| {
            Box::pin(async move { Ok(crate::repo::ListenerRepo::sweep(conn, 60_000).await?) })
        })
        .await
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
