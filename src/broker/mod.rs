//! The broker's state machine: peers, commands, channels and signals.
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
mod error;
mod events;
mod identity;
pub mod keys;
mod peers;
mod questions;
mod replica;
mod sessions;
mod signals;
mod system;

pub use commands::SendOutcome;
pub use error::BrokerError;
pub use events::{Event, EventSubscription};
pub use identity::Caller;
pub use peers::ContactGuard;

use crate::api::{Command, Message, Peer, Signal};
use crate::error_code::ErrorCode;
use crate::store::{Commit, Mutation, Store};
use crate::time::Timestamp;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
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
}

/// One peer and what the broker knows about it beyond the wire object.
struct PeerEntry {
    peer: Peer,
    /// Set by an explicit disconnect (`DELETE /peers/{id}`, MCP session end).
    disconnected: bool,
    /// Open long-polls and MCP sessions: each counts as contact.
    contacts: u32,
    /// The status last announced on the event stream.
    announced: crate::api::PeerStatus,
    /// The `lastSeen` last written to the store (contact is too frequent to
    /// persist every time; the sweeper catches up every half minute).
    saved_seen: Timestamp,
    /// The digest of the peer's key (`None` for peers saved before keys).
    key: Option<keys::KeyHash>,
    /// Its place in [`State::schedule`], if it has one.
    due: Option<i64>,
}

struct CommandEntry {
    ord: u64,
    command: Command,
}

struct Channel {
    /// The newest retained messages, contiguous up to `last_seq` (all the
    /// retained ones when the store keeps none).
    recent: std::collections::VecDeque<Message>,
    /// The oldest retained seq (`last_seq + 1` when none is retained).
    first_seq: u64,
    /// The last seq ever used.
    last_seq: u64,
    /// When the last message was sent.
    last_at: Option<Timestamp>,
}

#[derive(Default)]
struct State {
    peers: HashMap<Uuid, PeerEntry>,
    commands: HashMap<Uuid, CommandEntry>,
    /// Pending commands by target key (a role or a peer id), in FIFO order.
    queues: HashMap<String, BTreeSet<(u64, Uuid)>>,
    dedupe: HashMap<String, Uuid>,
    /// Finished commands in FIFO order, for retention.
    finished: BTreeSet<(u64, Uuid)>,
    /// Delivered, unacked commands by holder in FIFO order (a peer's
    /// `workingOn`), so nothing about one peer scans every command.
    held: HashMap<Uuid, BTreeSet<(u64, Uuid)>>,
    /// The holder of each delivered command (the reverse of `held`).
    holder_of: HashMap<Uuid, Uuid>,
    /// When each peer needs the sweeper next (ms since the epoch), soonest
    /// first: its status may change, its `lastSeen` is due to be saved, or
    /// it may be forgotten. Entries may be early, never late (contact only
    /// moves the real time later), so a sweep visits only what may change.
    schedule: BTreeSet<(i64, Uuid)>,
    next_ord: u64,
    channels: BTreeMap<String, Channel>,
    signals: BTreeMap<String, Signal>,
    /// Every question kept.
    questions: HashMap<Uuid, crate::api::Question>,
    /// Open questions with a ttl, soonest expiry first (ms since the epoch).
    question_expiry: BTreeSet<(i64, Uuid)>,
    /// Closed questions, oldest first, for retention.
    closed_questions: BTreeSet<Uuid>,
    /// Unfinished commands with a deadline not yet passed, soonest first
    /// (ms since the epoch).
    deadlines: BTreeSet<(i64, Uuid)>,
    /// Dashboard sessions: the digest of each id, and when it expires.
    sessions: HashMap<String, Timestamp>,
    /// The same sessions, soonest expiry first (ms since the epoch).
    session_expiry: BTreeSet<(i64, String)>,
    /// Wake-ups keyed by what is waited on.
    notifies: HashMap<WakeKey, Arc<Notify>>,
    events: events::EventLog,
}

