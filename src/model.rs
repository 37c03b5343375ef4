//! Row types, state-column types and id conversions.
//!
//! Rows read by the repositories stay in this crate; each has one mapping
//! into the `ff_core` value it stands for.

use ff_core::engine_error::EngineError;
use ff_core::partition::PartitionConfig;
use ff_core::state::{LifecyclePhase, PublicState, TerminalOutcome};
use ff_core::types::ExecutionId;
use serde::de::DeserializeOwned;
use sqlx::Postgres;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use uuid::Uuid;

use crate::error::{corruption, invalid_input};

// ─── State columns ──────────────────────────────────────────────────────────

/// A state column (`lifecycle_phase`, `public_state`, ...) read as the
/// `ff_core::state` enum it stores. The column holds the enum's canonical
/// snake_case literal, and decoding goes through the enum's own serde names,
/// so this crate keeps no second copy of the literal lists.
///
/// Use it as a column type override: `public_state as "public_state: State<PublicState>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State<T>(pub T);

impl<T> sqlx::Type<Postgres> for State<T> {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r, T: DeserializeOwned> sqlx::Decode<'r, Postgres> for State<T> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let literal = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        parse_literal(literal).map(State).map_err(Into::into)
    }
}

impl<T: serde::Serialize> sqlx::Encode<'_, Postgres> for State<T> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let literal = literal_of(&self.0)?;
        <String as sqlx::Encode<Postgres>>::encode_by_ref(&literal, buf)
    }
}

/// Parse a state literal into its enum.
pub(crate) fn parse_literal<T: DeserializeOwned>(literal: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(literal.to_owned()))
        .map_err(|_| format!("unknown state literal {literal:?}"))
}

/// The stored literal of a state value.
pub(crate) fn literal_of<T: serde::Serialize>(value: &T) -> Result<String, String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err("state value does not serialise to a literal".to_owned()),
    }
}

// ─── Ids ────────────────────────────────────────────────────────────────────

/// The primary key of an execution: `partition_key` (the N of `{fp:N}:<uuid>`,
/// read from the id) and the bare uuid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ExecKey {
    pub partition: i16,
    pub id: Uuid,
}

impl ExecKey {
    /// Split an execution id. Refuses an id whose partition lies outside the
    /// configured flow partitions: no id minted under `config` has one.
    pub(crate) fn from_id(id: &ExecutionId, config: &PartitionConfig) -> Result<Self, EngineError> {
        let partition = id.partition();
        if partition >= config.num_flow_partitions {
            return Err(invalid_input(format!(
                "execution id {id}: partition {partition} is outside the {} configured flow partitions",
                config.num_flow_partitions
            )));
        }
        let partition = i16::try_from(partition)
            .map_err(|_| invalid_input(format!("execution id {id}: partition {partition} is too large")))?;
        let uuid_text = id
            .as_str()
            .split_once("}:")
            .map(|(_, uuid)| uuid)
            .ok_or_else(|| invalid_input(format!("execution id {id} has no `{{fp:N}}:` tag")))?;
        let id = Uuid::parse_str(uuid_text).map_err(|e| invalid_input(format!("execution id {id}: {e}")))?;
        Ok(Self { partition, id })
    }

    /// The public execution id of a stored key.
    pub(crate) fn execution_id(&self) -> Result<ExecutionId, EngineError> {
        execution_id_of(self.partition, self.id)
    }
}

/// Rebuild `{fp:N}:<uuid>` from stored columns.
pub(crate) fn execution_id_of(partition: i16, id: Uuid) -> Result<ExecutionId, EngineError> {
    ExecutionId::parse(&format!("{{fp:{partition}}}:{id}")).map_err(|e| {
        corruption(format!(
            "ff_exec_core: stored key ({partition}, {id}) is not an execution id: {e}"
        ))
    })
}

/// `(execution, attempt, lease epoch)`: what a lease-bound call must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub key: ExecKey,
    pub attempt_index: i32,
    pub lease_epoch: i64,
}

// ─── Rows ───────────────────────────────────────────────────────────────────

/// `ff_exec_core` as `describe_execution` reads it, with its current attempt
/// (read in the same statement, so the two agree).
#[derive(Debug, Clone)]
pub(crate) struct ExecRow {
    pub flow_id: Option<Uuid>,
    pub lane_id: String,
    pub namespace: String,
    pub public_state: State<PublicState>,
    pub blocking_reason: String,
    pub blocking_detail: Option<String>,
    pub attempt_index: i32,
    pub created_at_ms: i64,
    pub last_mutation_at_ms: i64,
    pub tags: serde_json::Value,
    /// The current attempt, when it has started.
    pub attempt_id: Option<Uuid>,
    pub lease_id: Option<Uuid>,
    pub lease_epoch: Option<i64>,
    pub lease_expires_at_ms: Option<i64>,
    pub worker_instance_id: Option<String>,
    pub last_renewed_at_ms: Option<i64>,
}

/// What a fenced call that matched no live lease finds instead.
#[derive(Debug, Clone)]
pub(crate) struct FenceView {
    pub lifecycle_phase: State<LifecyclePhase>,
    pub terminal_outcome: State<TerminalOutcome>,
    pub current_attempt_index: i32,
    /// The attempt the handle names, if it exists.
    pub attempt_id: Option<Uuid>,
    pub lease_epoch: Option<i64>,
    pub lease_expires_at_ms: Option<i64>,
    pub now_ms: i64,
}

/// The part of an execution that decides what a failure leads to.
#[derive(Debug, Clone)]
pub(crate) struct RetryState {
    pub policy: Option<serde_json::Value>,
    pub retry_count: i32,
}
