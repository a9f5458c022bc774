//! Several nodes, one broker: turns, and applying what other nodes changed.
//!
//! With a shared store (PostgreSQL) every node holds the whole state, as a
//! single broker does, and runs the same rules on it. Before a node changes
//! anything it takes a write turn ([`Broker::turn`]): the store grants it to
//! one node at a time and first hands over every change the node has not
//! applied yet, so its decision (which command to deliver, which seq comes
//! next) is the one any node would make. The store announces each committed
//! turn, and every other node applies it here ([`Broker::spawn_follower`]),
//! which wakes its parked waiters and feeds its event stream exactly as a
//! local change would. With a single-node store turns are free and nothing
//! here runs.

use super::{keys, Broker, BrokerError, Channel, CommandEntry, PeerEntry, State, WakeKey};
use crate::api::{CommandStatus, PeerStatus};
use crate::store::{CatchUp, LogEntry, Mutation, Turn, TurnKind};
use std::time::Duration;

/// How long a wait backs off between attempts while the store is unreachable.
const RETRY_EVERY: Duration = Duration::from_millis(500);

impl Broker {
    /// Takes a turn (free with a single-node store): with a shared store,
    /// first applies every other node's change this node has not seen. Hold
    /// the turn until the changes made in it are committed.
    pub(super) async fn turn(&self, kind: TurnKind) -> Result<Turn, BrokerError> {
        if !self.inner.shared {
            return Ok(Turn::default());
        }
        let mut turn = self
            .inner
            .store
            .begin_turn(kind)
            .await
            .map_err(BrokerError::store_refused_write)?;
        // No await between the store handing over the changes and applying
        // them, so a dropped request cannot lose them.
        if let Some(c) = turn.catch_up.take() {
            self.catch_up(c);
        }
        turn.caught_up();
        Ok(turn)
    }

