//! Wake-ups for claimers waiting on a lane.
//!
//! A trigger on `ff_exec_core` issues `pg_notify('ff_work', lane_id)` whenever
//! an execution becomes claimable (created, retried, promoted when due,
//! requeued after a lease expiry), whichever process made it so. One
//! listener connection per backend, started the first time a claim waits,
//! fans the notifications out to the waiting claimers. Notifications are a
//! latency optimisation only: a claimer also polls at a bounded interval, so a
//! notification lost while the listener reconnects costs time, not work.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;

/// The channel the work trigger notifies on.
pub(crate) const WORK_CHANNEL: &str = "ff_work";

/// Longest a waiting claimer sleeps without trying again.
pub(crate) const POLL_BACKSTOP: Duration = Duration::from_millis(500);

/// Fan-out of `ff_work` notifications.
#[derive(Debug)]
pub(crate) struct WorkSignal {
    pool: PgPool,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    lanes: broadcast::Sender<Arc<str>>,
    task: JoinHandle<()>,
}

/// A claimer's subscription to wake-ups.
pub(crate) struct Waiter {
    lanes: Option<broadcast::Receiver<Arc<str>>>,
}

impl WorkSignal {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            running: Mutex::new(None),
        }
    }

    /// Subscribe to wake-ups, starting the listener if it is not running.
    /// Subscribe *before* looking for work, so that work made claimable in
    /// between is not missed. Without a listener (it could not connect), the
    /// waiter falls back to polling.
    pub(crate) async fn subscribe(&self) -> Waiter {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref().filter(|r| !r.task.is_finished()) {
            return Waiter {
                lanes: Some(r.lanes.subscribe()),
            };
        }
        match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => match listener.listen(WORK_CHANNEL).await {
                Ok(()) => {
                    let (lanes, receiver) = broadcast::channel(1024);
                    let task = tokio::spawn(forward(listener, lanes.clone()));
                    *running = Some(Running { lanes, task });
                    Waiter { lanes: Some(receiver) }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot LISTEN for work; claimers will poll");
                    Waiter { lanes: None }
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the work listener; claimers will poll");
                Waiter { lanes: None }
            }
        }
    }
}

impl Drop for WorkSignal {
    fn drop(&mut self) {
        if let Some(running) = self.running.get_mut().take() {
            running.task.abort();
        }
    }
}

async fn forward(mut listener: PgListener, lanes: broadcast::Sender<Arc<str>>) {
    loop {
        match listener.recv().await {
            Ok(notification) => {
                // No receiver is fine: nobody is waiting right now.
                let _ = lanes.send(Arc::from(notification.payload()));
            }
            Err(err) => {
                // The listener reconnects on the next `recv`; wake everyone so
                // they look for work they may have missed meanwhile.
                tracing::warn!(error = %err, "work listener error; reconnecting");
                let _ = lanes.send(Arc::from(""));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl Waiter {
    /// Wait until work may be claimable on `lane`, or `timeout` passes.
    pub(crate) async fn wait(&mut self, lane: &str, timeout: Duration) {
        let Some(receiver) = self.lanes.as_mut() else {
            tokio::time::sleep(timeout).await;
            return;
        };
        let woke = tokio::time::timeout(timeout, async {
            loop {
                match receiver.recv().await {
                    Ok(notified) if notified.is_empty() || &*notified == lane => return true,
                    Ok(_) => continue,
                    // Missed some: one of them may have been ours.
                    Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await;
        if woke == Ok(false) {
            // The listener is gone; poll from now on.
            self.lanes = None;
        }
    }
}
