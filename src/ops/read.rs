//! Reads: `describe_execution`.

use std::collections::BTreeMap;

use ff_core::contracts::{AttemptSummary, ExecutionSnapshot, LeaseSummary};
use ff_core::engine_error::EngineError;
use ff_core::types::{
    AttemptId, AttemptIndex, ExecutionId, FlowId, LaneId, LeaseEpoch, LeaseId, Namespace, TimestampMs, WorkerInstanceId,
};

use crate::error::corruption;
use crate::model::{ExecKey, ExecRow};
use crate::ops::Ctx;
use crate::repo::ExecRepo;

/// Where an execution stands: state, current attempt, current lease.
pub(crate) async fn describe_execution(ctx: &Ctx, id: &ExecutionId) -> Result<Option<ExecutionSnapshot>, EngineError> {
    let key = ExecKey::from_id(id, &ctx.partitions)?;
    let row = ctx
        .db
        .single("describe_execution", |conn| {
            Box::pin(async move { Ok(ExecRepo::get(conn, key).await?) })
        })
        .await?;
    row.map(|row| snapshot(id.clone(), row)).transpose()
}

/// The one mapping of a stored execution into an [`ExecutionSnapshot`].
pub(crate) fn snapshot(id: ExecutionId, row: ExecRow) -> Result<ExecutionSnapshot, EngineError> {
    let tags: BTreeMap<String, String> =
        serde_json::from_value(row.tags).map_err(|e| corruption(format!("ff_exec_core.tags of {id}: {e}")))?;
    let attempt_index = AttemptIndex::new(row.attempt_index.unsigned_abs());
    let current_attempt = row
        .attempt_id
        .map(|attempt_id| AttemptSummary::new(AttemptId::from_uuid(attempt_id), attempt_index));
    let current_lease = match (row.lease_expires_at_ms, row.lease_epoch) {
        (Some(expires), Some(epoch)) => {
            let mut lease = LeaseSummary::new(
                LeaseEpoch::new(epoch.unsigned_abs()),
                WorkerInstanceId::new(row.worker_instance_id.unwrap_or_default()),
                TimestampMs::from_millis(expires),
            )
            .with_attempt_index(attempt_index);
            if let Some(lease_id) = row.lease_id {
                lease = lease.with_lease_id(LeaseId::from_uuid(lease_id));
            }
            if let Some(at) = row.last_renewed_at_ms {
                lease = lease.with_last_heartbeat_at(TimestampMs::from_millis(at));
            }
            Some(lease)
        }
        _ => None,
    };
    // Attempt indexes are dense from 0, so the count follows from the current one.
    let total_attempt_count = row.attempt_index.unsigned_abs() + u32::from(current_attempt.is_some());
    let blocking_reason = Some(row.blocking_reason).filter(|r| r != "none");
    Ok(ExecutionSnapshot::new(
        id,
        row.flow_id.map(FlowId::from_uuid),
        LaneId::new(row.lane_id),
        Namespace::new(row.namespace),
        row.public_state.0,
        blocking_reason,
        row.blocking_detail,
        current_attempt,
        current_lease,
        None,
        TimestampMs::from_millis(row.created_at_ms),
        TimestampMs::from_millis(row.last_mutation_at_ms),
        total_attempt_count,
        tags,
    ))
}
