//! The broker's state: what it knows of peers, commands, channels, signals,
//! questions and logins, with the indexes that keep every rule from
//! scanning everything. One mutex guards it ([`super::Broker`]); the rules
//! that change it live in the sibling files, one per concern.

use super::lease_paths::PathPattern;
use super::{events, keys, WakeKey};
use crate::api::{Command, Lease, LeaseStatus, Message, Peer, Signal};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// One peer and what the broker knows about it beyond the wire object.
pub(super) struct PeerEntry {
    pub(super) peer: Peer,
    /// Set by an explicit disconnect (`DELETE /peers/{id}`, MCP session end).
    pub(super) disconnected: bool,
    /// Open long-polls and MCP sessions: each counts as contact.
    pub(super) contacts: u32,
    /// The status last announced on the event stream.
    pub(super) announced: crate::api::PeerStatus,
    /// The `lastSeen` last written to the store (contact is too frequent to
    /// persist every time; the sweeper catches up every half minute).
    pub(super) saved_seen: Timestamp,
    /// The digest of the peer's key (`None` for peers saved before keys).
    pub(super) key: Option<keys::KeyHash>,
    /// Its place in [`State::schedule`], if it has one.
    pub(super) due: Option<i64>,
}

impl PeerEntry {
    /// A peer as read back from the store (at start-up, or from another
    /// node): nobody in contact yet, its saved status taken as announced.
    pub(super) fn stored(peer: Peer, key: Option<keys::KeyHash>) -> PeerEntry {
        let status = peer.status;
        PeerEntry {
            disconnected: status == crate::api::PeerStatus::Offline,
            contacts: 0,
            announced: status,
            saved_seen: peer.last_seen,
            key,
            due: None,
            peer,
        }
    }
}

/// One lease, with what the conflict rule needs ready.
pub(super) struct LeaseEntry {
    pub(super) lease: Lease,
    /// The ttl it was taken or last renewed with (a renewal without one
    /// takes it again).
    pub(super) ttl: u64,
    /// Its paths, parsed once (compiled globs), in the order of `lease.paths`.
    pub(super) patterns: Vec<PathPattern>,
}

pub(super) struct CommandEntry {
    pub(super) ord: u64,
    pub(super) command: Command,
}

