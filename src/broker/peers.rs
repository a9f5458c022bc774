//! Peers: registration, liveness, and what happens when one leaves.
//!
//! (A file of one concern, the life of a peer, from connect to forgotten.)

use super::keys::{self, KeyHash};
use super::{Broker, BrokerError, Caller, PeerEntry, State, WakeKey};
use crate::api::{
    validate_name, ConnectRequest, DiscoverResponse, Peer, PeerStatus, Via, MAX_ATTENTION_LEN,
};
use crate::error_code::ErrorCode;
use crate::store::{Commit, Mutation, StoredPeer, TurnKind};
use crate::time::Timestamp;
use uuid::Uuid;

/// Keeps a peer counted as "in contact" (online) while alive: held by open
/// long-polls and MCP sessions.
pub struct ContactGuard {
    broker: Broker,
    id: Uuid,
}

impl Drop for ContactGuard {
    fn drop(&mut self) {
        let mut st = self.broker.lock();
        if let Some(e) = st.peers.get_mut(&self.id) {
            e.contacts = e.contacts.saturating_sub(1);
            e.peer.last_seen = self.broker.now();
        }
        self.broker.reschedule(&mut st, self.id);
    }
}

impl Broker {
    pub(super) fn status_of(&self, e: &PeerEntry, now: Timestamp) -> PeerStatus {
        if e.disconnected {
            return PeerStatus::Offline;
        }
        if e.contacts > 0 {
            return PeerStatus::Online;
        }
        let age = e.peer.last_seen.age(now);
        if age < self.inner.config.stale_after {
            PeerStatus::Online
        } else if age < self.inner.config.offline_after {
            PeerStatus::Stale
        } else {
            PeerStatus::Offline
        }
    }

    /// The wire view of a peer: status computed now, current work attached.
    fn render_peer(&self, st: &State, e: &PeerEntry, now: Timestamp) -> Peer {
        let mut p = e.peer.clone();
        p.status = self.status_of(e, now);
        p.working_on = st.held_by(p.id);
        if p.status == PeerStatus::Offline {
            // Nobody can answer a prompt in a session that is gone.
            p.attention = None;
        }
        p
    }

