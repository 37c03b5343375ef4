//! Handles and fencing.
//!
//! A [`Handle`] carries, in ff-core's `handle_codec` wire format, the fence a
//! lease-bound call must match: `(execution, attempt_index, lease_epoch)`.
//! Every lease-bound statement names that fence and requires the lease to be
//! live by the database clock. When it matches nothing, [`why_not_live`]
//! reads what stands there instead and picks the typed error.

use crate::error::invalid_input;
use crate::model::{ExecKey, Fence, FenceView, literal_of};
use crate::repo::ExecRepo;
use crate::repo::{GrantedLease, LeaseGrant};
use ff_core::backend::{BackendTag, Handle, HandleKind};
use ff_core::contracts::ReclaimGrant;
use ff_core::engine_error::{ContentionKind, EngineError, StateKind, ValidationKind};
use ff_core::handle_codec::{self, HandlePayload};
use ff_core::partition::PartitionConfig;
use ff_core::state::{LifecyclePhase, TerminalOutcome};
use ff_core::types::{AttemptId, AttemptIndex, LaneId, LeaseEpoch, LeaseId, WorkerInstanceId};
use sqlx::PgConnection;

/// Decode a handle into the fence it carries, refusing one minted by another
/// backend (`HandleFromOtherBackend`) or one that does not parse (`Corruption`).
pub(crate) fn decode(handle: &Handle, partitions: &PartitionConfig) -> Result<Fence, EngineError> {
    let other_backend = |actual: BackendTag| EngineError::Validation {
        kind: ValidationKind::HandleFromOtherBackend,
        detail: format!("expected={:?} actual={actual:?}", BackendTag::Postgres),
    };
    if handle.backend != BackendTag::Postgres {
        return Err(other_backend(handle.backend));
    }
    let decoded = handle_codec::decode(&handle.opaque)?;
    if decoded.tag != BackendTag::Postgres {
        return Err(other_backend(decoded.tag));
    }
    let payload = decoded.payload;
    let corrupt = |detail: String| EngineError::Validation {
        kind: ValidationKind::Corruption,
        detail: format!("handle_codec: {detail}"),
    };
    let attempt_index = i32::try_from(payload.attempt_index.0)
        .map_err(|_| corrupt(format!("attempt_index {} out of range", payload.attempt_index)))?;
    let lease_epoch = i64::try_from(payload.lease_epoch.0)
        .map_err(|_| corrupt(format!("lease_epoch {} out of range", payload.lease_epoch)))?;
    let key = ExecKey::from_id(&payload.execution_id, partitions)?;
    Ok(Fence {
        key,
        attempt_index,
        lease_epoch,
    })
}

/// Encode the handle of a lease just granted: `Resumed` when it resumed an
/// interrupted attempt, `Fresh` when it started one.
pub(crate) fn mint(
    granted: &GrantedLease,
    grant: &LeaseGrant<'_>,
    lane_id: &LaneId,
    worker_instance_id: &WorkerInstanceId,
) -> Result<Handle, EngineError> {
    let payload = HandlePayload::new(
        granted.key.execution_id()?,
        AttemptIndex::new(granted.attempt_index.unsigned_abs()),
        AttemptId::from_uuid(granted.attempt_id),
        LeaseId::from_uuid(grant.lease_id),
        LeaseEpoch::new(granted.lease_epoch.unsigned_abs()),
        grant.ttl_ms.unsigned_abs(),
        lane_id.clone(),
        worker_instance_id.clone(),
    );
    let kind = if granted.resumed {
        HandleKind::Resumed
    } else {
        HandleKind::Fresh
    };
    Ok(Handle::new(
        BackendTag::Postgres,
        kind,
        handle_codec::encode(BackendTag::Postgres, &payload),
    ))
}

/// The execution a reclaim grant names, checked against its partition key.
pub(crate) fn grant_key(grant: &ReclaimGrant, partitions: &PartitionConfig) -> Result<ExecKey, EngineError> {
    let key = ExecKey::from_id(&grant.execution_id, partitions)?;
    let partition = grant
        .partition()
        .map_err(|e| invalid_input(format!("reclaim grant partition_key {}: {e}", grant.partition_key)))?;
    if i32::from(partition.index) != i32::from(key.partition) {
        return Err(invalid_input(format!(
            "reclaim grant partition_key {} does not match execution {}",
            grant.partition_key, grant.execution_id
        )));
    }
    Ok(key)
}

/// Why `fence` matched no live lease: the typed error for the caller.
pub(crate) async fn why_not_live(
    conn: &mut PgConnection,
    fence: Fence,
    now: Option<i64>,
) -> Result<EngineError, sqlx::Error> {
    let view = ExecRepo::fence_view(conn, fence, now).await?;
    Ok(classify(fence, view))
}