impl State {
    /// Keeps [`State::deadlines`] in step with a command: listed while it
    /// has a deadline and is neither finished nor overdue.
    fn track_deadline(&mut self, c: &Command) {
        let Some(at) = c.deadline else { return };
        let key = (at.millis(), c.id);
        if c.status.is_terminal() || c.overdue {
            self.deadlines.remove(&key);
        } else {
            self.deadlines.insert(key);
        }
    }

    /// Keeps [`State::held`] in step with a command's new status.
    fn track_holder(&mut self, ord: u64, c: &Command) {
        if let Some(old) = self.holder_of.remove(&c.id) {
            if let Some(cmds) = self.held.get_mut(&old) {
                cmds.remove(&(ord, c.id));
                if cmds.is_empty() {
                    self.held.remove(&old);
                }
            }
        }
        if let (crate::api::CommandStatus::Delivered, Some(h)) = (c.status, c.delivered_to) {
            self.held.entry(h).or_default().insert((ord, c.id));
            self.holder_of.insert(c.id, h);
        }
    }

    /// The commands `peer` holds, oldest first.
    fn held_by(&self, peer: Uuid) -> Vec<Uuid> {
        self.held
            .get(&peer)
            .map(|s| s.iter().map(|(_, id)| *id).collect())
            .unwrap_or_default()
    }

    fn notify(&mut self, key: &WakeKey) -> Arc<Notify> {
        self.notifies
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Arms a wake-up on `key` (created on first use; [`Broker::park`]
    /// removes it again once nobody waits on it).
    fn arm(&mut self, key: WakeKey) -> (WakeKey, Armed) {
        let armed = arm(self.notify(&key));
        (key, armed)
    }

    fn wake(&self, key: &WakeKey) {
        if let Some(n) = self.notifies.get(key) {
            n.notify_waiters();
        }
    }
}

/// What a parked waiter waits on; a change wakes the waiters of its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum WakeKey {
    /// Commands for a target: a role, or a peer id.
    Queue(String),
    /// One command's outcome.
    Result(Uuid),
    /// New messages on a channel.
    Channel(String),
    /// A signal's emission.
    Signal(String),
    /// A question's answer (or its end).
    Question(Uuid),
}

/// A parked waiter: armed under the lock, awaited outside it.
type Armed = Pin<Box<tokio::sync::futures::OwnedNotified>>;

fn arm(n: Arc<Notify>) -> Armed {
    let mut f = Box::pin(n.notified_owned());
    f.as_mut().enable();
    f
}

/// Removes the wake-ups of a finished wait that nobody else holds.
struct ForgetUnused<'a> {
    broker: &'a Broker,
    keys: Vec<WakeKey>,
}

impl Drop for ForgetUnused<'_> {
    fn drop(&mut self) {
        let mut st = self.broker.lock();
        for k in &self.keys {
            if st
                .notifies
                .get(k)
                .is_some_and(|n| Arc::strong_count(n) == 1)
            {
                st.notifies.remove(k);
            }
        }
    }
}

/// How a wait ended when it did not get what it waited for.
enum WaitEnd {
    Woken,
    TimedOut,
}

/// Holds one of the broker's bounded waiter slots until dropped.
pub struct WaiterPermit {
    inner: Arc<Inner>,
}

impl Drop for WaiterPermit {
    fn drop(&mut self) {
        self.inner.waiters.fetch_sub(1, Ordering::Relaxed);
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
        let snapshot = store
            .load()
            .map_err(|e| BrokerError::store(e.to_string()))?;
        let shared = store.is_shared();
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
        if self.inner.shared {
            return self
                .inner
                .store
                .health()
                .map_err(|e| replica::shared_store_down(e, false));
        }
        self.inner.store.health().map_err(|e| {
            let e = match e {
                crate::store::StoreError::Write(why) => why,
                other => other.to_string(),
            };
            BrokerError::store(format!(
                "the store cannot save changes ({e}); check the disk and the data directory, then restart the broker"
            ))
        })
    }

