//! Input validation shared by the operations: bad input is refused with a
//! typed error before any statement runs, so it never changes a row.

use ff_core::backend::CapabilitySet;
use ff_core::engine_error::{EngineError, ValidationKind};
use ff_core::policy::{CAPS_MAX_BYTES, CAPS_MAX_TOKENS};
use ff_core::types::LaneId;

use crate::error::invalid_input;

/// Largest input payload, result payload or failure detail accepted (bytes).
pub(crate) const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Longest free-text field accepted (namespace, kind, reason, tag, ...), in bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A lane id as ff-core defines one: 1..=64 printable ASCII bytes.
pub(crate) fn lane(lane: &LaneId) -> Result<(), EngineError> {
    LaneId::try_new(lane.as_str())
        .map(|_| ())
        .map_err(|e| invalid_input(format!("lane_id: {e}")))
}

/// Capability tokens: non-empty, no `,` or control characters, within
/// ff-core's token and byte ceilings. Returns them sorted and deduplicated.
pub(crate) fn capabilities<'a>(tokens: impl IntoIterator<Item = &'a String>) -> Result<Vec<String>, EngineError> {
    let bad = |detail: String| EngineError::Validation {
        kind: ValidationKind::InvalidCapabilities,
        detail,
    };
    let mut out: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    for token in tokens {
        if token.is_empty() {
            return Err(bad("capability token is empty".into()));
        }
        if token.chars().any(|c| c == ',' || c.is_control()) {
            return Err(bad(format!(
                "capability token {token:?} contains ',' or a control character"
            )));
        }
        bytes += token.len() + 1;
        out.push(token.clone());
    }
    out.sort();
    out.dedup();
    if out.len() > CAPS_MAX_TOKENS {
        return Err(bad(format!(
            "{} capability tokens; at most {CAPS_MAX_TOKENS}",
            out.len()
        )));
    }
    if bytes.saturating_sub(1) > CAPS_MAX_BYTES {
        return Err(bad(format!(
            "capability list is {bytes} bytes; at most {CAPS_MAX_BYTES}"
        )));
    }
    Ok(out)
}

/// A worker's capability set.
pub(crate) fn worker_capabilities(set: &CapabilitySet) -> Result<Vec<String>, EngineError> {
    capabilities(&set.tokens)
}

/// Free text stored in a `text` column: PostgreSQL cannot store NUL.
pub(crate) fn text(field: &str, value: &str) -> Result<(), EngineError> {
    if value.contains('\0') {
        return Err(invalid_input(format!("{field} contains a NUL character")));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid_input(format!(
            "{field} is {} bytes; at most {MAX_TEXT_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// A byte payload within [`MAX_PAYLOAD_BYTES`].
pub(crate) fn payload(field: &str, bytes: &[u8]) -> Result<(), EngineError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(EngineError::Validation {
            kind: ValidationKind::PayloadTooLarge,
            detail: format!("{field} is {} bytes; at most {MAX_PAYLOAD_BYTES}", bytes.len()),
        });
    }
    Ok(())
}

/// A lease TTL: positive.
pub(crate) fn lease_ttl(ttl_ms: u64) -> Result<i64, EngineError> {
    match i64::try_from(ttl_ms) {
        Ok(ttl) if ttl > 0 => Ok(ttl),
        _ => Err(invalid_input(format!("lease_ttl_ms must be positive, got {ttl_ms}"))),
    }
}
