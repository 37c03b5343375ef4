//! Schema conventions, checked against the catalog of a migrated database.

mod common;

use common::TestDb;

#[tokio::test]
async fn every_table_has_a_primary_key() {
    let db = TestDb::new().await;
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r'
            AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(missing.is_empty(), "tables without a primary key: {missing:?}");
}

#[tokio::test]
async fn execution_and_flow_tables_lead_their_keys_with_partition_key() {
    let db = TestDb::new().await;
    let offenders: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_constraint k
           JOIN pg_class c ON c.oid = k.conrelid
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
          WHERE k.contype = 'p' AND c.relname LIKE 'ff\\_%'
            AND EXISTS (SELECT 1 FROM pg_attribute p WHERE p.attrelid = c.oid AND p.attname = 'partition_key')
            AND c.relname NOT LIKE '%\\_event'
            AND a.attname <> 'partition_key'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        offenders.is_empty(),
        "primary keys not led by partition_key: {offenders:?}"
    );
}

#[tokio::test]
async fn every_state_column_is_constrained() {
    let db = TestDb::new().await;
    let state_columns = [
        ("ff_exec_core", "lifecycle_phase"),
        ("ff_exec_core", "ownership_state"),
        ("ff_exec_core", "eligibility_state"),
        ("ff_exec_core", "blocking_reason"),
        ("ff_exec_core", "terminal_outcome"),
        ("ff_exec_core", "attempt_state"),
        ("ff_exec_core", "public_state"),
        ("ff_attempt", "lifecycle"),
        ("ff_attempt", "attempt_type"),
        ("ff_flow_core", "public_flow_state"),
        ("ff_edge", "edge_state"),
        ("ff_edge_group", "group_state"),
        ("ff_waitpoint_pending", "state"),
        ("ff_lane_registry", "lane_state"),
        ("ff_completion_event", "outcome"),
        ("ff_lease_event", "event_kind"),
    ];
    for (table, column) in state_columns {
        let constraints: Vec<String> = sqlx::query_scalar(
            "SELECT k.conname::text FROM pg_constraint k
               JOIN pg_class c ON c.oid = k.conrelid
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (k.conkey)
              WHERE c.relname = $1 AND a.attname = $2 AND k.contype = 'c' AND k.conname LIKE $1 || '\\_%'",
        )
        .bind(table)
        .bind(column)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert!(
            !constraints.is_empty(),
            "{table}.{column} is guarded by no named CHECK constraint"
        );
    }
}

#[tokio::test]
async fn state_checks_refuse_bad_literals_and_inconsistent_rows() {
    let db = TestDb::new().await;
    let insert = |lifecycle: &str, eligibility: &str, public_state: &str| {
        format!(
            "INSERT INTO ff_exec_core (partition_key, execution_id, lane_id, lifecycle_phase, eligibility_state,
                                       public_state, eligible_at_ms)
             VALUES (0, gen_random_uuid(), 'l', '{lifecycle}', '{eligibility}', '{public_state}', 1)"
        )
    };
    let refused = |sql: String| {
        let pool = db.pool.clone();
        async move {
            match sqlx::query(&sql).execute(&pool).await {
                Err(sqlx::Error::Database(e)) => (e.constraint().map(str::to_owned), e.message().to_owned()),
                other => panic!("expected a check violation, got {other:?}"),
            }
        }
    };
    let (constraint, message) = refused(insert("running", "eligible_now", "waiting")).await;
    assert_eq!(constraint.as_deref(), Some(ff_backend_postgres::constraint::EXEC_STATE));
    assert!(message.contains("lifecycle_phase 'running'"), "{message}");
    let (_, message) = refused(insert("runnable", "not_eligible_until_time", "waiting")).await;
    assert!(message.contains("public_state 'waiting' is not derived"), "{message}");
    sqlx::query(&insert("runnable", "not_eligible_until_time", "delayed"))
        .execute(&db.pool)
        .await
        .expect("a consistent row is accepted");
}

#[tokio::test]
async fn constraints_named_in_code_exist() {
    let db = TestDb::new().await;
    for name in ff_backend_postgres::constraint::ALL {
        let found: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = $1)")
            .bind(name)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(
            found,
            "constraint {name} is named in src/error.rs but not in the schema"
        );
    }
}

#[tokio::test]
async fn every_outbox_has_a_monotonic_id_and_a_transaction_id() {
    let db = TestDb::new().await;
    let outboxes: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relname LIKE 'ff\\_%\\_event' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(outboxes.len(), 4, "{outboxes:?}");
    for table in outboxes {
        let identity: Option<String> = sqlx::query_scalar(
            "SELECT attidentity::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'event_id'",
        )
        .bind(&table)
        .fetch_optional(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            identity.as_deref(),
            Some("a"),
            "{table}.event_id is not GENERATED ALWAYS AS IDENTITY"
        );
        let tx_id: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'tx_id')",
        )
        .bind(&table)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(tx_id, "{table} has no tx_id");
    }
}

#[tokio::test]
async fn the_claim_query_uses_the_claim_index() {
    let db = TestDb::new().await;
    // Enough rows that a sequential scan would be the cheaper plan without a fitting index.
    sqlx::query(
        "INSERT INTO ff_exec_core (partition_key, execution_id, lane_id, created_at_ms)
         SELECT (g % 256)::smallint, gen_random_uuid(), 'lane-' || (g % 50), g FROM generate_series(1, 20000) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE ff_exec_core").execute(&db.pool).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT partition_key, execution_id FROM ff_exec_core
          WHERE lane_id = 'lane-7' AND lifecycle_phase = 'runnable' AND eligibility_state = 'eligible_now'
            AND ff_caps_satisfied(required_capabilities, '{}'::text[])
          ORDER BY priority DESC, created_at_ms LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("ff_exec_core_claim_idx"), "{plan}");
    assert!(!plan.contains("Sort"), "the index should serve the order: {plan}");
}
