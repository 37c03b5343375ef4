//! Schema migrations: the files of `migrations/`, embedded at compile time and
//! applied by refinery.
//!
//! refinery has no sqlx driver. Rather than pull in `tokio-postgres` (a second
//! Postgres client, its own connection string handling, and its build cost)
//! for one job, this module implements refinery's three async driver traits
//! over a sqlx connection taken from the caller's pool: the same TLS, the same
//! credentials, no extra dependency.
//!
//! Concurrent callers (parallel tests, several processes starting at once)
//! are serialised by a session-level advisory lock held on that connection for
//! the whole run; without it, concurrent migrators race to create the history
//! table and to apply the same version.
//!
//! refinery's own statements (its history table) and the migration files are
//! necessarily runtime SQL; everything else in this crate is checked at
//! compile time.

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection, PgPool, Postgres, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The table in which refinery records applied migrations.
pub const HISTORY_TABLE: &str = "ff_schema_history";

/// Key of the advisory lock that serialises migrators (`"ffmigrat"` in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6666_6d69_6772_6174;

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The database could not be reached, or refused a statement.
    #[error("database error while migrating")]
    Database(#[source] sqlx::Error),
    /// The database records a migration this build does not contain: it was
    /// migrated by a newer release. Upgrade this one instead of running it
    /// against a schema it does not know.
    #[error(
        "the database has migration V{version}__{name}, which this build does not know; \
         it was migrated by a newer release of ff-backend-postgres"
    )]
    UnknownVersion {
        /// Version of the unknown migration.
        version: i64,
        /// Name of the unknown migration.
        name: String,
    },
    /// An applied migration differs from the file of the same version: a
    /// landed migration was edited.
    #[error("applied migration V{version}__{name} differs from the file of the same version in this build")]
    Divergent {
        /// Version of the migration.
        version: i64,
        /// Name of the migration as applied.
        name: String,
    },
    /// The database schema is older than this build and migrations were not
    /// applied (see [`crate::apply_migrations`]).
    #[error("the database schema is behind this build: {pending} migration(s) pending, run apply_migrations")]
    Behind {
        /// Number of migrations of this build not yet applied.
        pending: usize,
    },
    /// refinery reported another failure (a migration statement failed, ...).
    #[error("migration failed")]
    Refinery(#[source] refinery::Error),
}

impl From<refinery::Error> for MigrationError {
    fn from(err: refinery::Error) -> Self {
        use refinery_core::error::Kind;
        match err.kind() {
            Kind::MissingVersion(m) => MigrationError::UnknownVersion {
                version: i64::from(m.version()),
                name: m.name().to_owned(),
            },
            Kind::DivergentVersion(applied, _) => MigrationError::Divergent {
                version: i64::from(applied.version()),
                name: applied.name().to_owned(),
            },
            _ => MigrationError::Refinery(err),
        }
    }
}

/// Where a database's schema stands relative to this build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaStatus {
    /// `(version, name)` of every migration applied, in order.
    pub applied: Vec<(i64, String)>,
    /// `(version, name)` of the migrations of this build not yet applied.
    pub pending: Vec<(i64, String)>,
    /// `(version, name)` of applied migrations this build does not know.
    pub unknown: Vec<(i64, String)>,
}

impl SchemaStatus {
    /// The schema is exactly what this build expects.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// Apply every pending migration. Idempotent: on an up-to-date database it
/// changes nothing. Safe to call from many tasks or processes at once: they
/// take turns under an advisory lock, and all but the first find nothing to do.
///
/// Refuses, with [`MigrationError::UnknownVersion`], a database migrated by a
/// newer release.
pub async fn apply_migrations(pool: &PgPool) -> Result<(), MigrationError> {
    apply_migrations_report(pool).await.map(|_| ())
}

/// [`apply_migrations`], returning the `(version, name)` of each migration it
/// applied (empty when the schema was already current).
pub async fn apply_migrations_report(pool: &PgPool) -> Result<Vec<(i64, String)>, MigrationError> {
    let mut conn = pool.acquire().await.map_err(MigrationError::Database)?;
    lock(&mut conn).await?;
    let mut runner = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    let outcome = runner.run_async(&mut Driver(&mut conn)).await;
    // Unlock whatever happened; if the connection is broken, the server drops
    // the lock with the session.
    let unlocked = unlock(&mut conn).await;
    let report = outcome?;
    unlocked?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_owned()))
        .collect::<Vec<_>>();
    for (version, name) in &applied {
        tracing::info!(version, name, "applied migration");
    }
    Ok(applied)
}

