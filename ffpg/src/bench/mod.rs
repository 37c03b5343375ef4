//! Benchmark workloads, written against `Arc<dyn EngineBackend>` so that any
//! backend can be driven through the same trait calls, and measured with
//! the server's own counters.
//!
//! Workloads:
//! 1. **burn-down**: a backlog pre-created, W workers claim → complete until
//!    it is empty;
//! 2. **steady state**: a producer creates at a target rate while W workers
//!    claim → progress → complete;
//! 3. **backlog scaling**: the cost of claim → complete with 10k, 100k, 1M
//!    executions waiting;
//! 4. **idle claim**: the cost of a claim on an empty lane;
//! 5. **latency**: create → claimed, and complete → completion notification.
//!
//! Plus the physical reference: the rate of minimal one-row update
//! transactions over the same number of connections (the commit ceiling).

pub mod report;
pub mod stats;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use ff_core::engine_backend::EngineBackend;
use ff_core::partition::PartitionConfig;
use sqlx::PgPool;

pub use workloads::{backlog_scaling, burn_down, commit_ceiling, idle_claim, latency, steady_state};

use crate::db::CliError;

/// The names `only` may hold, in the order they run.
pub const WORKLOADS: &[&str] = &["burn-down", "steady", "idle", "latency", "backlog"];

/// Run the selected workloads (see [`WORKLOADS`]) on one subject, in order.
pub async fn run(subject: &Subject, config: &BenchConfig, only: &[String]) -> Result<Vec<Measurement>, CliError> {
    let wants = |w: &str| only.iter().any(|o| o == w);
    if let Some(unknown) = only
        .iter()
        .find(|o| !WORKLOADS.contains(&o.as_str()) && o.as_str() != "ceiling")
    {
        return Err(CliError::new(format!(
            "unknown workload {unknown:?}; known: ceiling, {}",
            WORKLOADS.join(", ")
        )));
    }
    // Warm up caches and cached plans; not reported.
    let warm_up = BenchConfig {
        backlog: 1_000.min(config.backlog),
        ..config.clone()
    };
    burn_down(subject, &warm_up).await?;
    let mut rows = Vec::new();
    if wants("burn-down") {
        rows.push(burn_down(subject, config).await?);
    }
    if wants("steady") {
        rows.push(steady_state(subject, config).await?);
    }
    if wants("idle") {
        rows.push(idle_claim(subject, config).await?);
    }
    if wants("latency") {
        rows.push(latency(subject, config).await?);
    }
    if wants("backlog") {
        rows.extend(backlog_scaling(subject, config).await?);
    }
    Ok(rows)
}

/// A backend under test.
#[derive(Clone)]
pub struct Subject {
    /// Its name in the report.
    pub name: String,
    /// The backend, through the trait.
    pub engine: Arc<dyn EngineBackend>,
    /// A pool on the same database, for the server's counters.
    pub pool: PgPool,
    /// The partition layout its execution ids are minted under.
    pub partitions: PartitionConfig,
    /// This crate's backend, when the subject is it: its completion feed
    /// times complete → event.
    pub ours: Option<Arc<ff_backend_postgres::PostgresBackend>>,
    /// The backend's `create_execution` leaves executions `submitted`, which
    /// its `claim` never takes (the published 0.11.0 crate): the benchmark
    /// makes them `runnable` with an `UPDATE` of its own after creating.
    pub promote_submitted: bool,
}

/// The size of a benchmark run, as command-line options.
#[derive(Debug, Clone, clap::Args)]
pub struct SizeArgs {
    /// Concurrent workers (and connections).
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Executions in the burn-down backlog.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: usize,
    /// Seconds for the steady-state, idle-claim and ceiling runs.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Steady-state arrival rate, executions per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Backlog sizes for the scaling workload, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub backlog_sizes: Vec<usize>,
}

impl SizeArgs {
    /// The run these options describe.
    pub fn config(&self) -> BenchConfig {
        BenchConfig {
            workers: self.workers.max(1),
            backlog: self.backlog,
            duration: Duration::from_secs(self.duration.max(1)),
            rate: self.rate,
            backlog_sizes: self.backlog_sizes.clone(),
            ..BenchConfig::default()
        }
    }
}

/// How big and how long.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Concurrent workers (and connections for the commit ceiling).
    pub workers: usize,
    /// Executions in the burn-down backlog.
    pub backlog: usize,
    /// Length of the steady-state, idle-claim and ceiling runs.
    pub duration: Duration,
    /// Steady-state arrival rate, executions per second.
    pub rate: f64,
    /// Backlog sizes for the scaling workload.
    pub backlog_sizes: Vec<usize>,
    /// Claim → complete cycles measured at each backlog size.
    pub scaling_samples: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            backlog: 10_000,
            duration: Duration::from_secs(10),
            rate: 500.0,
            backlog_sizes: vec![10_000, 100_000, 1_000_000],
            scaling_samples: 2_000,
        }
    }
}

/// One measured row of the report.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Which workload (`burn-down`, `steady`, ...).
    pub workload: String,
    /// Which backend.
    pub subject: String,
    /// A parameter that distinguishes rows of one workload (backlog size, ...).
    pub parameter: String,
    /// Jobs (or operations) completed.
    pub jobs: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Per-operation latency: `(operation, p50, p99)`.
    pub latencies: Vec<(String, Option<Duration>, Option<Duration>)>,
    /// Write transactions per job, from the server's transaction ids.
    pub tx_per_job: Option<f64>,
    /// WAL bytes per job, from `pg_current_wal_lsn`.
    pub wal_per_job: Option<f64>,
    /// Statements per job, from `pg_stat_statements` when loaded.
    pub statements_per_job: Option<f64>,
    /// Anything the numbers need said.
    pub note: String,
}

impl Measurement {
    /// Jobs per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.jobs as f64 / self.elapsed.as_secs_f64()
        }
    }
}
