//! The workloads themselves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ff_core::backend::{CapabilitySet, ClaimPolicy, Handle};
use ff_core::contracts::{CreateExecutionArgs, CreateExecutionResult};
use ff_core::types::{ExecutionId, LaneId, Namespace, TimestampMs, WorkerId, WorkerInstanceId};
use tokio::sync::Mutex;

use super::stats::{Counters, Latencies};
use super::{BenchConfig, Measurement, Subject};
use crate::db::CliError;
use crate::progress::Progress;

type Result<T> = std::result::Result<T, CliError>;

fn engine_err(what: &str) -> impl Fn(ff_core::engine_error::EngineError) -> CliError + '_ {
    move |e| CliError::new(format!("{what}: {e}"))
}

fn db_err(what: &str) -> impl Fn(sqlx::Error) -> CliError + '_ {
    move |e| CliError::new(format!("{what}: {e}"))
}

fn fresh_lane(workload: &str) -> LaneId {
    LaneId::new(format!(
        "bench-{workload}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ))
}

fn claim_policy(worker: usize, max_wait: Option<Duration>) -> ClaimPolicy {
    ClaimPolicy::new(
        WorkerId::new(format!("bench-{worker}")),
        WorkerInstanceId::new(format!("bench-{worker}-{}", std::process::id())),
        60_000,
        max_wait,
    )
}

fn create_args(subject: &Subject, lane: &LaneId) -> CreateExecutionArgs {
    let id = ExecutionId::solo(lane, &subject.partitions);
    CreateExecutionArgs {
        partition_id: id.partition(),
        execution_id: id,
        namespace: Namespace::new("bench"),
        lane_id: lane.clone(),
        execution_kind: "bench".into(),
        input_payload: b"{}".to_vec(),
        payload_encoding: None,
        priority: 0,
        creator_identity: "ffpg-bench".into(),
        idempotency_key: None,
        tags: HashMap::new(),
        policy: None,
        delay_until: None,
        execution_deadline_at: None,
        now: TimestampMs::now(),
    }
}

async fn create(subject: &Subject, lane: &LaneId) -> Result<ExecutionId> {
    let args = create_args(subject, lane);
    let id = args.execution_id.clone();
    let id = match subject
        .engine
        .create_execution(args)
        .await
        .map_err(engine_err("create_execution"))?
    {
        CreateExecutionResult::Created { .. } => id,
        CreateExecutionResult::Duplicate { execution_id } => execution_id,
    };
    if subject.promote_submitted {
        promote_submitted(subject, Some(&id)).await?;
    }
    Ok(id)
}

/// For a backend whose `create_execution` leaves executions `submitted`,
/// which its own `claim` never takes: make them `runnable` (one execution,
/// or every one when `id` is `None`).
async fn promote_submitted(subject: &Subject, id: Option<&ExecutionId>) -> Result<()> {
    let uuid = id.and_then(|id| id.as_str().split_once("}:").map(|(_, u)| u.to_owned()));
    sqlx::query(
        "UPDATE ff_exec_core SET lifecycle_phase = 'runnable'
          WHERE lifecycle_phase = 'submitted' AND ($1::uuid IS NULL OR execution_id = $1::uuid)",
    )
    .bind(uuid)
    .execute(&subject.pool)
    .await
    .map_err(db_err("promote submitted executions"))?;
    Ok(())
}

/// Create `count` executions on `lane` with `concurrency` producers.
async fn seed(subject: &Subject, lane: &LaneId, count: usize, concurrency: usize, label: &str) -> Result<()> {
    let made = Arc::new(AtomicU64::new(0));
    let mut progress = Progress::new(label, count as u64);
    let mut tasks = Vec::new();
    for p in 0..concurrency.max(1) {
        let share = count / concurrency.max(1) + usize::from(p < count % concurrency.max(1));
        let (mut subject, lane, made) = (subject.clone(), lane.clone(), made.clone());
        // Promoted in one statement below, not one by one.
        subject.promote_submitted = false;
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                create(&subject, &lane).await?;
                made.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, CliError>(())
        }));
    }
    while !tasks.iter().all(|t| t.is_finished()) {
        progress.set(made.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.await.map_err(|e| CliError::new(e.to_string()))??;
    }
    if subject.promote_submitted {
        promote_submitted(subject, None).await?;
    }
    progress.finish();
    settle(subject).await
}

