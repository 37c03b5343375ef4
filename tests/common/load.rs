//! A concurrent load of workers that complete, fail, delay, cancel and
//! crash, and the invariants checked after it. Shared by the stress and
//! fault-injection tests.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ff_backend_postgres::PostgresBackend;
use ff_core::backend::{CapabilitySet, ClaimPolicy, FailureClass, FailureReason, Handle};
use ff_core::engine_backend::EngineBackend;
use ff_core::engine_error::{ContentionKind, EngineError, StateKind};
use ff_core::handle_codec;
use ff_core::types::{LaneId, TimestampMs, WorkerId, WorkerInstanceId};
use sqlx::PgPool;
use tokio::sync::Mutex;

/// What the load did, for the invariants and the report.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Every lease granted: (execution, attempt, epoch).
    pub granted: Vec<(String, u32, u64)>,
    /// Calls made with a handle after its worker "crashed", and how many of
    /// them were refused with a typed error (all of them must be).
    pub stale_calls: u64,
    pub stale_refused: u64,
    /// Transport errors and timeouts seen (injected faults).
    pub transport_errors: u64,
    pub completed_calls: u64,
}

/// How a worker treats one claimed handle, decided from the lease so that
/// every run does the same mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Complete,
    FailTransient,
    FailPermanent,
    Delay,
    Cancel,
    Crash,
}

