//! The attempt lifecycle, transition by transition: the rows after each step
//! are snapshotted, and the trait's own view (`describe_execution`) is checked
//! alongside.

mod common;

use common::{Bench, Spec, T0};
use ff_core::backend::{FailOutcome, FailureClass, FailureReason, HandleKind};
use ff_core::engine_error::{ContentionKind, EngineError};
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};
use ff_core::state::PublicState;
use ff_core::types::TimestampMs;

fn fixed_retry(max_retries: u32, delay_ms: u64) -> ExecutionPolicy {
    ExecutionPolicy {
        retry_policy: Some(RetryPolicy {
            max_retries,
            backoff: BackoffStrategy::Fixed { delay_ms },
            retryable_categories: vec![],
        }),
        ..ExecutionPolicy::default()
    }
}

#[tokio::test]
async fn happy_path_claim_progress_complete() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("happy")).await;
    insta::assert_json_snapshot!("happy_created", b.state().await);

    let handle = b.claim("happy", "w1").await.expect("claimable");
    assert_eq!(handle.kind, HandleKind::Fresh);
    insta::assert_json_snapshot!("happy_claimed", b.state().await);

    b.clock.advance_ms(10);
    b.engine()
        .progress(&handle, Some(40), Some("halfway".into()))
        .await
        .unwrap();
    b.clock.advance_ms(10);
    b.engine().complete(&handle, Some(b"done".to_vec())).await.unwrap();
    insta::assert_json_snapshot!("happy_completed", b.state().await);

    let snap = b.engine().describe_execution(&id).await.unwrap().expect("exists");
    assert_eq!(snap.public_state, PublicState::Completed);
    assert_eq!(snap.total_attempt_count, 1);
    assert!(snap.current_lease.is_none(), "a completed execution holds no lease");
    assert_eq!(snap.blocking_reason, None);
}

#[tokio::test]
async fn describe_shows_the_live_lease() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("describe").tags(&[("team.owner", "ops")])).await;
    let before = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(before.public_state, PublicState::Waiting);
    assert_eq!(before.blocking_reason.as_deref(), Some("waiting_for_worker"));
    assert!(before.current_attempt.is_none());
    assert_eq!(before.total_attempt_count, 0);
    assert_eq!(before.tags, common::tags(&[("team.owner", "ops")]));
    assert_eq!(before.namespace.as_str(), "tests");
    assert_eq!(before.created_at, TimestampMs::from_millis(T0));

    let _handle = b.claim("describe", "w1").await.unwrap();
    let during = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(during.public_state, PublicState::Active);
    let lease = during.current_lease.expect("leased");
    assert_eq!(lease.lease_epoch.0, 1);
    assert_eq!(lease.worker_instance_id.as_str(), "w1-1");
    assert_eq!(lease.expires_at, TimestampMs::from_millis(T0 + 1 + 30_000));
    assert_eq!(during.current_attempt.expect("attempt").attempt_index.0, 0);
}

#[tokio::test]
async fn retry_then_success() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("retry").policy(fixed_retry(2, 1_000))).await;
    let first = b.claim("retry", "w1").await.unwrap();
    let outcome = b
        .engine()
        .fail(&first, FailureReason::new("flaky upstream"), FailureClass::Transient)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        FailOutcome::RetryScheduled {
            delay_until: TimestampMs::from_millis(T0 + 1 + 1_000)
        }
    );
    insta::assert_json_snapshot!("retry_backing_off", b.state().await);
    let snap = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.public_state, PublicState::Delayed);
    assert_eq!(snap.blocking_reason.as_deref(), Some("waiting_for_retry_backoff"));

    b.clock.advance_ms(1_000);
    assert_eq!(b.backend.run_scanners_once().await.unwrap().promoted, 1);
    let second = b.claim("retry", "w2").await.expect("the retry is claimable");
    assert_eq!(second.kind, HandleKind::Fresh, "a retry is a new attempt");
    b.engine().complete(&second, None).await.unwrap();
    insta::assert_json_snapshot!("retry_completed", b.state().await);
    assert_eq!(
        b.engine()
            .describe_execution(&id)
            .await
            .unwrap()
            .unwrap()
            .total_attempt_count,
        2
    );
}

#[tokio::test]
async fn retries_exhausted_fail_terminally() {
    let mut b = Bench::new().await;
    b.create(Spec::on("exhaust").policy(fixed_retry(1, 0))).await;
    let first = b.claim("exhaust", "w1").await.unwrap();
    let outcome = b
        .engine()
        .fail(&first, FailureReason::new("boom 1"), FailureClass::Transient)
        .await
        .unwrap();
    assert!(matches!(outcome, FailOutcome::RetryScheduled { .. }));
    // A zero backoff is claimable at once, without a scan.
    let second = b.claim("exhaust", "w1").await.expect("claimable at once");
    let outcome = b
        .engine()
        .fail(&second, FailureReason::new("boom 2"), FailureClass::Transient)
        .await
        .unwrap();
    assert_eq!(outcome, FailOutcome::TerminalFailed);
    insta::assert_json_snapshot!("exhausted", b.state().await);
    assert!(b.claim("exhaust", "w1").await.is_none());
}

