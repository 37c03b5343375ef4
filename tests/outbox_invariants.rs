//! The outboxes agree with the rows, whatever mix of transitions ran:
//! exactly one completion event per terminal execution, and for every
//! attempt one lease event per lease granted and one per lease ended.

mod common;

use common::{Bench, Spec, T0};
use ff_core::backend::{FailureClass, FailureReason};
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};
use ff_core::types::TimestampMs;

#[tokio::test]
async fn outboxes_match_the_rows_after_a_mixed_run() {
    let mut b = Bench::new().await;
    let retrying = ExecutionPolicy {
        retry_policy: Some(RetryPolicy {
            max_retries: 2,
            backoff: BackoffStrategy::Fixed { delay_ms: 0 },
            retryable_categories: vec![],
        }),
        ..ExecutionPolicy::default()
    };
    for _ in 0..24 {
        b.create(Spec::on("mix").policy(retrying.clone())).await;
    }
    // Every sixth of them takes a different road.
    let mut n = 0;
    while let Some(handle) = b.claim("mix", "w").await {
        n += 1;
        let engine = b.engine();
        match n % 6 {
            0 => engine.complete(&handle, None).await.unwrap(),
            1 => {
                engine
                    .fail(&handle, FailureReason::new("flaky"), FailureClass::Transient)
                    .await
                    .unwrap();
            }
            2 => {
                engine
                    .fail(&handle, FailureReason::new("bad"), FailureClass::Permanent)
                    .await
                    .unwrap();
            }
            3 => engine.cancel(&handle, "no longer needed").await.unwrap(),
            4 => engine.delay(&handle, TimestampMs::from_millis(T0)).await.unwrap(),
            _ => {
                // The worker "crashes": its lease expires and is requeued.
                b.clock.advance_ms(30_000);
                b.backend.run_scanners_once().await.unwrap();
            }
        }
        assert!(n < 500, "the mix does not converge");
    }

    let terminal = b
        .count("SELECT count(*) FROM ff_exec_core WHERE lifecycle_phase = 'terminal'")
        .await;
    assert_eq!(terminal, 24, "every execution ended");
    common::load::check_outboxes(b.pool()).await;
    assert!(
        b.count("SELECT count(*) FROM ff_lease_event WHERE event_kind = 'expired'")
            .await
            > 0
    );
    assert!(
        b.count("SELECT count(*) FROM ff_attempt WHERE attempt_type = 'retry'")
            .await
            > 0
    );
}
