//! Measurements: latency percentiles and the server's own counters.

use std::time::{Duration, Instant};

use sqlx::PgPool;

/// Latencies of one operation.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Record one.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Merge another set in.
    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// Time `f` and record it.
    pub async fn time<T, F: std::future::Future<Output = T>>(&mut self, f: F) -> T {
        let start = Instant::now();
        let out = f.await;
        self.push(start.elapsed());
        out
    }

    /// How many were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none were recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }

    /// Median.
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.50)
    }

    /// 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }
}

/// The server counters a workload is charged with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Write transactions started anywhere on the server: the next
    /// transaction id. Exact and immediate, unlike `pg_stat_database`,
    /// whose counters backends flush up to a second late; read-only
    /// statements (an empty claim) are not counted, as they commit nothing.
    pub transactions: i64,
    /// WAL position, in bytes since the cluster began.
    pub wal_bytes: i64,
    /// Statements run, from `pg_stat_statements` when it is loaded.
    pub statements: Option<i64>,
}

impl Counters {
    /// Read the counters.
    pub async fn read(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let (transactions, wal_bytes): (i64, i64) = sqlx::query_as(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
        )
        .fetch_one(pool)
        .await?;
        let statements: Option<i64> = sqlx::query_scalar(
            "SELECT CASE WHEN to_regclass('pg_stat_statements') IS NULL THEN NULL
                    ELSE (SELECT sum(calls)::bigint FROM pg_stat_statements WHERE dbid =
                          (SELECT oid FROM pg_database WHERE datname = current_database())) END",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(None);
        Ok(Self {
            transactions,
            wal_bytes,
            statements,
        })
    }

    /// `self - before`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            transactions: self.transactions - before.transactions,
            wal_bytes: self.wal_bytes - before.wal_bytes,
            statements: match (self.statements, before.statements) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            },
        }
    }
}
