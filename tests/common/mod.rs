//! Test harness: a database per test, cloned from a migrated template.
//!
//! The template is built once per schema (its name carries a hash of
//! `migrations/`), under an advisory lock so parallel test binaries do not
//! race to build it. Each test then gets `CREATE DATABASE ... TEMPLATE`, a
//! copy that costs milliseconds, and drops it when the test ends (set
//! `FF_TEST_KEEP_DB=1` to keep it for inspection). No PostgreSQL is a loud
//! failure, never a skipped test.
//!
//! `FF_PG_ADMIN_URL` names the server (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod load;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use ff_backend_postgres::{Clock, ManualClock, PostgresBackend, ScannerConfig};
use ff_core::backend::{CapabilitySet, ClaimPolicy, Handle};
use ff_core::contracts::{CreateExecutionArgs, CreateExecutionResult};
use ff_core::engine_backend::EngineBackend;
use ff_core::partition::PartitionConfig;
use ff_core::policy::ExecutionPolicy;
use ff_core::types::{ExecutionId, LaneId, Namespace, TimestampMs, WorkerId, WorkerInstanceId};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The test clock starts here: 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;

pub fn admin_url() -> String {
    std::env::var("FF_PG_ADMIN_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(db: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{db}")
}

async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url()).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL at {} ({e}); the tests need a live server \
             (set FF_PG_ADMIN_URL, or run `make test`, which starts the local one)",
            admin_url()
        )
    })
}