/// Compare the database's applied migrations with this build's, without
/// changing anything.
pub async fn schema_status(pool: &PgPool) -> Result<SchemaStatus, MigrationError> {
    let mut conn = pool.acquire().await.map_err(MigrationError::Database)?;
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    let applied = if history_exists(&mut conn).await? {
        runner.get_applied_migrations_async(&mut Driver(&mut conn)).await?
    } else {
        Vec::new()
    };
    let known = runner.get_migrations();
    let key = |m: &refinery::Migration| (i64::from(m.version()), m.name().to_owned());
    let is_known = |v: i64| known.iter().any(|k| i64::from(k.version()) == v);
    let is_applied = |v: i64| applied.iter().any(|a| i64::from(a.version()) == v);
    let mut pending: Vec<_> = known.iter().map(key).filter(|(v, _)| !is_applied(*v)).collect();
    pending.sort();
    Ok(SchemaStatus {
        unknown: applied.iter().map(key).filter(|(v, _)| !is_known(*v)).collect(),
        applied: applied.iter().map(key).collect(),
        pending,
    })
}

/// Fail unless the schema is exactly what this build expects.
pub(crate) async fn ensure_current(pool: &PgPool) -> Result<(), MigrationError> {
    let status = schema_status(pool).await?;
    if let Some((version, name)) = status.unknown.first() {
        return Err(MigrationError::UnknownVersion {
            version: *version,
            name: name.clone(),
        });
    }
    if !status.pending.is_empty() {
        return Err(MigrationError::Behind {
            pending: status.pending.len(),
        });
    }
    Ok(())
}

async fn lock(conn: &mut PoolConnection<Postgres>) -> Result<(), MigrationError> {
    sqlx::query!("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        .execute(&mut **conn)
        .await
        .map_err(MigrationError::Database)?;
    Ok(())
}

async fn unlock(conn: &mut PoolConnection<Postgres>) -> Result<(), MigrationError> {
    sqlx::query_scalar!("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        .fetch_one(&mut **conn)
        .await
        .map_err(MigrationError::Database)?;
    Ok(())
}

async fn history_exists(conn: &mut PgConnection) -> Result<bool, MigrationError> {
    let found = sqlx::query_scalar!(r#"SELECT to_regclass($1) IS NOT NULL AS "found!""#, HISTORY_TABLE)
        .fetch_one(conn)
        .await
        .map_err(MigrationError::Database)?;
    Ok(found)
}

/// refinery's async driver over a sqlx connection.
struct Driver<'c>(&'c mut PgConnection);

impl AsyncTransaction for Driver<'_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        // refinery hands over a migration and the statement recording it.
        // Sent as one simple-protocol script they run as one implicit
        // transaction: both commit, or neither does.
        let queries: Vec<&str> = queries.collect();
        run_script(self.0, queries.join(";\n")).await?;
        Ok(queries.len())
    }
}

impl AsyncQuery<Vec<refinery::Migration>> for Driver<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<refinery::Migration>, Self::Error> {
        let rows = fetch_script(self.0, query).await?;
        rows.iter().map(applied_migration).collect()
    }
}

impl AsyncMigrate for Driver<'_> {}

// `Executor`'s own methods return boxed futures, which refinery's
// `impl Future + Send` trait methods can hold; `sqlx::raw_sql` cannot be
// proven `Send` there. A string without arguments goes through the simple
// query protocol, so a migration file may hold many statements.

async fn run_script(conn: &mut PgConnection, script: String) -> Result<(), sqlx::Error> {
    conn.execute(script.as_str()).await?;
    Ok(())
}

async fn fetch_script(conn: &mut PgConnection, query: &str) -> Result<Vec<PgRow>, sqlx::Error> {
    conn.fetch_all(query).await
}

/// A row of the history table as refinery writes it: `version int4, name,
/// applied_on` (RFC 3339 text) `, checksum` (decimal text).
fn applied_migration(row: &PgRow) -> Result<refinery::Migration, sqlx::Error> {
    let decode = |column: &str, detail: String| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: detail.into(),
    };
    let version: i32 = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    let applied_on: String = row.try_get(2)?;
    let checksum: String = row.try_get(3)?;
    let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339).map_err(|e| decode("applied_on", e.to_string()))?;
    let checksum = checksum.parse::<u64>().map_err(|e| decode("checksum", e.to_string()))?;
    Ok(refinery::Migration::applied(version, name, applied_on, checksum))
}