    /// Registers a peer (or reconnects a known id) and answers it with its
    /// key. Reconnecting a protected peer needs its key (`caller.key`), and
    /// then keeps that key; any other connect issues a new one, so a key is
    /// only ever known to whoever connected last.
    pub async fn connect(
        &self,
        req: ConnectRequest,
        via: Via,
        caller: &Caller,
    ) -> Result<(Peer, String), BrokerError> {
        validate_name("role", &req.role)?;
        let protect = req.protects();
        let caps = req.capabilities.unwrap_or_default();
        // Characters, not bytes, as the schema's maxLength counts them.
        if caps.len() > 64 || caps.iter().any(|c| c.is_empty() || c.chars().count() > 64) {
            return Err(BrokerError::new(
                ErrorCode::InvalidPeerDetails,
                "capabilities must be at most 64 tags of 1-64 characters each",
            ));
        }
        if let Some(agent) = &req.agent {
            validate_name("agent", agent)?;
        }
        if let Some(name) = &req.name {
            if name.chars().count() > 128 {
                return Err(BrokerError::new(
                    ErrorCode::InvalidPeerDetails,
                    "name must be at most 128 characters",
                ));
            }
        }
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (peer, key, role, commits) = {
            let mut st = self.lock();
            let id = req.id.unwrap_or_else(Uuid::now_v7);
            let known = st.peers.contains_key(&id);
            if known {
                self.prove_in(&st, id, caller)?;
            }
            let mut commits = Vec::new();
            if !known {
                self.make_room_for_peer(&mut st, now, &mut commits)?;
            }
            let key = match &caller.key {
                Some(k) if known && self.holds_key(&st, id, caller) => k.clone(),
                _ => keys::new_key(id),
            };
            let hash = KeyHash::of(&key);
            let mut requeue = Vec::new();
            let entry = match st.peers.get_mut(&id) {
                Some(e) => {
                    if e.peer.role != req.role {
                        // A changed role: what it held belongs to the old role's queue.
                        requeue.push(id);
                    }
                    e.peer.role = req.role.clone();
                    e.peer.capabilities = caps;
                    if req.name.is_some() {
                        e.peer.name = req.name;
                    }
                    if req.agent.is_some() {
                        e.peer.agent = req.agent;
                    }
                    e.peer.connected_at = now;
                    e.peer.last_seen = now;
                    e.peer.via = via;
                    e.peer.protected |= protect;
                    e.disconnected = false;
                    e.key = Some(hash);
                    e
                }
                None => st.peers.entry(id).or_insert(PeerEntry {
                    peer: Peer {
                        id,
                        role: req.role,
                        capabilities: caps,
                        name: req.name,
                        status: PeerStatus::Online,
                        connected_at: now,
                        last_seen: now,
                        via,
                        working_on: Vec::new(),
                        protected: protect,
                        attention: None,
                        agent: req.agent,
                    },
                    disconnected: false,
                    contacts: 0,
                    announced: PeerStatus::Online,
                    saved_seen: now,
                    key: Some(hash),
                    due: None,
                }),
            };
            entry.announced = PeerStatus::Online;
            for pid in requeue {
                self.requeue_held(&mut st, pid, now, &mut commits);
            }
            let peer = self.announce_peer(&mut st, id, now, &mut commits)?;
            // Whatever is queued for the role may now go to this peer.
            let role = peer.role.clone();
            st.wake(&WakeKey::Queue(role.clone()));
            (peer, key, role, commits)
        };
        tracing::info!(peer = %peer.id, role = %role, ?via, protected = peer.protected, "peer connected");
        Broker::committed(commits).await?;
        Ok((peer, key))
    }

    /// Before a new peer: at the cap, forgets the longest-offline peer, or
    /// refuses with 429 when none is offline.
    fn make_room_for_peer(
        &self,
        st: &mut State,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) -> Result<(), BrokerError> {
        let max = self.inner.config.max_peers.max(1);
        if st.peers.len() < max {
            return Ok(());
        }
        let victim = st
            .peers
            .values()
            .filter(|e| {
                self.status_of(e, now) == PeerStatus::Offline && !st.held.contains_key(&e.peer.id)
            })
            .min_by_key(|e| e.peer.last_seen)
            .map(|e| e.peer.id);
        let Some(victim) = victim else {
            return Err(BrokerError::new(ErrorCode::TooManyPeers, format!(
                "the broker already keeps {max} peers and none is offline (--max-peers); reconnect an existing peer by its key, or raise the limit"
            )));
        };
        self.forget_peer(st, victim, commits);
        Ok(())
    }

    /// Forgets a peer and its key for good.
    fn forget_peer(&self, st: &mut State, id: Uuid, commits: &mut Vec<Commit>) {
        // Ended when it went offline; a lease never outlives its holder.
        self.end_leases_of(st, id, self.now(), commits);
        if let Some(e) = st.peers.remove(&id) {
            if let Some(due) = e.due {
                st.schedule.remove(&(due, id));
            }
            tracing::info!(peer = %id, "peer forgotten");
            commits.push(self.persist(Mutation::ForgetPeer { id }));
            st.events
                .push("peer", &serde_json::json!({"id": id, "forgotten": true}));
        }
    }

    /// Persists and announces a peer's current view; returns it (404 for a
    /// peer that is gone).
    fn announce_peer(
        &self,
        st: &mut State,
        id: Uuid,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) -> Result<Peer, BrokerError> {
        let e = st.peers.get(&id).ok_or_else(|| unknown_peer(id))?;
        let peer = self.render_peer(st, e, now);
        self.save_peer(&peer, e.key.as_ref(), commits);
        st.events.push("peer", &peer);
        if let Some(e) = st.peers.get_mut(&id) {
            e.announced = peer.status;
            e.saved_seen = peer.last_seen;
        }
        self.reschedule(st, id);
        Ok(peer)
    }

