//! Model-based test: random sequences of trait calls from several workers,
//! and of clock moves and scanner passes, run against the backend and
//! against a small reference model of the state machine. After every step
//! the call's result and every execution's public state must agree.

mod common;

use common::{Bench, Spec, policy};
use ff_core::backend::{CapabilitySet, FailureClass, FailureReason, Handle, HandleKind};
use ff_core::engine_backend::EngineBackend;
use ff_core::engine_error::{ContentionKind, EngineError, StateKind};
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};
use ff_core::state::PublicState;
use ff_core::types::{ExecutionId, LaneId, TimestampMs};
use proptest::prelude::*;

const EXECUTIONS: usize = 3;
const TTL_MS: i64 = 10_000;
const BACKOFF_MS: i64 = 1_000;
const MAX_RETRIES: u32 = 1;

#[derive(Debug, Clone)]
enum Op {
    Claim,
    Renew(usize),
    Complete(usize),
    FailTransient(usize),
    FailPermanent(usize),
    Cancel(usize),
    Delay(usize, i64),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Claim),
        2 => any::<usize>().prop_map(Op::Renew),
        2 => any::<usize>().prop_map(Op::Complete),
        2 => any::<usize>().prop_map(Op::FailTransient),
        1 => any::<usize>().prop_map(Op::FailPermanent),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => (any::<usize>(), 0i64..3_000).prop_map(|(h, ms)| Op::Delay(h, ms)),
        3 => prop_oneof![1i64..2_000, 9_000i64..12_000].prop_map(Op::Advance),
    ]
}

/// What the model expects of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotActive,
    Conflict,
    Expired,
}

fn outcome_of<T>(result: &Result<T, EngineError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(EngineError::Contention(ContentionKind::ExecutionNotActive { .. })) => Outcome::NotActive,
        Err(EngineError::Contention(ContentionKind::LeaseConflict)) => Outcome::Conflict,
        Err(EngineError::State(StateKind::LeaseExpired)) => Outcome::Expired,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Claimable; `interrupted`: its attempt resumes on the next claim.
    Waiting {
        interrupted: bool,
    },
    /// Claimable from `until`.
    Delayed {
        until: i64,
        interrupted: bool,
    },
    Active {
        expires: i64,
    },
    Terminal(PublicState),
}

#[derive(Debug, Clone)]
struct Exec {
    phase: Phase,
    attempt: u32,
    epoch: u64,
    retries: u32,
}

impl Exec {
    fn public_state(&self) -> PublicState {
        match self.phase {
            Phase::Waiting { .. } => PublicState::Waiting,
            Phase::Delayed { .. } => PublicState::Delayed,
            Phase::Active { .. } => PublicState::Active,
            Phase::Terminal(s) => s,
        }
    }
}

/// A handle the model knows: (execution, attempt, epoch).
type Lease = (usize, u32, u64);

struct Model {
    now: i64,
    execs: Vec<Exec>,
}

impl Model {
    /// Whether `lease` is live; if not, what a call under it gets.
    fn check(&self, (e, attempt, epoch): Lease) -> Outcome {
        let exec = &self.execs[e];
        if matches!(exec.phase, Phase::Terminal(_)) {
            return Outcome::NotActive;
        }
        if attempt != exec.attempt || epoch != exec.epoch {
            return Outcome::Conflict;
        }
        match exec.phase {
            Phase::Active { expires } if self.now < expires => Outcome::Ok,
            Phase::Active { .. } => Outcome::Expired,
            _ => Outcome::NotActive,
        }
    }

    /// The execution a claim takes, and whether it resumes an attempt.
    fn claim(&mut self) -> Option<(usize, bool)> {
        let e = self
            .execs
            .iter()
            .position(|x| matches!(x.phase, Phase::Waiting { .. }))?;
        let exec = &mut self.execs[e];
        let Phase::Waiting { interrupted } = exec.phase else {
            unreachable!()
        };
        exec.epoch = if interrupted { exec.epoch + 1 } else { 1 };
        exec.phase = Phase::Active {
            expires: self.now + TTL_MS,
        };
        Some((e, interrupted))
    }

    fn scan(&mut self) {
        for exec in &mut self.execs {
            match exec.phase {
                Phase::Active { expires } if self.now >= expires => exec.phase = Phase::Waiting { interrupted: true },
                Phase::Delayed { until, interrupted } if self.now >= until => {
                    exec.phase = Phase::Waiting { interrupted }
                }
                _ => {}
            }
        }
    }
}

fn lease_of(handle: &Handle, ids: &[ExecutionId]) -> Lease {
    let p = ff_core::handle_codec::decode(&handle.opaque).unwrap().payload;
    let e = ids
        .iter()
        .position(|id| *id == p.execution_id)
        .expect("a known execution");
    (e, p.attempt_index.0, p.lease_epoch.0)
}