/// After loading: `VACUUM ANALYZE` the database, so that the measured part
/// runs on current statistics rather than racing autovacuum for the CPU.
async fn settle(subject: &Subject) -> Result<()> {
    sqlx::query("VACUUM (ANALYZE)")
        .execute(&subject.pool)
        .await
        .map_err(db_err("vacuum analyze"))?;
    Ok(())
}

async fn claim(subject: &Subject, lane: &LaneId, worker: usize, max_wait: Option<Duration>) -> Result<Option<Handle>> {
    subject
        .engine
        .claim(lane, &CapabilitySet::default(), claim_policy(worker, max_wait))
        .await
        .map_err(engine_err("claim"))
}

/// Charge `before..now` to `jobs` jobs.
async fn charge(subject: &Subject, before: &Counters, jobs: u64, m: &mut Measurement) -> Result<()> {
    let delta = Counters::read(&subject.pool)
        .await
        .map_err(db_err("read counters"))?
        .since(before);
    if jobs > 0 {
        let per = |n: i64| n as f64 / jobs as f64;
        m.tx_per_job = Some(per(delta.transactions));
        m.wal_per_job = Some(per(delta.wal_bytes));
        m.statements_per_job = delta.statements.map(per);
    }
    Ok(())
}

async fn start_counters(subject: &Subject) -> Result<Counters> {
    Counters::read(&subject.pool).await.map_err(db_err("read counters"))
}

/// Workload 1: `backlog` executions pre-created; `workers` workers claim →
/// complete until the lane is empty.
pub async fn burn_down(subject: &Subject, config: &BenchConfig) -> Result<Measurement> {
    let lane = fresh_lane("burn");
    seed(
        subject,
        &lane,
        config.backlog,
        config.workers,
        &format!("{}: seed", subject.name),
    )
    .await?;
    let before = start_counters(subject).await?;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..config.workers {
        let (subject, lane, done) = (subject.clone(), lane.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let (mut claims, mut completes) = (Latencies::default(), Latencies::default());
            loop {
                let Some(handle) = claims.time(claim(&subject, &lane, w, None)).await? else {
                    return Ok::<_, CliError>((claims, completes));
                };
                completes
                    .time(subject.engine.complete(&handle, None))
                    .await
                    .map_err(engine_err("complete"))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut progress = Progress::new(&format!("{}: burn-down", subject.name), config.backlog as u64);
    while !tasks.iter().all(|t| t.is_finished()) {
        progress.set(done.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut claims, mut completes) = (Latencies::default(), Latencies::default());
    for t in tasks {
        let (c, k) = t.await.map_err(|e| CliError::new(e.to_string()))??;
        claims.extend(c);
        completes.extend(k);
    }
    let elapsed = started.elapsed();
    progress.finish();
    let jobs = done.load(Ordering::Relaxed);
    let mut m = Measurement {
        workload: "burn-down".into(),
        subject: subject.name.clone(),
        parameter: format!("{} jobs, {} workers", config.backlog, config.workers),
        jobs,
        elapsed,
        latencies: vec![
            ("claim".into(), claims.p50(), claims.p99()),
            ("complete".into(), completes.p50(), completes.p99()),
        ],
        ..Measurement::default()
    };
    charge(subject, &before, jobs, &mut m).await?;
    if jobs != config.backlog as u64 {
        m.note = format!("drained {jobs} of {}", config.backlog);
    }
    Ok(m)
}

/// Workload 2: a producer at `rate` per second for `duration`, while
/// `workers` workers claim → progress → complete.
pub async fn steady_state(subject: &Subject, config: &BenchConfig) -> Result<Measurement> {
    let lane = fresh_lane("steady");
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let before = start_counters(subject).await?;
    let started = Instant::now();

    let producer = {
        let (subject, lane, created_at, stop) = (subject.clone(), lane.clone(), created_at.clone(), stop.clone());
        let period = Duration::from_secs_f64(1.0 / config.rate.max(1.0));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let id = create(&subject, &lane).await?;
                created_at.lock().await.insert(id.to_string(), Instant::now());
                made += 1;
            }
            Ok::<_, CliError>(made)
        })
    };
    let mut tasks = Vec::new();
    for w in 0..config.workers {
        let (subject, lane, created_at, stop, done) = (
            subject.clone(),
            lane.clone(),
            created_at.clone(),
            stop.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut waits = Latencies::default();
            let mut cycle = Latencies::default();
            while !stop.load(Ordering::Relaxed) {
                let Some(handle) = claim(&subject, &lane, w, Some(Duration::from_millis(200))).await? else {
                    continue;
                };
                let claimed = Instant::now();
                let id = ff_core::handle_codec::decode(&handle.opaque)
                    .map(|d| d.payload.execution_id.to_string())
                    .unwrap_or_default();
                if let Some(at) = created_at.lock().await.remove(&id) {
                    waits.push(claimed.saturating_duration_since(at));
                }
                subject
                    .engine
                    .progress(&handle, Some(50), None)
                    .await
                    .map_err(engine_err("progress"))?;
                subject
                    .engine
                    .complete(&handle, None)
                    .await
                    .map_err(engine_err("complete"))?;
                cycle.push(claimed.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, CliError>((waits, cycle))
        }));
    }
    let mut progress = Progress::new(&format!("{}: steady state", subject.name), config.duration.as_secs());
    while started.elapsed() < config.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        progress.set(started.elapsed().as_secs());
    }
    stop.store(true, Ordering::Relaxed);
    let jobs = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    progress.finish();
    let made = producer.await.map_err(|e| CliError::new(e.to_string()))??;
    let (mut waits, mut cycle) = (Latencies::default(), Latencies::default());
    for t in tasks {
        let (w, c) = t.await.map_err(|e| CliError::new(e.to_string()))??;
        waits.extend(w);
        cycle.extend(c);
    }
    let mut m = Measurement {
        workload: "steady".into(),
        subject: subject.name.clone(),
        parameter: format!("{:.0}/s offered, {} workers", config.rate, config.workers),
        jobs,
        elapsed,
        latencies: vec![
            ("created→claimed".into(), waits.p50(), waits.p99()),
            ("progress+complete".into(), cycle.p50(), cycle.p99()),
        ],
        note: format!("{made} created"),
        ..Measurement::default()
    };
    charge(subject, &before, jobs, &mut m).await?;
    Ok(m)
}

