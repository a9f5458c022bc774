//! Commands: sending (queues per target, fan-out, dedupe, ttl), what changes
//! a command and how it is announced, listing, and the sweeps of time.
//! Who holds a command (taking, handing again, giving back) is in
//! [`super::delivery`]; how one ends and its sender hears is in
//! [`super::results`].

use super::{Broker, BrokerError, Caller, CommandEntry, State, WakeKey};
use crate::api::CommandFilter;
use crate::api::{validate_name, Command, CommandStatus, PeerStatus, SendRequest, MAX_TTL_MS};
use crate::error_code::ErrorCode;
use crate::store::{Commit, Mutation, TurnKind};
use crate::time::Timestamp;
use serde_json::Value;
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
pub(super) struct Ending {
    pub(super) status: CommandStatus,
    pub(super) result: Option<Value>,
    pub(super) error: Option<String>,
    pub(super) at: Timestamp,
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
        self.send_deferring(req, caller, false).await
    }

    /// [`Broker::send`]; with `deferred` (the sender waits for the result,
    /// so it is shown nothing before the command is delivered and acked) the
    /// store may save the command with its delivery in one commit
    /// ([`crate::store::Store::apply_deferred`]).
    pub(super) async fn send_deferring(
        &self,
        req: SendRequest,
        caller: &Caller,
        deferred: bool,
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
                    copies.push(self.enqueue(&mut st, c, deferred, &mut commits));
                }
                SendOutcome::FanOut(copies)
            } else {
                let queued = !self.has_online_holder(&st, &target, now);
                let c = self.enqueue(&mut st, template, deferred, &mut commits);
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

    fn enqueue(
        &self,
        st: &mut State,
        mut c: Command,
        deferred: bool,
        commits: &mut Vec<Commit>,
    ) -> Command {
        c.id = Uuid::now_v7();
        let ord = st.next_ord;
        st.next_ord += 1;
        st.queues
            .entry(c.target.clone())
            .or_default()
            .insert((ord, c.id));
        st.track_deadline(&c);
        let saved = Mutation::Command {
            ord,
            command: Box::new(c.clone()),
        };
        commits.push(if deferred {
            self.inner.store.apply_deferred(saved)
        } else {
            self.persist(saved)
        });
        st.events.push("command", &c);
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
    pub(super) fn changed(
        &self,
        st: &mut State,
        id: Uuid,
        commits: &mut Vec<Commit>,
    ) -> Option<Command> {
        let e = st.commands.get(&id)?;
        let (ord, c) = (e.ord, e.command.clone());
        st.track_holder(ord, &c);
        st.track_deadline(&c);
        commits.push(self.persist(Mutation::Command {
            ord,
            command: Box::new(c.clone()),
        }));
        st.events.push("command", &c);
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
    pub(super) fn finish(
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

    pub(super) fn expire(
        &self,
        st: &mut State,
        key: (u64, Uuid),
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
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

    /// One command, or 404.
    pub fn command(&self, id: Uuid) -> Result<Command, BrokerError> {
        let st = self.lock();
        st.commands
            .get(&id)
            .map(|e| e.command.clone())
            .ok_or_else(|| unknown_command(id))
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
pub(super) fn open_command<'a>(
    st: &'a State,
    id: Uuid,
    why: &str,
) -> Result<(u64, &'a Command), BrokerError> {
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
