//! `create_execution`: the way in for every execution.

use ff_core::contracts::{CreateExecutionArgs, CreateExecutionResult};
use ff_core::engine_error::EngineError;
use ff_core::state::PublicState;

use crate::error::{corruption, invalid_input};
use crate::model::{ExecKey, execution_id_of, parse_literal};
use crate::ops::{Ctx, validate};
use crate::repo::{ExecRepo, IdemKey, IdempotencyRepo, NewExec};
use crate::tx::Isolation;

/// Dedup window of an idempotency key when the policy sets none (24 h, as
/// ff-core documents for V1).
const DEFAULT_DEDUP_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The longest dedup window honoured (ten years): added to "now" in SQL, a
/// larger one would overflow.
const MAX_DEDUP_WINDOW_MS: i64 = 10 * 365 * 24 * 60 * 60 * 1000;

/// Create a claimable execution, or a delayed one when `delay_until` is in
/// the future. An idempotency key already bound to an execution inside its
/// dedup window, or an execution id that already exists, yields `Duplicate`
/// naming the existing execution, and nothing is written.
pub(crate) async fn create_execution(
    ctx: &Ctx,
    args: CreateExecutionArgs,
) -> Result<CreateExecutionResult, EngineError> {
    let key = ExecKey::from_id(&args.execution_id, &ctx.partitions)?;
    if args.partition_id != args.execution_id.partition() {
        return Err(invalid_input(format!(
            "partition_id {} does not match execution id {}",
            args.partition_id, args.execution_id
        )));
    }
    validate::lane(&args.lane_id)?;
    validate::text("namespace", args.namespace.as_str())?;
    validate::text("execution_kind", &args.execution_kind)?;
    validate::text("creator_identity", &args.creator_identity)?;
    validate::payload("input_payload", &args.input_payload)?;
    if let Some(encoding) = &args.payload_encoding {
        validate::text("payload_encoding", encoding)?;
    }
    if let Some(idem) = &args.idempotency_key {
        validate::text("idempotency_key", idem)?;
        if idem.is_empty() {
            return Err(invalid_input("idempotency_key is empty"));
        }
    }
    for (k, v) in &args.tags {
        validate::text("tag key", k)?;
        validate::text("tag value", v)?;
        if k.is_empty() {
            return Err(invalid_input("tag key is empty"));
        }
    }
    let required = args
        .policy
        .as_ref()
        .and_then(|p| p.routing_requirements.as_ref())
        .map(|r| validate::capabilities(&r.required_capabilities))
        .transpose()?
        .unwrap_or_default();
    let policy = args
        .policy
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| invalid_input(format!("policy does not serialise: {e}")))?;
    let dedup_window_ms = args
        .policy
        .as_ref()
        .and_then(|p| p.dedup_window_ms)
        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX).min(MAX_DEDUP_WINDOW_MS))
        .unwrap_or(DEFAULT_DEDUP_WINDOW_MS);
    let tags = serde_json::to_value(&args.tags).map_err(|e| invalid_input(format!("tags: {e}")))?;
    let now = ctx.now();

    let new = |policy, tags| NewExec {
        key,
        lane_id: args.lane_id.as_str(),
        namespace: args.namespace.as_str(),
        execution_kind: &args.execution_kind,
        creator_identity: &args.creator_identity,
        required_capabilities: &required,
        priority: args.priority,
        delay_until_ms: args.delay_until.map(|t| t.0),
        deadline_at_ms: args.execution_deadline_at.map(|t| t.0),
        input_payload: &args.input_payload,
        payload_encoding: args.payload_encoding.as_deref(),
        policy,
        tags,
    };
    let outcome = match &args.idempotency_key {
        // One statement: it is its own transaction.
        None => {
            ctx.db
                .single("create_execution", |conn| {
                    let new = new(policy.clone(), tags.clone());
                    Box::pin(async move {
                        Ok(match ExecRepo::insert(conn, new, now).await? {
                            Some(public_state) => Created::New(public_state),
                            None => Created::Duplicate(key),
                        })
                    })
                })
                .await?
        }
        Some(idem) => {
            ctx.db
                .tx("create_execution", Isolation::ReadCommitted, |conn| {
                    let new = new(policy.clone(), tags.clone());
                    let idem = IdemKey {
                        partition: key.partition,
                        namespace: args.namespace.as_str(),
                        key: idem,
                    };
                    Box::pin(async move {
                        let holder = IdempotencyRepo::bind(conn, idem, key.id, dedup_window_ms, now).await?;
                        if holder != key.id {
                            return Ok(Created::Duplicate(ExecKey {
                                partition: key.partition,
                                id: holder,
                            }));
                        }
                        Ok(match ExecRepo::insert(conn, new, now).await? {
                            Some(public_state) => Created::New(public_state),
                            None => Created::Duplicate(key),
                        })
                    })
                })
                .await?
        }
    };

    match outcome {
        Created::New(public_state) => {
            let public_state: PublicState =
                parse_literal(&public_state).map_err(|e| corruption(format!("ff_exec_core.public_state: {e}")))?;
            tracing::debug!(execution_id = %args.execution_id, lane = %args.lane_id, %public_state, "created execution");
            Ok(CreateExecutionResult::Created {
                execution_id: args.execution_id,
                public_state,
            })
        }
        Created::Duplicate(existing) => Ok(CreateExecutionResult::Duplicate {
            execution_id: execution_id_of(existing.partition, existing.id)?,
        }),
    }
}

enum Created {
    New(String),
    Duplicate(ExecKey),
}
