//! The broker's state machine: peers, commands, channels, signals,
//! questions and leases.
//!
//! Every door into the broker (REST, SSE, MCP, the dashboard) calls the methods
//! of [`Broker`]; none of them owns logic of its own. State lives in memory
//! behind one mutex whose critical sections never await; each change is handed
//! to the [`Store`](crate::store) in order while the lock is held, and the
//! caller awaits the commit before answering. Long-polls park on
//! [`tokio::sync::Notify`]s that are armed under the lock, so no wake-up is lost
//! and waiting costs nothing but the parked task.

mod channels;
pub mod clock;
mod commands;
mod delivery;
mod error;
mod events;
mod identity;
pub mod keys;
pub mod lease_paths;
mod leases;
mod peers;
mod questions;
mod replica;
mod results;
mod sessions;
mod signals;
mod state;
mod sweeper;
mod system;
mod wake;

pub use commands::{SendOutcome, Sent};
pub use error::BrokerError;
pub use events::{Event, EventSubscription};
pub use identity::{Caller, MCP_DOOR};
pub use peers::ContactGuard;
pub use wake::WaiterPermit;

use state::{Channel, CommandEntry, PeerEntry, State};
use wake::{WaitEnd, WakeKey};

use crate::store::{Commit, Mutation, Store};
use crate::time::Timestamp;
use parking_lot::{Mutex, MutexGuard};
use std::cell::Cell;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Tunables of the state machine (the `cipc serve` flags set them).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// A peer silent this long is `stale`.
    pub stale_after: Duration,
    /// A peer silent this long is `offline` and its unacked commands are requeued.
    pub offline_after: Duration,
    /// Messages kept per channel; older ones are trimmed.
    pub channel_retention: usize,
    /// Finished commands kept (with their results); the oldest are forgotten.
    pub command_retention: usize,
    /// Concurrent long-polls and streams allowed in all.
    pub max_waiters: usize,
    /// Dashboard events kept for `Last-Event-ID` resume.
    pub event_history: usize,
    /// How often the sweeper checks liveness and expiry.
    pub sweep_interval: Duration,
    /// An offline peer is forgotten after this long.
    pub forget_after: Duration,
    /// Peers kept at most (the longest-offline is forgotten past it).
    pub max_peers: usize,
    /// Channels kept at most (the longest-idle unfollowed one goes past it).
    pub max_channels: usize,
    /// Signals kept at most (the longest-idle unwaited one goes past it).
    pub max_signals: usize,
    /// Leases held at most across all repos (a request past it is a 429),
    /// so no client can fill the broker's memory with them.
    pub max_leases: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            stale_after: Duration::from_secs(90),
            offline_after: Duration::from_secs(15 * 60),
            channel_retention: 10_000,
            command_retention: 10_000,
            max_waiters: 4096,
            event_history: 2048,
            sweep_interval: Duration::from_secs(1),
            forget_after: Duration::from_secs(24 * 3600),
            max_peers: 10_000,
            max_channels: 10_000,
            max_signals: 10_000,
            max_leases: 10_000,
        }
    }
}

/// A cheap, cloneable handle to one broker.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    store: Arc<dyn Store>,
    config: BrokerConfig,
    started: Instant,
    shutdown: CancellationToken,
    waiters: AtomicUsize,
    /// Messages per channel kept in memory.
    recent_kept: usize,
    /// Where every rule reads the time.
    clock: Arc<dyn clock::Clock>,
    /// Whether other nodes share the store ([`replica`]).
    shared: bool,
    /// The store's progress, read each time the lock is released.
    progress: Arc<crate::store::Progress>,
}

tokio::task_local! {
    /// The newest store position a request could have seen: every release
    /// of the state lock inside [`Broker::observing`] raises it to the last
    /// position handed out, which covers every change visible under that
    /// lock (changes get their positions under it).
    static SEEN: Cell<u64>;
}

/// The state lock, held. Releasing it records what the holder could have
/// seen ([`SEEN`]), so an answer waits for those changes to be durable and
/// not for the ones other requests queued after it let go.
struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    progress: &'a crate::store::Progress,
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Still under the lock: exactly the positions this holder saw.
        let queued = self.progress.queued();
        let _ = SEEN.try_with(|seen| seen.set(seen.get().max(queued)));
    }
}

impl Broker {
    /// Builds a broker over `store`, restoring whatever it holds.
    pub fn open(store: Arc<dyn Store>, config: BrokerConfig) -> Result<Broker, BrokerError> {
        Broker::open_with_clock(store, config, Arc::new(clock::SystemClock))
    }