pub(super) struct Channel {
    /// The newest retained messages, contiguous up to `last_seq` (all the
    /// retained ones when the store keeps none).
    pub(super) recent: std::collections::VecDeque<Message>,
    /// The oldest retained seq (`last_seq + 1` when none is retained).
    pub(super) first_seq: u64,
    /// The last seq ever used.
    pub(super) last_seq: u64,
    /// When the last message was sent.
    pub(super) last_at: Option<Timestamp>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) peers: HashMap<Uuid, PeerEntry>,
    pub(super) commands: HashMap<Uuid, CommandEntry>,
    /// Pending commands by target key (a role or a peer id), in FIFO order.
    pub(super) queues: HashMap<String, BTreeSet<(u64, Uuid)>>,
    pub(super) dedupe: HashMap<String, Uuid>,
    /// Finished commands in FIFO order, for retention.
    pub(super) finished: BTreeSet<(u64, Uuid)>,
    /// Delivered, unacked commands by holder in FIFO order (a peer's
    /// `workingOn`), so nothing about one peer scans every command.
    pub(super) held: HashMap<Uuid, BTreeSet<(u64, Uuid)>>,
    /// The holder of each delivered command (the reverse of `held`).
    pub(super) holder_of: HashMap<Uuid, Uuid>,
    /// Delivered commands whose answer may never have reached their taker:
    /// those held when the broker started after a crash. The taker gets each
    /// again the next time it waits ([`Broker::wait_command`]), instead of
    /// the command staying held until the taker goes offline.
    pub(super) unconfirmed: HashSet<Uuid>,
    /// When each peer needs the sweeper next (ms since the epoch), soonest
    /// first: its status may change, its `lastSeen` is due to be saved, or
    /// it may be forgotten. Entries may be early, never late (contact only
    /// moves the real time later), so a sweep visits only what may change.
    pub(super) schedule: BTreeSet<(i64, Uuid)>,
    pub(super) next_ord: u64,
    pub(super) channels: BTreeMap<String, Channel>,
    pub(super) signals: BTreeMap<String, Signal>,
    /// Every question kept.
    pub(super) questions: HashMap<Uuid, crate::api::Question>,
    /// Open questions with a ttl, soonest expiry first (ms since the epoch).
    pub(super) question_expiry: BTreeSet<(i64, Uuid)>,
    /// Closed questions, oldest first, for retention.
    pub(super) closed_questions: BTreeSet<Uuid>,
    /// Every lease kept: held ones, and ended ones up to retention.
    pub(super) leases: HashMap<Uuid, LeaseEntry>,
    /// Held leases by repo, oldest first: a request or a check compares
    /// only with the leases of its own repo.
    pub(super) leases_in_repo: HashMap<String, BTreeSet<Uuid>>,
    /// Held leases by holder, oldest first: what ends when a peer leaves.
    pub(super) leases_of: HashMap<Uuid, BTreeSet<Uuid>>,
    /// Held leases, soonest expiry first (ms since the epoch); its length is
    /// the number held (the cap).
    pub(super) lease_expiry: BTreeSet<(i64, Uuid)>,
    /// Ended leases, oldest first, for retention.
    pub(super) ended_leases: BTreeSet<Uuid>,
    /// Open permission questions by the peer that asked, so a peer that
    /// leaves closes its own without a scan.
    pub(super) open_permissions: HashMap<Uuid, BTreeSet<Uuid>>,
    /// Unfinished commands with a deadline not yet passed, soonest first
    /// (ms since the epoch).
    pub(super) deadlines: BTreeSet<(i64, Uuid)>,
    /// Dashboard sessions: the digest of each id, and when it expires.
    pub(super) sessions: HashMap<String, Timestamp>,
    /// The same sessions, soonest expiry first (ms since the epoch).
    pub(super) session_expiry: BTreeSet<(i64, String)>,
    /// Wake-ups keyed by what is waited on.
    pub(super) notifies: HashMap<WakeKey, Arc<Notify>>,
    pub(super) events: events::EventLog,
}

impl State {
    /// Keeps [`State::deadlines`] in step with a command: listed while it
    /// has a deadline and is neither finished nor overdue.
    pub(super) fn track_deadline(&mut self, c: &Command) {
        let Some(at) = c.deadline else { return };
        let key = (at.millis(), c.id);
        if c.status.is_terminal() || c.overdue {
            self.deadlines.remove(&key);
        } else {
            self.deadlines.insert(key);
        }
    }

    /// Keeps [`State::held`] in step with a command's new status.
    pub(super) fn track_holder(&mut self, ord: u64, c: &Command) {
        if !self.unconfirmed.is_empty() && c.status != crate::api::CommandStatus::Delivered {
            self.unconfirmed.remove(&c.id);
        }
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

    /// The oldest command `peer` holds whose delivery may never have reached
    /// it ([`State::unconfirmed`]), taken out of that set: it is handed
    /// again once.
    pub(super) fn unconfirmed_delivery(&mut self, peer: Uuid) -> Option<Uuid> {
        if self.unconfirmed.is_empty() {
            return None;
        }
        let id = self
            .held
            .get(&peer)?
            .iter()
            .map(|(_, id)| *id)
            .find(|id| self.unconfirmed.contains(id))?;
        self.unconfirmed.remove(&id);
        Some(id)
    }

    /// The commands `peer` holds, oldest first.
    pub(super) fn held_by(&self, peer: Uuid) -> Vec<Uuid> {
        self.held
            .get(&peer)
            .map(|s| s.iter().map(|(_, id)| *id).collect())
            .unwrap_or_default()
    }
}

impl State {
    /// Forgets every peer, command, channel, signal and question (not the
    /// dashboard logins), and wakes every waiter to find what it waited on gone.
    pub(super) fn clear_all(&mut self) {
        self.peers.clear();
        self.commands.clear();
        self.queues.clear();
        self.dedupe.clear();
        self.finished.clear();
        self.held.clear();
        self.schedule.clear();
        self.holder_of.clear();
        self.unconfirmed.clear();
        self.channels.clear();
        self.signals.clear();
        self.questions.clear();
        self.question_expiry.clear();
        self.closed_questions.clear();
        self.open_permissions.clear();
        self.deadlines.clear();
        self.leases.clear();
        self.leases_in_repo.clear();
        self.leases_of.clear();
        self.lease_expiry.clear();
        self.ended_leases.clear();
        for n in self.notifies.values() {
            n.notify_waiters();
        }
        self.notifies.clear();
    }