/// Workload 3: claim → complete cost as the waiting backlog grows.
pub async fn backlog_scaling(subject: &Subject, config: &BenchConfig) -> Result<Vec<Measurement>> {
    let lane = fresh_lane("scale");
    let mut waiting = 0usize;
    let mut out = Vec::new();
    for &size in &config.backlog_sizes {
        let label = format!("{}: backlog to {size}", subject.name);
        seed(subject, &lane, size.saturating_sub(waiting), config.workers, &label).await?;
        waiting = size;
        let before = start_counters(subject).await?;
        let (mut claims, mut completes) = (Latencies::default(), Latencies::default());
        let started = Instant::now();
        for _ in 0..config.scaling_samples {
            let handle = claims
                .time(claim(subject, &lane, 0, None))
                .await?
                .ok_or_else(|| CliError::new("backlog ran dry"))?;
            completes
                .time(subject.engine.complete(&handle, None))
                .await
                .map_err(engine_err("complete"))?;
        }
        let elapsed = started.elapsed();
        let mut m = Measurement {
            workload: "backlog".into(),
            subject: subject.name.clone(),
            parameter: format!("{size} waiting, 1 worker"),
            jobs: config.scaling_samples as u64,
            elapsed,
            latencies: vec![
                ("claim".into(), claims.p50(), claims.p99()),
                ("complete".into(), completes.p50(), completes.p99()),
            ],
            ..Measurement::default()
        };
        charge(subject, &before, config.scaling_samples as u64, &mut m).await?;
        out.push(m);
        // Back to the nominal size for the next step (not measured).
        seed(subject, &lane, config.scaling_samples, config.workers, &label).await?;
    }
    Ok(out)
}

/// Workload 4: claims on an empty lane, one after another.
pub async fn idle_claim(subject: &Subject, config: &BenchConfig) -> Result<Measurement> {
    let lane = fresh_lane("idle");
    let before = start_counters(subject).await?;
    let mut claims = Latencies::default();
    let started = Instant::now();
    while started.elapsed() < config.duration.min(Duration::from_secs(5)) {
        if claims.time(claim(subject, &lane, 0, None)).await?.is_some() {
            return Err(CliError::new("an empty lane yielded work"));
        }
    }
    let elapsed = started.elapsed();
    let jobs = claims.len() as u64;
    let mut m = Measurement {
        workload: "idle claim".into(),
        subject: subject.name.clone(),
        parameter: "empty lane, 1 worker".into(),
        jobs,
        elapsed,
        latencies: vec![("claim".into(), claims.p50(), claims.p99())],
        ..Measurement::default()
    };
    charge(subject, &before, jobs, &mut m).await?;
    Ok(m)
}

