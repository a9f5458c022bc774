//! Commands: queues per target with competing consumers, acks, results.

use super::peers::unknown_peer;
use super::{Broker, BrokerError, Caller, CommandEntry, State, WaitEnd, WakeKey};
use crate::api::CommandFilter;
use crate::api::{
    validate_name, AckRequest, Command, CommandStatus, PeerStatus, SendRequest, MAX_TTL_MS,
};
use crate::error_code::ErrorCode;
use crate::store::{Commit, Mutation, TurnKind};
use crate::time::Timestamp;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// What `send` made of a request.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// One new command; `queued` when no online peer holds its target.
    Created {
        /// The command as stored.
        command: Command,
        /// True when no online peer holds its target yet.
        queued: bool,
    },
    /// The `dedupeKey` was seen before: the original command.
    Deduplicated(Command),
    /// A `"*"` fan-out: one copy per online peer.
    FanOut(Vec<Command>),
}

/// What a send answered after its wait: the outcome, with each command as
/// the wait left it, and whether the wait ran out before every command
/// finished. REST's `POST /commands/send?wait=` and MCP's `send_command`
/// (`wait: true`) both answer from it, so a `"*"` fan-out waits the same way
/// on both.
#[derive(Debug, Clone)]
pub struct Sent {
    /// What the send made, each command as the wait left it.
    pub outcome: SendOutcome,
    /// True when the wait ended with a command still unfinished.
    pub timed_out: bool,
}

/// How a command ends: its final status, result or error, and when.
struct Ending {
    status: CommandStatus,
    result: Option<Value>,
    error: Option<String>,
    at: Timestamp,
}

const MAX_ACTION_LEN: usize = 256;
/// The longest `from` a sender may give.
const MAX_FROM_LEN: usize = 128;

