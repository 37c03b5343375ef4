//! The clock operations read "now" from.
//!
//! By default that is the database clock: leases, delays and timeouts are all
//! measured on the server, so workers with skewed clocks cannot disagree about
//! whether a lease is live. Tests inject a [`ManualClock`] to make time-based
//! transitions deterministic.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Clock {
    /// The database server's clock (`statement_timestamp()`).
    #[default]
    Database,
    /// A clock the caller moves by hand.
    Manual(ManualClock),
}

impl Clock {
    /// The time to inject into statements: `None` lets the database decide.
    pub(crate) fn now(&self) -> Option<i64> {
        match self {
            Clock::Database => None,
            Clock::Manual(clock) => Some(clock.now_ms()),
        }
    }
}

/// A clock that only moves when told to. Cloning shares the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `now_ms` (Unix milliseconds).
    pub fn new(now_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now_ms)))
    }

    /// The current reading, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Set the reading.
    pub fn set_ms(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    /// Move the reading forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}
