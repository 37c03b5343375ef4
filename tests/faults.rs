//! Fault injection: connections killed under load, a server restart mid-run
//! (on a scratch cluster of the test's own), and an exhausted pool. Calls
//! fail with typed transport or timeout errors, nothing panics, the backend
//! recovers by itself, and the promises of `tests/reliability.rs` hold.

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Bench, Spec, TestDb, load, policy};
use ff_backend_postgres::{Clock, ManualClock, PostgresBackend, ScannerConfig};
use ff_core::backend::CapabilitySet;
use ff_core::engine_backend::EngineBackend;
use ff_core::engine_error::EngineError;
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};
use ff_core::types::LaneId;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const UNDER_TEST: &str = "ff-under-test";

/// The size of a run: `FF_STRESS_EXECUTIONS` (as for `tests/reliability.rs`)
/// scaled by `share`; 1,500 scaled by default.
fn executions(share: f64) -> i64 {
    let base: i64 = std::env::var("FF_STRESS_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500);
    (base as f64 * share) as i64
}

fn retrying() -> ExecutionPolicy {
    ExecutionPolicy {
        retry_policy: Some(RetryPolicy {
            max_retries: 2,
            backoff: BackoffStrategy::Fixed { delay_ms: 100 },
            retryable_categories: vec![],
        }),
        ..ExecutionPolicy::default()
    }
}

/// A pool the fault injector can find by its application name, built as
/// `PostgresBackend::connect` builds its own (no ping before use).
async fn pool_under_test(url: &str, size: u32) -> PgPool {
    let options = PgConnectOptions::from_str(url).unwrap().application_name(UNDER_TEST);
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .unwrap()
}

fn backend_on(pool: PgPool, clock: &ManualClock) -> Arc<PostgresBackend> {
    PostgresBackend::builder(pool)
        .clock(Clock::Manual(clock.clone()))
        .scanners(ScannerConfig::disabled())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_under_load() {
    let mut b = Bench::new().await;
    let n = executions(0.4);
    for _ in 0..n {
        b.create(Spec::on("killed").policy(retrying())).await;
    }
    let backend = backend_on(pool_under_test(&b.db.url(), 10).await, &b.clock);

    // Kill one of the backend's connections every 25 ms while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (pool, stop, kills) = (b.pool().clone(), stop.clone(), kills.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(25)).await;
                let killed: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM (
                        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND application_name = $1
                         ORDER BY random() LIMIT 1) k",
                )
                .bind(UNDER_TEST)
                .fetch_one(&pool)
                .await
                .unwrap();
                kills.fetch_add(killed as u64, Ordering::Relaxed);
            }
        })
    };
    let report = load::run(
        backend,
        b.pool().clone(),
        "killed",
        n,
        6,
        Some((b.clock.clone(), 1_000)),
        Duration::from_secs(240),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    killer.await.unwrap();
    load::check_invariants(b.pool(), n, 3, &report).await;
    let kills = kills.load(Ordering::Relaxed);
    eprintln!(
        "killed connections: {n} executions, {kills} connections terminated, {} transport errors ridden out",
        report.transport_errors
    );
    assert!(kills > 0, "no connection was killed");
    assert!(
        report.transport_errors > 0,
        "killing connections produced no transport error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_restart_mid_run() {
    // A cluster of the test's own: restarting the shared server would
    // disturb every other test.
    let dir = std::env::temp_dir().join(format!("ff-restart-{}", uuid::Uuid::new_v4().simple()));
    let port = 56000 + (std::process::id() % 1000) as u16;
    let cluster = ffpg::cluster::Cluster::start(&dir, port).expect("start a scratch cluster");
    let admin = cluster.url("postgres");
    let setup = PgPoolOptions::new().max_connections(2).connect(&admin).await.unwrap();
    sqlx::query("CREATE DATABASE restart").execute(&setup).await.unwrap();
    setup.close().await;
    let url = cluster.url("restart");
    let pool = pool_under_test(&url, 10).await;
    ff_backend_postgres::apply_migrations(&pool).await.unwrap();
    let clock = ManualClock::new(common::T0);
    let backend = backend_on(pool.clone(), &clock);

    let n = executions(0.27);
    for _ in 0..n {
        let id = ff_core::types::ExecutionId::solo(&LaneId::new("restart"), &Default::default());
        backend
            .create_execution(Spec::on("restart").policy(retrying()).args(id))
            .await
            .unwrap();
    }
    // A separate pool for reading the rows; it reconnects after the restart.
    let reader = PgPoolOptions::new().max_connections(2).connect(&url).await.unwrap();
    let restarted = Arc::new(AtomicBool::new(false));
    let restarter = {
        let reader = reader.clone();
        let restarted = restarted.clone();
        tokio::spawn(async move {
            // Restart once a third of the work is done.
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let done: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM ff_exec_core WHERE lifecycle_phase = 'terminal'")
                        .fetch_one(&reader)
                        .await
                        .unwrap_or(0);
                if done >= n / 3 {
                    break;
                }
            }
            cluster.restart().expect("restart the server");
            restarted.store(true, Ordering::Relaxed);
            cluster
        })
    };
    let report = load::run(
        backend,
        reader.clone(),
        "restart",
        n,
        6,
        Some((clock, 1_000)),
        Duration::from_secs(240),
    )
    .await;
    let cluster = restarter.await.unwrap();
    assert!(restarted.load(Ordering::Relaxed), "the server was not restarted");
    load::check_invariants(&reader, n, 3, &report).await;
    eprintln!(
        "server restart: {n} executions, 1 restart, {} transport errors ridden out",
        report.transport_errors
    );
    assert!(report.transport_errors > 0, "the restart produced no transport error");
    reader.close().await;
    pool.close().await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_exhausted_pool_is_a_timeout_then_recovers() {
    let db = TestDb::new().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(200))
        .connect(&db.url())
        .await
        .unwrap();
    let backend = PostgresBackend::builder(pool.clone())
        .scanners(ScannerConfig::disabled())
        .build();
    let held = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    let err = backend
        .claim(&LaneId::new("full"), &CapabilitySet::default(), policy("w", 1_000))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Timeout { op: "claim", .. }), "{err:?}");
    let err = backend.ping().await.unwrap_err();
    assert!(matches!(err, EngineError::Timeout { op: "ping", .. }), "{err:?}");
    drop(held);
    backend.ping().await.expect("recovers once connections come back");
    assert!(
        backend
            .claim(&LaneId::new("full"), &CapabilitySet::default(), policy("w", 1_000))
            .await
            .unwrap()
            .is_none()
    );
}
