//! One MCP session: which peer it is bound to, whether it is busy, and what
//! happens when it ends.
//!
//! Both transports create one [`Session`] per MCP session. A session that
//! registers is bound to its peer, so later tools need no peer id. When the
//! session ends (legacy SSE stream closed, `DELETE /mcp`, or idle past the
//! broker's offline limit) its peer is disconnected, which puts the commands it
//! took and did not ack back in their role's queue, exactly as
//! `DELETE /peers/{id}` does.

use super::delivery::{Watch, Watches, STREAM_HEADER};
use crate::broker::{Broker, Caller, ContactGuard};
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
}

impl Hub {
    /// A hub over `broker`.
    pub fn new(broker: Broker, progress_every: Duration, idle_limit: Duration) -> Hub {
        Hub {
            progress_every,
            idle_limit,
            owners: Mutex::new(HashMap::new()),
            by_sid: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(1),
            manager: OnceLock::new(),
            watches: Arc::new(Watches::new(broker.clone())),
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
            address: Some("mcp".to_string()),
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
        if self.sid.set(sid.to_string()).is_ok() {
            self.hub
                .by_sid
                .lock()
                .insert(sid.to_string(), Arc::downgrade(self));
        }
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
                    s.expire().await;
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

    /// Ends an idle session, in rmcp too (the client's next request gets 404
    /// and it starts a new session).
    async fn expire(&self) {
        tracing::info!(
            session = self.sid.get().map_or("-", String::as_str),
            peer = ?self.peer(),
            "MCP session idle past the offline limit; ending it"
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