#[tokio::test]
async fn permanent_failure_is_terminal_at_once() {
    let mut b = Bench::new().await;
    b.create(Spec::on("perm").policy(fixed_retry(5, 0))).await;
    let handle = b.claim("perm", "w1").await.unwrap();
    let outcome = b
        .engine()
        .fail(&handle, FailureReason::new("bad input"), FailureClass::Permanent)
        .await
        .unwrap();
    assert_eq!(outcome, FailOutcome::TerminalFailed);
    assert_eq!(
        b.count("SELECT count(*) FROM ff_completion_event WHERE outcome = 'failure'")
            .await,
        1
    );
    assert_eq!(
        b.count("SELECT count(*) FROM ff_exec_core WHERE public_state = 'failed'")
            .await,
        1
    );
}

#[tokio::test]
async fn retry_backoff_is_honoured() {
    let mut b = Bench::new().await;
    b.create(Spec::on("backoff").policy(fixed_retry(3, 5_000))).await;
    let handle = b.claim("backoff", "w1").await.unwrap();
    let FailOutcome::RetryScheduled { delay_until } = b
        .engine()
        .fail(&handle, FailureReason::new("later"), FailureClass::Timeout)
        .await
        .unwrap()
    else {
        panic!("expected a retry");
    };
    assert_eq!(delay_until, TimestampMs::from_millis(T0 + 1 + 5_000));

    b.clock.set_ms(delay_until.0 - 1);
    assert_eq!(b.backend.run_scanners_once().await.unwrap().promoted, 0);
    assert!(b.claim("backoff", "w1").await.is_none(), "not before the backoff ends");

    b.clock.set_ms(delay_until.0);
    assert_eq!(b.backend.run_scanners_once().await.unwrap().promoted, 1);
    assert!(b.claim("backoff", "w1").await.is_some(), "claimable once due");
}

#[tokio::test]
async fn default_retry_policy_applies_without_one() {
    let mut b = Bench::new().await;
    b.create(Spec::on("default-policy")).await;
    let handle = b.claim("default-policy", "w1").await.unwrap();
    let outcome = b
        .engine()
        .fail(&handle, FailureReason::new("x"), FailureClass::Transient)
        .await
        .unwrap();
    // ff-core's default: exponential from 1 s.
    assert_eq!(
        outcome,
        FailOutcome::RetryScheduled {
            delay_until: TimestampMs::from_millis(T0 + 1 + 1_000)
        }
    );
}

#[tokio::test]
async fn cancel_by_holder_is_terminal() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("cancel")).await;
    let handle = b.claim("cancel", "w1").await.unwrap();
    b.engine().cancel(&handle, "user asked").await.unwrap();
    insta::assert_json_snapshot!("cancelled", b.state().await);
    let snap = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.public_state, PublicState::Cancelled);
}

#[tokio::test]
async fn delay_then_resume_the_same_attempt() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("delay")).await;
    let handle = b.claim("delay", "w1").await.unwrap();
    b.engine()
        .delay(&handle, TimestampMs::from_millis(T0 + 60_000))
        .await
        .unwrap();
    insta::assert_json_snapshot!("delayed", b.state().await);
    assert_eq!(
        b.engine().describe_execution(&id).await.unwrap().unwrap().public_state,
        PublicState::Delayed
    );
    assert!(b.claim("delay", "w2").await.is_none(), "not claimable before it is due");

    b.clock.set_ms(T0 + 60_000);
    b.backend.run_scanners_once().await.unwrap();
    let resumed = b.claim("delay", "w2").await.expect("due");
    assert_eq!(resumed.kind, HandleKind::Resumed);
    insta::assert_json_snapshot!("delay_resumed", b.state().await);

    // The pre-delay handle is fenced out by the new epoch.
    let err = b.engine().renew(&handle).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Contention(ContentionKind::LeaseConflict)),
        "{err:?}"
    );
    b.engine().complete(&resumed, None).await.unwrap();
}

#[tokio::test]
async fn delay_into_the_past_is_claimable_at_once() {
    let mut b = Bench::new().await;
    b.create(Spec::on("delay-past")).await;
    let handle = b.claim("delay-past", "w1").await.unwrap();
    b.engine()
        .delay(&handle, TimestampMs::from_millis(T0 - 5))
        .await
        .unwrap();
    assert!(b.claim("delay-past", "w1").await.is_some());
}

#[tokio::test]
async fn wait_children_parks_the_execution() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("children")).await;
    let handle = b.claim("children", "w1").await.unwrap();
    b.engine().wait_children(&handle).await.unwrap();
    let snap = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.public_state, PublicState::WaitingChildren);
    assert_eq!(snap.blocking_reason.as_deref(), Some("waiting_for_children"));
    assert!(snap.current_lease.is_none());
    assert!(b.claim("children", "w2").await.is_none());
    assert_eq!(
        b.count("SELECT count(*) FROM ff_lease_event WHERE event_kind = 'released' AND reason = 'waiting_children'")
            .await,
        1
    );
}

#[tokio::test]
async fn created_with_a_delay_waits_until_due() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("later").delay_until(T0 + 10_000)).await;
    let snap = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.public_state, PublicState::Delayed);
    assert_eq!(snap.blocking_reason.as_deref(), Some("waiting_for_delay"));
    assert!(b.claim("later", "w1").await.is_none());
    b.clock.set_ms(T0 + 10_000);
    b.backend.run_scanners_once().await.unwrap();
    assert!(b.claim("later", "w1").await.is_some());
}
