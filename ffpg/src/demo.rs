//! `ffpg demo` (what `make demo` runs): a small worker pipeline.
//!
//! Creates a handful of executions through the trait and runs two workers
//! through claim, progress and complete, with one transient failure (retried
//! after its backoff) and one delay in the mix. Prints what happened.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ff_core::backend::{CapabilitySet, ClaimPolicy, FailOutcome, FailureClass, FailureReason, HandleKind};
use ff_core::contracts::CreateExecutionArgs;
use ff_core::engine_backend::EngineBackend;
use ff_core::partition::PartitionConfig;
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};
use ff_core::state::PublicState;
use ff_core::types::{ExecutionId, LaneId, Namespace, TimestampMs, WorkerId, WorkerInstanceId};
use tokio::sync::Mutex;

use crate::db::CliError;

type Log = Arc<Mutex<Vec<String>>>;

/// Run the demo on `engine`, printing what happens.
pub async fn run(engine: Arc<dyn EngineBackend>) -> Result<(), CliError> {
    let lane = LaneId::new(format!("demo-{}", std::process::id()));
    let jobs = [
        "resize-image",
        "send-email",
        "flaky-upstream",
        "render-report",
        "wait-a-second",
        "index-doc",
    ];
    let mut ids = Vec::new();
    for (i, kind) in jobs.iter().enumerate() {
        let id = ExecutionId::solo(&lane, &PartitionConfig::default());
        let policy = ExecutionPolicy {
            retry_policy: Some(RetryPolicy {
                max_retries: 2,
                backoff: BackoffStrategy::Fixed { delay_ms: 500 },
                retryable_categories: vec![],
            }),
            ..ExecutionPolicy::default()
        };
        engine
            .create_execution(CreateExecutionArgs {
                partition_id: id.partition(),
                execution_id: id.clone(),
                namespace: Namespace::new("demo"),
                lane_id: lane.clone(),
                execution_kind: (*kind).to_owned(),
                input_payload: format!("job {i}").into_bytes(),
                payload_encoding: Some("text".into()),
                priority: 0,
                creator_identity: "demo".into(),
                idempotency_key: None,
                tags: HashMap::new(),
                policy: Some(policy),
                delay_until: None,
                execution_deadline_at: None,
                now: TimestampMs::now(),
            })
            .await
            .map_err(|e| CliError::new(format!("create_execution: {e}")))?;
        ids.push((id, *kind));
    }
    println!("created {} executions on lane {lane}", ids.len());

    let started = Instant::now();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let kinds: Arc<HashMap<String, &'static str>> =
        Arc::new(ids.iter().map(|(id, kind)| (id.to_string(), *kind)).collect());
    let workers: Vec<_> = (1..=2)
        .map(|n| tokio::spawn(worker(engine.clone(), lane.clone(), n, kinds.clone(), log.clone())))
        .collect();
    for w in workers {
        w.await.map_err(|e| CliError::new(e.to_string()))??;
    }
    for line in log.lock().await.iter() {
        println!("  {line}");
    }

    println!("after {:.1}s:", started.elapsed().as_secs_f64());
    let mut all_done = true;
    for (id, kind) in &ids {
        let snap = engine
            .describe_execution(id)
            .await
            .map_err(|e| CliError::new(format!("describe_execution: {e}")))?
            .ok_or_else(|| CliError::new("an execution vanished"))?;
        all_done &= snap.public_state == PublicState::Completed;
        println!(
            "  {kind:<15} {:<10} attempts={}",
            snap.public_state, snap.total_attempt_count
        );
    }
    if !all_done {
        return Err(CliError::new("not every execution completed"));
    }
    println!("all {} executions completed", ids.len());
    Ok(())
}

/// Claim until the lane stays empty for two seconds.
async fn worker(
    engine: Arc<dyn EngineBackend>,
    lane: LaneId,
    n: u32,
    kinds: Arc<HashMap<String, &'static str>>,
    log: Log,
) -> Result<(), CliError> {
    let name = format!("worker-{n}");
    let policy = ClaimPolicy::new(
        WorkerId::new(&name),
        WorkerInstanceId::new(format!("{name}-{}", std::process::id())),
        10_000,
        Some(Duration::from_secs(2)),
    );
    let fail = |e: ff_core::engine_error::EngineError| CliError::new(format!("{name}: {e}"));
    while let Some(handle) = engine
        .claim(&lane, &CapabilitySet::default(), policy.clone())
        .await
        .map_err(fail)?
    {
        // The handle is opaque to the engine's users; the demo peeks inside
        // (with ff-core's own codec) to narrate which job it got.
        let payload = ff_core::handle_codec::decode(&handle.opaque)
            .map_err(|e| CliError::new(e.to_string()))?
            .payload;
        let kind = kinds.get(payload.execution_id.as_str()).copied().unwrap_or("?");
        let attempt = payload.attempt_index.0;
        engine
            .progress(&handle, Some(50), Some("working".into()))
            .await
            .map_err(fail)?;
        let line = match kind {
            "flaky-upstream" if attempt == 0 => {
                let outcome = engine
                    .fail(
                        &handle,
                        FailureReason::new("upstream timed out"),
                        FailureClass::Transient,
                    )
                    .await
                    .map_err(fail)?;
                match outcome {
                    FailOutcome::RetryScheduled { .. } => format!("{name}: {kind} failed; retry scheduled"),
                    FailOutcome::TerminalFailed => format!("{name}: {kind} failed for good"),
                }
            }
            "wait-a-second" if handle.kind == HandleKind::Fresh => {
                engine
                    .delay(&handle, TimestampMs::from_millis(TimestampMs::now().0 + 1_000))
                    .await?;
                format!("{name}: {kind} delayed by 1s")
            }
            _ => {
                engine.complete(&handle, Some(b"ok".to_vec())).await.map_err(fail)?;
                format!("{name}: {kind} completed (attempt {attempt}, {:?} handle)", handle.kind)
            }
        };
        log.lock().await.push(line);
    }
    Ok(())
}
