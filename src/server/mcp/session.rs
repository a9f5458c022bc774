//! One MCP session: which peer it is bound to, whether it is busy, and what
//! happens when it ends.
//!
//! Both transports create one [`Session`] per MCP session. A session that
//! registers is bound to its peer, so later tools need no peer id. When the
//! session ends (legacy SSE stream closed, `DELETE /mcp`, or idle past the
//! broker's offline limit) its peer is disconnected, which puts the commands it
//! took and did not ack back in their role's queue, exactly as
//! `DELETE /peers/{id}` does.
//!
//! A session with a transport session (a Streamable HTTP one with an
//! `Mcp-Session-Id`, or a legacy SSE stream) holds one of `--max-mcp-sessions`
//! seats ([`Seats`]) from its start until it ends; each costs a worker task
//! and its buffers, so the seats bound the memory a flood of `initialize`
//! calls can take. Stateless requests (protocol `2026-07-28`) hold none.

use super::delivery::{Watch, Watches, STREAM_HEADER};
use crate::broker::{Broker, Caller, ContactGuard};
use crate::error_code::ErrorCode;
use crate::server::error::ApiError;
use parking_lot::Mutex;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::SessionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The header that names a Streamable HTTP session.
pub(super) const SESSION_HEADER: &str = "mcp-session-id";

/// What all MCP sessions of one server share.
pub(super) struct Hub {
    /// The state machine every tool calls.
    pub broker: Broker,
    /// How often a blocking tool reports progress while it waits.
    pub progress_every: Duration,
    /// A Streamable HTTP session with no traffic for this long ends.
    pub idle_limit: Duration,
    /// Which session (by serial) owns each bound peer: only the latest
    /// session that bound a peer disconnects it when it ends.
    owners: Mutex<HashMap<Uuid, u64>>,
    /// Streamable HTTP sessions by their `Mcp-Session-Id`.
    by_sid: Mutex<HashMap<String, Weak<Session>>>,
    next_serial: AtomicU64,
    /// rmcp's session manager, to end idle Streamable HTTP sessions.
    manager: OnceLock<Arc<LocalSessionManager>>,
    /// The open POST streams of `/mcp`, so tools know when theirs closed.
    pub watches: Arc<Watches>,
    /// The live sessions, at most `--max-mcp-sessions` of them.
    seats: Seats,
    /// Sessions whose `initialize` is being answered, by the serial of the
    /// POST that carries it, so the `/mcp` route can tell them the
    /// `Mcp-Session-Id` rmcp gave them (the handler never sees it).
    opening: Mutex<HashMap<u64, Weak<Session>>>,
}

/// The seats of live MCP sessions: every session with a transport session
/// holds one, so there are never more than `max` at once.
struct Seats {
    max: usize,
    inner: Mutex<SeatsInner>,
    /// Sessions that took a seat and are not freed yet, for `GET /status`.
    live: LiveSessions,
}

struct SeatsInner {
    /// The seated sessions, by serial.
    seated: HashMap<u64, Weak<Session>>,
    /// Seats promised to sessions still being opened ([`Ticket`]s).
    reserved: usize,
}

/// How many MCP sessions the broker holds now: each counts from the moment
/// it takes a seat until its memory is freed (a session ending frees its seat
/// at once and its memory a moment later, when rmcp drops its worker). The
/// MCP routes keep it, `GET /status` shows it (`mcpSessions`).
#[derive(Debug, Clone, Default)]
pub struct LiveSessions(Arc<AtomicUsize>);

impl LiveSessions {
    /// The number of live MCP sessions.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A seat promised to a session being opened; given back on drop unless
/// [`Ticket::seat`] hands it to the session.
pub(super) struct Ticket {
    hub: Arc<Hub>,
    used: bool,
}

impl Ticket {
    /// Seats `session` on this ticket's seat.
    pub fn seat(mut self, session: &Arc<Session>) {
        self.used = true;
        let mut inner = self.hub.seats.inner.lock();
        inner.reserved -= 1;
        inner.seated.insert(session.serial, Arc::downgrade(session));
        if !session.seated.swap(true, Ordering::AcqRel) {
            self.hub.seats.live.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.used {
            self.hub.seats.inner.lock().reserved -= 1;
        }
    }
}

impl Hub {
    /// A hub over `broker`, with room for `max_sessions` live sessions whose
    /// count `live` shows.
    pub fn new(
        broker: Broker,
        progress_every: Duration,
        idle_limit: Duration,
        max_sessions: usize,
        live: LiveSessions,
    ) -> Hub {
        Hub {
            progress_every,
            idle_limit,
            owners: Mutex::new(HashMap::new()),
            by_sid: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(1),
            manager: OnceLock::new(),
            watches: Arc::new(Watches::new(broker.clone())),
            seats: Seats {
                max: max_sessions.max(1),
                inner: Mutex::new(SeatsInner {
                    seated: HashMap::new(),
                    reserved: 0,
                }),
                live,
            },
            opening: Mutex::new(HashMap::new()),
            broker,
        }
    }