impl Broker {
    /// `POST /commands/send`.
    pub async fn send(
        &self,
        req: SendRequest,
        caller: &Caller,
    ) -> Result<SendOutcome, BrokerError> {
        let target = req.target.trim().to_string();
        if target != "*" && Uuid::parse_str(&target).is_err() {
            validate_name("target", &target).map_err(|e| {
                BrokerError::new(
                    ErrorCode::InvalidTarget,
                    format!("{e}; or give a peer id, or \"*\" for every online peer"),
                )
            })?;
        }
        if req.action.trim().is_empty() || req.action.len() > MAX_ACTION_LEN {
            return Err(BrokerError::new(
                ErrorCode::InvalidAction,
                format!("action must be 1-{MAX_ACTION_LEN} characters, e.g. \"start-server\""),
            ));
        }
        if let Some(from) = req
            .from
            .as_deref()
            .filter(|f| f.chars().count() > MAX_FROM_LEN)
        {
            return Err(BrokerError::new(
                ErrorCode::InvalidFrom,
                format!(
                    "from is {} characters long; at most {MAX_FROM_LEN} (a role or a name)",
                    from.chars().count()
                ),
            ));
        }
        if let Some(ttl) = req.ttl.filter(|t| *t > MAX_TTL_MS) {
            return Err(BrokerError::new(ErrorCode::TtlTooLong, format!(
                "ttl={ttl} is too long: the maximum is {MAX_TTL_MS} ms (365 days); leave ttl out for a command that never expires"
            )));
        }
        if let Some(d) = req.deadline.filter(|d| *d > MAX_TTL_MS) {
            return Err(BrokerError::new(ErrorCode::DeadlineTooLong, format!(
                "deadline={d} is too long: the maximum is {MAX_TTL_MS} ms (365 days); leave it out for a command without a deadline"
            )));
        }
        if let Some(k) = &req.dedupe_key {
            if k.is_empty() || k.len() > 256 {
                return Err(BrokerError::new(
                    ErrorCode::InvalidDedupeKey,
                    "dedupeKey must be 1-256 characters",
                ));
            }
        }
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (outcome, commits) = {
            let mut st = self.lock();
            if let Some(k) = &req.dedupe_key {
                if let Some(c) = st.dedupe.get(k).and_then(|id| st.commands.get(id)) {
                    return Ok(SendOutcome::Deduplicated(c.command.clone()));
                }
            }
            let from = req
                .from
                .clone()
                .filter(|f| !f.trim().is_empty())
                .or_else(|| {
                    caller
                        .peer
                        .and_then(|p| st.peers.get(&p).map(|e| e.peer.role.clone()))
                })
                .unwrap_or_else(|| "anonymous".to_string());
            let origin = caller.origin();
            let template = Command {
                id: Uuid::nil(),
                from,
                target: target.clone(),
                action: req.action.clone(),
                params: req
                    .params
                    .clone()
                    .unwrap_or(Value::Object(Default::default())),
                status: CommandStatus::Pending,
                created_at: now,
                delivered_to: None,
                delivered_at: None,
                acked_at: None,
                result: None,
                error: None,
                dedupe_key: req.dedupe_key.clone(),
                expires_at: req
                    .ttl
                    .map(|ms| now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX))),
                attempt: 0,
                redelivered: false,
                origin,
                deadline: req
                    .deadline
                    .map(|ms| now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX))),
                overdue: false,
            };
            let mut commits = Vec::new();
            let outcome = if target == "*" {
                let mut ids: Vec<Uuid> = st
                    .peers
                    .values()
                    .filter(|e| self.status_of(e, now) == PeerStatus::Online)
                    .map(|e| e.peer.id)
                    .collect();
                ids.sort();
                let mut copies = Vec::new();
                for pid in ids {
                    let mut c = template.clone();
                    c.target = pid.to_string();
                    copies.push(self.enqueue(&mut st, c, &mut commits));
                }
                SendOutcome::FanOut(copies)
            } else {
                let queued = !self.has_online_holder(&st, &target, now);
                let c = self.enqueue(&mut st, template, &mut commits);
                if let Some(k) = &req.dedupe_key {
                    st.dedupe.insert(k.clone(), c.id);
                }
                SendOutcome::Created { command: c, queued }
            };
            (outcome, commits)
        };
        match &outcome {
            SendOutcome::Created { command, queued } => tracing::info!(
                command = %command.id, target = %command.target, action = %command.action,
                from = %command.from, origin = command.origin.as_deref().unwrap_or("-"), queued,
                "command sent"
            ),
            SendOutcome::FanOut(cs) => {
                tracing::info!(copies = cs.len(), action = %req.action, "command fanned out");
            }
            SendOutcome::Deduplicated(_) => {}
        }
        Broker::committed(commits).await?;
        Ok(outcome)
    }

    fn has_online_holder(&self, st: &State, target: &str, now: Timestamp) -> bool {
        let as_id = Uuid::parse_str(target).ok();
        st.peers.values().any(|e| {
            (Some(e.peer.id) == as_id || e.peer.role == target)
                && self.status_of(e, now) == PeerStatus::Online
        })
    }

    fn enqueue(&self, st: &mut State, mut c: Command, commits: &mut Vec<Commit>) -> Command {
        c.id = Uuid::now_v7();
        let ord = st.next_ord;
        st.next_ord += 1;
        st.queues
            .entry(c.target.clone())
            .or_default()
            .insert((ord, c.id));
        st.track_deadline(&c);
        commits.push(self.persist(Mutation::Command {
            ord,
            command: Box::new(c.clone()),
        }));
        st.events
            .push("command", serde_json::to_value(&c).unwrap_or_default());
        st.wake(&WakeKey::Queue(c.target.clone()));
        st.commands.insert(
            c.id,
            CommandEntry {
                ord,
                command: c.clone(),
            },
        );
        c
    }

    /// Records a changed command: persist, announce, wake result waiters.
    fn changed(&self, st: &mut State, id: Uuid, commits: &mut Vec<Commit>) -> Option<Command> {
        let e = st.commands.get(&id)?;
        let (ord, c) = (e.ord, e.command.clone());
        st.track_holder(ord, &c);
        st.track_deadline(&c);
        commits.push(self.persist(Mutation::Command {
            ord,
            command: Box::new(c.clone()),
        }));
        st.events
            .push("command", serde_json::to_value(&c).unwrap_or_default());
        if c.status.is_terminal() {
            st.wake(&WakeKey::Result(id));
            st.notifies.remove(&WakeKey::Result(id));
            st.finished.insert((ord, id));
            while st.finished.len() > self.inner.config.command_retention.max(1) {
                let Some((_, old)) = st.finished.pop_first() else {
                    break;
                };
                if let Some(e) = st.commands.remove(&old) {
                    if let Some(k) = &e.command.dedupe_key {
                        if st.dedupe.get(k) == Some(&old) {
                            st.dedupe.remove(k);
                        }
                    }
                }
                commits.push(self.persist(Mutation::ForgetCommand { id: old }));
            }
        }
        Some(c)
    }

    /// Ends a pending or delivered command with `end`: out of its queue,
    /// persisted, announced, its result waiters woken.
    fn finish(
        &self,
        st: &mut State,
        (ord, id): (u64, Uuid),
        end: Ending,
        commits: &mut Vec<Commit>,
    ) -> Option<Command> {
        let snapshot = {
            let e = st.commands.get_mut(&id)?;
            let c = &mut e.command;
            c.status = end.status;
            c.acked_at = Some(end.at);
            c.result = end.result;
            c.error = end.error;
            c.clone()
        };
        Broker::unqueue(st, &snapshot, ord);
        Some(self.changed(st, id, commits).unwrap_or(snapshot))
    }

    fn expire(&self, st: &mut State, key: (u64, Uuid), now: Timestamp, commits: &mut Vec<Commit>) {
        let why = Some("expired: its ttl ran out before any peer took it".to_string());
        let end = Ending {
            status: CommandStatus::Expired,
            result: None,
            error: why,
            at: now,
        };
        self.finish(st, key, end, commits);
    }

    pub(super) fn unqueue(st: &mut State, c: &Command, ord: u64) {
        if let Some(q) = st.queues.get_mut(&c.target) {
            q.remove(&(ord, c.id));
            if q.is_empty() {
                st.queues.remove(&c.target);
            }
        }
    }

    /// Takes the oldest live pending command for a peer (by its id or role).
    fn take_for(
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

    /// `POST /commands/{id}/ack`. With `caller.peer` set, only the peer that
    /// holds the command may ack it, so one command never ends with two
    /// results; a command held by a protected peer needs that peer's key.
    pub async fn ack(
        &self,
        id: Uuid,
        req: AckRequest,
        caller: &Caller,
    ) -> Result<Command, BrokerError> {
        let AckRequest {
            result,
            error,
            attempt,
        } = req;
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (out, commits) = {
            let mut st = self.lock();
            let (ord, c) = open_command(&st, id, "a command takes one result")?;
            if c.status == CommandStatus::Pending && c.attempt == 0 {
                return Err(BrokerError::new(ErrorCode::NotDelivered, format!(
                    "command {id} was never delivered, so there is no result to ack yet: it waits for a taker of {}; \
                     a taker acks it after taking it (GET /commands/{{peerId}}/wait), or cancel it (DELETE /commands/{id})",
                    c.target
                )));
            }
            if let Some(a) = attempt {
                let current = c.status == CommandStatus::Delivered && c.attempt == a;
                if !current {
                    return Err(BrokerError::new(ErrorCode::DeliveryOver, format!(
                        "delivery {a} of command {id} is over (it is {} at delivery {}): it was given to another taker; wait for it again before acking",
                        c.status.as_str(),
                        c.attempt
                    )));
                }
            }
            if let (CommandStatus::Delivered, Some(holder)) = (c.status, c.delivered_to) {
                self.prove_in(&st, holder, caller)?;
            }
            if let Some(p) = caller.peer {
                if c.delivered_to != Some(p) || c.status != CommandStatus::Delivered {
                    let holder = match (c.status, c.delivered_to) {
                        (CommandStatus::Delivered, Some(h)) => format!("it is held by peer {h}"),
                        _ => "it is pending again (its earlier delivery was requeued)".to_string(),
                    };
                    return Err(BrokerError::new(ErrorCode::NotHolder, format!(
                        "peer {p} cannot ack command {id}: {holder}; wait for it again before acking"
                    )));
                }
            }
            let status = if error.is_some() {
                CommandStatus::Failed
            } else {
                CommandStatus::Acked
            };
            let mut commits = Vec::new();
            let out = self
                .finish(
                    &mut st,
                    (ord, id),
                    Ending {
                        status,
                        result,
                        error,
                        at: now,
                    },
                    &mut commits,
                )
                .ok_or_else(|| unknown_command(id))?;
            (out, commits)
        };
        tracing::info!(command = %id, status = out.status.as_str(), "command acked");
        Broker::committed(commits).await?;
        Ok(out)
    }

    /// `DELETE /commands/{id}`: cancels a pending or delivered command. One
    /// held by a protected peer can be taken back only by that peer or by a
    /// protected sender, each with its key; the order of a person or an
    /// unprotected client can be withdrawn by anyone with the broker's token.
    pub async fn cancel(&self, id: Uuid, caller: &Caller) -> Result<Command, BrokerError> {
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let by = caller
            .peer
            .map(|p| format!("peer {p}"))
            .or_else(|| caller.address.clone())
            .unwrap_or_else(|| "a client".into());
        let (out, commits) = {
            let mut st = self.lock();
            let (ord, c) = open_command(
                &st,
                id,
                "only pending or delivered commands can be cancelled",
            )?;
            self.may_cancel(&st, c, caller)?;
            let error = Some(format!("cancelled by {by}"));
            let mut commits = Vec::new();
            let out = self
                .finish(
                    &mut st,
                    (ord, id),
                    Ending {
                        status: CommandStatus::Cancelled,
                        result: None,
                        error,
                        at: now,
                    },
                    &mut commits,
                )
                .ok_or_else(|| unknown_command(id))?;
            (out, commits)
        };
        Broker::committed(commits).await?;
        Ok(out)
    }

    fn may_cancel(&self, st: &State, c: &Command, caller: &Caller) -> Result<(), BrokerError> {
        let (CommandStatus::Delivered, Some(holder)) = (c.status, c.delivered_to) else {
            return Ok(());
        };
        if !st.peers.get(&holder).is_some_and(|e| e.peer.protected) {
            return Ok(());
        }
        let sender = c
            .origin
            .as_deref()
            .and_then(|o| crate::api::Origin::parse(o).peer());
        let protected_sender = sender.filter(|s| st.peers.get(s).is_some_and(|e| e.peer.protected));
        let allowed = self.holds_key(st, holder, caller)
            || protected_sender.is_none()
            || protected_sender.is_some_and(|s| self.holds_key(st, s, caller));
        if allowed {
            Ok(())
        } else {
            Err(BrokerError::new(ErrorCode::NotAllowedToCancel, format!(
                "command {} is held by protected peer {holder} and was sent by a protected peer: only one of them can cancel it, with its key (X-Cipc-Peer-Key)",
                c.id
            )))
        }
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

    /// One command, or 404.
    pub fn command(&self, id: Uuid) -> Result<Command, BrokerError> {
        let st = self.lock();
        st.commands
            .get(&id)
            .map(|e| e.command.clone())
            .ok_or_else(|| unknown_command(id))
    }

    /// `GET /commands/{id}/result`: waits until the command finishes. The bool
    /// is true when the wait timed out first.
    ///
    /// A command that becomes overdue during the wait ends it too (not
    /// finished, `overdue: true`), so a sender hears of a missed deadline
    /// when it happens; waiting again then waits for the end.
    pub async fn wait_result(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> Result<(Command, bool), BrokerError> {
        let _permit = self.acquire_waiter()?;
        self.sync().await;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut was_overdue = None;
        loop {
            let armed = {
                let mut st = self.lock();
                let c = st
                    .commands
                    .get(&id)
                    .map(|e| e.command.clone())
                    .ok_or_else(|| unknown_command(id))?;
                let overdue_before = *was_overdue.get_or_insert(c.overdue);
                if c.status.is_terminal() || c.overdue && !overdue_before {
                    return Ok((c, false));
                }
                vec![st.arm(WakeKey::Result(id))]
            };
            if let WaitEnd::TimedOut = self.park(armed, deadline).await {
                return Ok((self.command(id)?, true));
            }
        }
    }

    /// `POST /commands/send` with its optional wait: sends, then (with
    /// `wait`) waits for the result of every command the send made, a
    /// `"*"` fan-out's copies included, until one deadline `wait` from now.
    /// The commands exist (and are durable) before any wait, so a caller
    /// that gives up can still ask for their results later.
    pub async fn send_and_wait(
        &self,
        req: SendRequest,
        caller: &Caller,
        wait: Option<Duration>,
    ) -> Result<Sent, BrokerError> {
        let outcome = self.send(req, caller).await?;
        match wait {
            None => Ok(Sent {
                outcome,
                timed_out: false,
            }),
            Some(d) => self.wait_sent(outcome, d).await,
        }
    }

    /// The wait half of [`Broker::send_and_wait`], for a caller that must
    /// know the ids before it waits (MCP tells a cancelled wait which
    /// commands were sent): waits up to `timeout` in all for every command
    /// in `outcome` to finish (or to turn overdue).
    pub async fn wait_sent(
        &self,
        outcome: SendOutcome,
        timeout: Duration,
    ) -> Result<Sent, BrokerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        Ok(match outcome {
            SendOutcome::Created { command, queued } => {
                let (command, timed_out) = self.wait_result(command.id, left()).await?;
                Sent {
                    outcome: SendOutcome::Created { command, queued },
                    timed_out,
                }
            }
            SendOutcome::Deduplicated(command) => {
                let (command, timed_out) = self.wait_result(command.id, left()).await?;
                Sent {
                    outcome: SendOutcome::Deduplicated(command),
                    timed_out,
                }
            }
            // One copy after another: each wait ends when its copy finishes
            // or at the shared deadline, so the whole wait never passes it.
            SendOutcome::FanOut(copies) => {
                let mut timed_out = false;
                let mut done = Vec::with_capacity(copies.len());
                for c in copies {
                    let (c, t) = self.wait_result(c.id, left()).await?;
                    timed_out |= t;
                    done.push(c);
                }
                Sent {
                    outcome: SendOutcome::FanOut(done),
                    timed_out,
                }
            }
        })
    }

    /// `GET /commands`: newest first, filtered.
    pub fn list_commands(
        &self,
        status: Option<CommandStatus>,
        target: Option<&str>,
        limit: usize,
    ) -> Vec<Command> {
        let filter = CommandFilter {
            status,
            target: target.map(str::to_string),
            ..CommandFilter::default()
        };
        self.list_commands_where(&filter, limit)
    }

    /// `GET /commands?status=&target=&overdue=&origin=`: newest first, filtered.
    pub fn list_commands_where(&self, filter: &CommandFilter, limit: usize) -> Vec<Command> {
        let st = self.lock();
        let mut all: Vec<(u64, &Command)> = st
            .commands
            .values()
            .filter(|e| filter.admits(&e.command))
            .map(|e| (e.ord, &e.command))
            .collect();
        all.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
        all.into_iter()
            .take(limit)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Counts by status, for `status`.
    pub fn command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let st = self.lock();
        let mut counts: std::collections::BTreeMap<String, u64> = CommandStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for e in st.commands.values() {
            *counts
                .entry(e.command.status.as_str().to_string())
                .or_default() += 1;
        }
        counts
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
    fn requeue_one(&self, st: &mut State, id: Uuid, _now: Timestamp, commits: &mut Vec<Commit>) {
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

    /// Deadline pass of the sweeper: unfinished commands whose deadline
    /// passed become `overdue` (announced, and their result waiters told).
    pub(super) fn sweep_overdue(&self, st: &mut State, now: Timestamp, commits: &mut Vec<Commit>) {
        while let Some(&(at, id)) = st.deadlines.first() {
            if at > now.millis() {
                break;
            }
            st.deadlines.remove(&(at, id));
            let Some(e) = st.commands.get_mut(&id) else {
                continue;
            };
            if e.command.status.is_terminal() || e.command.overdue {
                continue;
            }
            e.command.overdue = true;
            self.changed(st, id, commits);
            st.wake(&WakeKey::Result(id));
        }
    }

    /// Expiry pass of the sweeper.
    pub(super) fn sweep_expired(&self, st: &mut State, now: Timestamp, commits: &mut Vec<Commit>) {
        // Only pending commands can expire, and every one sits in a queue.
        let expired: Vec<(u64, Uuid)> = st
            .queues
            .values()
            .flatten()
            .filter(|(_, id)| {
                st.commands
                    .get(id)
                    .and_then(|e| e.command.expires_at)
                    .is_some_and(|t| t <= now)
            })
            .copied()
            .collect();
        for key in expired {
            self.expire(st, key, now, commits);
        }
    }
}

/// A command that has not finished yet, with its FIFO position; 404 when it
/// is unknown, 409 (with `why`) when it already finished.
fn open_command<'a>(st: &'a State, id: Uuid, why: &str) -> Result<(u64, &'a Command), BrokerError> {
    let e = st.commands.get(&id).ok_or_else(|| unknown_command(id))?;
    let c = &e.command;
    if c.status.is_terminal() {
        return Err(BrokerError::new(
            ErrorCode::AlreadyFinished,
            format!(
                "command {id} is already {} (since {}); {why}",
                c.status.as_str(),
                c.acked_at.map(|t| t.to_string()).unwrap_or_default()
            ),
        ));
    }
    Ok((e.ord, c))
}

pub(super) fn unknown_command(id: Uuid) -> BrokerError {
    BrokerError::new(
        ErrorCode::UnknownCommand,
        format!("no command with id {id}; list commands with `cipc commands` (GET /commands)"),
    )
}