fn act_for(id: &str, attempt: u32, epoch: u64) -> Act {
    let mut h: u64 = 1469598103934665603;
    for b in id.bytes().chain(attempt.to_le_bytes()).chain(epoch.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    match h % 100 {
        0..=54 => Act::Complete,
        55..=69 => Act::FailTransient,
        70..=74 => Act::FailPermanent,
        75..=81 => Act::Delay,
        82..=86 => Act::Cancel,
        _ => Act::Crash,
    }
}

/// Is this a fault the worker should ride out (retry), rather than a
/// typed answer?
pub fn is_fault(err: &EngineError) -> bool {
    match err {
        EngineError::Transport { .. } | EngineError::Timeout { .. } | EngineError::ResourceExhausted { .. } => true,
        EngineError::Contention(ContentionKind::RetryExhausted) => true,
        EngineError::Contextual { source, .. } => is_fault(source),
        _ => false,
    }
}

/// Await `$call` (re-evaluated each time) until it returns something other
/// than a fault, counting faults; `None` when told to stop meanwhile.
macro_rules! ride_out {
    ($faults:expr, $stop:expr, $call:expr) => {{
        loop {
            match $call.await {
                Err(err) if is_fault(&err) => {
                    $faults.fetch_add(1, Ordering::Relaxed);
                    if $stop.load(Ordering::Relaxed) {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break Some(other),
            }
        }
    }};
}

/// Run `workers` workers on `lane` until every one of `executions`
/// executions is terminal or `deadline` passes. A clock task moves time on
/// (`tick_ms` every 10 ms of real time, when given) and runs the scanners.
pub async fn run(
    backend: Arc<PostgresBackend>,
    pool: PgPool,
    lane: &str,
    executions: i64,
    workers: usize,
    clock: Option<(ff_backend_postgres::ManualClock, i64)>,
    deadline: Duration,
) -> LoadReport {
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let stale: Arc<Mutex<Vec<Handle>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(AtomicU64::new(0));
    let engine: Arc<dyn EngineBackend> = backend.clone();

    // "Now" as the backend sees it, for delays.
    let now_ms: Arc<dyn Fn() -> i64 + Send + Sync> = match &clock {
        Some((clock, _)) => {
            let clock = clock.clone();
            Arc::new(move || clock.now_ms())
        }
        None => Arc::new(|| TimestampMs::now().0),
    };
    let ticker = {
        let (backend, stop, faults) = (backend.clone(), stop.clone(), faults.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Some((clock, tick_ms)) = &clock {
                    clock.advance_ms(*tick_ms);
                }
                if let Err(err) = backend.run_scanners_once().await {
                    assert!(is_fault(&err), "scanner: {err:?}");
                    faults.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut tasks = Vec::new();
    for w in 0..workers {
        let (engine, report, stale, stop, faults, now_ms) = (
            engine.clone(),
            report.clone(),
            stale.clone(),
            stop.clone(),
            faults.clone(),
            now_ms.clone(),
        );
        let lane = LaneId::new(lane);
        tasks.push(tokio::spawn(async move {
            let policy = ClaimPolicy::new(
                WorkerId::new(format!("w{w}")),
                WorkerInstanceId::new(format!("w{w}-1")),
                5_000,
                Some(Duration::from_millis(50)),
            );
            while !stop.load(Ordering::Relaxed) {
                let claimed = ride_out!(
                    faults,
                    stop,
                    engine.claim(&lane, &CapabilitySet::default(), policy.clone())
                );
                let Some(Ok(Some(handle))) = claimed else {
                    if let Some(Err(err)) = claimed {
                        panic!("claim: {err:?}");
                    }
                    continue;
                };
                let payload = handle_codec::decode(&handle.opaque).unwrap().payload;
                let id = payload.execution_id.to_string();
                report
                    .lock()
                    .await
                    .granted
                    .push((id.clone(), payload.attempt_index.0, payload.lease_epoch.0));
                // Renew once: the lease may have expired already (the clock
                // runs fast), which is a typed answer, not a failure.
                let renewed = ride_out!(faults, stop, engine.renew(&handle));
                if let Some(Err(err)) = &renewed {
                    assert!(is_lease_loss(err), "renew: {err:?}");
                    continue;
                }
                let act = act_for(&id, payload.attempt_index.0, payload.lease_epoch.0);
                let outcome = match act {
                    Act::Crash => {
                        stale.lock().await.push(handle);
                        continue;
                    }
                    Act::Complete => ride_out!(faults, stop, engine.complete(&handle, Some(b"ok".to_vec()))),
                    Act::FailTransient => ride_out!(faults, stop, async {
                        let reason = FailureReason::new("flaky");
                        engine.fail(&handle, reason, FailureClass::Transient).await.map(|_| ())
                    }),
                    Act::FailPermanent => ride_out!(faults, stop, async {
                        let reason = FailureReason::new("broken");
                        engine.fail(&handle, reason, FailureClass::Permanent).await.map(|_| ())
                    }),
                    Act::Delay => {
                        let until = TimestampMs::from_millis(now_ms() + 200);
                        ride_out!(faults, stop, engine.delay(&handle, until))
                    }
                    Act::Cancel => ride_out!(faults, stop, engine.cancel(&handle, "enough")),
                };
                match outcome {
                    Some(Ok(())) => report.lock().await.completed_calls += 1,
                    // A transport error may hide a commit: the retried call
                    // then finds the lease already released.
                    Some(Err(err)) => assert!(is_lease_loss(&err), "{act:?}: {err:?}"),
                    None => {}
                }
            }
        }));
    }

    // Wait until everything is terminal (or the deadline).
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let terminal: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM ff_exec_core WHERE lifecycle_phase = 'terminal'")
                .fetch_one(&pool)
                .await;
        if terminal.is_ok_and(|t| t >= executions) || started.elapsed() > deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a worker panicked");
    }
    ticker.await.expect("the clock task panicked");

    // The crashed workers come back and try to finish: every call refused.
    let stale = std::mem::take(&mut *stale.lock().await);
    let mut report = Arc::try_unwrap(report).expect("workers are done").into_inner();
    let stop_never = AtomicBool::new(false);
    for handle in &stale {
        let results = [
            ride_out!(faults, stop_never, engine.complete(handle, None)),
            ride_out!(faults, stop_never, async {
                let reason = FailureReason::new("late");
                engine.fail(handle, reason, FailureClass::Transient).await.map(|_| ())
            }),
            ride_out!(faults, stop_never, async { engine.renew(handle).await.map(|_| ()) }),
        ];
        for result in results {
            report.stale_calls += 1;
            if matches!(&result, Some(Err(err)) if is_lease_loss(err)) {
                report.stale_refused += 1;
            }
        }
    }
    report.transport_errors = faults.load(Ordering::Relaxed);
    report
}

/// The typed answers a call under a lost lease gets.
pub fn is_lease_loss(err: &EngineError) -> bool {
    matches!(
        err,
        EngineError::Contention(ContentionKind::LeaseConflict)
            | EngineError::Contention(ContentionKind::ExecutionNotActive { .. })
            | EngineError::State(StateKind::LeaseExpired)
    )
}

/// The promises, checked against the rows.
pub async fn check_invariants(pool: &PgPool, executions: i64, max_attempts: i64, report: &LoadReport) {
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM ff_exec_core WHERE lifecycle_phase = 'terminal'").await,
        executions,
        "every execution reached a terminal state"
    );
    check_outboxes(pool).await;
    assert_eq!(
        count("SELECT count(*) FROM ff_attempt WHERE lease_expires_at_ms IS NOT NULL").await,
        0,
        "no lease outlives its execution"
    );
    let over: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT execution_id FROM ff_attempt GROUP BY execution_id HAVING count(*) > $1) x",
    )
    .bind(max_attempts)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(over, 0, "no execution ran more attempts than its retry policy allows");
    let granted: HashSet<_> = report.granted.iter().collect();
    assert_eq!(
        granted.len(),
        report.granted.len(),
        "two holders were granted the same lease"
    );
    assert_eq!(report.stale_refused, report.stale_calls, "a stale handle was accepted");
}

/// The outboxes agree with the rows: exactly one completion event per
/// terminal execution (none for the others) carrying its outcome, and for
/// every attempt one lease event per lease granted and one per lease ended.
pub async fn check_outboxes(pool: &PgPool) {
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap() };
    assert_eq!(
        count(
            "SELECT count(*) FROM ff_exec_core e
              WHERE (SELECT count(*) FROM ff_completion_event c
                      WHERE c.partition_key = e.partition_key AND c.execution_id = e.execution_id)
                    <> CASE WHEN e.lifecycle_phase = 'terminal' THEN 1 ELSE 0 END"
        )
        .await,
        0,
        "exactly one completion event per terminal execution"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM ff_exec_core e JOIN ff_completion_event c USING (partition_key, execution_id)
              WHERE c.outcome <> CASE e.terminal_outcome WHEN 'failed' THEN 'failure' ELSE e.terminal_outcome END"
        )
        .await,
        0,
        "completion events carry the terminal outcome"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM ff_attempt a
              WHERE a.lease_epoch <> (SELECT count(*) FROM ff_lease_event l
                                       WHERE l.partition_key = a.partition_key AND l.execution_id = a.execution_id
                                         AND l.attempt_index = a.attempt_index
                                         AND l.event_kind IN ('acquired', 'reclaimed'))
                 OR a.lease_epoch - (a.lease_expires_at_ms IS NOT NULL)::int
                    <> (SELECT count(*) FROM ff_lease_event l
                         WHERE l.partition_key = a.partition_key AND l.execution_id = a.execution_id
                           AND l.attempt_index = a.attempt_index
                           AND l.event_kind IN ('released', 'expired', 'revoked'))"
        )
        .await,
        0,
        "one lease event per lease granted and per lease ended"
    );
}
