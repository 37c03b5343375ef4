//! What a failure leads to: the execution's retry policy applied to the
//! failure class and the retries already used.

use ff_core::backend::FailureClass;
use ff_core::engine_error::EngineError;
use ff_core::policy::{BackoffStrategy, ExecutionPolicy, RetryPolicy};

use crate::error::corruption;

/// The longest backoff applied, whatever the policy says: one year.
pub(crate) const MAX_BACKOFF_MS: i64 = 365 * 24 * 60 * 60 * 1000;

/// The fate of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Run another attempt, claimable after `delay_ms`.
    Retry { delay_ms: i64 },
    /// No more attempts: the execution fails.
    Terminal,
}

/// The stored literal of a failure class.
pub(crate) fn class_literal(class: FailureClass) -> &'static str {
    match class {
        FailureClass::Transient => "transient",
        FailureClass::Permanent => "permanent",
        FailureClass::InfraCrash => "infra_crash",
        FailureClass::Timeout => "timeout",
        FailureClass::Cancelled => "cancelled",
        _ => "unknown",
    }
}

/// The retry policy stored with an execution, or ff-core's default when it
/// has none.
pub(crate) fn retry_policy(policy: Option<&serde_json::Value>) -> Result<RetryPolicy, EngineError> {
    let Some(policy) = policy else {
        return Ok(RetryPolicy::default());
    };
    let policy: ExecutionPolicy =
        serde_json::from_value(policy.clone()).map_err(|e| corruption(format!("ff_exec_core.policy: {e}")))?;
    Ok(policy.retry_policy.unwrap_or_default())
}

/// Decide the fate of a failure of class `class` after `retries_used` retries.
///
/// Permanent and cancelled failures never retry. Other classes retry while
/// retries remain, unless the policy lists `retryable_categories` and the
/// class is not among them. `jitter` draws from `entropy` (0..=1) so tests can
/// pin it.
pub(crate) fn decide(policy: &RetryPolicy, class: FailureClass, retries_used: u32, entropy: f64) -> Fate {
    if matches!(class, FailureClass::Permanent | FailureClass::Cancelled) {
        return Fate::Terminal;
    }
    if !policy.retryable_categories.is_empty() && !policy.retryable_categories.iter().any(|c| c == class_literal(class))
    {
        return Fate::Terminal;
    }
    if retries_used >= policy.max_retries {
        return Fate::Terminal;
    }
    Fate::Retry {
        delay_ms: backoff_ms(&policy.backoff, retries_used, entropy),
    }
}

/// Delay before retry number `retries_used + 1`.
fn backoff_ms(strategy: &BackoffStrategy, retries_used: u32, entropy: f64) -> i64 {
    let ms = match *strategy {
        BackoffStrategy::Fixed { delay_ms } => delay_ms as f64,
        BackoffStrategy::Exponential {
            initial_delay_ms,
            max_delay_ms,
            multiplier,
            jitter,
        } => {
            let grown = initial_delay_ms as f64 * multiplier.max(1.0).powi(retries_used.min(64) as i32);
            let capped = grown.min(max_delay_ms as f64);
            // "Equal jitter": half fixed, half random, so a retry storm spreads
            // out without ever retrying at once.
            if jitter {
                capped / 2.0 + capped / 2.0 * entropy.clamp(0.0, 1.0)
            } else {
                capped
            }
        }
    };
    // At most a year: a larger delay is a misconfiguration, and added to
    // "now" in SQL it must not overflow. NaN cannot occur (inputs are finite).
    ms.clamp(0.0, MAX_BACKOFF_MS as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exponential(jitter: bool) -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            backoff: BackoffStrategy::Exponential {
                initial_delay_ms: 100,
                max_delay_ms: 250,
                multiplier: 2.0,
                jitter,
            },
            retryable_categories: vec![],
        }
    }

    #[test]
    fn exponential_backoff_grows_and_caps() {
        let p = exponential(false);
        assert_eq!(
            decide(&p, FailureClass::Transient, 0, 0.0),
            Fate::Retry { delay_ms: 100 }
        );
        assert_eq!(
            decide(&p, FailureClass::Transient, 1, 0.0),
            Fate::Retry { delay_ms: 200 }
        );
        assert_eq!(decide(&p, FailureClass::Timeout, 2, 0.0), Fate::Retry { delay_ms: 250 });
        assert_eq!(decide(&p, FailureClass::Transient, 3, 0.0), Fate::Terminal);
    }

    #[test]
    fn jitter_stays_between_half_and_full_delay() {
        let p = exponential(true);
        assert_eq!(
            decide(&p, FailureClass::Transient, 1, 0.0),
            Fate::Retry { delay_ms: 100 }
        );
        assert_eq!(
            decide(&p, FailureClass::Transient, 1, 1.0),
            Fate::Retry { delay_ms: 200 }
        );
    }

    #[test]
    fn permanent_and_cancelled_never_retry() {
        let p = exponential(false);
        assert_eq!(decide(&p, FailureClass::Permanent, 0, 0.0), Fate::Terminal);
        assert_eq!(decide(&p, FailureClass::Cancelled, 0, 0.0), Fate::Terminal);
    }

    #[test]
    fn retryable_categories_restrict_classes() {
        let mut p = exponential(false);
        p.retryable_categories = vec!["timeout".into()];
        assert_eq!(decide(&p, FailureClass::Transient, 0, 0.0), Fate::Terminal);
        assert_eq!(decide(&p, FailureClass::Timeout, 0, 0.0), Fate::Retry { delay_ms: 100 });
    }

    #[test]
    fn default_policy_applies_without_stored_policy() {
        let p = retry_policy(None).unwrap();
        assert_eq!(p, RetryPolicy::default());
        assert_eq!(
            decide(&p, FailureClass::Transient, 0, 0.0),
            Fate::Retry { delay_ms: 1000 }
        );
    }

    #[test]
    fn absurd_backoffs_are_capped_at_a_year() {
        let p = RetryPolicy {
            max_retries: 1,
            backoff: BackoffStrategy::Fixed { delay_ms: u64::MAX },
            retryable_categories: vec![],
        };
        assert_eq!(
            decide(&p, FailureClass::Transient, 0, 0.0),
            Fate::Retry {
                delay_ms: MAX_BACKOFF_MS
            }
        );
    }

    #[test]
    fn fixed_backoff_is_fixed() {
        let p = RetryPolicy {
            max_retries: 1,
            backoff: BackoffStrategy::Fixed { delay_ms: 42 },
            retryable_categories: vec![],
        };
        assert_eq!(
            decide(&p, FailureClass::InfraCrash, 0, 0.5),
            Fate::Retry { delay_ms: 42 }
        );
        assert_eq!(decide(&p, FailureClass::InfraCrash, 1, 0.5), Fate::Terminal);
    }
}