    /// When `e` next needs the sweeper, or `None` while it is in contact
    /// (the end of the contact reschedules it).
    fn next_due(&self, e: &PeerEntry) -> Option<i64> {
        if e.contacts > 0 {
            // With several nodes, contact held here reaches the others only
            // as a saved lastSeen, so it is saved while it lasts.
            return self.inner.shared.then(|| {
                e.saved_seen
                    .millis()
                    .saturating_add(self.save_seen_every())
                    .max(self.now().millis() + 1)
            });
        }
        let cfg = &self.inner.config;
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let seen = e.peer.last_seen.millis();
        let status_change = match e.announced {
            _ if e.disconnected => seen.saturating_add(ms(cfg.forget_after)),
            PeerStatus::Online => seen.saturating_add(ms(cfg.stale_after)),
            PeerStatus::Stale => seen.saturating_add(ms(cfg.offline_after)),
            PeerStatus::Offline => seen.saturating_add(ms(cfg.forget_after)),
        };
        // Keep the stored lastSeen close to the truth (saved at most every
        // 30 s, and at the latest when the peer is next due), so a restart
        // does not mistake a busy peer for one long gone.
        let save = if e.peer.last_seen > e.saved_seen {
            e.saved_seen.millis().saturating_add(self.save_seen_every())
        } else {
            i64::MAX
        };
        // Never due in the past: a sweep must always get through its list.
        Some(status_change.min(save).max(self.now().millis() + 1))
    }

    /// How often a changed `lastSeen` is saved: every 30 s, or with
    /// several nodes often enough (a third of `--stale-after`) that no other
    /// node takes a live peer for a stale one.
    pub(super) fn save_seen_every(&self) -> i64 {
        if self.inner.shared {
            let stale =
                i64::try_from(self.inner.config.stale_after.as_millis()).unwrap_or(i64::MAX);
            (stale / 3).clamp(1, SAVE_SEEN_EVERY_MS)
        } else {
            SAVE_SEEN_EVERY_MS
        }
    }