    /// Lets idle sessions be closed in rmcp as well.
    pub fn set_manager(&self, manager: Arc<LocalSessionManager>) {
        let _ = self.manager.set(manager);
    }

    /// The live session with this `Mcp-Session-Id`, if we have seen it.
    pub fn session_by_sid(&self, sid: &str) -> Option<Arc<Session>> {
        self.by_sid.lock().get(sid).and_then(Weak::upgrade)
    }

    /// True if rmcp still serves the Streamable HTTP session `sid`.
    pub async fn has_sid(&self, sid: &str) -> bool {
        match self.manager.get() {
            Some(m) => m.has_session(&sid.into()).await.unwrap_or(false),
            None => false,
        }
    }

    /// A seat for a new session. Past the cap, the longest-idle session with
    /// nothing in flight ends to make room (one not bound to a peer first,
    /// since ending a bound one takes its peer offline); when every session
    /// has a request in flight, the answer is 429 `too_many_sessions`.
    pub async fn reserve(self: &Arc<Self>) -> Result<Ticket, ApiError> {
        // Sessions are upgraded under the lock but dropped after it: the
        // last reference going away runs `Session::drop`, which takes it.
        let mut held = Vec::new();
        let victim = {
            let mut inner = self.seats.inner.lock();
            inner.seated.retain(|_, w| w.strong_count() > 0);
            if inner.seated.len() + inner.reserved < self.seats.max {
                inner.reserved += 1;
                None
            } else {
                held.extend(inner.seated.values().filter_map(Weak::upgrade));
                let victim = held
                    .iter()
                    .filter(|s| s.evictable())
                    .min_by_key(|s| (s.peer().is_some(), std::cmp::Reverse(s.quiet())))
                    .cloned();
                let Some(victim) = victim else {
                    drop(inner);
                    drop(held);
                    return Err(ApiError::new(
                        ErrorCode::TooManySessions,
                        format!(
                            "the broker already has {} live MCP sessions (--max-mcp-sessions) and every one has a request in flight; retry when one finishes, end unused ones with DELETE /mcp, or start cipc serve with a larger --max-mcp-sessions",
                            self.seats.max
                        ),
                    ));
                };
                inner.seated.remove(&victim.serial);
                inner.reserved += 1;
                Some(victim)
            }
        };
        drop(held);
        if let Some(victim) = victim {
            victim
                .end("MCP session evicted: --max-mcp-sessions reached and it was the longest idle")
                .await;
        }
        Ok(Ticket {
            hub: self.clone(),
            used: false,
        })
    }

    /// Gives a session's seat back (idempotent).
    fn leave(&self, serial: u64) {
        self.seats.inner.lock().seated.remove(&serial);
    }