async fn run(ops: Vec<Op>) {
    let mut b = Bench::new().await;
    let retry = ExecutionPolicy {
        retry_policy: Some(RetryPolicy {
            max_retries: MAX_RETRIES,
            backoff: BackoffStrategy::Fixed {
                delay_ms: BACKOFF_MS as u64,
            },
            retryable_categories: vec![],
        }),
        ..ExecutionPolicy::default()
    };
    let mut ids = Vec::new();
    for _ in 0..EXECUTIONS {
        ids.push(b.create(Spec::on("model").policy(retry.clone())).await);
    }
    let mut model = Model {
        now: b.clock.now_ms(),
        execs: vec![
            Exec {
                phase: Phase::Waiting { interrupted: false },
                attempt: 0,
                epoch: 0,
                retries: 0,
            };
            EXECUTIONS
        ],
    };
    let mut handles: Vec<Handle> = Vec::new();
    let engine = b.backend.clone();
    let pick = |handles: &[Handle], h: usize| (!handles.is_empty()).then(|| handles[h % handles.len()].clone());

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Claim => {
                let got = engine
                    .claim(
                        &LaneId::new("model"),
                        &CapabilitySet::default(),
                        policy("w", TTL_MS as u32),
                    )
                    .await
                    .unwrap();
                let expected = model.claim();
                match (got, expected) {
                    (None, None) => {}
                    (Some(handle), Some((e, resumed))) => {
                        let (ge, attempt, epoch) = lease_of(&handle, &ids);
                        assert_eq!(
                            (ge, attempt, epoch),
                            (e, model.execs[e].attempt, model.execs[e].epoch),
                            "step {step}"
                        );
                        let kind = if resumed {
                            HandleKind::Resumed
                        } else {
                            HandleKind::Fresh
                        };
                        assert_eq!(handle.kind, kind, "step {step}");
                        handles.push(handle);
                    }
                    (got, expected) => panic!("step {step}: claim got {got:?}, model expected {expected:?}"),
                }
            }
            Op::Advance(ms) => {
                b.clock.advance_ms(ms);
                model.now += ms;
                b.backend.run_scanners_once().await.unwrap();
                model.scan();
            }
            Op::Renew(h)
            | Op::Complete(h)
            | Op::FailTransient(h)
            | Op::FailPermanent(h)
            | Op::Cancel(h)
            | Op::Delay(h, _) => {
                let Some(handle) = pick(&handles, h) else { continue };
                let lease = lease_of(&handle, &ids);
                let expected = model.check(lease);
                let got = match &op {
                    Op::Renew(_) => outcome_of(&engine.renew(&handle).await),
                    Op::Complete(_) => outcome_of(&engine.complete(&handle, None).await),
                    Op::FailTransient(_) => outcome_of(
                        &engine
                            .fail(&handle, FailureReason::new("t"), FailureClass::Transient)
                            .await,
                    ),
                    Op::FailPermanent(_) => outcome_of(
                        &engine
                            .fail(&handle, FailureReason::new("p"), FailureClass::Permanent)
                            .await,
                    ),
                    Op::Cancel(_) => outcome_of(&engine.cancel(&handle, "c").await),
                    Op::Delay(_, ms) => {
                        outcome_of(&engine.delay(&handle, TimestampMs::from_millis(model.now + ms)).await)
                    }
                    _ => unreachable!(),
                };
                assert_eq!(got, expected, "step {step}: {op:?} on {lease:?}");
                if expected == Outcome::Ok {
                    let now = model.now;
                    let exec = &mut model.execs[lease.0];
                    match op {
                        Op::Renew(_) => exec.phase = Phase::Active { expires: now + TTL_MS },
                        Op::Complete(_) => exec.phase = Phase::Terminal(PublicState::Completed),
                        Op::FailPermanent(_) => exec.phase = Phase::Terminal(PublicState::Failed),
                        Op::Cancel(_) => exec.phase = Phase::Terminal(PublicState::Cancelled),
                        Op::FailTransient(_) if exec.retries < MAX_RETRIES => {
                            exec.retries += 1;
                            exec.attempt += 1;
                            exec.epoch = 0;
                            exec.phase = Phase::Delayed {
                                until: now + BACKOFF_MS,
                                interrupted: false,
                            };
                        }
                        Op::FailTransient(_) => exec.phase = Phase::Terminal(PublicState::Failed),
                        Op::Delay(_, 0) => exec.phase = Phase::Waiting { interrupted: true },
                        Op::Delay(_, ms) => {
                            exec.phase = Phase::Delayed {
                                until: now + ms,
                                interrupted: true,
                            }
                        }
                        _ => unreachable!(),
                    }
                }
            }
        }
        for (e, id) in ids.iter().enumerate() {
            let snap = engine.describe_execution(id).await.unwrap().unwrap();
            assert_eq!(
                snap.public_state,
                model.execs[e].public_state(),
                "step {step}: execution {e} after {op:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_backend_follows_the_model(ops in prop::collection::vec(op(), 1..60)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}
