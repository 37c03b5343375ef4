//! Operations: one module per trait family. Each operation validates its
//! input, opens one transaction (or runs one autocommit statement), composes
//! repository calls inside it, and maps the outcome onto the trait's types.
//! No SQL text lives here.

pub(crate) mod admin;
pub(crate) mod claim;
pub(crate) mod fence;
pub(crate) mod finish;
pub(crate) mod health;
pub(crate) mod ingress;
pub(crate) mod lease;
pub(crate) mod read;
pub(crate) mod retry;
pub(crate) mod validate;

use ff_core::partition::PartitionConfig;

use crate::clock::Clock;
use crate::tx::Db;

/// What every operation needs: the database, the partition layout, the clock.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub db: Db,
    pub partitions: PartitionConfig,
    pub clock: Clock,
}

impl Ctx {
    /// "Now" to inject into statements (`None`: the database clock).
    pub(crate) fn now(&self) -> Option<i64> {
        self.clock.now()
    }
}
