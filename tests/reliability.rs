//! Reliability under load: many workers completing, failing, delaying,
//! cancelling and crashing at once, then every promise checked against the
//! rows. `FF_STRESS_EXECUTIONS` sizes it (`make soak` runs a larger one).

mod common;

use std::time::Duration;

use common::load;
use common::{Bench, Spec};
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};

fn executions() -> i64 {
    std::env::var("FF_STRESS_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_with_failures_and_crashes_keep_every_promise() {
    let mut b = Bench::new().await;
    let n = executions();
    let policy = ExecutionPolicy {
        retry_policy: Some(RetryPolicy {
            max_retries: 2,
            backoff: BackoffStrategy::Fixed { delay_ms: 100 },
            retryable_categories: vec![],
        }),
        ..ExecutionPolicy::default()
    };
    for _ in 0..n {
        b.create(Spec::on("stress").policy(policy.clone())).await;
    }
    // Simulated time runs 100x fast: crashed leases (5 s TTL) expire within
    // about 50 ms of real time, backoffs and delays pass in a few ms.
    let report = load::run(
        b.backend.clone(),
        b.pool().clone(),
        "stress",
        n,
        8,
        Some((b.clock.clone(), 1_000)),
        Duration::from_secs(240),
    )
    .await;
    load::check_invariants(b.pool(), n, 3, &report).await;
    eprintln!(
        "stress: {n} executions, {} leases granted, {} calls that ended a lease, \
         {} stale-handle calls all refused, {} faults",
        report.granted.len(),
        report.completed_calls,
        report.stale_calls,
        report.transport_errors
    );
    assert!(report.stale_calls > 0, "the mix should include crashed workers");
    let expired: i64 = sqlx::query_scalar("SELECT count(*) FROM ff_lease_event WHERE event_kind = 'expired'")
        .fetch_one(b.pool())
        .await
        .unwrap();
    assert!(expired > 0, "crashed leases should have expired and been requeued");
}
