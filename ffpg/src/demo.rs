//! A small worker pipeline against a local database: what `make demo` runs.
//!
//! Creates the database if it is missing, migrates it, creates a handful of
//! executions through the trait, and runs two workers through claim,
//! progress and complete, with one transient failure (retried after its
//! backoff) and one delay in the mix. Prints what happened.
//!
//! Usage: `cargo run --example demo -- [postgres://user@host:port/database]`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ff_backend_postgres::{ConnectOptions, PostgresBackend};
use ff_core::backend::{CapabilitySet, ClaimPolicy, FailOutcome, FailureClass, FailureReason, HandleKind};
use ff_core::contracts::CreateExecutionArgs;
use ff_core::engine_backend::EngineBackend;
use ff_core::partition::PartitionConfig;
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};
use ff_core::state::PublicState;
use ff_core::types::{ExecutionId, LaneId, Namespace, TimestampMs, WorkerId, WorkerInstanceId};
use sqlx::Connection;
use tokio::sync::Mutex;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/flowfabric";

type Log = Arc<Mutex<Vec<String>>>;

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_URL.to_owned());
    if let Err(err) = run(&url).await {
        eprintln!("demo failed: {err}");
        std::process::exit(1);
    }
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    create_database_if_missing(url).await?;
    let backend = PostgresBackend::connect_with(ConnectOptions::new(url).apply_migrations(true)).await?;
    let engine: Arc<dyn EngineBackend> = backend.clone();
    println!(
        "connected to {url} (schema migrated, backend {:?})",
        engine.backend_label()
    );

    let lane = LaneId::new(format!("demo-{}", std::process::id()));
    let jobs = [
        "resize-image",
        "send-email",
        "flaky-upstream",
        "render-report",
        "wait-a-second",
        "index-doc",
    ];
    let mut ids = Vec::new();
    for (i, kind) in jobs.iter().enumerate() {
        let id = ExecutionId::solo(&lane, &PartitionConfig::default());
        let policy = ExecutionPolicy {
            retry_policy: Some(RetryPolicy {
                max_retries: 2,
                backoff: BackoffStrategy::Fixed { delay_ms: 500 },
                retryable_categories: vec![],
            }),
            ..ExecutionPolicy::default()
        };
        engine
            .create_execution(CreateExecutionArgs {
                partition_id: id.partition(),
                execution_id: id.clone(),
                namespace: Namespace::new("demo"),
                lane_id: lane.clone(),
                execution_kind: (*kind).to_owned(),
                input_payload: format!("job {i}").into_bytes(),
                payload_encoding: Some("text".into()),
                priority: 0,
                creator_identity: "demo".into(),
                idempotency_key: None,
                tags: HashMap::new(),
                policy: Some(policy),
                delay_until: None,
                execution_deadline_at: None,
                now: TimestampMs::now(),
            })
            .await?;
        ids.push((id, *kind));
    }
    println!("created {} executions on lane {lane}", ids.len());

    let started = Instant::now();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let kinds: Arc<HashMap<String, &'static str>> =
        Arc::new(ids.iter().map(|(id, kind)| (id.to_string(), *kind)).collect());
    let workers: Vec<_> = (1..=2)
        .map(|n| tokio::spawn(worker(engine.clone(), lane.clone(), n, kinds.clone(), log.clone())))
        .collect();
    for w in workers {
        w.await?.map_err(|e| e.to_string())?;
    }
    for line in log.lock().await.iter() {
        println!("  {line}");
    }

    println!("after {:.1}s:", started.elapsed().as_secs_f64());
    let mut all_done = true;
    for (id, kind) in &ids {
        let snap = engine.describe_execution(id).await?.ok_or("execution vanished")?;
        all_done &= snap.public_state == PublicState::Completed;
        println!(
            "  {kind:<15} {:<10} attempts={}",
            snap.public_state, snap.total_attempt_count
        );
    }
    if !all_done {
        return Err("not every execution completed".into());
    }
    println!("all {} executions completed", ids.len());
    Ok(())
}

/// Claim until the lane stays empty for two seconds.
async fn worker(
    engine: Arc<dyn EngineBackend>,
    lane: LaneId,
    n: u32,
    kinds: Arc<HashMap<String, &'static str>>,
    log: Log,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let name = format!("worker-{n}");
    let policy = ClaimPolicy::new(
        WorkerId::new(&name),
        WorkerInstanceId::new(format!("{name}-{}", std::process::id())),
        10_000,
        Some(Duration::from_secs(2)),
    );
    while let Some(handle) = engine.claim(&lane, &CapabilitySet::default(), policy.clone()).await? {
        // The handle is opaque to the engine's users; the demo peeks inside
        // (with ff-core's own codec) to narrate which job it got.
        let payload = ff_core::handle_codec::decode(&handle.opaque)?.payload;
        let kind = kinds.get(payload.execution_id.as_str()).copied().unwrap_or("?");
        let attempt = payload.attempt_index.0;
        engine.progress(&handle, Some(50), Some("working".into())).await?;
        let line = match kind {
            "flaky-upstream" if attempt == 0 => {
                let outcome = engine
                    .fail(
                        &handle,
                        FailureReason::new("upstream timed out"),
                        FailureClass::Transient,
                    )
                    .await?;
                match outcome {
                    FailOutcome::RetryScheduled { .. } => format!("{name}: {kind} failed; retry scheduled"),
                    FailOutcome::TerminalFailed => format!("{name}: {kind} failed for good"),
                }
            }
            "wait-a-second" if handle.kind == HandleKind::Fresh => {
                engine
                    .delay(&handle, TimestampMs::from_millis(TimestampMs::now().0 + 1_000))
                    .await?;
                format!("{name}: {kind} delayed by 1s")
            }
            _ => {
                engine.complete(&handle, Some(b"ok".to_vec())).await?;
                format!("{name}: {kind} completed (attempt {attempt}, {:?} handle)", handle.kind)
            }
        };
        log.lock().await.push(line);
    }
    Ok(())
}

/// Connect to the server's `postgres` database and create the target one.
async fn create_database_if_missing(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (server, db) = url.rsplit_once('/').ok_or("the database URL has no database name")?;
    let db = db.split('?').next().unwrap_or(db);
    if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("unsupported database name {db:?}").into());
    }
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(db)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .await?;
        println!("created database {db}");
    }
    Ok(())
}