    /// After rmcp answered POST `serial`: if it carried an `initialize` that
    /// opened a session (`ticket` holds its seat), the session learns its
    /// `Mcp-Session-Id` and takes the seat. Without a session id (rmcp
    /// refused the request) the seat is given back.
    pub fn opened(&self, serial: u64, sid: Option<&str>, ticket: Option<Ticket>) {
        let session = self.opening.lock().remove(&serial);
        let (Some(session), Some(sid), Some(ticket)) =
            (session.and_then(|w| w.upgrade()), sid, ticket)
        else {
            return;
        };
        ticket.seat(&session);
        session.learn_sid(sid);
    }
}

/// Which door a session came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Door {
    /// `/mcp` (Streamable HTTP): no stream tells us the client left, so the
    /// session ends after `idle_limit` without traffic.
    Streamable,
    /// `/mcp/sse` (legacy HTTP+SSE): the open stream is the session, and
    /// holds the bound peer online while it is open.
    LegacySse,
}

struct Bound {
    id: Uuid,
    /// The key `connect` answered, so the session proves its peer by itself.
    key: String,
    _contact: Option<ContactGuard>,
}

/// One MCP session's state.
pub(super) struct Session {
    hub: Arc<Hub>,
    serial: u64,
    door: Door,
    bound: Mutex<Option<Bound>>,
    sid: OnceLock<String>,
    last_active: Mutex<Instant>,
    busy: AtomicUsize,
    idle: Notify,
    ended: CancellationToken,
    finished: AtomicBool,
    watchdog: AtomicBool,
    /// Took a seat, so counts in [`LiveSessions`] until dropped.
    seated: AtomicBool,
}

/// Counts a request as in flight (the session is not idle) until dropped.
pub(super) struct Busy<'a>(&'a Session);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.last_active.lock() = Instant::now();
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Session {
    /// A new, unbound session. Cheap and side-effect free: rmcp also builds
    /// handlers just to read tool schemas.
    pub fn new(hub: Arc<Hub>, door: Door) -> Arc<Session> {
        let serial = hub.next_serial.fetch_add(1, Ordering::Relaxed);
        Arc::new(Session {
            hub,
            serial,
            door,
            bound: Mutex::new(None),
            sid: OnceLock::new(),
            last_active: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            idle: Notify::new(),
            ended: CancellationToken::new(),
            finished: AtomicBool::new(false),
            watchdog: AtomicBool::new(false),
            seated: AtomicBool::new(false),
        })
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.hub.broker
    }

    /// The shared settings.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Cancelled when the session ends: blocking tools return at once.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    /// Marks a request in flight until the guard drops.
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::AcqRel);
        *self.last_active.lock() = Instant::now();
        Busy(self)
    }

    /// Notes traffic that is not a request (notifications).
    pub fn active(&self) {
        *self.last_active.lock() = Instant::now();
    }

    /// The peer this session is bound to.
    pub fn peer(&self) -> Option<Uuid> {
        self.bound.lock().as_ref().map(|b| b.id)
    }

    /// Who is calling when a tool gives no `peer_key`: the bound peer with
    /// its key, or an anonymous MCP client.
    pub fn caller(&self) -> Caller {
        let bound = self.bound.lock();
        Caller {
            peer: bound.as_ref().map(|b| b.id),
            key: bound.as_ref().map(|b| b.key.clone()),
            address: Some(crate::broker::MCP_DOOR.to_string()),
        }
    }

    /// True for a request served without a transport session (protocol
    /// `2026-07-28`, or a client that never initialized): nothing outlives
    /// the request, so identity comes from the tools' `peer_key` alone.
    pub fn is_stateless(&self) -> bool {
        self.door == Door::Streamable && self.sid.get().is_none()
    }

    /// The watch of the `/mcp` POST that carries this request, if any (the
    /// legacy SSE door has none: its stream is the session itself).
    pub fn watch(&self, ext: &rmcp::model::Extensions) -> Option<Arc<Watch>> {
        let serial = ext
            .get::<axum::http::request::Parts>()?
            .headers
            .get(STREAM_HEADER)?
            .to_str()
            .ok()?;
        self.hub.watches.get(serial)
    }

    /// Learns the Streamable HTTP session id from a request's headers.
    pub fn note_request(self: &Arc<Self>, ext: &rmcp::model::Extensions) {
        if self.door != Door::Streamable || self.sid.get().is_some() {
            return;
        }
        let Some(sid) = ext
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get(SESSION_HEADER))
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        self.learn_sid(sid);
    }

    /// Notes that this session is answering the `initialize` of a `/mcp`
    /// POST, so [`Hub::opened`] can seat it and tell it its session id.
    pub fn note_initialize(self: &Arc<Self>, ext: &rmcp::model::Extensions) {
        let serial = ext
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get(STREAM_HEADER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Door::Streamable, Some(serial)) = (self.door, serial) {
            self.hub.opening.lock().insert(serial, Arc::downgrade(self));
        }
    }

    fn learn_sid(self: &Arc<Self>, sid: &str) {
        if self.sid.set(sid.to_string()).is_ok() {
            self.hub
                .by_sid
                .lock()
                .insert(sid.to_string(), Arc::downgrade(self));
        }
    }

    /// How long since the session's last traffic.
    fn quiet(&self) -> Duration {
        self.last_active.lock().elapsed()
    }

    /// True if the session may end to make room for a new one: nothing in
    /// flight, not ending already, and (on `/mcp`) its `initialize` answered.
    fn evictable(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
            && !self.finished.load(Ordering::Acquire)
            && (self.door == Door::LegacySse || self.sid.get().is_some())
    }

    /// Binds this session to `id` (after a successful connect). A session
    /// that was bound to another peer lets that one go first. A stateless
    /// request binds nothing: its peer's liveness comes from its calls and
    /// the stale/offline timers, never from the end of one request.
    pub async fn bind(&self, id: Uuid, key: String) {
        if self.is_stateless() {
            return;
        }
        let contact = match self.door {
            Door::LegacySse => self.hub.broker.contact(id).ok(),
            Door::Streamable => None,
        };
        let old = self.bound.lock().replace(Bound {
            id,
            key,
            _contact: contact,
        });
        self.hub.owners.lock().insert(id, self.serial);
        if let Some(old) = old.filter(|o| o.id != id) {
            self.release(old).await;
        }
    }

    /// Forgets the binding without disconnecting (the peer is gone already,
    /// e.g. after a reset).
    pub fn unbind(&self) {
        if let Some(b) = self.bound.lock().take() {
            self.disown(b.id);
        }
    }

    /// Gives up ownership of peer `id` if this session holds it; true if it did
    /// (a newer session that bound the same peer keeps it).
    fn disown(&self, id: Uuid) -> bool {
        let mut owners = self.hub.owners.lock();
        let mine = owners.get(&id) == Some(&self.serial);
        if mine {
            owners.remove(&id);
        }
        mine
    }

    /// Disconnects a peer this session let go of, unless a newer session owns it.
    async fn release(&self, b: Bound) {
        let id = b.id;
        drop(b);
        let owned = self.disown(id);
        if owned && !self.hub.broker.is_shutting_down() {
            match self.hub.broker.release_peer(id).await {
                Ok(_) => tracing::info!(peer = %id, "MCP session ended; peer disconnected"),
                Err(e) => tracing::debug!(peer = %id, error = %e, "MCP session ended"),
            }
        }
    }

    /// Ends the session: blocking tools return, in-flight calls get a moment
    /// to finish, then the bound peer is disconnected (its unacked commands
    /// go back to their queue). Idempotent.
    pub async fn finish(&self) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        self.hub.leave(self.serial);
        self.ended.cancel();
        // A handler that took a command must finish before the requeue, or
        // the command would stay delivered to a peer that is gone.
        let drained = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.busy.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
        if let Some(sid) = self.sid.get() {
            self.hub.by_sid.lock().remove(sid);
        }
        let bound = self.bound.lock().take();
        if let Some(b) = bound {
            self.release(b).await;
        }
    }

    /// Starts the idle watchdog of a Streamable HTTP session (once).
    pub fn start_watchdog(self: &Arc<Self>) {
        if self.door != Door::Streamable || self.watchdog.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let ended = self.ended.clone();
        let limit = self.hub.idle_limit;
        tokio::spawn(async move {
            loop {
                let Some(s) = weak.upgrade() else { return };
                let busy = s.busy.load(Ordering::Acquire) > 0;
                let quiet = s.last_active.lock().elapsed();
                if !busy && quiet >= limit {
                    s.end("MCP session idle past the offline limit; ending it")
                        .await;
                    return;
                }
                drop(s);
                let wait = if busy { limit } else { limit - quiet };
                tokio::select! {
                    _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
                    _ = ended.cancelled() => return,
                }
            }
        });
    }

    /// Ends a session the client did not end (idle, or evicted), in rmcp
    /// too: rmcp drops its worker and our handler with it, and the client's
    /// next request gets 404, so it starts a new session. A legacy session's
    /// stream closes when `ended` is cancelled.
    async fn end(&self, why: &'static str) {
        tracing::info!(
            session = self.sid.get().map_or("-", String::as_str),
            peer = ?self.peer(),
            "{why}"
        );
        if let (Some(sid), Some(m)) = (self.sid.get(), self.hub.manager.get()) {
            let _ = m.close_session(&sid.as_str().into()).await;
        }
        self.finish().await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ended.cancel();
        self.hub.leave(self.serial);
        if *self.seated.get_mut() {
            self.hub.seats.live.0.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(sid) = self.sid.get() {
            self.hub.by_sid.lock().remove(sid);
        }
        // The transport went away without `finish` (e.g. rmcp's own session
        // timeout): release the peer from a task, since drop cannot await.
        let Some(b) = self.bound.get_mut().take() else {
            return;
        };
        let id = b.id;
        drop(b);
        let owned = self.disown(id);
        if !owned || self.hub.broker.is_shutting_down() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let broker = self.hub.broker.clone();
            rt.spawn(async move {
                if broker.release_peer(id).await.is_ok() {
                    tracing::info!(peer = %id, "MCP session closed; peer disconnected");
                }
            });
        }
    }
}