/// The decision behind [`why_not_live`], apart from the read.
pub(crate) fn classify(fence: Fence, view: Option<FenceView>) -> EngineError {
    let Some(view) = view else {
        return EngineError::NotFound { entity: "execution" };
    };
    let not_active = |view: &FenceView| {
        EngineError::Contention(ContentionKind::ExecutionNotActive {
            terminal_outcome: literal_of(&view.terminal_outcome.0).unwrap_or_default(),
            lease_epoch: view.lease_epoch.map(|e| e.to_string()).unwrap_or_default(),
            lifecycle_phase: literal_of(&view.lifecycle_phase.0).unwrap_or_default(),
            attempt_id: view.attempt_id.map(|id| id.to_string()).unwrap_or_default(),
        })
    };
    // Finished: a replayed terminal call lands here and learns the outcome.
    if view.lifecycle_phase.0 == LifecyclePhase::Terminal || view.terminal_outcome.0 != TerminalOutcome::None {
        return not_active(&view);
    }
    let Some(epoch) = view.lease_epoch else {
        return EngineError::NotFound { entity: "attempt" };
    };
    // A newer lease or a newer attempt superseded the caller's.
    if epoch != fence.lease_epoch || view.current_attempt_index != fence.attempt_index {
        return EngineError::Contention(ContentionKind::LeaseConflict);
    }
    match view.lease_expires_at_ms {
        // Released (delayed, waiting for children, ...): no lease to act under.
        None => not_active(&view),
        Some(expires) if expires <= view.now_ms => EngineError::State(StateKind::LeaseExpired),
        // Live and matching now: the lease changed hands and back between the
        // statement and this read. Report the conflict; the caller re-reads.
        Some(_) => EngineError::Contention(ContentionKind::LeaseConflict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;
    use ff_core::state::{LifecyclePhase, TerminalOutcome};
    use uuid::Uuid;

    fn fence() -> Fence {
        Fence {
            key: ExecKey {
                partition: 0,
                id: Uuid::nil(),
            },
            attempt_index: 0,
            lease_epoch: 1,
        }
    }

    fn view(phase: LifecyclePhase, outcome: TerminalOutcome, epoch: Option<i64>, expires: Option<i64>) -> FenceView {
        FenceView {
            lifecycle_phase: State(phase),
            terminal_outcome: State(outcome),
            current_attempt_index: 0,
            attempt_id: epoch.map(|_| Uuid::nil()),
            lease_epoch: epoch,
            lease_expires_at_ms: expires,
            now_ms: 1_000,
        }
    }

    #[test]
    fn missing_execution_is_not_found() {
        assert!(matches!(
            classify(fence(), None),
            EngineError::NotFound { entity: "execution" }
        ));
    }

    #[test]
    fn terminal_execution_reports_its_outcome() {
        let err = classify(
            fence(),
            Some(view(LifecyclePhase::Terminal, TerminalOutcome::Success, Some(1), None)),
        );
        match err {
            EngineError::Contention(ContentionKind::ExecutionNotActive {
                terminal_outcome,
                lifecycle_phase,
                lease_epoch,
                ..
            }) => {
                assert_eq!(terminal_outcome, "success");
                assert_eq!(lifecycle_phase, "terminal");
                assert_eq!(lease_epoch, "1");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bumped_epoch_is_lease_conflict() {
        let err = classify(
            fence(),
            Some(view(
                LifecyclePhase::Active,
                TerminalOutcome::None,
                Some(2),
                Some(5_000),
            )),
        );
        assert!(matches!(err, EngineError::Contention(ContentionKind::LeaseConflict)));
    }

    #[test]
    fn newer_attempt_is_lease_conflict() {
        let mut v = view(LifecyclePhase::Active, TerminalOutcome::None, Some(1), None);
        v.current_attempt_index = 1;
        assert!(matches!(
            classify(fence(), Some(v)),
            EngineError::Contention(ContentionKind::LeaseConflict)
        ));
    }

    #[test]
    fn expired_lease_is_lease_expired() {
        let err = classify(
            fence(),
            Some(view(
                LifecyclePhase::Active,
                TerminalOutcome::None,
                Some(1),
                Some(1_000),
            )),
        );
        assert!(matches!(err, EngineError::State(StateKind::LeaseExpired)));
    }

    #[test]
    fn released_lease_is_not_active() {
        let err = classify(
            fence(),
            Some(view(LifecyclePhase::Runnable, TerminalOutcome::None, Some(1), None)),
        );
        assert!(matches!(
            err,
            EngineError::Contention(ContentionKind::ExecutionNotActive { .. })
        ));
    }
}
