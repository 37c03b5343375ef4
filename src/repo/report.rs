//! Operator reads across tables: lane status and execution reports.
//! Nothing here is on a hot path; these statements may scan.

use sqlx::PgConnection;

use crate::admin::{AttemptReport, EventReport};
use crate::model::ExecKey;

/// Repository of the operator reads.
pub(crate) struct ReportRepo;

/// Executions of one lane in one public state.
pub(crate) struct LaneStateRow {
    pub lane_id: String,
    pub public_state: String,
    pub executions: i64,
    pub oldest_created_at_ms: Option<i64>,
}

/// Leases held on one lane.
pub(crate) struct LaneLeaseRow {
    pub lane_id: String,
    pub live: i64,
    pub expired: i64,
}

/// The execution columns a report adds to the snapshot.
pub(crate) struct ExecDetailRow {
    pub execution_kind: String,
    pub priority: i32,
    pub required_capabilities: Vec<String>,
    pub retry_count: i32,
    pub reclaim_count: i32,
    pub progress_percent: Option<i16>,
    pub progress_message: Option<String>,
    pub failure_reason: Option<String>,
}

impl ReportRepo {
    /// Executions per lane and public state, with the oldest creation time.
    pub(crate) async fn lane_states(conn: &mut PgConnection) -> Result<Vec<LaneStateRow>, sqlx::Error> {
        sqlx::query_as!(
            LaneStateRow,
            r#"
            SELECT lane_id, public_state, count(*) AS "executions!", min(created_at_ms) AS oldest_created_at_ms
              FROM ff_exec_core
             GROUP BY lane_id, public_state
             ORDER BY lane_id, public_state
            "#
        )
        .fetch_all(conn)
        .await
    }

    /// Live and expired leases per lane.
    pub(crate) async fn lane_leases(
        conn: &mut PgConnection,
        now: Option<i64>,
    ) -> Result<Vec<LaneLeaseRow>, sqlx::Error> {
        sqlx::query_as!(
            LaneLeaseRow,
            r#"
            SELECT e.lane_id,
                   count(*) FILTER (WHERE a.lease_expires_at_ms > t.now) AS "live!",
                   count(*) FILTER (WHERE a.lease_expires_at_ms <= t.now) AS "expired!"
              FROM ff_exec_core e
              JOIN ff_attempt a
                ON a.partition_key = e.partition_key AND a.execution_id = e.execution_id
               AND a.attempt_index = e.attempt_index,
                   (SELECT COALESCE($1, ff_now_ms()) AS now) t
             WHERE e.lifecycle_phase = 'active' AND a.lease_expires_at_ms IS NOT NULL
             GROUP BY e.lane_id
             ORDER BY e.lane_id
            "#,
            now,
        )
        .fetch_all(conn)
        .await
    }

    /// The columns of an execution a report shows beyond its snapshot.
    pub(crate) async fn exec_detail(
        conn: &mut PgConnection,
        key: ExecKey,
    ) -> Result<Option<ExecDetailRow>, sqlx::Error> {
        sqlx::query_as!(
            ExecDetailRow,
            r#"
            SELECT execution_kind, priority, required_capabilities, retry_count, reclaim_count,
                   progress_percent, progress_message, failure_reason
              FROM ff_exec_core
             WHERE partition_key = $1 AND execution_id = $2
            "#,
            key.partition,
            key.id,
        )
        .fetch_optional(conn)
        .await
    }

    /// Every attempt of an execution, oldest first.
    pub(crate) async fn attempts(conn: &mut PgConnection, key: ExecKey) -> Result<Vec<AttemptReport>, sqlx::Error> {
        sqlx::query_as!(
            AttemptReport,
            r#"
            SELECT attempt_index, attempt_type, lifecycle, lease_epoch, lease_expires_at_ms,
                   worker_instance_id, started_at_ms, ended_at_ms, failure_class, failure_reason
              FROM ff_attempt
             WHERE partition_key = $1 AND execution_id = $2
             ORDER BY attempt_index
            "#,
            key.partition,
            key.id,
        )
        .fetch_all(conn)
        .await
    }

    /// The most recent lease and completion events of an execution, newest
    /// first.
    pub(crate) async fn recent_events(
        conn: &mut PgConnection,
        key: ExecKey,
        limit: i64,
    ) -> Result<Vec<EventReport>, sqlx::Error> {
        sqlx::query_as!(
            EventReport,
            r#"
            SELECT family AS "family!", event_id AS "event_id!", kind AS "kind!",
                   attempt_index AS "attempt_index!", detail, occurred_at_ms AS "occurred_at_ms!"
              FROM (
                SELECT 'lease' AS family, event_id, event_kind AS kind, attempt_index,
                       concat_ws(' ', 'epoch ' || lease_epoch, worker_instance_id, reason) AS detail, occurred_at_ms
                  FROM ff_lease_event
                 WHERE partition_key = $1 AND execution_id = $2
                UNION ALL
                SELECT 'completion', event_id, outcome, attempt_index, NULL, occurred_at_ms
                  FROM ff_completion_event
                 WHERE partition_key = $1 AND execution_id = $2
              ) ev
             ORDER BY occurred_at_ms DESC, family, event_id DESC
             LIMIT $3
            "#,
            key.partition,
            key.id,
            limit,
        )
        .fetch_all(conn)
        .await
    }
}
