//! `impl EngineBackend for PostgresBackend`: one call per method into `ops`.
//!
//! Methods whose family has not landed yet return
//! `EngineError::Unavailable { op }`, and [`capabilities`] says so.
//!
//! [`capabilities`]: EngineBackend::capabilities

use std::time::Duration;

use async_trait::async_trait;
use ff_core::backend::{
    AppendFrameOutcome, CancelFlowPolicy, CancelFlowWait, CapabilitySet, ClaimPolicy, FailOutcome, FailureClass,
    FailureReason, Frame, Handle, LeaseRenewal, PendingWaitpoint, PrepareOutcome, ReclaimToken, ResumeSignal,
    SummaryDocument, TailVisibility, UsageDimensions,
};
use ff_core::capability::{BackendIdentity, Capabilities, Supports, Version};
use ff_core::contracts::{
    CancelFlowResult, ClaimResumedExecutionArgs, ClaimResumedExecutionResult, CreateExecutionArgs,
    CreateExecutionResult, DeliverSignalArgs, DeliverSignalResult, EdgeDependencyPolicy, EdgeDirection, EdgeSnapshot,
    ExecutionSnapshot, FlowSnapshot, ListExecutionsPage, ListFlowsPage, ListLanesPage, ListSuspendedPage,
    ReportUsageResult, SetEdgeGroupPolicyResult, StreamCursor, StreamFrames, SuspendArgs, SuspendOutcome,
};
use ff_core::engine_backend::EngineBackend;
use ff_core::engine_error::EngineError;
use ff_core::partition::PartitionKey;
use ff_core::types::{AttemptIndex, BudgetId, EdgeId, ExecutionId, FlowId, LaneId, TimestampMs};

use super::PostgresBackend;
use crate::ops::{claim, finish, ingress, lease, read};

/// The `family` this backend reports.
const FAMILY: &str = "postgres";

fn unavailable<T>(op: &'static str) -> Result<T, EngineError> {
    Err(EngineError::Unavailable { op })
}

#[async_trait]
impl EngineBackend for PostgresBackend {
    // ── Attempt lifecycle ──

    async fn claim(
        &self,
        lane: &LaneId,
        capabilities: &CapabilitySet,
        policy: ClaimPolicy,
    ) -> Result<Option<Handle>, EngineError> {
        claim::claim(&self.ctx, &self.work, lane, capabilities, &policy).await
    }

    async fn renew(&self, handle: &Handle) -> Result<LeaseRenewal, EngineError> {
        lease::renew(&self.ctx, handle).await
    }

    async fn progress(&self, handle: &Handle, percent: Option<u8>, message: Option<String>) -> Result<(), EngineError> {
        lease::progress(&self.ctx, handle, percent, message).await
    }

    async fn append_frame(&self, _handle: &Handle, _frame: Frame) -> Result<AppendFrameOutcome, EngineError> {
        unavailable("append_frame")
    }

    async fn complete(&self, handle: &Handle, payload: Option<Vec<u8>>) -> Result<(), EngineError> {
        finish::complete(&self.ctx, handle, payload.as_deref()).await
    }

    async fn fail(
        &self,
        handle: &Handle,
        reason: FailureReason,
        classification: FailureClass,
    ) -> Result<FailOutcome, EngineError> {
        finish::fail(&self.ctx, handle, &reason, classification).await
    }

    async fn cancel(&self, handle: &Handle, reason: &str) -> Result<(), EngineError> {
        finish::cancel(&self.ctx, handle, reason).await
    }

    async fn suspend(&self, _handle: &Handle, _args: SuspendArgs) -> Result<SuspendOutcome, EngineError> {
        unavailable("suspend")
    }

    async fn create_waitpoint(
        &self,
        _handle: &Handle,
        _waitpoint_key: &str,
        _expires_in: Duration,
    ) -> Result<PendingWaitpoint, EngineError> {
        unavailable("create_waitpoint")
    }

    async fn observe_signals(&self, _handle: &Handle) -> Result<Vec<ResumeSignal>, EngineError> {
        unavailable("observe_signals")
    }

    async fn claim_from_reclaim(&self, token: ReclaimToken) -> Result<Option<Handle>, EngineError> {
        claim::claim_from_reclaim(&self.ctx, &token).await
    }

    async fn delay(&self, handle: &Handle, delay_until: TimestampMs) -> Result<(), EngineError> {
        finish::delay(&self.ctx, handle, delay_until).await
    }

    async fn wait_children(&self, handle: &Handle) -> Result<(), EngineError> {
        finish::wait_children(&self.ctx, handle).await
    }

    // ── Reads ──

    async fn describe_execution(&self, id: &ExecutionId) -> Result<Option<ExecutionSnapshot>, EngineError> {
        read::describe_execution(&self.ctx, id).await
    }

    async fn describe_flow(&self, _id: &FlowId) -> Result<Option<FlowSnapshot>, EngineError> {
        unavailable("describe_flow")
    }

