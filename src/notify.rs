//! Notifications: wake-ups for claimers waiting on a lane, and the feed of
//! completion events.
//!
//! The statement that makes an execution claimable (create, retry, delay,
//! promotion when due, requeue after a lease expiry) issues
//! `pg_notify('ff_work', lane_id)`, whichever process runs it, but only while
//! some claimer has registered in `ff_listener` that it waits on that lane: a
//! notifying commit serialises with every other one, so a busy system, whose
//! workers find work without waiting, should not notify at all. One listener
//! connection per backend, started the first time a claim waits, fans the
//! notifications out to the waiting claimers. Notifications are a latency
//! optimisation only: a claimer also polls at a bounded interval, so a
//! notification lost while the listener reconnects costs time, not work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ff_core::engine_error::EngineError;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::BACKEND;
use crate::repo::ListenerRepo;

/// The channel work becoming claimable is notified on, with the lane id.
pub(crate) const WORK_CHANNEL: &str = "ff_work";

/// The channel completions are notified on, with the event id.
pub(crate) const COMPLETION_CHANNEL: &str = "ff_completion";

/// How often a completion feed renews its registration (`ff_has_listener`
/// ignores registrations older than 10 s).
const FEED_HEARTBEAT: Duration = Duration::from_secs(2);

/// Longest a waiting claimer sleeps without trying again.
pub(crate) const POLL_BACKSTOP: Duration = Duration::from_millis(500);

/// Fan-out of `ff_work` notifications.
#[derive(Debug)]
pub(crate) struct WorkSignal {
    registry: Arc<Registry>,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    lanes: broadcast::Sender<Arc<str>>,
    task: JoinHandle<()>,
}

/// A claimer's subscription to wake-ups on one lane.
pub(crate) struct Waiter {
    lanes: Option<broadcast::Receiver<Arc<str>>>,
    lane: String,
    registry: Arc<Registry>,
}

/// This backend's registrations in `ff_listener`.
#[derive(Debug)]
struct Registry {
    pool: PgPool,
    /// This backend's name in `ff_listener`.
    listener_id: Uuid,
    /// When each lane was last registered; a registration is renewed at most
    /// every [`REGISTRATION_REFRESH`], so waiting costs no write per poll.
    renewed: std::sync::Mutex<HashMap<String, Instant>>,
}

/// How often a lane's registration is renewed while claimers wait on it
/// (`ff_has_listener` ignores registrations older than 10 s).
const REGISTRATION_REFRESH: Duration = Duration::from_secs(3);

impl Registry {
    async fn renew(&self, lane: &str) {
        let due = {
            let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
            match renewed.get(lane) {
                Some(at) if at.elapsed() < REGISTRATION_REFRESH => false,
                _ => {
                    renewed.insert(lane.to_owned(), Instant::now());
                    true
                }
            }
        };
        if !due {
            return;
        }
        let registered = match self.pool.acquire().await {
            Ok(mut conn) => ListenerRepo::heartbeat(&mut conn, WORK_CHANNEL, lane, self.listener_id).await,
            Err(err) => Err(err),
        };
        if let Err(err) = registered {
            // Try again on the next wait rather than after a full refresh.
            self.renewed.lock().unwrap_or_else(|p| p.into_inner()).remove(lane);
            tracing::debug!(error = %err, "cannot register as a waiter; polling");
        }
    }
}

impl WorkSignal {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            registry: Arc::new(Registry {
                pool,
                listener_id: Uuid::new_v4(),
                renewed: std::sync::Mutex::new(HashMap::new()),
            }),
            running: Mutex::new(None),
        }
    }

    /// Subscribe to wake-ups on `lane`, starting the listener if it is not
    /// running, and register as waiting on it. Subscribe *before* looking for
    /// work, so that work made claimable in between is not missed. Without a
    /// listener (it could not connect), the waiter falls back to polling.
    pub(crate) async fn subscribe(&self, lane: &str) -> Waiter {
        let mut waiter = Waiter {
            lanes: self.receiver().await,
            lane: lane.to_owned(),
            registry: self.registry.clone(),
        };
        waiter.register().await;
        waiter
    }

    async fn receiver(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref().filter(|r| !r.task.is_finished()) {
            return Some(r.lanes.subscribe());
        }
        match PgListener::connect_with(&self.registry.pool).await {
            Ok(mut listener) => match listener.listen(WORK_CHANNEL).await {
                Ok(()) => {
                    let (lanes, receiver) = broadcast::channel(1024);
                    let task = tokio::spawn(forward(listener, lanes.clone()));
                    *running = Some(Running { lanes, task });
                    Some(receiver)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot LISTEN for work; claimers will poll");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the work listener; claimers will poll");
                None
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
    /// Register (again) as waiting on the lane, so that work made claimable
    /// there is notified. Without a listener there is nothing to notify.
    async fn register(&mut self) {
        if self.lanes.is_some() {
            self.registry.renew(&self.lane).await;
        }
    }

    /// Wait until work may be claimable on the lane, or `timeout` passes.
    pub(crate) async fn wait(&mut self, timeout: Duration) {
        self.sleep(timeout).await;
        self.register().await;
    }

    async fn sleep(&mut self, timeout: Duration) {
        let lane = self.lane.as_str();
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

/// A feed of completion events as they commit: the `event_id` of each row
/// written to `ff_completion_event`, from the moment the feed is opened.
/// Notifications can be lost (a reconnecting listener misses those sent
/// meanwhile); a consumer that must see every event reads the outbox from
/// its cursor and uses the feed only to learn when to look.
pub struct CompletionFeed {
    listener: PgListener,
    heartbeat: JoinHandle<()>,
}

impl CompletionFeed {
    pub(crate) async fn open(pool: &PgPool) -> Result<Self, EngineError> {
        let transport = |err: sqlx::Error| EngineError::Transport {
            backend: BACKEND,
            source: Box::new(err),
        };
        let mut listener = PgListener::connect_with(pool).await.map_err(transport)?;
        listener.listen(COMPLETION_CHANNEL).await.map_err(transport)?;
        let id = Uuid::new_v4();
        let mut conn = pool.acquire().await.map_err(transport)?;
        ListenerRepo::heartbeat(&mut conn, COMPLETION_CHANNEL, "*", id)
            .await
            .map_err(transport)?;
        drop(conn);
        let pool = pool.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(FEED_HEARTBEAT).await;
                if let Ok(mut conn) = pool.acquire().await
                    && let Err(err) = ListenerRepo::heartbeat(&mut conn, COMPLETION_CHANNEL, "*", id).await
                {
                    tracing::debug!(error = %err, "completion feed heartbeat failed");
                }
            }
        });
        Ok(Self { listener, heartbeat })
    }

    /// The next completion event id.
    pub async fn recv(&mut self) -> Result<i64, EngineError> {
        loop {
            let notification = self.listener.recv().await.map_err(|err| EngineError::Transport {
                backend: BACKEND,
                source: Box::new(err),
            })?;
            if let Ok(event_id) = notification.payload().parse() {
                return Ok(event_id);
            }
        }
    }
}

impl Drop for CompletionFeed {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}