    /// Puts a peer back in the schedule at its next due time.
    pub(super) fn reschedule(&self, st: &mut State, id: Uuid) {
        let next = st.peers.get(&id).and_then(|e| self.next_due(e));
        let Some(e) = st.peers.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut e.due, next);
        if let Some(old) = old {
            st.schedule.remove(&(old, id));
        }
        if let Some(next) = next {
            st.schedule.insert((next, id));
        }
    }

    fn save_peer(&self, peer: &Peer, key: Option<&KeyHash>, commits: &mut Vec<Commit>) {
        let mut stored = peer.clone();
        stored.working_on.clear();
        commits.push(self.persist(Mutation::Peer(Box::new(StoredPeer {
            peer: stored,
            key_hash: key.map(KeyHash::to_hex),
        }))));
    }

    /// Every known peer, oldest connection first.
    pub fn peers(&self) -> Vec<Peer> {
        let now = self.now();
        let st = self.lock();
        let mut out: Vec<Peer> = st
            .peers
            .values()
            .map(|e| self.render_peer(&st, e, now))
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// Online peers and their distinct roles.
    pub fn discover(&self) -> DiscoverResponse {
        let peers: Vec<Peer> = self
            .peers()
            .into_iter()
            .filter(|p| p.status == PeerStatus::Online)
            .collect();
        let mut roles: Vec<String> = peers.iter().map(|p| p.role.clone()).collect();
        roles.sort();
        roles.dedup();
        DiscoverResponse {
            count: peers.len(),
            peers,
            roles,
        }
    }

    /// One peer, or 404.
    pub fn peer(&self, id: Uuid) -> Result<Peer, BrokerError> {
        let now = self.now();
        let st = self.lock();
        let e = st.peers.get(&id).ok_or_else(|| unknown_peer(id))?;
        Ok(self.render_peer(&st, e, now))
    }

    /// Notes contact from `id` when `caller` may act as it: a protected
    /// peer is kept alive only by whoever holds its key, and a caller that
    /// names another peer never counts. (An unprotected peer's own curl loop
    /// names it only in the path, so anonymous polls must count for it.)
    pub fn touch_as(&self, id: Uuid, caller: &Caller) {
        if caller.peer.is_some_and(|p| p != id) {
            return;
        }
        if self.prove_in(&self.lock(), id, caller).is_ok() {
            self.touch(id);
        }
    }

    /// Notes contact from a peer (any request naming it). Unknown ids are
    /// ignored here; the routes that need the peer answer 404 themselves.
    pub(super) fn touch(&self, id: Uuid) {
        let now = self.now();
        let mut st = self.lock();
        if self.inner.shared {
            let Some(e) = st.peers.get_mut(&id) else {
                return;
            };
            let settle =
                self.status_of(e, now) == PeerStatus::Offline && e.announced != PeerStatus::Offline;
            let revive = settle || (!e.disconnected && e.announced != PeerStatus::Online);
            e.peer.last_seen = now;
            drop(st);
            if revive {
                self.in_turn_later(move |b| b.announce_contact(id, settle, now));
            }
            return;
        }
        let mut commits = Vec::new();
        self.settle_before_contact(&mut st, id, now, &mut commits);
        let Some(e) = st.peers.get_mut(&id) else {
            return;
        };
        e.peer.last_seen = now;
        if !e.disconnected && e.announced != PeerStatus::Online {
            let _ = self.announce_peer(&mut st, id, now, &mut commits);
        }
    }

    /// With several nodes, the part of contact that changes shared state
    /// (done in a turn): the work of a peer that had gone offline by silence
    /// is requeued and its leases taken before the contact (`seen`) end
    /// (`settle`), and the peer is announced online.
    fn announce_contact(&self, id: Uuid, settle: bool, seen: Timestamp) {
        let now = self.now();
        let mut st = self.lock();
        let mut commits = Vec::new();
        if settle {
            self.requeue_held(&mut st, id, now, &mut commits);
            self.end_leases_of_since(&mut st, id, Some(seen), now, &mut commits);
        }
        if let Some(e) = st.peers.get_mut(&id) {
            e.disconnected = false;
        }
        let _ = self.announce_peer(&mut st, id, now, &mut commits);
    }

    /// A peer that went offline by silence loses its held work even if it
    /// shows up again before the sweeper noticed: settle that first.
    fn settle_before_contact(
        &self,
        st: &mut State,
        id: Uuid,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        let Some(e) = st.peers.get(&id) else {
            return;
        };
        if self.status_of(e, now) == PeerStatus::Offline && e.announced != PeerStatus::Offline {
            self.requeue_held(st, id, now, commits);
            self.end_leases_of(st, id, now, commits);
            let _ = self.announce_peer(st, id, now, commits);
        }
    }

    /// Contact from a peer acting in a write turn of its own (taking or
    /// renewing a lease): like a heartbeat, it settles a peer that went
    /// offline by silence, then counts it online (reviving a disconnected
    /// one), so a lease is never granted to a holder the broker takes for
    /// gone.
    pub(super) fn revive_for(
        &self,
        st: &mut State,
        id: Uuid,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        self.settle_before_contact(st, id, now, commits);
        let Some(e) = st.peers.get_mut(&id) else {
            return;
        };
        e.peer.last_seen = now;
        let revive = e.disconnected || e.announced != PeerStatus::Online;
        e.disconnected = false;
        if revive {
            let _ = self.announce_peer(st, id, now, commits);
        }
    }

    /// `POST /peers/{id}/heartbeat`: refreshes `lastSeen` (reviving a
    /// disconnected peer) and answers the peer.
    pub async fn heartbeat(&self, id: Uuid, caller: &Caller) -> Result<Peer, BrokerError> {
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (peer, commits) = {
            let mut st = self.lock();
            self.prove_in(&st, id, caller)?;
            let mut commits = Vec::new();
            self.settle_before_contact(&mut st, id, now, &mut commits);
            let e = st.peers.get_mut(&id).ok_or_else(|| unknown_peer(id))?;
            e.peer.last_seen = now;
            e.disconnected = false;
            let peer = self.announce_peer(&mut st, id, now, &mut commits)?;
            (peer, commits)
        };
        Broker::committed(commits).await?;
        Ok(peer)
    }

    /// `PUT /peers/{id}/attention`: says why a person is needed now (a
    /// permission prompt, a question), or clears it (`None` or blank). Also
    /// counts as contact. A protected peer needs its key.
    pub async fn set_attention(
        &self,
        id: Uuid,
        attention: Option<String>,
        caller: &Caller,
    ) -> Result<Peer, BrokerError> {
        let attention = attention
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty());
        if let Some(a) = &attention {
            let len = a.chars().count();
            if len > MAX_ATTENTION_LEN {
                return Err(BrokerError::new(
                    ErrorCode::InvalidPeerDetails,
                    format!("attention is {len} characters long; at most {MAX_ATTENTION_LEN} (one line saying what the person should do)"),
                ));
            }
        }
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (peer, commits) = {
            let mut st = self.lock();
            self.prove_in(&st, id, caller)?;
            let mut commits = Vec::new();
            self.settle_before_contact(&mut st, id, now, &mut commits);
            let e = st.peers.get_mut(&id).ok_or_else(|| unknown_peer(id))?;
            e.peer.last_seen = now;
            e.disconnected = false;
            e.peer.attention = attention;
            let peer = self.announce_peer(&mut st, id, now, &mut commits)?;
            (peer, commits)
        };
        Broker::committed(commits).await?;
        Ok(peer)
    }

    /// Counts the peer as in contact until the guard is dropped (open waits,
    /// MCP sessions). A disconnected peer that shows up again is revived.
    pub fn contact(&self, id: Uuid) -> Result<ContactGuard, BrokerError> {
        let now = self.now();
        let mut st = self.lock();
        if self.inner.shared {
            let e = st.peers.get_mut(&id).ok_or_else(|| unknown_peer(id))?;
            let settle =
                self.status_of(e, now) == PeerStatus::Offline && e.announced != PeerStatus::Offline;
            let revive = settle || e.disconnected || e.announced != PeerStatus::Online;
            e.contacts += 1;
            e.peer.last_seen = now;
            e.disconnected = false;
            // In contact, it is due when its lastSeen must be saved again.
            self.reschedule(&mut st, id);
            drop(st);
            if revive {
                self.in_turn_later(move |b| b.announce_contact(id, settle, now));
            }
            return Ok(ContactGuard {
                broker: self.clone(),
                id,
            });
        }
        let mut commits = Vec::new();
        self.settle_before_contact(&mut st, id, now, &mut commits);
        let e = st.peers.get_mut(&id).ok_or_else(|| unknown_peer(id))?;
        e.contacts += 1;
        e.peer.last_seen = now;
        let revive = e.disconnected || e.announced != PeerStatus::Online;
        e.disconnected = false;
        if revive {
            let _ = self.announce_peer(&mut st, id, now, &mut commits);
        }
        Ok(ContactGuard {
            broker: self.clone(),
            id,
        })
    }

    /// `DELETE /peers/{id}`: offline now; its unacked commands go back to
    /// pending and its leases end. A protected peer needs its key.
    pub async fn disconnect(&self, id: Uuid, caller: &Caller) -> Result<Peer, BrokerError> {
        self.sync().await;
        self.prove_in(&self.lock(), id, caller)?;
        self.release_peer(id).await
    }

    /// `DELETE /peers/{id}?forget=true`: the peer is gone for good (its key
    /// too), after what leaving does (its commands requeued, its open
    /// permission questions closed). An offline peer may be forgotten by
    /// anyone (a person tidying up); an online protected one needs its key.
    pub async fn forget(&self, id: Uuid, caller: &Caller) -> Result<Peer, BrokerError> {
        self.sync().await;
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (peer, commits) = {
            let mut st = self.lock();
            let e = st.peers.get(&id).ok_or_else(|| unknown_peer(id))?;
            if self.status_of(e, now) != PeerStatus::Offline {
                self.prove_in(&st, id, caller)?;
            }
            let mut peer = self.render_peer(&st, e, now);
            peer.status = PeerStatus::Offline;
            let mut commits = Vec::new();
            self.peer_left(&mut st, id, now, &mut commits);
            self.forget_peer(&mut st, id, &mut commits);
            (peer, commits)
        };
        Broker::committed(commits).await?;
        Ok(peer)
    }

    /// What a peer leaving (disconnected, offline, forgotten) does to what
    /// it left behind: the commands it held go back to their queues, its
    /// open permission questions close and its leases end.
    fn peer_left(&self, st: &mut State, id: Uuid, now: Timestamp, commits: &mut Vec<Commit>) {
        self.requeue_held(st, id, now, commits);
        self.close_permissions_of(st, id, now, commits);
        self.end_leases_of(st, id, now, commits);
    }

    /// Takes a peer offline for the transport that owns its liveness (an
    /// MCP session that ended), which proved the peer when it bound it.
    pub async fn release_peer(&self, id: Uuid) -> Result<Peer, BrokerError> {
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (peer, commits) = {
            let mut st = self.lock();
            let e = st.peers.get_mut(&id).ok_or_else(|| unknown_peer(id))?;
            e.disconnected = true;
            let mut commits = Vec::new();
            self.peer_left(&mut st, id, now, &mut commits);
            let peer = self.announce_peer(&mut st, id, now, &mut commits)?;
            (peer, commits)
        };
        tracing::info!(peer = %id, "peer disconnected");
        Broker::committed(commits).await?;
        Ok(peer)
    }

    /// Liveness pass of the sweeper: announce status changes and requeue the
    /// work of peers that went offline.
    pub(super) fn sweep_peers(&self, st: &mut State, now: Timestamp, commits: &mut Vec<Commit>) {
        let forget_after = self.inner.config.forget_after;
        while let Some(&(due, id)) = st.schedule.first() {
            if due > now.millis() {
                break;
            }
            st.schedule.pop_first();
            let Some(e) = st.peers.get_mut(&id) else {
                continue;
            };
            e.due = None;
            if e.contacts > 0 {
                // Contact still held (only scheduled with several nodes).
                e.peer.last_seen = now;
            }
            if e.peer.last_seen.millis() - e.saved_seen.millis() >= self.save_seen_every() {
                e.saved_seen = e.peer.last_seen;
                let (peer, key) = (e.peer.clone(), e.key.clone());
                self.save_peer(&peer, key.as_ref(), commits);
            }
            let Some(e) = st.peers.get(&id) else {
                continue;
            };
            let status = self.status_of(e, now);
            if status != e.announced {
                if status == PeerStatus::Offline {
                    tracing::info!(peer = %id, "peer went offline; requeueing its unacked commands and ending its leases");
                    self.peer_left(st, id, now, commits);
                }
                // Announcing reschedules it.
                let _ = self.announce_peer(st, id, now, commits);
                continue;
            }
            let forget = e.announced == PeerStatus::Offline
                && e.contacts == 0
                && e.peer.last_seen.age(now) >= forget_after
                && !st.held.contains_key(&id);
            if forget {
                self.forget_peer(st, id, commits);
            } else {
                self.reschedule(st, id);
            }
        }
    }
}

/// How far the stored `lastSeen` may lag behind the real one.
const SAVE_SEEN_EVERY_MS: i64 = 30_000;

pub(super) fn unknown_peer(id: Uuid) -> BrokerError {
    BrokerError::new(ErrorCode::UnknownPeer, format!(
        "no peer with id {id}; connect first with POST /peers/connect (or `cipc peers connect ROLE`)"
    ))
}
