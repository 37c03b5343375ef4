//! Operator views: lane status and execution reports.

use std::collections::BTreeMap;

use ff_core::engine_error::EngineError;
use ff_core::types::ExecutionId;

use crate::admin::{ExecutionReport, LaneStatus};
use crate::model::ExecKey;
use crate::ops::{Ctx, read};
use crate::repo::ReportRepo;
use crate::tx::Isolation;

/// How many events an execution report shows.
const REPORT_EVENTS: i64 = 20;

/// Every lane with its executions per state and its leases.
pub(crate) async fn lane_status(ctx: &Ctx) -> Result<Vec<LaneStatus>, EngineError> {
    let now = ctx.now();
    let (states, leases) = ctx
        .db
        .tx("lane_status", Isolation::RepeatableRead, |conn| {
            Box::pin(async move {
                let states = ReportRepo::lane_states(conn).await?;
                let leases = ReportRepo::lane_leases(conn, now).await?;
                Ok((states, leases))
            })
        })
        .await?;
    let mut lanes: BTreeMap<String, LaneStatus> = BTreeMap::new();
    for row in states {
        let lane = lanes.entry(row.lane_id.clone()).or_insert_with(|| LaneStatus {
            lane_id: row.lane_id,
            ..LaneStatus::default()
        });
        if row.public_state == "waiting" {
            lane.oldest_waiting_created_at_ms = row.oldest_created_at_ms;
        }
        lane.executions.insert(row.public_state, row.executions);
    }
    for row in leases {
        if let Some(lane) = lanes.get_mut(&row.lane_id) {
            lane.live_leases = row.live;
            lane.expired_leases = row.expired;
        }
    }
    Ok(lanes.into_values().collect())
}

/// One execution in full, or `None` when there is no such execution.
pub(crate) async fn inspect(ctx: &Ctx, id: &ExecutionId) -> Result<Option<ExecutionReport>, EngineError> {
    let key = ExecKey::from_id(id, &ctx.partitions)?;
    let rows = ctx
        .db
        .tx("inspect", Isolation::RepeatableRead, |conn| {
            Box::pin(async move {
                let Some(detail) = ReportRepo::exec_detail(conn, key).await? else {
                    return Ok(None);
                };
                let snapshot = crate::repo::ExecRepo::get(conn, key).await?;
                let attempts = ReportRepo::attempts(conn, key).await?;
                let events = ReportRepo::recent_events(conn, key, REPORT_EVENTS).await?;
                Ok(Some((detail, snapshot, attempts, events)))
            })
        })
        .await?;
    let Some((detail, Some(row), attempts, events)) = rows else {
        return Ok(None);
    };
    Ok(Some(ExecutionReport {
        snapshot: read::snapshot(id.clone(), row)?,
        execution_kind: detail.execution_kind,
        priority: detail.priority,
        required_capabilities: detail.required_capabilities,
        retry_count: detail.retry_count,
        reclaim_count: detail.reclaim_count,
        progress_percent: detail.progress_percent,
        progress_message: detail.progress_message,
        failure_reason: detail.failure_reason,
        attempts,
        recent_events: events,
    }))
}