    async fn list_edges(&self, _flow_id: &FlowId, _direction: EdgeDirection) -> Result<Vec<EdgeSnapshot>, EngineError> {
        unavailable("list_edges")
    }

    async fn describe_edge(&self, _flow_id: &FlowId, _edge_id: &EdgeId) -> Result<Option<EdgeSnapshot>, EngineError> {
        unavailable("describe_edge")
    }

    async fn resolve_execution_flow_id(&self, _eid: &ExecutionId) -> Result<Option<FlowId>, EngineError> {
        unavailable("resolve_execution_flow_id")
    }

    async fn list_flows(
        &self,
        _partition: PartitionKey,
        _cursor: Option<FlowId>,
        _limit: usize,
    ) -> Result<ListFlowsPage, EngineError> {
        unavailable("list_flows")
    }

    async fn list_lanes(&self, _cursor: Option<LaneId>, _limit: usize) -> Result<ListLanesPage, EngineError> {
        unavailable("list_lanes")
    }

    async fn list_suspended(
        &self,
        _partition: PartitionKey,
        _cursor: Option<ExecutionId>,
        _limit: usize,
    ) -> Result<ListSuspendedPage, EngineError> {
        unavailable("list_suspended")
    }

    async fn list_executions(
        &self,
        _partition: PartitionKey,
        _cursor: Option<ExecutionId>,
        _limit: usize,
    ) -> Result<ListExecutionsPage, EngineError> {
        unavailable("list_executions")
    }

    // ── Signals and flows ──

    async fn deliver_signal(&self, _args: DeliverSignalArgs) -> Result<DeliverSignalResult, EngineError> {
        unavailable("deliver_signal")
    }

    async fn claim_resumed_execution(
        &self,
        _args: ClaimResumedExecutionArgs,
    ) -> Result<ClaimResumedExecutionResult, EngineError> {
        unavailable("claim_resumed_execution")
    }

    async fn cancel_flow(
        &self,
        _id: &FlowId,
        _policy: CancelFlowPolicy,
        _wait: CancelFlowWait,
    ) -> Result<CancelFlowResult, EngineError> {
        unavailable("cancel_flow")
    }

    async fn set_edge_group_policy(
        &self,
        _flow_id: &FlowId,
        _downstream_execution_id: &ExecutionId,
        _policy: EdgeDependencyPolicy,
    ) -> Result<SetEdgeGroupPolicyResult, EngineError> {
        unavailable("set_edge_group_policy")
    }

    // ── Budget ──

    async fn report_usage(
        &self,
        _handle: &Handle,
        _budget: &BudgetId,
        _dimensions: UsageDimensions,
    ) -> Result<ReportUsageResult, EngineError> {
        unavailable("report_usage")
    }

    // ── Streams ──

    async fn read_stream(
        &self,
        _execution_id: &ExecutionId,
        _attempt_index: AttemptIndex,
        _from: StreamCursor,
        _to: StreamCursor,
        _count_limit: u64,
    ) -> Result<StreamFrames, EngineError> {
        unavailable("read_stream")
    }

    async fn tail_stream(
        &self,
        _execution_id: &ExecutionId,
        _attempt_index: AttemptIndex,
        _after: StreamCursor,
        _block_ms: u64,
        _count_limit: u64,
        _visibility: TailVisibility,
    ) -> Result<StreamFrames, EngineError> {
        unavailable("tail_stream")
    }

    async fn read_summary(
        &self,
        _execution_id: &ExecutionId,
        _attempt_index: AttemptIndex,
    ) -> Result<Option<SummaryDocument>, EngineError> {
        unavailable("read_summary")
    }

    // ── Ingress ──

    async fn create_execution(&self, args: CreateExecutionArgs) -> Result<CreateExecutionResult, EngineError> {
        ingress::create_execution(&self.ctx, args).await
    }

    // ── Cross-cutting ──

    async fn ping(&self) -> Result<(), EngineError> {
        crate::ops::health::ping(&self.ctx).await
    }

    fn backend_label(&self) -> &'static str {
        FAMILY
    }

    fn capabilities(&self) -> Capabilities {
        // Only what is implemented: every flag of a method that still
        // returns `Unavailable` stays false.
        let mut supports = Supports::none();
        supports.prepare = true;
        Capabilities::new(
            BackendIdentity::new(FAMILY, crate_version(), "attempt-lifecycle"),
            supports,
        )
    }

    async fn prepare(&self) -> Result<PrepareOutcome, EngineError> {
        crate::ops::health::prepare(&self.ctx).await
    }

    async fn shutdown_prepare(&self, grace: Duration) -> Result<(), EngineError> {
        self.stop_scanners();
        crate::ops::health::drain(&self.ctx, grace).await
    }
}

/// This crate's version, as ff-core's [`Version`].
fn crate_version() -> Version {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0);
    Version::new(
        part(env!("CARGO_PKG_VERSION_MAJOR")),
        part(env!("CARGO_PKG_VERSION_MINOR")),
        part(env!("CARGO_PKG_VERSION_PATCH")),
    )
}
