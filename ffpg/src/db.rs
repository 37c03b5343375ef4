//! Database URLs: validation, creating the database when it is missing, and
//! connecting with errors a person can act on.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// Where `ffpg` connects when neither `--database-url` nor `DATABASE_URL` says.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/flowfabric";

/// An error with a message fit for one line on a terminal.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<ff_core::engine_error::EngineError> for CliError {
    fn from(err: ff_core::engine_error::EngineError) -> Self {
        Self(err.to_string())
    }
}

impl CliError {
    /// An error from a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Parse a database URL, refusing one that is not a PostgreSQL URL.
pub fn parse_url(url: &str) -> Result<PgConnectOptions, CliError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(CliError::new(format!(
            "invalid database URL {url:?}: expected postgres://user@host:port/database"
        )));
    }
    PgConnectOptions::from_str(url).map_err(|e| CliError::new(format!("invalid database URL {url:?}: {e}")))
}

/// The database name of `options` (the user name when none is given, as
/// libpq does).
pub fn database_name(options: &PgConnectOptions) -> String {
    options
        .get_database()
        .map(str::to_owned)
        .unwrap_or_else(|| options.get_username().to_owned())
}

/// Create the database `url` names unless it exists, by connecting to the
/// server's `postgres` database. Returns whether it created it.
pub async fn create_if_missing(url: &str) -> Result<bool, CliError> {
    let options = parse_url(url)?;
    let name = database_name(&options);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(CliError::new(format!(
            "unsupported database name {name:?}: use letters, digits, '_' or '-'"
        )));
    }
    let admin = options.clone().database("postgres");
    let mut conn = connect_once(&admin, url).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| CliError::new(format!("cannot list databases on {}: {e}", describe(&options))))?;
    if exists {
        return Ok(false);
    }
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .map_err(|e| CliError::new(format!("cannot create database {name}: {e}")))?;
    Ok(true)
}

/// Connect once to `url` and hang up: a clear error when the server cannot
/// be reached or the database does not exist.
pub async fn check_reachable(url: &str) -> Result<(), CliError> {
    let options = parse_url(url)?;
    let conn = connect_once(&options, url).await?;
    let _ = conn.close().await;
    Ok(())
}

/// A pool of `size` connections to `url`, failing fast when the server
/// cannot be reached.
pub async fn pool(url: &str, size: u32) -> Result<PgPool, CliError> {
    let options = parse_url(url)?;
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
        .map_err(|e| unreachable(&options, e))
}

async fn connect_once(options: &PgConnectOptions, url: &str) -> Result<PgConnection, CliError> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(unreachable(options, e)),
        Err(_) => Err(CliError::new(format!("cannot connect to {url}: timed out after 5 s"))),
    }
}

fn unreachable(options: &PgConnectOptions, err: sqlx::Error) -> CliError {
    CliError::new(format!("cannot connect to {}: {}", describe(options), root_cause(&err)))
}

/// `host:port/database` of a URL, without credentials.
pub fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        database_name(options)
    )
}

/// The innermost message of an error chain.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
