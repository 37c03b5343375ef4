//! `claim` and `claim_from_reclaim`: granting leases.

use std::time::Instant;

use ff_core::backend::{CapabilitySet, ClaimPolicy, Handle, HandleKind, ReclaimToken};
use ff_core::engine_error::{ContentionKind, EngineError};
use ff_core::types::LaneId;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::{ExecKey, GrantedLease};
use crate::notify::{POLL_BACKSTOP, WorkSignal};
use crate::ops::fence::{self, Minted};
use crate::ops::{Ctx, validate};
use crate::repo::{AttemptRepo, ExecRepo, LeaseGrant, db_now};
use crate::tx::Isolation;

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
    let attempt = ClaimAttempt {
        lane,
        capabilities: &capabilities,
        ttl_ms,
        policy,
    };
    let Some(max_wait) = policy.max_wait.filter(|d| !d.is_zero()) else {
        return attempt.run(ctx).await;
    };
    let deadline = Instant::now() + max_wait;
    let mut waiter = signal.subscribe().await;
    loop {
        if let Some(handle) = attempt.run(ctx).await? {
            return Ok(Some(handle));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        waiter.wait(lane.as_str(), (deadline - now).min(POLL_BACKSTOP)).await;
    }
}

struct ClaimAttempt<'a> {
    lane: &'a LaneId,
    capabilities: &'a [String],
    ttl_ms: i64,
    policy: &'a ClaimPolicy,
}

impl ClaimAttempt<'_> {
    /// One claim transaction: take the best row and grant a lease on it.
    async fn run(&self, ctx: &Ctx) -> Result<Option<Handle>, EngineError> {
        let lease_id = Uuid::new_v4();
        let now = ctx.now();
        let grant = LeaseGrant {
            lease_id,
            ttl_ms: self.ttl_ms,
            worker_id: self.policy.worker_id.as_str(),
            worker_instance_id: self.policy.worker_instance_id.as_str(),
        };
        let claimed = ctx
            .db
            .tx("claim", Isolation::ReadCommitted, |conn| {
                Box::pin(async move {
                    let Some(exec) = ExecRepo::claim_next(conn, self.lane.as_str(), self.capabilities, now).await?
                    else {
                        return Ok(None);
                    };
                    let start = Start {
                        key: exec.key,
                        attempt_index: exec.attempt_index,
                        resumes: exec.resumes_attempt,
                        attempt_type: if exec.is_retry { "retry" } else { "initial" },
                    };
                    let (kind, lease) = start.grant(conn, grant, now).await?;
                    Ok(Some((exec.key, exec.attempt_index, kind, lease)))
                })
            })
            .await?;
        let Some((key, attempt_index, kind, lease)) = claimed else {
            return Ok(None);
        };
        Ok(Some(fence::mint(
            kind,
            Minted {
                execution_id: key.execution_id()?,
                attempt_index,
                lease_id,
                lease,
                lease_ttl_ms: self.ttl_ms,
                lane_id: self.lane,
                worker_instance_id: &self.policy.worker_instance_id,
            },
        )))
    }
}

/// An attempt about to run under a new lease.
struct Start {
    key: ExecKey,
    attempt_index: i32,
    /// The attempt exists and was interrupted: resume it.
    resumes: bool,
    attempt_type: &'static str,
}

impl Start {
    async fn grant(
        &self,
        conn: &mut PgConnection,
        grant: LeaseGrant<'_>,
        now: Option<i64>,
    ) -> Result<(HandleKind, GrantedLease), sqlx::Error> {
        if self.resumes
            && let Some(lease) = AttemptRepo::resume(conn, self.key, self.attempt_index, grant, now).await?
        {
            return Ok((HandleKind::Resumed, lease));
        }
        let lease =
            AttemptRepo::insert_started(conn, self.key, self.attempt_index, self.attempt_type, grant, now).await?;
        Ok((HandleKind::Fresh, lease))
    }
}

/// Consume a reclaim grant: take over the lease of an execution whose lease
/// expired (or whose interrupted attempt was requeued), under a new epoch.
/// `Ok(None)` when the execution holds a live lease or is not resumable.
pub(crate) async fn claim_from_reclaim(ctx: &Ctx, token: &ReclaimToken) -> Result<Option<Handle>, EngineError> {
    let key = fence::grant_key(&token.grant, &ctx.partitions)?;
    validate::lane(&token.grant.lane_id)?;
    let ttl_ms = validate::lease_ttl(u64::from(token.lease_ttl_ms))?;
    validate::text("worker_id", token.worker_id.as_str())?;
    validate::text("worker_instance_id", token.worker_instance_id.as_str())?;
    let lease_id = Uuid::new_v4();
    let grant = LeaseGrant {
        lease_id,
        ttl_ms,
        worker_id: token.worker_id.as_str(),
        worker_instance_id: token.worker_instance_id.as_str(),
    };
    let lane = token.grant.lane_id.as_str();
    let expires_at_ms = i64::try_from(token.grant.expires_at_ms).unwrap_or(i64::MAX);
    let injected = ctx.now();
    let reclaimed = ctx
        .db
        .tx("claim_from_reclaim", Isolation::ReadCommitted, |conn| {
            Box::pin(async move {
                // One reading of the clock for the whole transaction.
                let now = Some(db_now(conn, injected).await?);
                if now.is_some_and(|now| expires_at_ms < now) {
                    return Err(EngineError::Contention(ContentionKind::ClaimGrantExpired).into());
                }
                if let Some((index, lease)) = AttemptRepo::take_over_expired(conn, key, lane, grant, now).await? {
                    ExecRepo::note_reclaim(conn, key, now).await?;
                    return Ok(Some((index, HandleKind::Resumed, lease)));
                }
                let Some(index) = ExecRepo::claim_interrupted(conn, key, lane, now).await? else {
                    return Ok(None);
                };
                let start = Start {
                    key,
                    attempt_index: index,
                    resumes: true,
                    attempt_type: "reclaim",
                };
                let (kind, lease) = start.grant(conn, grant, now).await?;
                Ok(Some((index, kind, lease)))
            })
        })
        .await?;
    let Some((attempt_index, kind, lease)) = reclaimed else {
        return Ok(None);
    };
    Ok(Some(fence::mint(
        kind,
        Minted {
            execution_id: token.grant.execution_id.clone(),
            attempt_index,
            lease_id,
            lease,
            lease_ttl_ms: ttl_ms,
            lane_id: &token.grant.lane_id,
            worker_instance_id: &token.worker_instance_id,
        },
    )))
}
