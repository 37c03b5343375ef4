//! `ffpg`: operate the FlowFabric PostgreSQL backend without writing Rust.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ff_backend_postgres::{
    ConnectOptions, Error as BackendError, ExecutionReport, LaneStatus, MigrationError, PostgresBackend,
    apply_migrations, schema_status,
};
use ff_core::engine_backend::EngineBackend;
use ff_core::types::{ExecutionId, TimestampMs};
use ffpg::bench::{self, Subject};
use ffpg::db::{self, CliError};

#[derive(Parser)]
#[command(name = "ffpg", version, about = "Operate the FlowFabric PostgreSQL backend")]
struct Cli {
    /// PostgreSQL database; `migrate`, `demo` and `bench` create it if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = db::DEFAULT_URL, global = true)]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (or list applied and pending ones with --status).
    Migrate {
        /// List applied and pending migrations; change nothing.
        #[arg(long)]
        status: bool,
    },
    /// Executions per lane and state, oldest waiting age, live and expired leases.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One execution: its state, attempts and recent events.
    Inspect {
        /// The execution id, `{fp:N}:<uuid>`.
        execution_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create a few executions and run workers through them, with a retry and a delay.
    Demo,
    /// Measure throughput and latency of this backend on this database.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    size: bench::SizeArgs,
    /// Workloads to run, comma separated (ceiling, burn-down, steady, idle, latency, backlog).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,burn-down,steady,idle,latency,backlog"
    )]
    only: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let url = cli.database_url;
    db::parse_url(&url)?;
    match cli.command {
        Command::Migrate { status } => migrate(&url, status).await,
        Command::Status { json } => status(&url, json).await,
        Command::Inspect { execution_id, json } => inspect(&url, &execution_id, json).await,
        Command::Demo => {
            let backend = open(&url, true).await?;
            ffpg::demo::run(backend).await
        }
        Command::Bench(args) => run_bench(&url, args).await,
    }
}

/// Connect; when asked to migrate, create the database if it is missing and
/// migrate it, else require a current schema.
async fn open(url: &str, migrate: bool) -> Result<Arc<PostgresBackend>, CliError> {
    if migrate {
        if db::create_if_missing(url).await? {
            eprintln!("created database {}", db::describe(&db::parse_url(url)?));
        }
    } else {
        db::check_reachable(url).await?;
    }
    PostgresBackend::connect_with(
        ConnectOptions::new(url)
            .apply_migrations(migrate)
            .acquire_timeout(Duration::from_secs(5)),
    )
    .await
    .map_err(backend_error)
}

fn backend_error(err: BackendError) -> CliError {
    match err {
        BackendError::Migration(MigrationError::Behind { pending }) => CliError::new(format!(
            "the database schema is behind this build ({pending} migration(s) pending): run `ffpg migrate`"
        )),
        BackendError::Migration(m) => CliError::new(m.to_string()),
        BackendError::Database(e) => CliError::new(format!("database error: {}", db::root_cause(&e))),
        other => CliError::new(other.to_string()),
    }
}

async fn migrate(url: &str, status_only: bool) -> Result<(), CliError> {
    if !status_only && db::create_if_missing(url).await? {
        eprintln!("created database {}", db::describe(&db::parse_url(url)?));
    }
    let pool = db::pool(url, 2).await?;
    if !status_only {
        apply_migrations(&pool).await.map_err(|e| backend_error(e.into()))?;
    }
    let status = schema_status(&pool).await.map_err(|e| backend_error(e.into()))?;
    for (version, name) in &status.applied {
        println!("applied  V{version}__{name}");
    }
    for (version, name) in &status.pending {
        println!("pending  V{version}__{name}");
    }
    for (version, name) in &status.unknown {
        println!("unknown  V{version}__{name}  (from a newer release)");
    }
    if status.is_current() {
        println!("schema is current");
    }
    Ok(())
}

fn age(created_at_ms: Option<i64>) -> String {
    let Some(at) = created_at_ms else {
        return "–".into();
    };
    let secs = (TimestampMs::now().0 - at).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

async fn status(url: &str, json: bool) -> Result<(), CliError> {
    let backend = open(url, false).await?;
    let lanes = backend.lane_status().await.map_err(|e| CliError::new(e.to_string()))?;
    if json {
        let value: Vec<_> = lanes.iter().map(lane_json).collect();
        println!("{}", serde_json::to_string_pretty(&value).expect("serialisable"));
        return Ok(());
    }
    if lanes.is_empty() {
        println!("no executions");
        return Ok(());
    }
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "lane", "waiting", "delayed", "active", "other", "completed", "failed", "oldest", "leases", "expired"
    );
    for lane in &lanes {
        let get = |s: &str| lane.executions.get(s).copied().unwrap_or(0);
        let known = ["waiting", "delayed", "active", "completed", "failed"];
        let other: i64 = lane
            .executions
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum();
        println!(
            "{:<28} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} {:>7}",
            lane.lane_id,
            get("waiting"),
            get("delayed"),
            get("active"),
            other,
            get("completed"),
            get("failed"),
            age(lane.oldest_waiting_created_at_ms),
            lane.live_leases,
            lane.expired_leases
        );
    }
    Ok(())
}