    /// With several nodes: applies every change other nodes committed
    /// before now, so a read on this node sees what a write on another
    /// already answered. When the store cannot be asked, the read goes on
    /// with what this node has (older, but all of it committed).
    pub async fn sync(&self) {
        if !self.inner.shared {
            return;
        }
        match self.inner.store.behind().await {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = self.turn(TurnKind::Read).await {
                    tracing::debug!(error = %e, "read without catching up");
                }
            }
            Err(e) => tracing::debug!(error = %e, "read without catching up"),
        }
    }

    /// A write turn for a wait: while the store is unreachable the wait keeps
    /// waiting (retrying) instead of failing; `None` once `deadline` passes.
    pub(super) async fn turn_for_wait(&self, deadline: tokio::time::Instant) -> Option<Turn> {
        loop {
            match self.turn(TurnKind::Write).await {
                Ok(t) => return Some(t),
                Err(e) => {
                    tracing::debug!(error = %e, "wait cannot take a turn yet");
                    let retry = (tokio::time::Instant::now() + RETRY_EVERY).min(deadline);
                    tokio::select! {
                        () = tokio::time::sleep_until(retry) => {}
                        () = self.inner.shutdown.cancelled() => return None,
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                }
            }
        }
    }

    /// Runs `change` in a write turn: at once with a single-node store, in
    /// a task with a shared one (for changes noticed where nobody can await,
    /// such as contact, a lost delivery, or the sweeper's tick).
    pub(super) fn in_turn_later(&self, change: impl FnOnce(&Broker) + Send + 'static) {
        if !self.inner.shared {
            change(self);
            return;
        }
        let broker = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            match broker.turn(TurnKind::Write).await {
                Ok(_turn) => change(&broker),
                Err(e) => tracing::warn!(error = %e, "a background change waits for the store"),
            }
        });
    }

    /// Follows the other nodes' changes (shared stores only): whenever the
    /// store announces a new log position, takes a read turn, which applies
    /// everything up to it. Stops at shutdown.
    pub fn spawn_follower(&self) -> Option<tokio::task::JoinHandle<()>> {
        let mut changes = self.inner.store.changes()?;
        let broker = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        while let Err(e) = broker.turn(TurnKind::Read).await {
                            tracing::warn!(error = %e, "cannot read other nodes' changes yet");
                            tokio::select! {
                                () = tokio::time::sleep(RETRY_EVERY) => {}
                                () = broker.inner.shutdown.cancelled() => return,
                            }
                        }
                    }
                    () = broker.inner.shutdown.cancelled() => break,
                }
            }
        }))
    }

    /// Applies what a turn handed over.
    fn catch_up(&self, c: CatchUp) {
        match c {
            CatchUp::Reload(snapshot) => self.reload(snapshot),
            CatchUp::Entries(entries) => {
                let mut st = self.lock();
                for entry in entries {
                    self.apply_entry(&mut st, entry);
                }
            }
        }
    }

    /// Starts over from what the shared store holds.
    fn reload(&self, snapshot: crate::store::Snapshot) {
        self.start_over(&mut self.lock(), snapshot);
        tracing::info!("state reloaded from the shared store");
    }

    /// Applies one other node's turn: its changes, then its events.
    fn apply_entry(&self, st: &mut State, entry: LogEntry) {
        for m in entry.mutations {
            self.apply_mutation(st, m);
        }
        for ev in entry.events {
            st.events.replay(&ev.kind, ev.data);
        }
    }

    fn apply_mutation(&self, st: &mut State, m: Mutation) {
        match m {
            Mutation::Peer(stored) => {
                let p = stored.peer;
                let id = p.id;
                let key = stored.key_hash.as_deref().and_then(keys::KeyHash::from_hex);
                let status = p.status;
                match st.peers.get_mut(&id) {
                    Some(e) => {
                        let seen_here = e.peer.last_seen;
                        e.saved_seen = p.last_seen;
                        e.peer = p;
                        e.peer.last_seen = e.peer.last_seen.max(seen_here);
                        e.key = key;
                        e.announced = status;
                        e.disconnected = status == PeerStatus::Offline && e.contacts == 0;
                    }
                    None => {
                        st.peers.insert(id, PeerEntry::stored(p, key));
                    }
                }
                self.reschedule(st, id);
            }
            Mutation::ForgetPeer { id } => {
                if let Some(e) = st.peers.remove(&id) {
                    if let Some(due) = e.due {
                        st.schedule.remove(&(due, id));
                    }
                }
                st.wake(&WakeKey::Queue(id.to_string()));
            }
            Mutation::Command { ord, command } => {
                let c = *command;
                let id = c.id;
                unindex_command(st, id);
                st.next_ord = st.next_ord.max(ord + 1);
                if let Some(k) = &c.dedupe_key {
                    st.dedupe.insert(k.clone(), id);
                }
                if c.status.is_terminal() {
                    st.finished.insert((ord, id));
                }
                if c.status == CommandStatus::Pending {
                    st.queues
                        .entry(c.target.clone())
                        .or_default()
                        .insert((ord, id));
                    st.wake(&WakeKey::Queue(c.target.clone()));
                }
                st.track_holder(ord, &c);
                st.track_deadline(&c);
                st.wake(&WakeKey::Result(id));
                st.commands.insert(id, CommandEntry { ord, command: c });
            }
            Mutation::ForgetCommand { id } => {
                if let Some(old) = unindex_command(st, id) {
                    if let Some(k) = &old.command.dedupe_key {
                        if st.dedupe.get(k) == Some(&id) {
                            st.dedupe.remove(k);
                        }
                    }
                }
                st.wake(&WakeKey::Result(id));
            }
            Mutation::Message(msg) => {
                let kept = self.inner.recent_kept;
                let name = msg.channel.clone();
                let ch = st
                    .channels
                    .entry(name.clone())
                    .or_insert_with(Channel::empty);
                if msg.seq > ch.last_seq {
                    ch.last_seq = msg.seq;
                    ch.last_at = Some(msg.sent_at);
                    ch.recent.push_back(*msg);
                    while ch.recent.len() > kept
                        || ch.recent.front().is_some_and(|m| m.seq < ch.first_seq)
                    {
                        ch.recent.pop_front();
                    }
                }
                st.wake(&WakeKey::Channel(name));
            }
            Mutation::Trim { channel, below, .. } => {
                if let Some(ch) = st.channels.get_mut(&channel) {
                    ch.first_seq = ch.first_seq.max(below);
                    while ch.recent.front().is_some_and(|m| m.seq < ch.first_seq) {
                        ch.recent.pop_front();
                    }
                }
            }
            Mutation::ForgetChannel { name } => {
                st.channels.remove(&name);
                st.wake(&WakeKey::Channel(name));
            }
            Mutation::Signal(s) => {
                let name = s.name.clone();
                st.signals.insert(name.clone(), *s);
                st.wake(&WakeKey::Signal(name));
            }
            Mutation::ForgetSignal { name } => {
                st.signals.remove(&name);
                st.wake(&WakeKey::Signal(name));
            }
            Mutation::Question(q) => {
                let q = *q;
                st.index_question(&q);
                st.wake(&WakeKey::Question(q.id));
                st.questions.insert(q.id, q);
            }
            Mutation::ForgetQuestion { id } => {
                if let Some(q) = st.questions.remove(&id) {
                    st.unindex_question(&q);
                }
                st.closed_questions.remove(&id);
                st.wake(&WakeKey::Question(id));
            }
            Mutation::Lease(l) => {
                let l = *l;
                st.put_lease(l.lease, l.ttl, None);
            }
            Mutation::ForgetLease { id } => {
                st.forget_lease(id);
            }
            Mutation::Session { hash, expires } => st.put_session(hash, expires),
            Mutation::EndSession { hash } => {
                st.drop_session(&hash);
            }
            Mutation::Reset => st.clear_all(),
        }
    }
}

/// Takes command `id` out of the state and every index that lists it
/// (queue, finished, deadlines, holder), before it is replaced or forgotten.
fn unindex_command(st: &mut State, id: uuid::Uuid) -> Option<CommandEntry> {
    let old = st.commands.remove(&id)?;
    Broker::unqueue(st, &old.command, old.ord);
    st.finished.remove(&(old.ord, id));
    if let Some(at) = old.command.deadline {
        st.deadlines.remove(&(at.millis(), id));
    }
    let mut gone = old.command.clone();
    gone.status = CommandStatus::Cancelled;
    st.track_holder(old.ord, &gone);
    Some(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_code::ErrorCode;
    use crate::store::StoreError;

    #[test]
    fn a_stalled_turn_and_an_unreachable_database_are_told_apart() {
        let stalled =
            BrokerError::store_refused_write(StoreError::TurnStalled("node A is silent".into()));
        assert_eq!(stalled.code, ErrorCode::WriteTurnStalled);
        assert!(
            stalled.message.contains("node A is silent"),
            "{}",
            stalled.message
        );
        assert!(
            stalled.message.contains("nothing was changed"),
            "{}",
            stalled.message
        );
        assert!(stalled.message.contains("retry"), "{}", stalled.message);

        let down = BrokerError::from(StoreError::Unavailable("refused".into()));
        assert_eq!(down.code, ErrorCode::StoreUnreachable);
        assert!(
            !down.message.contains("nothing was changed"),
            "/healthz refuses no write: {}",
            down.message
        );
        assert!(
            down.message.contains("reconnects by itself"),
            "{}",
            down.message
        );
    }
}