fn schema_hash() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut hasher = DefaultHasher::new();
    for f in files {
        f.file_name().hash(&mut hasher);
        std::fs::read(&f).unwrap().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Build the template for the current schema unless it exists.
async fn ensure_template() -> String {
    let name = format!("ff_t_template_{}", schema_hash());
    let mut conn = admin().await;
    sqlx::query("SELECT pg_advisory_lock(7261)")
        .execute(&mut conn)
        .await
        .unwrap();
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if !exists {
        let building = format!("{name}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url_for(&building))
            .await
            .unwrap();
        ff_backend_postgres::apply_migrations(&pool)
            .await
            .expect("migrate the template");
        pool.close().await;
        // Nothing else may be connected to a database being renamed; the
        // closed pool's server processes may still be on their way out.
        let sessions: Vec<String> = sqlx::query_scalar(
            "SELECT backend_type || ':' || coalesce(application_name, '') FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&building)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if !sessions.is_empty() {
            eprintln!("sessions still on {building}: {sessions:?}; terminating them");
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        retry_while_in_use(&mut conn, &format!("ALTER DATABASE {building} RENAME TO {name}")).await;
    }
    sqlx::query("SELECT pg_advisory_unlock(7261)")
        .execute(&mut conn)
        .await
        .unwrap();
    name
}

/// Run a database-level statement, retrying while PostgreSQL reports the
/// database in use (`55006`) by sessions that are on their way out.
async fn retry_while_in_use(conn: &mut PgConnection, sql: &str) {
    for attempt in 0.. {
        match sqlx::query(sql).execute(&mut *conn).await {
            Ok(_) => return,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") && attempt < 100 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = ensure_template().await;
        let name = format!("ff_t_{}", Uuid::new_v4().simple());
        let mut conn = admin().await;
        retry_while_in_use(&mut conn, &format!("CREATE DATABASE {name} TEMPLATE {template}")).await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url_for(&name))
            .await
            .unwrap();
        Self { pool, name }
    }

    /// An empty database (no schema), for migration tests.
    pub async fn empty() -> Self {
        let name = format!("ff_t_{}", Uuid::new_v4().simple());
        let mut conn = admin().await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(&url_for(&name))
            .await
            .unwrap();
        Self { pool, name }
    }

    pub fn url(&self) -> String {
        url_for(&self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("FF_TEST_KEEP_DB").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop cannot await; a thread with a runtime of its own can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A test bench: a database, a backend with a manual clock and no background
/// scanners (tests drive time and scans by hand).
pub struct Bench {
    pub db: TestDb,
    pub clock: ManualClock,
    pub backend: Arc<PostgresBackend>,
    next_id: u128,
}

impl Bench {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let clock = ManualClock::new(T0);
        let backend = PostgresBackend::builder(db.pool.clone())
            .clock(Clock::Manual(clock.clone()))
            .scanners(ScannerConfig::disabled())
            .build();
        Self {
            db,
            clock,
            backend,
            next_id: 0,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    pub fn engine(&self) -> &dyn EngineBackend {
        &*self.backend
    }

    /// A deterministic execution id on `lane`: ...0001, ...0002, ...
    pub fn next_execution_id(&mut self, lane: &str) -> ExecutionId {
        self.next_id += 1;
        ExecutionId::deterministic_solo(
            &LaneId::new(lane),
            &PartitionConfig::default(),
            Uuid::from_u128(self.next_id),
        )
    }

    /// Create an execution through the trait and return its id.
    pub async fn create(&mut self, spec: Spec<'_>) -> ExecutionId {
        let id = self.next_execution_id(spec.lane);
        let result = self
            .engine()
            .create_execution(spec.args(id.clone()))
            .await
            .expect("create_execution");
        assert!(matches!(result, CreateExecutionResult::Created { .. }), "{result:?}");
        // One millisecond apart, so "oldest first" is well defined.
        self.clock.advance_ms(1);
        id
    }

    pub async fn claim(&self, lane: &str, worker: &str) -> Option<Handle> {
        self.claim_with(lane, worker, &[]).await
    }

    pub async fn claim_with(&self, lane: &str, worker: &str, caps: &[&str]) -> Option<Handle> {
        self.engine()
            .claim(
                &LaneId::new(lane),
                &CapabilitySet::new(caps.iter().copied()),
                policy(worker, 30_000),
            )
            .await
            .expect("claim")
    }

    /// Rows of a table as JSON, ordered, with volatile values normalised
    /// (see [`normalise`]).
    pub async fn rows(&self, sql: &str) -> Value {
        let wrapped = format!("SELECT COALESCE(json_agg(r), '[]'::json) FROM ({sql}) r");
        let value: Value = sqlx::query_scalar(&wrapped).fetch_one(self.pool()).await.unwrap();
        normalise(value)
    }

    /// The rows that change with each transition: executions, attempts,
    /// and the two outboxes.
    pub async fn state(&self) -> Value {
        let exec = self
            .rows(
                "SELECT partition_key, execution_id, lane_id, attempt_index, retry_count, reclaim_count,
                        lifecycle_phase, ownership_state, eligibility_state, blocking_reason, terminal_outcome,
                        attempt_state, public_state, eligible_at_ms, started_at_ms, completed_at_ms,
                        progress_percent, progress_message, encode(result_payload, 'escape') AS result,
                        failure_reason, cancel_reason, last_mutation_at_ms
                   FROM ff_exec_core ORDER BY created_at_ms, execution_id",
            )
            .await;
        let attempts = self
            .rows(
                "SELECT execution_id, attempt_index, attempt_type, lifecycle, lease_epoch, lease_expires_at_ms,
                        lease_id, worker_instance_id, lease_end_reason, started_at_ms, ended_at_ms,
                        failure_reason, failure_class
                   FROM ff_attempt ORDER BY execution_id, attempt_index",
            )
            .await;
        let completions = self
            .rows(
                "SELECT event_id, execution_id, outcome, attempt_index, occurred_at_ms
                   FROM ff_completion_event ORDER BY event_id",
            )
            .await;
        let leases = self
            .rows(
                "SELECT event_id, execution_id, attempt_index, lease_epoch, event_kind, worker_instance_id, reason
                   FROM ff_lease_event ORDER BY event_id",
            )
            .await;
        serde_json::json!({
            "ff_exec_core": exec,
            "ff_attempt": attempts,
            "ff_completion_event": completions,
            "ff_lease_event": leases,
        })
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.pool()).await.unwrap()
    }
}

/// What to create.
#[derive(Clone)]
pub struct Spec<'a> {
    pub lane: &'a str,
    pub priority: i32,
    pub caps: &'a [&'a str],
    pub policy: Option<ExecutionPolicy>,
    pub delay_until: Option<i64>,
    pub idempotency_key: Option<&'a str>,
    pub tags: &'a [(&'a str, &'a str)],
}

impl<'a> Spec<'a> {
    pub fn on(lane: &'a str) -> Self {
        Self {
            lane,
            priority: 0,
            caps: &[],
            policy: None,
            delay_until: None,
            idempotency_key: None,
            tags: &[],
        }
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn caps(mut self, caps: &'a [&'a str]) -> Self {
        self.caps = caps;
        self
    }

    pub fn policy(mut self, policy: ExecutionPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    pub fn delay_until(mut self, at_ms: i64) -> Self {
        self.delay_until = Some(at_ms);
        self
    }

    pub fn idempotency_key(mut self, key: &'a str) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    pub fn tags(mut self, tags: &'a [(&'a str, &'a str)]) -> Self {
        self.tags = tags;
        self
    }

    pub fn args(&self, execution_id: ExecutionId) -> CreateExecutionArgs {
        let mut policy = self.policy.clone();
        if !self.caps.is_empty() {
            let p = policy.get_or_insert_with(ExecutionPolicy::default);
            p.routing_requirements = Some(ff_core::policy::RoutingRequirements {
                required_capabilities: self.caps.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            });
        }
        CreateExecutionArgs {
            partition_id: execution_id.partition(),
            execution_id,
            namespace: Namespace::new("tests"),
            lane_id: LaneId::new(self.lane),
            execution_kind: "unit".into(),
            input_payload: b"input".to_vec(),
            payload_encoding: None,
            priority: self.priority,
            creator_identity: "harness".into(),
            idempotency_key: self.idempotency_key.map(str::to_owned),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            policy,
            delay_until: self.delay_until.map(TimestampMs::from_millis),
            execution_deadline_at: None,
            now: TimestampMs::from_millis(T0),
        }
    }
}

pub fn policy(worker: &str, ttl_ms: u32) -> ClaimPolicy {
    ClaimPolicy::new(
        WorkerId::new(worker),
        WorkerInstanceId::new(format!("{worker}-1")),
        ttl_ms,
        None,
    )
}

pub fn waiting_policy(worker: &str, max_wait: Duration) -> ClaimPolicy {
    ClaimPolicy::new(
        WorkerId::new(worker),
        WorkerInstanceId::new(format!("{worker}-1")),
        30_000,
        Some(max_wait),
    )
}

/// Make row JSON stable across runs: times near the test clock become
/// `"T0+<ms>"`; random uuids (attempt and lease ids) become `"[uuid]"` after
/// checking they are uuids. Execution ids are deterministic and kept.
pub fn normalise(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(normalise).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match (&*k, v) {
                        ("attempt_id" | "lease_id", Value::String(s)) => {
                            assert!(Uuid::parse_str(&s).is_ok(), "{k} is not a uuid: {s}");
                            Value::String("[uuid]".into())
                        }
                        (k, Value::Number(n)) if k.ends_with("_ms") => {
                            let ms = n.as_i64().expect("ms column is an integer");
                            assert!(
                                (T0 - 86_400_000..T0 + 86_400_000 * 365).contains(&ms),
                                "{k} = {ms} is far from T0"
                            );
                            Value::String(format!("T0{:+}", ms - T0))
                        }
                        (_, v) => normalise(v),
                    };
                    (k, v)
                })
                .collect::<serde_json::Map<_, _>>(),
        ),
        other => other,
    }
}

/// Tags as a sorted map, for comparisons.
pub fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