    pub(super) fn restore(&mut self, snap: crate::store::Snapshot) {
        for stored in snap.peers {
            let p = stored.peer;
            let key = stored.key_hash.as_deref().and_then(keys::KeyHash::from_hex);
            self.peers.insert(p.id, PeerEntry::stored(p, key));
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
            self.index_question(&q);
            self.questions.insert(q.id, q);
        }
        for l in snap.leases {
            self.put_lease(l.lease, l.ttl, None);
        }
    }
}

impl State {
    /// Stores a lease's new state and keeps every lease index in step
    /// (`patterns`: its paths already parsed, else they are parsed here).
    pub(super) fn put_lease(&mut self, lease: Lease, ttl: u64, patterns: Option<Vec<PathPattern>>) {
        let old = self.forget_lease(lease.id);
        let patterns = patterns
            .or_else(|| old.map(|o| o.patterns))
            .unwrap_or_else(|| lease.paths.iter().map(|p| PathPattern::stored(p)).collect());
        let id = lease.id;
        if lease.status == LeaseStatus::Held {
            self.leases_in_repo
                .entry(lease.repo.clone())
                .or_default()
                .insert(id);
            self.leases_of.entry(lease.holder).or_default().insert(id);
            self.lease_expiry.insert((lease.expires_at.millis(), id));
        } else {
            self.ended_leases.insert(id);
        }
        self.leases.insert(
            id,
            LeaseEntry {
                lease,
                ttl,
                patterns,
            },
        );
    }

    /// Takes lease `id` out of the state and every index that lists it.
    pub(super) fn forget_lease(&mut self, id: Uuid) -> Option<LeaseEntry> {
        let old = self.leases.remove(&id)?;
        let l = &old.lease;
        if let Some(ids) = self.leases_in_repo.get_mut(&l.repo) {
            ids.remove(&id);
            if ids.is_empty() {
                self.leases_in_repo.remove(&l.repo);
            }
        }
        if let Some(ids) = self.leases_of.get_mut(&l.holder) {
            ids.remove(&id);
            if ids.is_empty() {
                self.leases_of.remove(&l.holder);
            }
        }
        self.lease_expiry.remove(&(l.expires_at.millis(), id));
        self.ended_leases.remove(&id);
        Some(old)
    }

    /// Keeps the question indexes (expiry schedule, retention order, open
    /// permissions per peer) in step with a question's new state; every
    /// path that changes a question (a local change, another node's, the
    /// snapshot at start) goes through here.
    pub(super) fn index_question(&mut self, q: &crate::api::Question) {
        use crate::api::{QuestionKind, QuestionStatus};
        let open = q.status == QuestionStatus::Open;
        if let Some(at) = q.expires_at {
            if open {
                self.question_expiry.insert((at.millis(), q.id));
            } else {
                self.question_expiry.remove(&(at.millis(), q.id));
            }
        }
        if !open {
            self.closed_questions.insert(q.id);
        }
        if let (QuestionKind::Permission, Some(peer)) = (q.kind, q.peer) {
            let set = self.open_permissions.entry(peer).or_default();
            if open {
                set.insert(q.id);
            } else {
                set.remove(&q.id);
                if set.is_empty() {
                    self.open_permissions.remove(&peer);
                }
            }
        }
    }

    /// Drops a forgotten question from every index.
    pub(super) fn unindex_question(&mut self, q: &crate::api::Question) {
        if let Some(at) = q.expires_at {
            self.question_expiry.remove(&(at.millis(), q.id));
        }
        self.closed_questions.remove(&q.id);
        if let Some(peer) = q.peer {
            if let Some(set) = self.open_permissions.get_mut(&peer) {
                set.remove(&q.id);
                if set.is_empty() {
                    self.open_permissions.remove(&peer);
                }
            }
        }
    }

    /// The open permission questions a peer asked.
    pub(super) fn open_permissions_of(&self, peer: Uuid) -> Vec<Uuid> {
        self.open_permissions
            .get(&peer)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}