/// Workload 5: create → claimed with workers already waiting, and complete →
/// completion notification received.
pub async fn latency(subject: &Subject, config: &BenchConfig) -> Result<Measurement> {
    let lane = fresh_lane("latency");
    let samples = 200usize;
    let mut listener = match &subject.ours {
        Some(backend) => Some(backend.completion_feed().await?),
        None => None,
    };
    let (mut to_claim, mut to_event) = (Latencies::default(), Latencies::default());
    let started = Instant::now();
    for _ in 0..samples {
        let waiter = {
            let (subject, lane) = (subject.clone(), lane.clone());
            tokio::spawn(async move {
                // A backend whose claim does not wait returns at once; ask again.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Some(handle) = claim(&subject, &lane, 0, Some(Duration::from_secs(5))).await? {
                        return Ok(Some(handle));
                    }
                }
                Ok::<_, CliError>(None)
            })
        };
        // Let the claimer reach its wait before the work appears.
        tokio::time::sleep(Duration::from_millis(5)).await;
        create(subject, &lane).await?;
        let created = Instant::now();
        let handle = waiter
            .await
            .map_err(|e| CliError::new(e.to_string()))??
            .ok_or_else(|| CliError::new("a waiting claim timed out"))?;
        to_claim.push(created.elapsed());
        subject
            .engine
            .complete(&handle, None)
            .await
            .map_err(engine_err("complete"))?;
        let completed = Instant::now();
        if let Some(l) = listener.as_mut() {
            tokio::time::timeout(Duration::from_secs(5), l.recv())
                .await
                .map_err(|_| CliError::new("no completion notification within 5 s"))??;
            to_event.push(completed.elapsed());
        }
    }
    let _ = config;
    Ok(Measurement {
        workload: "latency".into(),
        subject: subject.name.clone(),
        parameter: format!("{samples} sequential jobs"),
        jobs: samples as u64,
        elapsed: started.elapsed(),
        latencies: vec![
            ("created→claimed".into(), to_claim.p50(), to_claim.p99()),
            ("complete→event".into(), to_event.p50(), to_event.p99()),
        ],
        note: if listener.is_none() {
            "completion notifications not measured for this backend".into()
        } else {
            String::new()
        },
        ..Measurement::default()
    })
}

/// The physical reference: minimal one-row update transactions, one row per
/// connection, over `workers` connections for `duration`.
pub async fn commit_ceiling(pool: &sqlx::PgPool, subject: &str, config: &BenchConfig) -> Result<Measurement> {
    let err = db_err("commit ceiling");
    sqlx::query("CREATE TABLE IF NOT EXISTS ffpg_bench_ceiling (id int PRIMARY KEY, n bigint NOT NULL)")
        .execute(pool)
        .await
        .map_err(&err)?;
    sqlx::query("INSERT INTO ffpg_bench_ceiling SELECT g, 0 FROM generate_series(0, $1) g ON CONFLICT (id) DO NOTHING")
        .bind(config.workers as i32)
        .execute(pool)
        .await
        .map_err(&err)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..config.workers {
        let (pool, duration) = (pool.clone(), config.duration);
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            let mut n = 0u64;
            while started.elapsed() < duration {
                sqlx::query("UPDATE ffpg_bench_ceiling SET n = n + 1 WHERE id = $1")
                    .bind(w as i32)
                    .execute(&mut *conn)
                    .await?;
                n += 1;
            }
            Ok::<_, sqlx::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| CliError::new(e.to_string()))?.map_err(&err)?;
    }
    let elapsed = started.elapsed();
    sqlx::query("DROP TABLE IF EXISTS ffpg_bench_ceiling")
        .execute(pool)
        .await
        .map_err(&err)?;
    Ok(Measurement {
        workload: "commit ceiling".into(),
        subject: subject.into(),
        parameter: format!("{} connections", config.workers),
        jobs: total,
        elapsed,
        tx_per_job: Some(1.0),
        ..Measurement::default()
    })
}
