//! Transactions: the one place a transaction begins and commits.
//!
//! Every trait operation runs inside [`Db::tx`] (one transaction) or, when it
//! writes with a single statement, [`Db::single`] (that statement is its own
//! transaction under autocommit, which saves the `BEGIN` and `COMMIT` round
//! trips on the hot paths; reads around it, such as the diagnosis of a fence
//! that matched nothing, see committed state). Both retry the whole unit a bounded number of
//! times on serialization failures and deadlocks, which PostgreSQL resolves
//! by rolling the unit back, so a retry never doubles an effect.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::time::Duration;

use ff_core::engine_error::EngineError;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::error::{DbFailure, classify, to_engine};

/// How many times a unit of work runs before a retryable failure is reported
/// as `Contention(RetryExhausted)`.
const MAX_RUNS: u32 = 3;

/// The future a unit of work returns; it borrows the connection.
pub(crate) type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, TxError>> + Send + 'c>>;

/// The connection a unit of work runs on; it dereferences to
/// `PgConnection`, which is what repositories take.
///
/// The lifetime `'a` is that of the data the unit of work borrows. A
/// `&'c mut Conn<'a>` argument implies `'a: 'c`, which is what lets the
/// closure's future borrow that data: without it the higher-ranked `'c`
/// would have to outlive everything, `'static` included.
pub(crate) struct Conn<'a> {
    inner: Inner,
    scope: PhantomData<&'a ()>,
}

enum Inner {
    Tx(Transaction<'static, Postgres>),
    Autocommit(PoolConnection<Postgres>),
}

impl Deref for Conn<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &self.inner {
            Inner::Tx(tx) => tx,
            Inner::Autocommit(conn) => conn,
        }
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.inner {
            Inner::Tx(tx) => tx,
            Inner::Autocommit(conn) => conn,
        }
    }
}

/// The error of a unit of work: a database error (classified, maybe retried)
/// or a domain outcome that rolls the transaction back and is returned as is.
#[derive(Debug)]
pub(crate) enum TxError {
    /// A statement failed.
    Db(sqlx::Error),
    /// The operation decided to fail (stale fence, bad input, ...).
    Engine(EngineError),
}

impl From<sqlx::Error> for TxError {
    fn from(err: sqlx::Error) -> Self {
        TxError::Db(err)
    }
}

impl From<EngineError> for TxError {
    fn from(err: EngineError) -> Self {
        TxError::Engine(err)
    }
}

/// Isolation level of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// PostgreSQL's default. Enough for operations that fence with row locks
    /// and guarded updates, which is all of the attempt lifecycle.
    ReadCommitted,
    /// One snapshot for every statement: multi-statement reads that must agree.
    RepeatableRead,
}

/// The pool plus what error mapping needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pool: PgPool,
    acquire_timeout: Duration,
}

impl Db {
    pub(crate) fn new(pool: PgPool) -> Self {
        let acquire_timeout = pool.options().get_acquire_timeout();
        Self { pool, acquire_timeout }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Run `work` in one transaction and commit it. An `Err` rolls back.
    pub(crate) async fn tx<'a, T, F>(
        &self,
        op: &'static str,
        isolation: Isolation,
        mut work: F,
    ) -> Result<T, EngineError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut Conn<'a>) -> TxFuture<'c, T> + Send,
    {
        let mut run = 1;
        loop {
            let outcome = self.tx_once(isolation, &mut work).await;
            match self.settle(op, outcome, run) {
                Some(result) => return result,
                None => run += 1,
            }
            backoff(run).await;
        }
    }

    /// Run `work`, which must change the database with at most one statement
    /// (reads before or after it are fine), on a pooled connection in
    /// autocommit mode: that statement is its own transaction.
    pub(crate) async fn single<'a, T, F>(&self, op: &'static str, mut work: F) -> Result<T, EngineError>
    where
        T: Send,
        F: for<'c> FnMut(&'c mut Conn<'a>) -> TxFuture<'c, T> + Send,
    {
        let mut run = 1;
        loop {
            let outcome = match self.pool.acquire().await {
                Ok(conn) => {
                    let mut conn = Conn {
                        inner: Inner::Autocommit(conn),
                        scope: PhantomData,
                    };
                    work(&mut conn).await
                }
                Err(err) => Err(TxError::Db(err)),
            };
            match self.settle(op, outcome, run) {
                Some(result) => return result,
                None => run += 1,
            }
            backoff(run).await;
        }
    }

    async fn tx_once<'a, T, F>(&self, isolation: Isolation, work: &mut F) -> Result<T, TxError>
    where
        F: for<'c> FnMut(&'c mut Conn<'a>) -> TxFuture<'c, T>,
    {
        let tx = match isolation {
            Isolation::ReadCommitted => self.pool.begin().await?,
            Isolation::RepeatableRead => self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ").await?,
        };
        let mut conn = Conn {
            inner: Inner::Tx(tx),
            scope: PhantomData,
        };
        // On `Err` the transaction is dropped, which rolls it back.
        let value = work(&mut conn).await?;
        if let Inner::Tx(tx) = conn.inner {
            tx.commit().await?;
        }
        Ok(value)
    }

    /// The result of a run, or `None` when the unit should run again.
    fn settle<T>(&self, op: &'static str, outcome: Result<T, TxError>, run: u32) -> Option<Result<T, EngineError>> {
        match outcome {
            Ok(value) => Some(Ok(value)),
            Err(TxError::Engine(err)) => Some(Err(err)),
            Err(TxError::Db(err)) => {
                if classify(&err) == DbFailure::Retryable && run < MAX_RUNS {
                    tracing::debug!(op, run, error = %err, "retrying after serialization failure");
                    None
                } else {
                    Some(Err(to_engine(op, err, self.acquire_timeout)))
                }
            }
        }
    }
}

/// A short pause before running a unit again, growing with each run.
async fn backoff(run: u32) {
    tokio::time::sleep(Duration::from_millis(2u64 << run.min(6))).await;
}
