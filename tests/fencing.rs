//! Fencing: a call under a lease the caller no longer holds fails with a
//! typed error and changes nothing.

mod common;

use common::{Bench, Spec, T0};
use ff_core::backend::{BackendTag, FailureClass, FailureReason, Handle, HandleKind, HandleOpaque, ReclaimToken};
use ff_core::contracts::ReclaimGrant;
use ff_core::engine_backend::EngineBackend;
use ff_core::engine_error::{ContentionKind, EngineError, StateKind, ValidationKind};
use ff_core::handle_codec::{self, HandlePayload};
use ff_core::partition::{Partition, PartitionFamily, PartitionKey};
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};
use ff_core::types::{
    AttemptId, AttemptIndex, ExecutionId, LaneId, LeaseEpoch, LeaseId, TimestampMs, WorkerId, WorkerInstanceId,
};
use uuid::Uuid;

/// Every lease-bound call of the trait, made with `handle`; each result is
/// reduced to its error (or `None` when it succeeded).
async fn every_lease_bound_call(
    engine: &dyn EngineBackend,
    handle: &Handle,
) -> Vec<(&'static str, Option<EngineError>)> {
    vec![
        ("renew", engine.renew(handle).await.err()),
        ("progress", engine.progress(handle, Some(1), None).await.err()),
        (
            "delay",
            engine
                .delay(handle, TimestampMs::from_millis(T0 + 1_000_000))
                .await
                .err(),
        ),
        ("wait_children", engine.wait_children(handle).await.err()),
        ("cancel", engine.cancel(handle, "stale").await.err()),
        (
            "fail",
            engine
                .fail(handle, FailureReason::new("stale"), FailureClass::Transient)
                .await
                .err(),
        ),
        ("complete", engine.complete(handle, None).await.err()),
    ]
}

fn reclaim_token(id: &ExecutionId, lane: &str, worker: &str) -> ReclaimToken {
    let grant = ReclaimGrant {
        execution_id: id.clone(),
        partition_key: PartitionKey::from(Partition {
            family: PartitionFamily::Flow,
            index: id.partition(),
        }),
        grant_key: "grant".into(),
        expires_at_ms: (T0 + 3_600_000) as u64,
        lane_id: LaneId::new(lane),
    };
    ReclaimToken::new(
        grant,
        WorkerId::new(worker),
        WorkerInstanceId::new(format!("{worker}-1")),
        30_000,
    )
}

#[tokio::test]
async fn stale_epoch_is_lease_conflict_on_every_call() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("fence")).await;
    let old = b.claim("fence", "w1").await.unwrap();
    // The lease expires and another worker takes it over: epoch 2.
    b.clock.advance_ms(30_001);
    let new = b
        .engine()
        .claim_from_reclaim(reclaim_token(&id, "fence", "w2"))
        .await
        .unwrap()
        .expect("reclaimed");
    assert_eq!(new.kind, HandleKind::Resumed);

    let before = b.state().await;
    for (call, err) in every_lease_bound_call(b.engine(), &old).await {
        assert!(
            matches!(err, Some(EngineError::Contention(ContentionKind::LeaseConflict))),
            "{call}: expected LeaseConflict, got {err:?}"
        );
    }
    assert_eq!(b.state().await, before, "stale calls changed rows");
    b.engine()
        .complete(&new, None)
        .await
        .expect("the new holder still completes");
}

#[tokio::test]
async fn expired_lease_is_lease_expired_on_every_call() {
    let mut b = Bench::new().await;
    b.create(Spec::on("expired")).await;
    let handle = b.claim("expired", "w1").await.unwrap();
    b.clock.advance_ms(30_000); // exactly at expiry: no longer live
    let before = b.state().await;
    for (call, err) in every_lease_bound_call(b.engine(), &handle).await {
        assert!(
            matches!(err, Some(EngineError::State(StateKind::LeaseExpired))),
            "{call}: expected LeaseExpired, got {err:?}"
        );
    }
    assert_eq!(b.state().await, before, "calls under an expired lease changed rows");
}

#[tokio::test]
async fn replayed_complete_is_refused_and_writes_nothing() {
    let mut b = Bench::new().await;
    b.create(Spec::on("replay")).await;
    let handle = b.claim("replay", "w1").await.unwrap();
    b.engine().complete(&handle, Some(b"first".to_vec())).await.unwrap();
    let before = b.state().await;

    let err = b
        .engine()
        .complete(&handle, Some(b"second".to_vec()))
        .await
        .unwrap_err();
    match err {
        EngineError::Contention(ContentionKind::ExecutionNotActive {
            terminal_outcome,
            lifecycle_phase,
            lease_epoch,
            ..
        }) => {
            assert_eq!(terminal_outcome, "success");
            assert_eq!(lifecycle_phase, "terminal");
            assert_eq!(lease_epoch, "1");
        }
        other => panic!("expected ExecutionNotActive, got {other:?}"),
    }
    for (call, err) in every_lease_bound_call(b.engine(), &handle).await {
        assert!(
            matches!(
                err,
                Some(EngineError::Contention(ContentionKind::ExecutionNotActive { .. }))
            ),
            "{call}: {err:?}"
        );
    }
    assert_eq!(b.state().await, before);
    assert_eq!(b.count("SELECT count(*) FROM ff_completion_event").await, 1);
}

