//! Claiming: ordering, capability matching, races, waiting, reclaim.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Bench, Spec, T0, policy, waiting_policy};
use ff_core::backend::{CapabilitySet, HandleKind, ReclaimToken};
use ff_core::contracts::ReclaimGrant;
use ff_core::engine_backend::EngineBackend;
use ff_core::engine_error::{ContentionKind, EngineError, ValidationKind};
use ff_core::handle_codec;
use ff_core::partition::{Partition, PartitionFamily, PartitionKey};
use ff_core::state::PublicState;
use ff_core::types::{ExecutionId, LaneId, WorkerId, WorkerInstanceId};
use tokio::sync::Barrier;

fn claimed_id(handle: &ff_core::backend::Handle) -> ExecutionId {
    handle_codec::decode(&handle.opaque).unwrap().payload.execution_id
}

fn token(id: &ExecutionId, lane: &str, expires_at_ms: i64, partition: u16) -> ReclaimToken {
    let grant = ReclaimGrant {
        execution_id: id.clone(),
        partition_key: PartitionKey::from(Partition {
            family: PartitionFamily::Flow,
            index: partition,
        }),
        grant_key: "grant".into(),
        expires_at_ms: expires_at_ms as u64,
        lane_id: LaneId::new(lane),
    };
    ReclaimToken::new(
        grant,
        WorkerId::new("reclaimer"),
        WorkerInstanceId::new("reclaimer-1"),
        30_000,
    )
}

#[tokio::test]
async fn highest_priority_first_then_oldest() {
    let mut b = Bench::new().await;
    let low_old = b.create(Spec::on("order").priority(1)).await;
    let high = b.create(Spec::on("order").priority(5)).await;
    let low_new = b.create(Spec::on("order").priority(1)).await;
    let order: Vec<ExecutionId> = [
        b.claim("order", "w").await.unwrap(),
        b.claim("order", "w").await.unwrap(),
        b.claim("order", "w").await.unwrap(),
    ]
    .iter()
    .map(claimed_id)
    .collect();
    assert_eq!(order, vec![high, low_old, low_new]);
    assert!(b.claim("order", "w").await.is_none());
}

#[tokio::test]
async fn capability_mismatch_is_skipped_not_blocking() {
    let mut b = Bench::new().await;
    let gpu = b.create(Spec::on("caps").priority(10).caps(&["gpu", "linux"])).await;
    let plain = b.create(Spec::on("caps").priority(1)).await;

    // A worker without the gpu gets the lower-priority execution behind it.
    let got = b
        .claim_with("caps", "cpu-worker", &["linux"])
        .await
        .expect("the plain execution");
    assert_eq!(claimed_id(&got), plain);
    assert!(
        b.claim_with("caps", "cpu-worker", &["linux"]).await.is_none(),
        "the gpu execution is not for it"
    );
    let snap = b.engine().describe_execution(&gpu).await.unwrap().unwrap();
    assert_eq!(snap.public_state, PublicState::Waiting);

    // A worker with a superset of the required capabilities takes it.
    let got = b
        .claim_with("caps", "gpu-worker", &["gpu", "linux", "x86"])
        .await
        .expect("the gpu execution");
    assert_eq!(claimed_id(&got), gpu);
}

