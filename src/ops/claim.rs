//! `claim` and `claim_from_reclaim`: granting leases.

use std::time::Instant;

use ff_core::backend::{CapabilitySet, ClaimPolicy, Handle, ReclaimToken};
use ff_core::engine_error::{ContentionKind, EngineError};
use ff_core::types::LaneId;
use uuid::Uuid;

use crate::notify::{POLL_BACKSTOP, WorkSignal};
use crate::ops::{Ctx, fence, validate};
use crate::repo::{LeaseGrant, TransitionRepo, db_now};

/// Claim the best execution of `lane` this worker can run, waiting up to
/// `policy.max_wait` for one to become claimable.
pub(crate) async fn claim(
    ctx: &Ctx,
    signal: &WorkSignal,
    lane: &LaneId,
    capabilities: &CapabilitySet,
    policy: &ClaimPolicy,
) -> Result<Option<Handle>, EngineError> {
    validate::lane(lane)?;
    let capabilities = validate::worker_capabilities(capabilities)?;
    let ttl_ms = validate::lease_ttl(u64::from(policy.lease_ttl_ms))?;
    validate::text("worker_id", policy.worker_id.as_str())?;
    validate::text("worker_instance_id", policy.worker_instance_id.as_str())?;
    let Some(max_wait) = policy.max_wait.filter(|d| !d.is_zero()) else {
        return claim_once(ctx, lane, &capabilities, ttl_ms, policy).await;
    };
    let deadline = Instant::now() + max_wait;
    let mut waiter = signal.subscribe(lane.as_str()).await;
    loop {
        if let Some(handle) = claim_once(ctx, lane, &capabilities, ttl_ms, policy).await? {
            return Ok(Some(handle));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        waiter.wait((deadline - now).min(POLL_BACKSTOP)).await;
    }
}

/// One claim: a single statement takes the best row and grants a lease on
/// it; on an empty lane it is one round trip that writes nothing.
async fn claim_once(
    ctx: &Ctx,
    lane: &LaneId,
    capabilities: &[String],
    ttl_ms: i64,
    policy: &ClaimPolicy,
) -> Result<Option<Handle>, EngineError> {
    let grant = LeaseGrant {
        lease_id: Uuid::new_v4(),
        ttl_ms,
        worker_id: policy.worker_id.as_str(),
        worker_instance_id: policy.worker_instance_id.as_str(),
    };
    let now = ctx.now();
    let granted = ctx
        .db
        .single("claim", |conn| {
            Box::pin(
                async move { Ok(TransitionRepo::claim_next(conn, lane.as_str(), capabilities, grant, now).await?) },
            )
        })
        .await?;
    granted
        .map(|granted| fence::mint(&granted, &grant, lane, &policy.worker_instance_id))
        .transpose()
}

/// Consume a reclaim grant: take over the lease of an execution whose lease
/// expired (or whose interrupted attempt was requeued), under a new epoch.
/// `Ok(None)` when the execution holds a live lease or is not resumable.
pub(crate) async fn claim_from_reclaim(ctx: &Ctx, token: &ReclaimToken) -> Result<Option<Handle>, EngineError> {
    let key = fence::grant_key(&token.grant, &ctx.partitions)?;
    let lane = &token.grant.lane_id;
    validate::lane(lane)?;
    let ttl_ms = validate::lease_ttl(u64::from(token.lease_ttl_ms))?;
    validate::text("worker_id", token.worker_id.as_str())?;
    validate::text("worker_instance_id", token.worker_instance_id.as_str())?;
    let grant = LeaseGrant {
        lease_id: Uuid::new_v4(),
        ttl_ms,
        worker_id: token.worker_id.as_str(),
        worker_instance_id: token.worker_instance_id.as_str(),
    };
    let expires_at_ms = i64::try_from(token.grant.expires_at_ms).unwrap_or(i64::MAX);
    let injected = ctx.now();
    // At most one of the two statements writes, and each is atomic, so the
    // whole runs in autocommit.
    let granted = ctx
        .db
        .single("claim_from_reclaim", |conn| {
            Box::pin(async move {
                // One reading of the clock for the whole call.
                let now = db_now(conn, injected).await?;
                if expires_at_ms < now {
                    return Err(EngineError::Contention(ContentionKind::ClaimGrantExpired).into());
                }
                let now = Some(now);
                if let Some(granted) = TransitionRepo::take_over_expired(conn, key, lane.as_str(), grant, now).await? {
                    return Ok(Some(granted));
                }
                Ok(TransitionRepo::claim_interrupted(conn, key, lane.as_str(), grant, now).await?)
            })
        })
        .await?;
    granted
        .map(|granted| fence::mint(&granted, &grant, lane, &token.worker_instance_id))
        .transpose()
}
