//! `create_execution`: what it stores, idempotency, and bad input.

mod common;

use common::{Bench, Spec, T0};
use ff_core::contracts::CreateExecutionResult;
use ff_core::engine_error::{EngineError, ValidationKind};
use ff_core::policy::ExecutionPolicy;
use ff_core::state::PublicState;
use ff_core::types::{ExecutionId, LaneId, Namespace};
use uuid::Uuid;

#[tokio::test]
async fn stores_what_it_is_given() {
    let mut b = Bench::new().await;
    let id = b
        .create(
            Spec::on("store")
                .priority(7)
                .caps(&["gpu", "cuda"])
                .tags(&[("app.tenant", "acme"), ("app.note", "it's \"quoted\" ünïcode")]),
        )
        .await;
    let row = b
        .rows(
            "SELECT lane_id, namespace, execution_kind, creator_identity, priority, required_capabilities,
                    encode(input_payload, 'escape') AS input, tags, policy IS NOT NULL AS has_policy, public_state
               FROM ff_exec_core",
        )
        .await;
    insta::assert_json_snapshot!("stored_execution", row);
    assert_eq!(
        b.count("SELECT count(*) FROM ff_lane_registry WHERE lane_id = 'store'")
            .await,
        1
    );
    let snap = b.engine().describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.lane_id, LaneId::new("store"));
    assert_eq!(snap.namespace, Namespace::new("tests"));
    assert_eq!(snap.tags["app.note"], "it's \"quoted\" ünïcode");
}

#[tokio::test]
async fn idempotency_key_returns_the_first_execution() {
    let mut b = Bench::new().await;
    let first = b.create(Spec::on("idem").idempotency_key("order-42")).await;
    let second_id = b.next_execution_id("idem");
    let again = b
        .engine()
        .create_execution(Spec::on("idem").idempotency_key("order-42").args(second_id))
        .await
        .unwrap();
    assert_eq!(again, CreateExecutionResult::Duplicate { execution_id: first });
    assert_eq!(b.count("SELECT count(*) FROM ff_exec_core").await, 1);
}

#[tokio::test]
async fn idempotency_key_is_free_again_after_its_window() {
    let mut b = Bench::new().await;
    let policy = ExecutionPolicy {
        dedup_window_ms: Some(1_000),
        ..ExecutionPolicy::default()
    };
    b.create(Spec::on("window").idempotency_key("k").policy(policy.clone()))
        .await;
    b.clock.set_ms(T0 + 1_000);
    let id = b.next_execution_id("window");
    let result = b
        .engine()
        .create_execution(Spec::on("window").idempotency_key("k").policy(policy).args(id.clone()))
        .await
        .unwrap();
    assert!(matches!(result, CreateExecutionResult::Created { execution_id, .. } if execution_id == id));
    assert_eq!(b.count("SELECT count(*) FROM ff_exec_core").await, 2);
}

#[tokio::test]
async fn the_same_execution_id_twice_is_a_duplicate() {
    let mut b = Bench::new().await;
    let id = b.create(Spec::on("dup")).await;
    let again = b
        .engine()
        .create_execution(Spec::on("dup").args(id.clone()))
        .await
        .unwrap();
    assert_eq!(again, CreateExecutionResult::Duplicate { execution_id: id });
    assert_eq!(b.count("SELECT count(*) FROM ff_exec_core").await, 1);
}

#[tokio::test]
async fn a_future_delay_creates_a_delayed_execution() {
    let mut b = Bench::new().await;
    let id = b.next_execution_id("delayed");
    let result = b
        .engine()
        .create_execution(Spec::on("delayed").delay_until(T0 + 5_000).args(id.clone()))
        .await
        .unwrap();
    assert_eq!(
        result,
        CreateExecutionResult::Created {
            execution_id: id,
            public_state: PublicState::Delayed
        }
    );
}

fn validation_kind(result: Result<CreateExecutionResult, EngineError>) -> ValidationKind {
    match result {
        Err(EngineError::Validation { kind, .. }) => kind,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let mut b = Bench::new().await;
    let id = b.next_execution_id("bad");
    let engine = b.engine();

    let mut args = Spec::on("bad").args(id.clone());
    args.lane_id = LaneId::new("");
    assert_eq!(
        validation_kind(engine.create_execution(args).await),
        ValidationKind::InvalidInput
    );

    let mut args = Spec::on("bad").args(id.clone());
    args.partition_id = id.partition().wrapping_add(1);
    assert_eq!(
        validation_kind(engine.create_execution(args).await),
        ValidationKind::InvalidInput
    );

    let mut args = Spec::on("bad").args(id.clone());
    args.namespace = Namespace::new("nul\0byte");
    assert_eq!(
        validation_kind(engine.create_execution(args).await),
        ValidationKind::InvalidInput
    );

    let mut args = Spec::on("bad").args(id.clone());
    args.tags.insert("k".into(), "v\0".into());
    assert_eq!(
        validation_kind(engine.create_execution(args).await),
        ValidationKind::InvalidInput
    );

    let mut args = Spec::on("bad").args(id.clone());
    args.input_payload = vec![0u8; 16 * 1024 * 1024 + 1];
    assert_eq!(
        validation_kind(engine.create_execution(args).await),
        ValidationKind::PayloadTooLarge
    );

    let args = Spec::on("bad").caps(&["has,comma"]).args(id.clone());
    assert_eq!(
        validation_kind(engine.create_execution(args).await),
        ValidationKind::InvalidCapabilities
    );

    let far = ExecutionId::parse(&format!("{{fp:300}}:{}", Uuid::new_v4())).unwrap();
    let args = Spec::on("bad").args(far);
    assert_eq!(
        validation_kind(engine.create_execution(args).await),
        ValidationKind::InvalidInput
    );

    assert_eq!(b.count("SELECT count(*) FROM ff_exec_core").await, 0);
    assert_eq!(b.count("SELECT count(*) FROM ff_lane_registry").await, 0);
}