#[tokio::test]
async fn other_lanes_are_not_claimed() {
    let mut b = Bench::new().await;
    b.create(Spec::on("lane-a")).await;
    assert!(b.claim("lane-b", "w").await.is_none());
    assert!(b.claim("lane-a", "w").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_workers_exactly_one_wins() {
    let mut b = Bench::new().await;
    b.create(Spec::on("race")).await;
    let engine: Arc<dyn EngineBackend> = b.backend.clone();
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (engine, barrier) = (engine.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            engine
                .claim(
                    &LaneId::new("race"),
                    &CapabilitySet::default(),
                    policy(&format!("w{w}"), 30_000),
                )
                .await
                .expect("claim")
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
    assert_eq!(b.count("SELECT count(*) FROM ff_attempt").await, 1);
    assert_eq!(
        b.count("SELECT count(*) FROM ff_lease_event WHERE event_kind = 'acquired'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_drain_claims_each_execution_once() {
    let mut b = Bench::new().await;
    for _ in 0..60 {
        b.create(Spec::on("drain")).await;
    }
    let engine: Arc<dyn EngineBackend> = b.backend.clone();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(h) = engine
                .claim(
                    &LaneId::new("drain"),
                    &CapabilitySet::default(),
                    policy(&format!("w{w}"), 30_000),
                )
                .await
                .expect("claim")
            {
                mine.push(claimed_id(&h));
                engine.complete(&h, None).await.expect("complete");
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 60, "every execution claimed");
    assert_eq!(distinct.len(), 60, "none claimed twice");
    assert_eq!(b.count("SELECT count(*) FROM ff_completion_event").await, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_takes_work_created_while_it_waits() {
    let mut b = Bench::new().await;
    let engine: Arc<dyn EngineBackend> = b.backend.clone();
    let waiting = tokio::spawn(async move {
        engine
            .claim(
                &LaneId::new("wait"),
                &CapabilitySet::default(),
                waiting_policy("w", Duration::from_secs(30)),
            )
            .await
    });
    let id = b.create(Spec::on("wait")).await;
    let handle = waiting.await.unwrap().expect("claim").expect("woken with work");
    assert_eq!(claimed_id(&handle), id);
}

#[tokio::test]
async fn a_waiting_claim_on_an_empty_lane_returns_none() {
    let b = Bench::new().await;
    let got = b
        .engine()
        .claim(
            &LaneId::new("empty"),
            &CapabilitySet::default(),
            waiting_policy("w", Duration::from_millis(150)),
        )
        .await
        .unwrap();
    assert!(got.is_none());
}

#[tokio::test]
async fn expired_lease_is_requeued_and_resumed_with_a_new_epoch() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("crash")).await;
    let crashed = b.claim("crash", "w1").await.unwrap();
    b.clock.advance_ms(30_000);
    let report = b.backend.run_scanners_once().await.unwrap();
    assert_eq!(report.leases_expired, 1);
    let snap = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.public_state, PublicState::Waiting);
    assert_eq!(snap.blocking_detail.as_deref(), Some("lease expired"));
    insta::assert_json_snapshot!("lease_expired_requeued", b.state().await);

    let resumed = b.claim("crash", "w2").await.expect("requeued");
    assert_eq!(resumed.kind, HandleKind::Resumed);
    assert_eq!(handle_codec::decode(&resumed.opaque).unwrap().payload.lease_epoch.0, 2);
    let err = b.engine().complete(&crashed, None).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Contention(ContentionKind::LeaseConflict)),
        "{err:?}"
    );
    b.engine().complete(&resumed, None).await.unwrap();
    assert_eq!(
        b.count("SELECT count(*) FROM ff_lease_event WHERE event_kind = 'expired'")
            .await,
        1
    );
}

#[tokio::test]
async fn claim_from_reclaim_outcomes() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("reclaim")).await;
    let p = id.partition();
    let _live = b.claim("reclaim", "w1").await.unwrap();

    // A live lease is not reclaimable.
    assert!(
        b.engine()
            .claim_from_reclaim(token(&id, "reclaim", T0 + 60_000, p))
            .await
            .unwrap()
            .is_none()
    );
    // An expired grant is refused.
    b.clock.advance_ms(30_000);
    let err = b
        .engine()
        .claim_from_reclaim(token(&id, "reclaim", T0 + 1_000, p))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Contention(ContentionKind::ClaimGrantExpired)),
        "{err:?}"
    );
    // A grant whose partition key disagrees with the execution id is bad input.
    let err = b
        .engine()
        .claim_from_reclaim(token(&id, "reclaim", T0 + 60_000, p + 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Validation {
                kind: ValidationKind::InvalidInput,
                ..
            }
        ),
        "{err:?}"
    );
    // The wrong lane finds nothing to reclaim.
    assert!(
        b.engine()
            .claim_from_reclaim(token(&id, "other-lane", T0 + 60_000, p))
            .await
            .unwrap()
            .is_none()
    );
    // The expired lease is taken over.
    let handle = b
        .engine()
        .claim_from_reclaim(token(&id, "reclaim", T0 + 60_000, p))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(handle.kind, HandleKind::Resumed);
    assert_eq!(
        b.count("SELECT count(*) FROM ff_lease_event WHERE event_kind = 'reclaimed'")
            .await,
        1
    );
    assert_eq!(b.count("SELECT reclaim_count::bigint FROM ff_exec_core").await, 1);
    // Now live again: a second grant gets nothing.
    assert!(
        b.engine()
            .claim_from_reclaim(token(&id, "reclaim", T0 + 60_000, p))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn invalid_claim_input_is_refused() {
    let b = Bench::new().await;
    let engine = b.engine();
    let kind = |r: Result<Option<ff_core::backend::Handle>, EngineError>| match r {
        Err(EngineError::Validation { kind, .. }) => kind,
        other => panic!("expected a validation error, got {other:?}"),
    };
    assert_eq!(
        kind(
            engine
                .claim(&LaneId::new(""), &CapabilitySet::default(), policy("w", 1_000))
                .await
        ),
        ValidationKind::InvalidInput
    );
    assert_eq!(
        kind(
            engine
                .claim(
                    &LaneId::new("x".repeat(65)),
                    &CapabilitySet::default(),
                    policy("w", 1_000)
                )
                .await
        ),
        ValidationKind::InvalidInput
    );
    assert_eq!(
        kind(
            engine
                .claim(&LaneId::new("tab\there"), &CapabilitySet::default(), policy("w", 1_000))
                .await
        ),
        ValidationKind::InvalidInput
    );
    assert_eq!(
        kind(
            engine
                .claim(&LaneId::new("ok"), &CapabilitySet::new(["a,b"]), policy("w", 1_000))
                .await
        ),
        ValidationKind::InvalidCapabilities
    );
    assert_eq!(
        kind(
            engine
                .claim(&LaneId::new("ok"), &CapabilitySet::new([""]), policy("w", 1_000))
                .await
        ),
        ValidationKind::InvalidCapabilities
    );
    assert_eq!(
        kind(
            engine
                .claim(&LaneId::new("ok"), &CapabilitySet::default(), policy("w", 0))
                .await
        ),
        ValidationKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_is_notified_only_while_someone_waits() {
    let mut b = Bench::new().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(b.pool()).await.unwrap();
    listener.listen("ff_work").await.unwrap();

    // Nobody waits on the lane: creating work there notifies no one.
    b.create(Spec::on("quiet")).await;
    let heard = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(heard.is_err(), "notified without a waiter: {heard:?}");

    // A claimer waits (registered in ff_listener); work there is notified.
    let engine: Arc<dyn EngineBackend> = b.backend.clone();
    let waiting = tokio::spawn(async move {
        engine
            .claim(
                &LaneId::new("busy"),
                &CapabilitySet::default(),
                waiting_policy("w", Duration::from_secs(30)),
            )
            .await
    });
    while b
        .count("SELECT count(*) FROM ff_listener WHERE channel = 'ff_work' AND key = 'busy'")
        .await
        == 0
    {
        tokio::task::yield_now().await;
    }
    b.create(Spec::on("busy")).await;
    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification while a claimer waits")
        .unwrap();
    assert_eq!(notification.payload(), "busy");
    assert!(waiting.await.unwrap().unwrap().is_some());
}

#[tokio::test]
async fn an_execution_reclaimed_too_often_fails_for_good() {
    let mut b = Bench::new().await;
    let policy = ff_core::policy::ExecutionPolicy {
        max_reclaim_count: 1,
        ..Default::default()
    };
    let id = b.create(Spec::on("poison").policy(policy)).await;
    // First crash: within the policy, requeued.
    b.claim("poison", "w1").await.unwrap();
    b.clock.advance_ms(30_000);
    let report = b.backend.run_scanners_once().await.unwrap();
    assert_eq!((report.leases_expired, report.reclaims_exhausted), (1, 0));
    // Second crash: one reclaim more than allowed, failed for good.
    b.claim("poison", "w2").await.unwrap();
    b.clock.advance_ms(30_000);
    let report = b.backend.run_scanners_once().await.unwrap();
    assert_eq!((report.leases_expired, report.reclaims_exhausted), (1, 1));
    let snap = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.public_state, PublicState::Failed);
    assert!(b.claim("poison", "w3").await.is_none());
    insta::assert_json_snapshot!("reclaims_exhausted", b.state().await);
}
