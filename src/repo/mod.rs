//! Repositories: the only place SQL lives.
//!
//! One module per table. Every statement is a compile-time-checked sqlx
//! macro; every function takes `&mut PgConnection`, so it runs inside
//! whatever transaction its caller opened, and none of them begins or
//! commits one. Time-dependent statements take `now: Option<i64>`: `None`
//! reads the database clock, `Some` injects a time (tests, manual clocks).

mod attempt;
mod exec;
mod idempotency;
mod listener;
mod report;
mod transition;

pub(crate) use attempt::AttemptRepo;
pub(crate) use exec::{ExecRepo, NewExec};
pub(crate) use idempotency::{IdemKey, IdempotencyRepo};
pub(crate) use listener::ListenerRepo;
pub(crate) use report::ReportRepo;
pub(crate) use transition::{GrantedLease, LeaseGrant, Outcome, Park, Terminal, TransitionRepo};

use sqlx::PgConnection;

/// The current time: `now` when injected, else the database clock.
pub(crate) async fn db_now(conn: &mut PgConnection, now: Option<i64>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT COALESCE($1, ff_now_ms()) AS "now!""#, now)
        .fetch_one(conn)
        .await
}
