//! Bad input of every kind gets a typed error, never a panic, and changes
//! no row.

mod common;

use common::{Bench, Spec, policy};
use ff_core::backend::{
    BackendTag, CapabilitySet, ClaimPolicy, FailureClass, FailureReason, Frame, FrameKind, Handle, HandleKind,
    HandleOpaque,
};
use ff_core::engine_backend::EngineBackend;
use ff_core::engine_error::{EngineError, ValidationKind};
use ff_core::types::{ExecutionId, LaneId, Namespace, TimestampMs, WorkerId, WorkerInstanceId};

/// A deterministic stream of pseudo-random bytes (xorshift64*).
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

async fn every_call(engine: &dyn EngineBackend, handle: &Handle) -> Vec<Result<(), EngineError>> {
    vec![
        engine.renew(handle).await.map(|_| ()),
        engine.progress(handle, Some(5), Some("x".into())).await,
        engine.complete(handle, None).await,
        engine
            .fail(handle, FailureReason::new("x"), FailureClass::Transient)
            .await
            .map(|_| ()),
        engine.cancel(handle, "x").await,
        engine.delay(handle, TimestampMs::from_millis(0)).await,
        engine.wait_children(handle).await,
    ]
}

fn validation(result: &Result<(), EngineError>) -> Option<ValidationKind> {
    match result {
        Err(EngineError::Validation { kind, .. }) => Some(kind.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn random_and_truncated_handles_are_refused() {
    let mut b = Bench::new().await;
    b.create(Spec::on("bytes")).await;
    let good = b.claim("bytes", "w").await.unwrap();
    let before = b.state().await;
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    let mut tried = 0;
    // Random buffers of every length up to twice a real handle's.
    for round in 0..300 {
        let len = round % (2 * good.opaque.as_bytes().len());
        let handle = Handle::new(
            BackendTag::Postgres,
            HandleKind::Fresh,
            HandleOpaque::new(rng.take(len).into()),
        );
        for result in every_call(b.engine(), &handle).await {
            tried += 1;
            let kind = validation(&result);
            assert!(
                matches!(
                    kind,
                    Some(ValidationKind::Corruption | ValidationKind::HandleFromOtherBackend)
                ),
                "random handle: {result:?}"
            );
        }
    }
    // Every truncation of a real handle.
    let bytes = good.opaque.as_bytes();
    for len in 0..bytes.len() {
        let handle = Handle::new(
            BackendTag::Postgres,
            HandleKind::Fresh,
            HandleOpaque::new(bytes[..len].to_vec().into()),
        );
        for result in every_call(b.engine(), &handle).await {
            tried += 1;
            assert_eq!(
                validation(&result),
                Some(ValidationKind::Corruption),
                "truncated to {len}: {result:?}"
            );
        }
    }
    // A real handle presented as another backend's.
    let valkey = Handle::new(BackendTag::Valkey, HandleKind::Fresh, good.opaque.clone());
    for result in every_call(b.engine(), &valkey).await {
        tried += 1;
        assert_eq!(validation(&result), Some(ValidationKind::HandleFromOtherBackend));
    }
    assert_eq!(b.state().await, before, "bad handles changed rows");
    eprintln!("bad handles: {tried} calls refused");
}

#[tokio::test]
async fn odd_strings_are_refused_or_stored_exactly() {
    let mut b = Bench::new().await;
    let engine = b.backend.clone();
    let kind_of = |r: Result<ff_core::contracts::CreateExecutionResult, EngineError>| match r {
        Err(EngineError::Validation { kind, .. }) => Some(kind),
        Ok(_) => None,
        Err(other) => panic!("unexpected {other:?}"),
    };

    // Lane ids: ASCII printable only, 1..=64 bytes.
    for lane in ["", "ünïcode", "tab\tlane", "nul\0lane", &"x".repeat(65)] {
        let id = b.next_execution_id("odd");
        let mut args = Spec::on("odd").args(id);
        args.lane_id = LaneId::new(lane);
        assert_eq!(
            kind_of(engine.create_execution(args).await),
            Some(ValidationKind::InvalidInput),
            "{lane:?}"
        );
    }
    // NUL is refused in every text field.
    let id = b.next_execution_id("odd");
    let mut args = Spec::on("odd").args(id);
    args.execution_kind = "kind\0".into();
    assert_eq!(
        kind_of(engine.create_execution(args).await),
        Some(ValidationKind::InvalidInput)
    );
    let id = b.next_execution_id("odd");
    let mut args = Spec::on("odd").args(id);
    args.idempotency_key = Some("key\0".into());
    assert_eq!(
        kind_of(engine.create_execution(args).await),
        Some(ValidationKind::InvalidInput)
    );
    let id = b.next_execution_id("odd");
    let mut args = Spec::on("odd").args(id);
    args.tags.insert("k\0".into(), "v".into());
    assert_eq!(
        kind_of(engine.create_execution(args).await),
        Some(ValidationKind::InvalidInput)
    );
    assert_eq!(
        b.count("SELECT count(*) FROM ff_exec_core").await,
        0,
        "refused input wrote rows"
    );

    // Quotes, backslashes, SQL and unicode are stored and read back exactly.
    let odd = "it's \"quoted\" \\ '); DROP TABLE ff_exec_core; -- ☃ 𝄞";
    let id = b.next_execution_id("odd");
    let mut args = Spec::on("odd").args(id.clone());
    args.namespace = Namespace::new(odd);
    args.tags.insert(format!("app.{odd}"), odd.to_owned());
    args.priority = i32::MIN;
    engine.create_execution(args).await.unwrap();
    let snap = engine.describe_execution(&id).await.unwrap().unwrap();
    assert_eq!(snap.namespace.as_str(), odd);
    assert_eq!(snap.tags.get(&format!("app.{odd}")).map(String::as_str), Some(odd));

    // Extreme priorities order correctly.
    let high = b.next_execution_id("odd");
    let mut args = Spec::on("odd").args(high.clone());
    args.priority = i32::MAX;
    engine.create_execution(args).await.unwrap();
    let first = b.claim("odd", "w").await.unwrap();
    let claimed = ff_core::handle_codec::decode(&first.opaque)
        .unwrap()
        .payload
        .execution_id;
    assert_eq!(claimed, high);
}

#[tokio::test]
async fn out_of_range_ttls_ids_and_unimplemented_calls_are_typed() {
    let mut b = Bench::new().await;
    b.create(Spec::on("ttl")).await;
    let engine = b.engine();
    let zero_ttl = ClaimPolicy::new(WorkerId::new("w"), WorkerInstanceId::new("w-1"), 0, None);
    assert!(matches!(
        engine
            .claim(&LaneId::new("ttl"), &CapabilitySet::default(), zero_ttl)
            .await,
        Err(EngineError::Validation {
            kind: ValidationKind::InvalidInput,
            ..
        })
    ));
    let huge_ttl = ClaimPolicy::new(WorkerId::new("w"), WorkerInstanceId::new("w-1"), u32::MAX, None);
    let handle = engine
        .claim(&LaneId::new("ttl"), &CapabilitySet::default(), huge_ttl)
        .await
        .unwrap()
        .expect("a 49-day lease is allowed");
    engine.renew(&handle).await.unwrap();

    // Ids: unknown is None, a partition outside the layout is bad input.
    let unknown = ExecutionId::parse("{fp:7}:00000000-0000-0000-0000-00000000dead").unwrap();
    assert!(engine.describe_execution(&unknown).await.unwrap().is_none());
    let outside = ExecutionId::parse("{fp:65535}:00000000-0000-0000-0000-00000000dead").unwrap();
    assert!(matches!(
        engine.describe_execution(&outside).await,
        Err(EngineError::Validation {
            kind: ValidationKind::InvalidInput,
            ..
        })
    ));

    // Families that have not landed say so, typed.
    let frame = Frame::new(vec![0u8; 1 << 20], FrameKind::Stdout);
    assert!(matches!(
        engine.append_frame(&handle, frame).await,
        Err(EngineError::Unavailable { op: "append_frame" })
    ));
    let _ = policy("w", 1);
}