    /// Like [`Broker::open`], reading the time from `clock` (unit tests move
    /// a [`clock::ManualClock`] instead of sleeping).
    pub fn open_with_clock(
        store: Arc<dyn Store>,
        config: BrokerConfig,
        clock: Arc<dyn clock::Clock>,
    ) -> Result<Broker, BrokerError> {
        let recent_kept = if store.serves_messages() {
            crate::store::RECENT_KEPT.min(config.channel_retention.max(1))
        } else {
            config.channel_retention.max(1)
        };
        let snapshot = store.load()?;
        let shared = store.is_shared();
        let progress = store.progress();
        let mut events = events::EventLog::new(config.event_history, store.progress());
        if shared {
            let relay_to = store.clone();
            events = events.shared(Arc::new(move |kind, data| {
                relay_to.record_event(kind, data);
            }));
        }
        let mut state = State {
            events,
            ..State::default()
        };
        state.restore(snapshot);
        if store.unclean_start() {
            state.unconfirmed = state.holder_of.keys().copied().collect();
            if !state.unconfirmed.is_empty() {
                tracing::info!(
                    deliveries = state.unconfirmed.len(),
                    "the last broker did not stop cleanly: each delivery it made goes to its taker again when it waits"
                );
            }
        }
        let broker = Broker {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                store,
                config,
                started: Instant::now(),
                shutdown: CancellationToken::new(),
                waiters: AtomicUsize::new(0),
                recent_kept,
                clock,
                shared,
                progress,
            }),
        };
        broker.schedule_all(&mut broker.lock());
        Ok(broker)
    }

    /// Puts every peer in the liveness schedule (after loading state).
    fn schedule_all(&self, st: &mut State) {
        let ids: Vec<Uuid> = st.peers.keys().copied().collect();
        for id in ids {
            self.reschedule(st, id);
        }
    }

    /// A broker that keeps nothing on disk (tests, `--memory`).
    pub fn in_memory(config: BrokerConfig) -> Broker {
        match Broker::open(Arc::new(crate::store::MemoryStore::default()), config) {
            Ok(b) => b,
            Err(_) => unreachable!("the memory store always loads"),
        }
    }

    /// The time, as this broker's clock says.
    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The tunables this broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// Where the data lives, for the start-up line.
    pub fn store_description(&self) -> String {
        self.inner.store.describe()
    }

    /// Whether the store can save changes now (for `/healthz`).
    pub fn store_health(&self) -> Result<(), BrokerError> {
        self.inner.store.health().map_err(BrokerError::from)
    }

    /// How long the broker has been running.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Answers every parked wait (as timed out) and refuses new ones; then the
    /// caller flushes the store with [`Broker::close_store`].
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// True once [`Broker::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// A token that is cancelled when the broker shuts down (for streams).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Flushes every queued write to disk and closes the store.
    pub fn close_store(&self) {
        self.inner.store.close();
    }

    fn lock(&self) -> Locked<'_> {
        Locked {
            guard: self.inner.state.lock(),
            progress: &self.inner.progress,
        }
    }

    /// Queues a mutation; call under the state lock so the store sees changes
    /// in the order they happened.
    fn persist(&self, m: Mutation) -> Commit {
        self.inner.store.apply(m)
    }

    /// Resolves once everything changed so far is saved, so what the caller
    /// read from the broker may be shown; a 503 when some of it was lost to
    /// a failed commit (principle 8: nothing visible before it is durable).
    pub async fn settled(&self) -> Result<(), BrokerError> {
        let lsn = self.inner.progress.queued();
        self.settled_through(lsn).await
    }

    /// Runs `work` (a request's handler) noting the newest store position
    /// it could have seen under the state lock; then [`Broker::settled_through`]
    /// that position is what its answer must wait for. Waiting for
    /// [`Broker::settled`] instead would also wait for every change other
    /// requests queued meanwhile: under load, one more commit per answer.
    /// Only for work that reads the broker in its own task (REST handlers
    /// do; a reader in a spawned task must settle for itself).
    pub async fn observing<T>(&self, work: impl std::future::Future<Output = T>) -> (T, u64) {
        SEEN.scope(Cell::new(0), async move {
            let out = work.await;
            (out, SEEN.with(Cell::get))
        })
        .await
    }

    /// Like [`Broker::settled`], for something made at store position `lsn`
    /// (an [`Event`]).
    pub async fn settled_through(&self, lsn: u64) -> Result<(), BrokerError> {
        self.inner.progress.settled(lsn).await.map_err(|_| {
            BrokerError::store(
                "the broker could not save a change this answer depends on (see /healthz); retry shortly",
            )
        })
    }

    /// After a failed commit: once the store can write again, starts over
    /// from what it holds, so no trace of the lost changes stays in memory.
    /// Waiters are woken to look again; dashboards are told to refetch.
    fn recover(&self) {
        let mut st = self.lock();
        let snapshot = match self.inner.store.recover() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "store still failing; will retry");
                return;
            }
        };
        self.start_over(&mut st, snapshot);
    }

    /// Replaces the state with `snapshot` (after a failed commit, or when a
    /// node of a shared store fell behind). Waits and the event stream carry
    /// over: waiters are woken to look again, dashboards are told to
    /// refetch, and contact held open here (long-polls, MCP sessions) still
    /// counts.
    fn start_over(&self, st: &mut State, snapshot: crate::store::Snapshot) {
        let mut fresh = State {
            events: std::mem::take(&mut st.events),
            notifies: std::mem::take(&mut st.notifies),
            ..State::default()
        };
        fresh.restore(snapshot);
        // Deliveries still owed a second answer stay owed if still held.
        fresh.unconfirmed = std::mem::take(&mut st.unconfirmed)
            .into_iter()
            .filter(|id| fresh.holder_of.contains_key(id))
            .collect();
        for (id, e) in &st.peers {
            if let Some(f) = fresh.peers.get_mut(id) {
                f.contacts = e.contacts;
                f.peer.last_seen = f.peer.last_seen.max(e.peer.last_seen);
                if e.contacts > 0 {
                    f.disconnected = false;
                }
            }
        }
        *st = fresh;
        self.schedule_all(st);
        for n in st.notifies.values() {
            n.notify_waiters();
        }
        st.events.push_local("resync", serde_json::json!({}));
    }

    /// Awaits every commit; the first failure wins.
    async fn committed(commits: Vec<Commit>) -> Result<(), BrokerError> {
        for c in commits {
            c.await.map_err(|e| {
                BrokerError::store(format!(
                    "the change could not be saved ({e}); it may not survive a restart"
                ))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
