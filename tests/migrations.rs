//! Migrations: concurrent, idempotent, and refusing a newer schema.

mod common;

use std::time::Duration;

use common::TestDb;
use ff_backend_postgres::{ConnectOptions, Error, MigrationError, PostgresBackend, apply_migrations, schema_status};
use ff_core::backend::PrepareOutcome;
use ff_core::engine_backend::EngineBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_migrators_all_succeed() {
    let db = TestDb::empty().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move { apply_migrations(&pool).await }));
    }
    for t in tasks {
        t.await.unwrap().expect("every concurrent migrator succeeds");
    }
    let status = schema_status(&db.pool).await.unwrap();
    assert!(status.is_current(), "{status:?}");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM ff_schema_history")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, status.applied.len(), "each migration recorded once");
}

#[tokio::test]
async fn migrating_a_current_schema_is_a_no_op() {
    let db = TestDb::new().await;
    let before: Vec<(i32, String)> =
        sqlx::query_as("SELECT version, applied_on FROM ff_schema_history ORDER BY version")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    apply_migrations(&db.pool).await.unwrap();
    let backend = PostgresBackend::from_pool(db.pool.clone(), Default::default());
    assert_eq!(backend.prepare().await.unwrap(), PrepareOutcome::NoOp);
    let after: Vec<(i32, String)> =
        sqlx::query_as("SELECT version, applied_on FROM ff_schema_history ORDER BY version")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn prepare_applies_pending_migrations() {
    let db = TestDb::empty().await;
    let backend = PostgresBackend::from_pool(db.pool.clone(), Default::default());
    match backend.prepare().await.unwrap() {
        PrepareOutcome::Applied { description } => assert!(description.contains("V1__core_schema"), "{description}"),
        other => panic!("expected Applied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_newer_unknown_migration_is_refused() {
    let db = TestDb::new().await;
    sqlx::query(
        "INSERT INTO ff_schema_history (version, name, applied_on, checksum)
         VALUES (9999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    match apply_migrations(&db.pool).await {
        Err(MigrationError::UnknownVersion { version, name }) => {
            assert_eq!(version, 9999);
            assert_eq!(name, "from_the_future");
        }
        other => panic!("expected UnknownVersion, got {other:?}"),
    }
    // Connecting refuses it too, with the same clear error.
    match PostgresBackend::connect(&db.url()).await {
        Err(Error::Migration(MigrationError::UnknownVersion { version: 9999, .. })) => {}
        other => panic!("expected UnknownVersion, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn connect_refuses_an_unmigrated_database_unless_asked_to_migrate() {
    let db = TestDb::empty().await;
    match PostgresBackend::connect(&db.url()).await {
        Err(Error::Migration(MigrationError::Behind { pending })) => assert!(pending >= 1),
        other => panic!("expected Behind, got {:?}", other.map(|_| ())),
    }
    let backend = PostgresBackend::connect_with(ConnectOptions::new(db.url()).apply_migrations(true))
        .await
        .expect("connect and migrate");
    backend.ping().await.unwrap();
    assert_eq!(backend.backend_label(), "postgres");
}

#[tokio::test]
async fn connect_reports_an_unreachable_server() {
    let options =
        ConnectOptions::new("postgres://postgres@127.0.0.1:1/nowhere").acquire_timeout(Duration::from_secs(1));
    let err = PostgresBackend::connect_with(options).await.map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");
}