    /// How long the broker has been running.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Starts the background sweeper (liveness, requeue on offline, ttl expiry).
    /// It stops when [`Broker::shutdown`] is called.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut every = broker.inner.config.sweep_interval;
            if broker.inner.shared {
                // Often enough to save the lastSeen of peers in contact
                // before any other node could take them for stale.
                let save = u64::try_from(broker.save_seen_every()).unwrap_or(u64::MAX);
                every = every.min(Duration::from_millis((save / 2).max(10)));
            }
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // With several nodes each sweeps in its turn, on the
                        // state every node agrees on, and only when something
                        // is due (a turn holds up every other node's writes).
                        if broker.inner.shared && !broker.sweep_due() {
                            continue;
                        }
                        match broker.turn(crate::store::TurnKind::Write).await {
                            Ok(_turn) => broker.sweep(),
                            Err(e) => tracing::debug!(error = %e, "sweep skipped"),
                        }
                    }
                    _ = broker.inner.shutdown.cancelled() => break,
                }
            }
        })
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

    /// Takes one of the bounded waiter slots (long-polls and streams), or says
    /// how to back off when all are in use.
    pub fn acquire_waiter(&self) -> Result<WaiterPermit, BrokerError> {
        let max = self.inner.config.max_waiters;
        let prev = self.inner.waiters.fetch_add(1, Ordering::Relaxed);
        let permit = WaiterPermit {
            inner: self.inner.clone(),
        };
        if prev >= max {
            drop(permit);
            return Err(BrokerError::new(ErrorCode::TooManyWaiters, format!(
                "the broker already holds {max} open waits and streams (--max-waiters); retry shortly or raise the limit"
            )));
        }
        Ok(permit)
    }

    /// How many wake-up entries exist (each has a parked waiter).
    pub fn wake_entries(&self) -> usize {
        self.lock().notifies.len()
    }

    /// How many waits and streams are open now.
    pub fn open_waiters(&self) -> usize {
        self.inner.waiters.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
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
        let lsn = self.inner.store.progress().queued();
        self.settled_through(lsn).await
    }

    /// Like [`Broker::settled`], for something made at store position `lsn`
    /// (an [`Event`]).
    pub async fn settled_through(&self, lsn: u64) -> Result<(), BrokerError> {
        self.inner.store.progress().settled(lsn).await.map_err(|_| {
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

    /// Parks on `armed` until woken, `deadline`, or shutdown. However the
    /// wait ends (even by being dropped), wake-ups nobody else waits on are
    /// removed, so the table does not grow with every name ever waited on.
    async fn park(&self, armed: Vec<(WakeKey, Armed)>, deadline: tokio::time::Instant) -> WaitEnd {
        let (keys, armed): (Vec<WakeKey>, Vec<Armed>) = armed.into_iter().unzip();
        let _forget = ForgetUnused { broker: self, keys };
        let woken = futures::future::select_all(armed);
        tokio::select! {
            _ = woken => WaitEnd::Woken,
            _ = tokio::time::sleep_until(deadline) => WaitEnd::TimedOut,
            _ = self.inner.shutdown.cancelled() => WaitEnd::TimedOut,
        }
    }

    /// Runs one sweep now and says how long it held the broker (for
    /// `cipc bench --sweep`).
    pub fn sweep_timed(&self) -> Duration {
        let t = Instant::now();
        self.sweep();
        t.elapsed()
    }

    /// Whether a sweep now could change anything: a peer, deadline,
    /// question or login due, or a pending command past its ttl.
    fn sweep_due(&self) -> bool {
        let now = self.now();
        let st = self.lock();
        let due = |at: Option<i64>| at.is_some_and(|at| at <= now.millis());
        due(st.schedule.first().map(|(at, _)| *at))
            || due(st.deadlines.first().map(|(at, _)| *at))
            || due(st.question_expiry.first().map(|(at, _)| *at))
            || due(st.session_expiry.first().map(|(at, _)| *at))
            || st.queues.values().flatten().any(|(_, id)| {
                st.commands
                    .get(id)
                    .and_then(|e| e.command.expires_at)
                    .is_some_and(|t| t <= now)
            })
    }

    fn sweep(&self) {
        // A shared store recovers in the next turn ([`replica`]).
        if !self.inner.shared && self.inner.store.progress().failing() {
            self.recover();
            return;
        }
        let now = self.now();
        let mut st = self.lock();
        let mut commits = Vec::new();
        self.sweep_peers(&mut st, now, &mut commits);
        self.sweep_expired(&mut st, now, &mut commits);
        self.sweep_overdue(&mut st, now, &mut commits);
        self.sweep_questions(&mut st, now, &mut commits);
        self.sweep_sessions(&mut st, now, &mut commits);
        drop(st);
        // The sweeper does not answer anyone; errors are logged by the store.
        drop(commits);
    }
}

impl State {
    /// Forgets every peer, command, channel, signal and question (not the
    /// dashboard logins), and wakes every waiter to find what it waited on gone.
    fn clear_all(&mut self) {
        self.peers.clear();
        self.commands.clear();
        self.queues.clear();
        self.dedupe.clear();
        self.finished.clear();
        self.held.clear();
        self.schedule.clear();
        self.holder_of.clear();
        self.channels.clear();
        self.signals.clear();
        self.questions.clear();
        self.question_expiry.clear();
        self.closed_questions.clear();
        self.deadlines.clear();
        for n in self.notifies.values() {
            n.notify_waiters();
        }
        self.notifies.clear();
    }

    fn restore(&mut self, snap: crate::store::Snapshot) {
        for stored in snap.peers {
            let p = stored.peer;
            let key = stored.key_hash.as_deref().and_then(keys::KeyHash::from_hex);
            let status = p.status;
            self.peers.insert(
                p.id,
                PeerEntry {
                    disconnected: status == crate::api::PeerStatus::Offline,
                    contacts: 0,
                    announced: status,
                    saved_seen: p.last_seen,
                    key,
                    due: None,
                    peer: p,
                },
            );
        }
        self.schedule.clear();
        for (ord, c) in snap.commands {
            self.next_ord = self.next_ord.max(ord + 1);
            if let Some(k) = &c.dedupe_key {
                self.dedupe.insert(k.clone(), c.id);
            }
            if c.status.is_terminal() {
                self.finished.insert((ord, c.id));
            }
            if c.status == crate::api::CommandStatus::Pending {
                self.queues
                    .entry(c.target.clone())
                    .or_default()
                    .insert((ord, c.id));
            }
            self.track_holder(ord, &c);
            self.track_deadline(&c);
            self.commands.insert(c.id, CommandEntry { ord, command: c });
        }
        for head in snap.channels {
            self.channels.insert(
                head.name,
                Channel {
                    recent: Default::default(),
                    first_seq: head.first_seq,
                    last_seq: head.last_seq,
                    last_at: None,
                },
            );
        }
        for m in snap.messages {
            let ch = self
                .channels
                .entry(m.channel.clone())
                .or_insert_with(|| Channel {
                    recent: Default::default(),
                    first_seq: m.seq,
                    last_seq: 0,
                    last_at: None,
                });
            ch.last_seq = ch.last_seq.max(m.seq);
            ch.first_seq = ch.first_seq.min(m.seq);
            ch.last_at = Some(m.sent_at);
            ch.recent.push_back(m);
        }
        for s in snap.signals {
            self.signals.insert(s.name.clone(), s);
        }
        for (hash, expires) in snap.sessions {
            self.put_session(hash, expires);
        }
        for q in snap.questions {
            if q.status == crate::api::QuestionStatus::Open {
                if let Some(at) = q.expires_at {
                    self.question_expiry.insert((at.millis(), q.id));
                }
            } else {
                self.closed_questions.insert(q.id);
            }
            self.questions.insert(q.id, q);
        }
    }
}

#[cfg(test)]
mod tests;
