//! Errors: the crate's own error type, the one classification of database
//! errors, and the one conversion into [`EngineError`].
//!
//! Expected conflicts never reach this module as database errors: they are
//! resolved in SQL (`ON CONFLICT`, guarded `UPDATE ... WHERE lease_epoch = $n`
//! where zero rows means "fenced"). What arrives here is either a transport
//! fault, a retryable serialization failure, or input the database refused.

use std::time::Duration;

use ff_core::engine_error::{ContentionKind, EngineError, ValidationKind};

use crate::migrate::MigrationError;

/// The backend label carried by [`EngineError::Transport`].
pub(crate) const BACKEND: &str = "postgres";

/// Names of the constraints that error mapping relies on. They are created
/// with these exact names in `migrations/`; `tests/schema_conventions.rs`
/// checks that every one of them exists.
pub mod constraint {
    /// Primary key of `ff_exec_core`.
    pub const EXEC_CORE_PKEY: &str = "ff_exec_core_pkey";
    /// Primary key of `ff_attempt`.
    pub const ATTEMPT_PKEY: &str = "ff_attempt_pkey";
    /// `ff_exec_core.progress_percent` lies in 0..=100.
    pub const EXEC_PROGRESS_PERCENT: &str = "ff_exec_core_progress_percent_check";
    /// The state vector of `ff_exec_core`: literals, consistency, derived
    /// `public_state`.
    pub const EXEC_STATE: &str = "ff_exec_core_state_check";
    /// The state columns of `ff_attempt`.
    pub const ATTEMPT_STATE: &str = "ff_attempt_state_check";
    /// Every constraint name listed above, for the schema convention test.
    pub const ALL: &[&str] = &[
        EXEC_CORE_PKEY,
        ATTEMPT_PKEY,
        EXEC_PROGRESS_PERCENT,
        EXEC_STATE,
        ATTEMPT_STATE,
    ];
}

/// Errors of the constructors and administrative entry points of this crate.
/// Trait methods return [`EngineError`] instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached or refused a statement.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Applying or checking migrations failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// A configuration value was rejected.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Database(err)
    }
}

/// What a database error means to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DbFailure {
    /// `40001` serialization failure or `40P01` deadlock: the transaction was
    /// rolled back and may be run again.
    Retryable,
    /// The pool had no connection to give within its acquire timeout.
    PoolTimedOut,
    /// A named constraint refused the row.
    Constraint(String),
    /// The server refused a value (`22xxx` data exception: NUL byte in text,
    /// number out of range, ...).
    BadValue,
    /// Anything else: I/O, protocol, server shutdown, ...
    Transport,
}

/// The one classification of `sqlx` errors.
pub(crate) fn classify(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::PoolTimedOut => DbFailure::PoolTimedOut,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if code == "40001" || code == "40P01" {
                DbFailure::Retryable
            } else if code.starts_with("22") {
                DbFailure::BadValue
            } else if let Some(name) = db.constraint() {
                DbFailure::Constraint(name.to_owned())
            } else {
                DbFailure::Transport
            }
        }
        _ => DbFailure::Transport,
    }
}

/// The one conversion of a database error into the trait's error surface.
/// `op` names the trait operation for timeouts.
pub(crate) fn to_engine(op: &'static str, err: sqlx::Error, acquire_timeout: Duration) -> EngineError {
    match classify(&err) {
        DbFailure::Retryable => EngineError::Contention(ContentionKind::RetryExhausted),
        DbFailure::PoolTimedOut => EngineError::Timeout {
            op,
            elapsed: acquire_timeout,
        },
        DbFailure::BadValue => EngineError::Validation {
            kind: ValidationKind::InvalidInput,
            detail: format!("{op}: the database refused a value: {}", db_message(&err)),
        },
        DbFailure::Constraint(name) => EngineError::Validation {
            kind: ValidationKind::InvalidInput,
            detail: format!("{op}: constraint {name} refused the change"),
        },
        DbFailure::Transport => EngineError::Transport {
            backend: BACKEND,
            source: Box::new(err),
        },
    }
}

fn db_message(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// `Validation { InvalidInput }` with a detail message.
pub(crate) fn invalid_input(detail: impl Into<String>) -> EngineError {
    EngineError::Validation {
        kind: ValidationKind::InvalidInput,
        detail: detail.into(),
    }
}

/// `Validation { Corruption }`: a stored value this crate cannot read back.
pub(crate) fn corruption(detail: impl Into<String>) -> EngineError {
    EngineError::Validation {
        kind: ValidationKind::Corruption,
        detail: detail.into(),
    }
}
