//! [`PostgresBackend`]: construction, configuration, and what the trait does
//! not cover (migrations, scanners by hand).

mod engine;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ff_core::engine_error::EngineError;
use ff_core::partition::PartitionConfig;
use ff_core::types::ExecutionId;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;

use crate::admin::{ExecutionReport, LaneStatus};
use crate::clock::Clock;
use crate::error::Error;
use crate::migrate;
use crate::notify::{CompletionFeed, WorkSignal};
use crate::ops::{self, Ctx};
use crate::scanner::{self, ScanReport, ScannerConfig};
use crate::tx::Db;

/// The PostgreSQL implementation of [`ff_core::engine_backend::EngineBackend`].
///
/// Cheap to share: hold it as `Arc<PostgresBackend>` or
/// `Arc<dyn EngineBackend>`. Dropping the last `Arc` stops its background
/// tasks; the pool stays usable by whoever else holds it.
#[derive(Debug)]
pub struct PostgresBackend {
    ctx: Ctx,
    work: WorkSignal,
    scanner_config: ScannerConfig,
    scanner: Mutex<Option<JoinHandle<()>>>,
}

/// Options for [`PostgresBackend::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct BackendBuilder {
    pool: PgPool,
    partitions: PartitionConfig,
    clock: Clock,
    scanners: ScannerConfig,
}

impl BackendBuilder {
    /// The partition layout execution ids were minted under (default:
    /// ff-core's default, 256 flow partitions).
    pub fn partitions(mut self, partitions: PartitionConfig) -> Self {
        self.partitions = partitions;
        self
    }

    /// Where "now" comes from (default: the database clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How the background scanners run (default: every 250 ms).
    pub fn scanners(mut self, scanners: ScannerConfig) -> Self {
        self.scanners = scanners;
        self
    }

    /// Build the backend. Starts the scanners when they are enabled and a
    /// Tokio runtime is running (without one they cannot start; a warning
    /// says so).
    pub fn build(self) -> Arc<PostgresBackend> {
        let ctx = Ctx {
            db: Db::new(self.pool.clone()),
            partitions: self.partitions,
            clock: self.clock,
        };
        let backend = Arc::new(PostgresBackend {
            work: WorkSignal::new(self.pool),
            scanner_config: self.scanners,
            scanner: Mutex::new(None),
            ctx,
        });
        if backend.scanner_config.enabled {
            backend.start_scanners();
        }
        backend
    }
}

/// How [`PostgresBackend::connect`] sets up its own pool.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConnectOptions {
    url: String,
    max_connections: u32,
    acquire_timeout: Duration,
    apply_migrations: bool,
    partitions: PartitionConfig,
}

impl ConnectOptions {
    /// Connect to `url` (`postgres://user@host:port/database`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            apply_migrations: false,
            partitions: PartitionConfig::default(),
        }
    }

    /// Pool size (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a call waits for a free connection before it fails with
    /// `EngineError::Timeout` (default 10 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Apply pending migrations on connect (default: no; the schema must
    /// then already be current, or connecting fails).
    pub fn apply_migrations(mut self, apply: bool) -> Self {
        self.apply_migrations = apply;
        self
    }

    /// The partition layout (default: ff-core's default).
    pub fn partitions(mut self, partitions: PartitionConfig) -> Self {
        self.partitions = partitions;
        self
    }
}

impl PostgresBackend {
    /// A backend over `pool`, with default options otherwise (database clock,
    /// scanners on). Does not touch the schema: call
    /// [`apply_migrations`](crate::apply_migrations) first, or
    /// `EngineBackend::prepare`.
    pub fn from_pool(pool: PgPool, partitions: PartitionConfig) -> Arc<Self> {
        Self::builder(pool).partitions(partitions).build()
    }

    /// A backend over `pool`, configured step by step.
    pub fn builder(pool: PgPool) -> BackendBuilder {
        BackendBuilder {
            pool,
            partitions: PartitionConfig::default(),
            clock: Clock::default(),
            scanners: ScannerConfig::default(),
        }
    }

    /// Connect to `url` with a pool of its own. Fails unless the schema is
    /// exactly what this build expects (see [`ConnectOptions::apply_migrations`]).
    pub async fn connect(url: &str) -> Result<Arc<Self>, Error> {
        Self::connect_with(ConnectOptions::new(url)).await
    }

    /// Connect with explicit options.
    pub async fn connect_with(options: ConnectOptions) -> Result<Arc<Self>, Error> {
        if options.max_connections == 0 {
            return Err(Error::Config("max_connections must be at least 1".into()));
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // sqlx pings a pooled connection before handing it out by default:
            // a round trip on every call. A connection that died meanwhile
            // fails its first statement instead, with a transport error the
            // caller retries; the pool then drops it.
            .test_before_acquire(false)
            .connect(&options.url)
            .await?;
        if options.apply_migrations {
            migrate::apply_migrations(&pool).await?;
        } else {
            migrate::ensure_current(&pool).await?;
        }
        Ok(Self::builder(pool).partitions(options.partitions).build())
    }

    /// The pool this backend runs on.
    pub fn pool(&self) -> &PgPool {
        self.ctx.db.pool()
    }

    /// The partition layout this backend was built with.
    pub fn partitions(&self) -> PartitionConfig {
        self.ctx.partitions
    }

    /// Run every scanner once, now, with this backend's clock: delayed
    /// executions that are due become claimable, expired leases are requeued.
    pub async fn run_scanners_once(&self) -> Result<ScanReport, EngineError> {
        scanner::scan_once(&self.ctx, self.scanner_config.batch_size).await
    }

    /// Every lane with its executions per public state and its leases
    /// (what `ffpg status` shows).
    pub async fn lane_status(&self) -> Result<Vec<LaneStatus>, EngineError> {
        ops::admin::lane_status(&self.ctx).await
    }

    /// One execution in full: snapshot, attempts, recent events (what
    /// `ffpg inspect` shows). `None` when there is no such execution.
    pub async fn inspect(&self, id: &ExecutionId) -> Result<Option<ExecutionReport>, EngineError> {
        ops::admin::inspect(&self.ctx, id).await
    }

    /// Completion events as they commit (see [`CompletionFeed`]). While a
    /// feed is open, completions are notified; with none open, they are not,
    /// which spares busy systems the cost of notifying.
    pub async fn completion_feed(&self) -> Result<CompletionFeed, EngineError> {
        CompletionFeed::open(self.pool()).await
    }

    fn start_scanners(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("no Tokio runtime: background scanners not started");
            return;
        }
        let task = scanner::spawn(self.ctx.clone(), self.scanner_config.clone());
        if let Some(old) = self.lock_scanner().replace(task) {
            old.abort();
        }
    }

    fn stop_scanners(&self) {
        if let Some(task) = self.lock_scanner().take() {
            task.abort();
        }
    }

    fn lock_scanner(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        // A panic while holding this lock cannot leave the Option inconsistent.
        self.scanner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.stop_scanners();
    }
}