#[tokio::test]
async fn superseded_retry_handle_is_rejected() {
    let mut b = Bench::new().await;
    let policy = ExecutionPolicy {
        retry_policy: Some(RetryPolicy {
            max_retries: 3,
            backoff: BackoffStrategy::Fixed { delay_ms: 0 },
            retryable_categories: vec![],
        }),
        ..ExecutionPolicy::default()
    };
    b.create(Spec::on("superseded").policy(policy)).await;
    let first = b.claim("superseded", "w1").await.unwrap();
    b.engine()
        .fail(&first, FailureReason::new("x"), FailureClass::Transient)
        .await
        .unwrap();
    let second = b.claim("superseded", "w2").await.unwrap();
    let before = b.state().await;
    for (call, err) in every_lease_bound_call(b.engine(), &first).await {
        assert!(
            matches!(err, Some(EngineError::Contention(ContentionKind::LeaseConflict))),
            "{call}: {err:?}"
        );
    }
    assert_eq!(b.state().await, before);
    b.engine().complete(&second, None).await.unwrap();
}

fn payload_for(id: ExecutionId) -> HandlePayload {
    HandlePayload::new(
        id,
        AttemptIndex::new(0),
        AttemptId::new(),
        LeaseId::new(),
        LeaseEpoch::new(1),
        30_000,
        LaneId::new("bad"),
        WorkerInstanceId::new("w1-1"),
    )
}

fn validation_kind(err: EngineError) -> ValidationKind {
    match err {
        EngineError::Validation { kind, .. } => kind,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_handles_are_refused_with_typed_errors() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("bad")).await;
    let good = b.claim("bad", "w1").await.unwrap();
    let before = b.state().await;
    let engine = b.engine();

    // Minted by another backend: the outer tag, or the tag inside the bytes.
    let valkey_outer = Handle::new(BackendTag::Valkey, HandleKind::Fresh, good.opaque.clone());
    assert_eq!(
        validation_kind(engine.renew(&valkey_outer).await.unwrap_err()),
        ValidationKind::HandleFromOtherBackend
    );
    let valkey_inner = Handle::new(
        BackendTag::Postgres,
        HandleKind::Fresh,
        handle_codec::encode(BackendTag::Valkey, &payload_for(id.clone())),
    );
    assert_eq!(
        validation_kind(engine.complete(&valkey_inner, None).await.unwrap_err()),
        ValidationKind::HandleFromOtherBackend
    );

    // Garbage and truncation.
    let garbage = Handle::new(
        BackendTag::Postgres,
        HandleKind::Fresh,
        HandleOpaque::new(Box::new([0xde, 0xad])),
    );
    assert_eq!(
        validation_kind(engine.renew(&garbage).await.unwrap_err()),
        ValidationKind::Corruption
    );
    let bytes = good.opaque.as_bytes();
    let truncated = Handle::new(
        BackendTag::Postgres,
        HandleKind::Fresh,
        HandleOpaque::new(bytes[..bytes.len() - 3].to_vec().into_boxed_slice()),
    );
    assert_eq!(
        validation_kind(engine.complete(&truncated, None).await.unwrap_err()),
        ValidationKind::Corruption
    );
    let empty = Handle::new(BackendTag::Postgres, HandleKind::Fresh, HandleOpaque::new(Box::new([])));
    assert_eq!(
        validation_kind(engine.progress(&empty, None, None).await.unwrap_err()),
        ValidationKind::Corruption
    );

    // A partition outside the configured 256.
    let far = ExecutionId::parse(&format!("{{fp:999}}:{}", Uuid::new_v4())).unwrap();
    let far_handle = Handle::new(
        BackendTag::Postgres,
        HandleKind::Fresh,
        handle_codec::encode(BackendTag::Postgres, &payload_for(far)),
    );
    assert_eq!(
        validation_kind(engine.renew(&far_handle).await.unwrap_err()),
        ValidationKind::InvalidInput
    );

    // Well formed, but for an execution that does not exist.
    let unknown = ExecutionId::parse(&format!("{{fp:3}}:{}", Uuid::new_v4())).unwrap();
    let unknown_handle = Handle::new(
        BackendTag::Postgres,
        HandleKind::Fresh,
        handle_codec::encode(BackendTag::Postgres, &payload_for(unknown)),
    );
    assert!(matches!(
        engine.complete(&unknown_handle, None).await.unwrap_err(),
        EngineError::NotFound { entity: "execution" }
    ));

    assert_eq!(b.state().await, before, "bad handles changed rows");
    b.engine().complete(&good, None).await.unwrap();
}
