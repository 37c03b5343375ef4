//! The command-line tool's bad-input paths: each is one clear line on
//! stderr and a non-zero exit, never a panic. And its good paths, on a
//! database of their own.

use std::process::{Command, Output};

use sqlx::Connection;

fn ffpg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ffpg"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run ffpg")
}

fn admin_url() -> String {
    std::env::var("FF_PG_ADMIN_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn server_url(db: &str) -> String {
    let admin = admin_url();
    format!("{}/{db}", admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin))
}

/// Exactly one line on stderr, starting `error: ` and containing `needle`;
/// a failing exit status; no panic.
fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got {:?}: {stderr}",
        out.status
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn a_url_that_is_not_postgres_is_refused() {
    let out = ffpg(&["--database-url", "mysql://root@localhost/db", "status"]);
    assert_one_line_error(&out, "invalid database URL");
}

#[test]
fn a_malformed_url_is_refused() {
    let out = ffpg(&["--database-url", "postgres://[bad", "status"]);
    assert_one_line_error(&out, "invalid database URL");
}

#[test]
fn an_unreachable_server_is_one_line() {
    let out = ffpg(&["--database-url", "postgres://postgres@127.0.0.1:1/x", "status"]);
    assert_one_line_error(&out, "cannot connect to 127.0.0.1:1");
}

#[test]
fn a_malformed_execution_id_is_refused() {
    let out = ffpg(&["--database-url", &server_url("postgres"), "inspect", "not-an-id"]);
    assert_one_line_error(&out, "invalid execution id");
}

#[test]
fn unknown_arguments_are_usage_errors() {
    let out = ffpg(&["frobnicate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    let out = ffpg(&[
        "bench",
        "--only",
        "nonsense",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/x",
    ]);
    assert!(!out.status.success());
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["migrate", "status", "inspect", "demo", "bench"] {
        let out = ffpg(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{sub} --help");
    }
}

/// A database for one test; created by the tool itself, dropped after.
struct ScratchDb(String);

impl ScratchDb {
    fn new() -> Self {
        Self(format!("ff_t_cli_{}", uuid::Uuid::new_v4().simple()))
    }
    fn url(&self) -> String {
        server_url(&self.0)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.0.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
}

#[test]
fn a_schema_that_is_behind_says_to_migrate_then_migrate_fixes_it() {
    let db = ScratchDb::new();
    let out = ffpg(&["--database-url", &db.url(), "status"]);
    assert_one_line_error(&out, "does not exist");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {}", db.0))
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let out = ffpg(&["--database-url", &db.url(), "status"]);
    assert_one_line_error(&out, "run `ffpg migrate`");

    let out = ffpg(&["--database-url", &db.url(), "migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema is current"));

    let out = ffpg(&["--database-url", &db.url(), "migrate", "--status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied  V1__core_schema"));

    let out = ffpg(&["--database-url", &db.url(), "status", "--json"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    let unknown = "{fp:1}:00000000-0000-0000-0000-000000000001";
    let out = ffpg(&["--database-url", &db.url(), "inspect", unknown]);
    assert_one_line_error(&out, "no execution");
}

#[test]
fn a_schema_from_a_newer_release_is_refused() {
    let db = ScratchDb::new();
    assert!(ffpg(&["--database-url", &db.url(), "migrate"]).status.success());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
        sqlx::query(
            "INSERT INTO ff_schema_history (version, name, applied_on, checksum)
             VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    });
    let out = ffpg(&["--database-url", &db.url(), "status"]);
    assert_one_line_error(&out, "V999__from_the_future");
}

#[test]
fn demo_then_status_and_inspect() {
    let db = ScratchDb::new();
    let out = ffpg(&["--database-url", &db.url(), "demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("all 6 executions completed"), "{stdout}");
    assert!(stdout.contains("failed; retry scheduled"), "{stdout}");
    assert!(stdout.contains("delayed by 1s"), "{stdout}");

    let out = ffpg(&["--database-url", &db.url(), "status", "--json"]);
    let lanes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lanes[0]["executions"]["completed"], 6);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id: String = rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
        sqlx::query_scalar(
            "SELECT '{fp:' || partition_key || '}:' || execution_id FROM ff_exec_core WHERE retry_count = 1",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    });
    let out = ffpg(&["--database-url", &db.url(), "inspect", &id, "--json"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["public_state"], "completed");
    assert_eq!(report["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(report["attempts"][0]["failure_class"], "transient");
    let out = ffpg(&["--database-url", &db.url(), "inspect", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("#1 retry"));
}
