//! A long-running reader holding its snapshot open (`REPEATABLE READ`)
//! while workers drain a backlog: the claim path keeps working. With the
//! snapshot held, claimed rows cannot be vacuumed away and every claim walks
//! past them, so throughput drops; the test prints both rates.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{Bench, Spec, policy};
use ff_core::backend::CapabilitySet;
use ff_core::engine_backend::EngineBackend;
use ff_core::types::LaneId;
use sqlx::Connection;

async fn drain(engine: Arc<dyn EngineBackend>, lane: &str, workers: usize) -> (usize, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (engine, lane) = (engine.clone(), LaneId::new(lane));
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while let Some(h) = engine
                .claim(&lane, &CapabilitySet::default(), policy(&format!("w{w}"), 30_000))
                .await
                .expect("claims keep working under a long transaction")
            {
                engine.complete(&h, None).await.expect("complete");
                done += 1;
            }
            done
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    (done, done as f64 / started.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_keep_working_while_a_snapshot_is_held() {
    let mut b = Bench::new().await;
    let n = 1_500;
    for _ in 0..n {
        b.create(Spec::on("free")).await;
    }
    for _ in 0..n {
        b.create(Spec::on("held")).await;
    }
    let engine: Arc<dyn EngineBackend> = b.backend.clone();
    let (done, free_rate) = drain(engine.clone(), "free", 4).await;
    assert_eq!(done, n);

    let mut reader = sqlx::PgConnection::connect(&b.db.url()).await.unwrap();
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut reader)
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM ff_exec_core")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(seen, 2 * n as i64);
    let (done, held_rate) = drain(engine, "held", 4).await;
    assert_eq!(
        done, n,
        "every execution was claimed and completed under the open snapshot"
    );
    // The reader still sees its snapshot: nothing it saw was lost.
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM ff_exec_core WHERE lifecycle_phase = 'runnable'")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(still, n as i64);
    sqlx::query("ROLLBACK").execute(&mut reader).await.unwrap();
    eprintln!(
        "long transaction: {n} jobs each; {free_rate:.0} jobs/s without a held snapshot, \
         {held_rate:.0} jobs/s with one ({:.0}% of it)",
        100.0 * held_rate / free_rate
    );
}
