//! `ff-bench` (what `make bench` runs): this backend, the published
//! `ff-backend-postgres` 0.11.0, and the physical reference (the commit
//! ceiling), measured side by side through the same trait calls on a scratch
//! PostgreSQL cluster this program starts and stops.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use ff_backend_postgres::{ConnectOptions, PostgresBackend};
use ff_core::engine_backend::EngineBackend;
use ff_core::partition::PartitionConfig;
use ffpg::bench::{self, BenchConfig, Measurement, Subject};
use ffpg::db::{self, CliError};
use sqlx::postgres::PgPoolOptions;

#[derive(Parser)]
#[command(name = "ff-bench", about = "Side-by-side benchmark on a scratch PostgreSQL cluster")]
struct Args {
    #[command(flatten)]
    size: bench::SizeArgs,
    /// Workloads for this backend, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "burn-down,steady,idle,latency,backlog")]
    only: Vec<String>,
    /// Workloads for the published crate (its claim walks partitions one
    /// transaction at a time, so large backlogs take long), comma separated;
    /// empty to skip it.
    #[arg(long, value_delimiter = ',', default_value = "burn-down,steady,idle,latency")]
    published: Vec<String>,
    /// Backlog for the published crate's burn-down (default: --backlog).
    #[arg(long)]
    published_backlog: Option<usize>,
    /// Port of the scratch cluster.
    #[arg(long, default_value_t = 55432)]
    port: u16,
    /// Folder for the scratch cluster (default: target/ff-bench-pg).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the Markdown table here too.
    #[arg(long, default_value = "target/bench-report.md")]
    report: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), CliError> {
    let config = args.size.config();
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("target/ff-bench-pg"));
    eprintln!(
        "starting a scratch PostgreSQL cluster in {} on port {}",
        dir.display(),
        args.port
    );
    let cluster = ffpg::cluster::Cluster::start(&dir, args.port)?;
    let mut rows: Vec<Measurement> = Vec::new();

    // The physical reference, and this backend.
    let ours_url = cluster.url("ours");
    db::create_if_missing(&ours_url).await?;
    let pool = stats_pool(&ours_url, &config).await?;
    rows.push(bench::commit_ceiling(&pool, "(one-row updates)", &config).await?);
    let backend = PostgresBackend::connect_with(
        ConnectOptions::new(&ours_url)
            .max_connections(config.workers as u32 + 4)
            .apply_migrations(true),
    )
    .await
    .map_err(|e| CliError::new(e.to_string()))?;
    let engine: Arc<dyn EngineBackend> = backend.clone();
    let ours = Subject {
        name: "this crate".into(),
        engine,
        pool: pool.clone(),
        partitions: backend.partitions(),
        ours: Some(backend.clone()),
        promote_submitted: false,
    };
    rows.extend(bench::run(&ours, &config, &args.only).await?);
    drop(ours);
    drop(backend);

    // The published crate, through the same trait calls.
    if !args.published.is_empty() {
        let url = cluster.url("published");
        db::create_if_missing(&url).await?;
        let pool = stats_pool(&url, &config).await?;
        // As its own `connect` builds it: sqlx's defaults and the pool size.
        let backend_pool = PgPoolOptions::new()
            .max_connections(config.workers as u32 + 4)
            .connect(&url)
            .await
            .map_err(|e| CliError::new(format!("connect: {e}")))?;
        published::apply_migrations(&backend_pool)
            .await
            .map_err(|e| CliError::new(format!("published crate migrations: {e}")))?;
        let engine: Arc<dyn EngineBackend> =
            published::PostgresBackend::from_pool(backend_pool, PartitionConfig::default());
        let subject = Subject {
            name: "published 0.11.0".into(),
            engine,
            pool,
            partitions: PartitionConfig::default(),
            ours: None,
            // Its create leaves executions `submitted`, which its claim never
            // takes; see the report's note.
            promote_submitted: true,
        };
        let published_config = BenchConfig {
            backlog: args.published_backlog.unwrap_or(config.backlog),
            ..config.clone()
        };
        rows.extend(bench::run(&subject, &published_config, &args.published).await?);
    }
    drop(cluster);

    let table = bench::report::markdown(&rows);
    println!("{table}");
    if let Some(parent) = args.report.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&args.report, &table).map_err(|e| CliError::new(format!("write {}: {e}", args.report.display())))?;
    eprintln!("report written to {}", args.report.display());
    Ok(())
}

/// A pool for the server's counters, with `pg_stat_statements` enabled.
async fn stats_pool(url: &str, config: &BenchConfig) -> Result<sqlx::PgPool, CliError> {
    let pool = db::pool(url, config.workers as u32 + 2).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&pool)
        .await
        .map_err(|e| CliError::new(format!("pg_stat_statements: {e}")))?;
    Ok(pool)
}
