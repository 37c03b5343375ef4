//! PostgreSQL backend for the FlowFabric durable-execution engine.
//!
//! [`PostgresBackend`] implements [`ff_core::engine_backend::EngineBackend`]
//! (ff-core 0.11) on PostgreSQL (tested on 15; 13 or later, for `xid8`).
//! Every SQL statement in this crate is a `sqlx` macro checked against the
//! schema at compile time; the offline metadata in `.sqlx/` lets the crate
//! build with no database at hand.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ff_backend_postgres::{PostgresBackend, apply_migrations};
//! use ff_core::engine_backend::EngineBackend;
//! use ff_core::partition::PartitionConfig;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/flowfabric").await?;
//! apply_migrations(&pool).await?;
//! let backend: Arc<dyn EngineBackend> = PostgresBackend::from_pool(pool, PartitionConfig::default());
//! backend.ping().await?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! * One trait call is one database transaction.
//! * Every lease-bound call is fenced by `(execution, attempt, lease epoch)`
//!   and requires the lease to be live by the database clock. A stale epoch
//!   is `Contention(LeaseConflict)`, an expired lease `State(LeaseExpired)`,
//!   a call after the lease was released (a replayed `complete`, say)
//!   `Contention(ExecutionNotActive)` carrying the outcome. None of them
//!   writes anything.
//! * Every transition into `terminal` writes exactly one completion event and
//!   every lease granted or ended one lease event, in the same statement as
//!   the transition (see `src/repo/transition/`).
//! * Delayed and backed-off executions become claimable when due, and the
//!   executions of crashed workers are requeued when their lease expires, by
//!   background scanners ([`ScannerConfig`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// `EngineError` is ff-core's error type, fixed by the trait: every method
// returns it, so its size is not ours to choose.
#![allow(clippy::result_large_err)]

mod admin;
mod backend;
mod clock;
mod error;
mod migrate;
mod model;
mod notify;
mod ops;
mod repo;
mod scanner;
mod tx;

pub use admin::{AttemptReport, EventReport, ExecutionReport, LaneStatus};
pub use backend::{BackendBuilder, ConnectOptions, PostgresBackend};
pub use clock::{Clock, ManualClock};
pub use error::{Error, constraint};
pub use migrate::{HISTORY_TABLE, MigrationError, SchemaStatus, apply_migrations, schema_status};
pub use notify::CompletionFeed;
pub use scanner::{ScanReport, ScannerConfig};
