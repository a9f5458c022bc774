//! Who holds a command: a peer takes the oldest one for it (by id or role),
//! a delivery whose answer may never have reached its taker is handed to it
//! again, and one whose taker is gone is given back to its queue.

use super::peers::unknown_peer;
use super::{Broker, BrokerError, Caller, State, WaitEnd, WakeKey};
use crate::api::{Command, CommandStatus};
use crate::store::Commit;
use crate::time::Timestamp;
use std::time::Duration;
use uuid::Uuid;

impl Broker {
    /// Takes the oldest live pending command for a peer (by its id or role).
    pub(super) fn take_for(
        &self,
        st: &mut State,
        peer: Uuid,
        role: &str,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) -> Option<Command> {
        if let Some(id) = st.unconfirmed_delivery(peer) {
            // Held since before a crash: the answer that handed it out may
            // never have left. The same delivery (same attempt, so an ack
            // of either copy counts) goes to the same taker again.
            if let Some(e) = st.commands.get_mut(&id) {
                e.command.delivered_at = Some(now);
                e.command.redelivered = true;
                tracing::info!(command = %id, %peer, "handing a delivery made before a crash to its taker again");
                return self.changed(st, id, commits);
            }
        }
        let pid = peer.to_string();
        loop {
            let first = |k: &str| st.queues.get(k).and_then(|q| q.first().copied());
            let next = match (first(&pid), first(role)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let (ord, id) = next?;
            let Some(e) = st.commands.get_mut(&id) else {
                for q in st.queues.values_mut() {
                    q.remove(&(ord, id));
                }
                continue;
            };
            let c = &mut e.command;
            let target = c.target.clone();
            if c.expires_at.is_some_and(|t| t <= now) {
                self.expire(st, (ord, id), now, commits);
                continue;
            }
            c.status = CommandStatus::Delivered;
            c.delivered_to = Some(peer);
            c.delivered_at = Some(now);
            c.attempt += 1;
            if let Some(q) = st.queues.get_mut(&target) {
                q.remove(&(ord, id));
            }
            return self.changed(st, id, commits);
        }
    }

    /// `GET /commands/{peerId}/wait`: takes the oldest pending command for the
    /// peer, waiting up to `timeout` for one. `None` means it timed out.
    ///
    /// The take happens in one synchronous step right before the answer, so a
    /// waiter that went away (its future dropped) never takes a command.
    pub async fn wait_command(
        &self,
        peer: Uuid,
        timeout: Duration,
        caller: &Caller,
    ) -> Result<Option<Command>, BrokerError> {
        // A peer connected on another node a moment ago is known here too.
        self.sync().await;
        self.prove_in(&self.lock(), peer, caller)?;
        let _permit = self.acquire_waiter()?;
        let _contact = self.contact(peer)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Each attempt to take is a turn of its own; parking is not.
            let Some(turn) = self.turn_for_wait(deadline).await else {
                return Ok(None);
            };
            let now = self.now();
            let armed = {
                let mut st = self.lock();
                let role = st
                    .peers
                    .get(&peer)
                    .map(|e| e.peer.role.clone())
                    .ok_or_else(|| unknown_peer(peer))?;
                let mut commits = Vec::new();
                if let Some(c) = self.take_for(&mut st, peer, &role, now, &mut commits) {
                    // Delivery is not awaited: if it is lost in a crash, the
                    // command is simply pending again, which is redelivery anyway.
                    drop(commits);
                    return Ok(Some(c));
                }
                vec![
                    st.arm(WakeKey::Queue(peer.to_string())),
                    st.arm(WakeKey::Queue(role.clone())),
                ]
            };
            drop(turn);
            if let WaitEnd::TimedOut = self.park(armed, deadline).await {
                return Ok(None);
            }
        }
    }

    /// `GET /commands/{peerId}`: the peer's pending and delivered-unacked
    /// commands, oldest first.
    pub fn commands_for_peer(&self, peer: Uuid) -> Result<Vec<Command>, BrokerError> {
        let st = self.lock();
        let role = st
            .peers
            .get(&peer)
            .map(|e| e.peer.role.clone())
            .ok_or_else(|| unknown_peer(peer))?;
        let pid = peer.to_string();
        let mut out: Vec<(u64, Command)> = st
            .commands
            .values()
            .filter(|e| {
                let c = &e.command;
                match c.status {
                    CommandStatus::Pending => c.target == pid || c.target == role,
                    CommandStatus::Delivered => c.delivered_to == Some(peer),
                    _ => false,
                }
            })
            .map(|e| (e.ord, e.command.clone()))
            .collect();
        out.sort_by_key(|(o, _)| *o);
        Ok(out.into_iter().map(|(_, c)| c).collect())
    }

    /// Gives back a command whose delivery never reached its taker (the
    /// response stream closed first): pending again at once, marked
    /// redelivered, instead of waiting for the taker to go offline.
    pub fn give_back(&self, id: Uuid, holder: Uuid) {
        self.in_turn_later(move |b| b.give_back_now(id, holder));
    }

    fn give_back_now(&self, id: Uuid, holder: Uuid) {
        let now = self.now();
        let mut st = self.lock();
        let held = st.commands.get(&id).is_some_and(|e| {
            e.command.status == CommandStatus::Delivered && e.command.delivered_to == Some(holder)
        });
        if held {
            let mut commits = Vec::new();
            tracing::info!(command = %id, peer = %holder, "delivery not written; command given back");
            self.requeue_one(&mut st, id, now, &mut commits);
        }
    }

    /// Puts every command delivered to `peer` and not acked back to pending
    /// for its target, marked redelivered, in its original FIFO place.
    pub(super) fn requeue_held(
        &self,
        st: &mut State,
        peer: Uuid,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        for id in st.held_by(peer) {
            tracing::info!(command = %id, %peer, "command requeued for redelivery");
            self.requeue_one(st, id, now, commits);
        }
    }

    /// Puts one delivered command back in its queue, in its FIFO place.
    pub(super) fn requeue_one(
        &self,
        st: &mut State,
        id: Uuid,
        _now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        let Some(e) = st.commands.get_mut(&id) else {
            return;
        };
        let ord = e.ord;
        let c = &mut e.command;
        c.status = CommandStatus::Pending;
        c.delivered_to = None;
        c.delivered_at = None;
        c.redelivered = true;
        let target = c.target.clone();
        st.queues
            .entry(target.clone())
            .or_default()
            .insert((ord, id));
        self.changed(st, id, commits);
        st.wake(&WakeKey::Queue(target.clone()));
    }
}