fn lane_json(lane: &LaneStatus) -> serde_json::Value {
    serde_json::json!({
        "lane_id": lane.lane_id,
        "executions": lane.executions,
        "oldest_waiting_created_at_ms": lane.oldest_waiting_created_at_ms,
        "live_leases": lane.live_leases,
        "expired_leases": lane.expired_leases,
    })
}

async fn inspect(url: &str, id: &str, json: bool) -> Result<(), CliError> {
    let id = ExecutionId::parse(id).map_err(|e| CliError::new(format!("invalid execution id {id:?}: {e}")))?;
    let backend = open(url, false).await?;
    let report = backend
        .inspect(&id)
        .await
        .map_err(|e| CliError::new(e.to_string()))?
        .ok_or_else(|| CliError::new(format!("no execution {id}")))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&report)).expect("serialisable")
        );
    } else {
        print_report(&report);
    }
    Ok(())
}

fn report_json(r: &ExecutionReport) -> serde_json::Value {
    let s = &r.snapshot;
    serde_json::json!({
        "execution_id": s.execution_id.to_string(),
        "lane_id": s.lane_id.as_str(),
        "namespace": s.namespace.as_str(),
        "execution_kind": r.execution_kind,
        "public_state": s.public_state.as_str(),
        "blocking_reason": s.blocking_reason,
        "blocking_detail": s.blocking_detail,
        "priority": r.priority,
        "required_capabilities": r.required_capabilities,
        "retry_count": r.retry_count,
        "reclaim_count": r.reclaim_count,
        "progress_percent": r.progress_percent,
        "progress_message": r.progress_message,
        "failure_reason": r.failure_reason,
        "created_at_ms": s.created_at.0,
        "tags": s.tags,
        "attempts": r.attempts.iter().map(|a| serde_json::json!({
            "attempt_index": a.attempt_index,
            "attempt_type": a.attempt_type,
            "lifecycle": a.lifecycle,
            "lease_epoch": a.lease_epoch,
            "lease_expires_at_ms": a.lease_expires_at_ms,
            "worker_instance_id": a.worker_instance_id,
            "started_at_ms": a.started_at_ms,
            "ended_at_ms": a.ended_at_ms,
            "failure_class": a.failure_class,
            "failure_reason": a.failure_reason,
        })).collect::<Vec<_>>(),
        "recent_events": r.recent_events.iter().map(|e| serde_json::json!({
            "family": e.family,
            "event_id": e.event_id,
            "kind": e.kind,
            "attempt_index": e.attempt_index,
            "detail": e.detail,
            "occurred_at_ms": e.occurred_at_ms,
        })).collect::<Vec<_>>(),
    })
}

fn print_report(r: &ExecutionReport) {
    let s = &r.snapshot;
    println!("execution  {}", s.execution_id);
    println!(
        "lane       {}   namespace {}   kind {}",
        s.lane_id, s.namespace, r.execution_kind
    );
    let blocking = s.blocking_reason.as_deref().unwrap_or("-");
    println!("state      {}   blocking {blocking}", s.public_state);
    if let Some(detail) = &s.blocking_detail {
        println!("           {detail}");
    }
    println!(
        "priority   {}   retries {}   reclaims {}   capabilities [{}]",
        r.priority,
        r.retry_count,
        r.reclaim_count,
        r.required_capabilities.join(", ")
    );
    if r.progress_percent.is_some() || r.progress_message.is_some() {
        let pct = r.progress_percent.map(|p| format!("{p}%")).unwrap_or_default();
        println!("progress   {pct} {}", r.progress_message.as_deref().unwrap_or(""));
    }
    if let Some(reason) = &r.failure_reason {
        println!("failure    {reason}");
    }
    if let Some(lease) = &s.current_lease {
        println!(
            "lease      epoch {} held by {} until {}",
            lease.lease_epoch, lease.worker_instance_id, lease.expires_at
        );
    }
    println!("attempts");
    for a in &r.attempts {
        let failure = match (&a.failure_class, &a.failure_reason) {
            (Some(class), Some(reason)) => format!("  {class}: {reason}"),
            _ => String::new(),
        };
        println!(
            "  #{} {:<8} {:<16} epoch {} worker {}{failure}",
            a.attempt_index,
            a.attempt_type,
            a.lifecycle,
            a.lease_epoch,
            a.worker_instance_id.as_deref().unwrap_or("-"),
        );
    }
    println!("recent events");
    for e in &r.recent_events {
        println!(
            "  {:>13} {:<10} {:<9} attempt {} {}",
            e.occurred_at_ms,
            e.family,
            e.kind,
            e.attempt_index,
            e.detail.as_deref().unwrap_or("")
        );
    }
}

async fn run_bench(url: &str, args: BenchArgs) -> Result<(), CliError> {
    let config = args.size.config();
    let backend = open(url, true).await?;
    let pool = db::pool(url, config.workers as u32 + 2).await?;
    let engine: Arc<dyn EngineBackend> = backend.clone();
    let subject = Subject {
        name: "ff-backend-postgres (this)".into(),
        engine,
        pool: pool.clone(),
        partitions: backend.partitions(),
        ours: Some(backend.clone()),
        promote_submitted: false,
    };
    let mut rows = Vec::new();
    if args.only.iter().any(|w| w == "ceiling") {
        rows.push(bench::commit_ceiling(&pool, "(one-row updates)", &config).await?);
    }
    rows.extend(bench::run(&subject, &config, &args.only).await?);
    println!("{}", bench::report::markdown(&rows));
    Ok(())
}
