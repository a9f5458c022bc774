//! The MCP tools. One [`CipcMcp`] handler serves one MCP session on either
//! transport; every tool calls the same [`Broker`](crate::broker::Broker)
//! methods as the REST routes and answers with the same wire types.
//!
//! Each result is two text blocks: a sentence that tells Claude what happened
//! and what to do next, then the JSON of the broker's answer (see
//! `render.rs`). The arguments live in `args.rs`, the protocol
//! side (start-up, listing, the call door) in `handler.rs`.

use super::session::Session;
use crate::api::{
    AckRequest, AskRequest, Command, CommandStatus, ConnectRequest, PeerStatus, QuestionStatus,
    SendRequest, Via,
};
use crate::broker::{Caller, SendOutcome};
use crate::error_code::ErrorClass;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Blocking tools wait this long unless told otherwise.
pub const DEFAULT_WAIT_SECS: u64 = 60;
/// Blocking tools never wait longer than one REST long-poll may (one hour).
pub const MAX_WAIT_SECS: u64 = crate::api::MAX_LONG_POLL_MS / 1000;

pub(super) const INSTRUCTIONS: &str = "cipc is a broker that lets several Claude Code sessions and the people watching them coordinate. \
Start with `connect`: without a role it shows who is online; with a role (e.g. \"backend\") it registers you as a peer of that role and answers your peerKey. Pass that key as peer_key in every later cipc tool call: it is how the broker knows each call comes from the same peer. \
Commands are orders sent to a role, a peer id, or \"*\" (every online peer): the target calls `wait_for_command`, does the work, then `ack_command` with a result or an error; \
the sender waits with `send_command` (wait: true) or `get_command_result`. \
A command may carry deadline_seconds: if it is not finished by then it is marked overdue, the person is alerted, and a waiting sender is told at once. \
When a decision belongs to a person (an approval, a choice between options, information only the user has), do not guess: call `ask_human` with the question (and choices); it waits for the answer, and if nobody answers in time the question stays open and `get_answer` keeps waiting. Others' questions are listed by `list_questions` and answered with `answer_question`. \
Channels are append-only message streams (`channel_send`, `channel_read` with since = the last seq you saw); signals are named latches (`emit_signal`, `wait_for_signal`). \
Waiting tools return after timeout_seconds (default 60, at most 3600) saying nothing arrived yet: call them again to keep waiting.";

/// The MCP server of one session.
pub struct CipcMcp {
    pub(super) session: Arc<Session>,
    pub(super) tool_router: ToolRouter<Self>,
}

use super::args::*;
use super::render::*;

/// How a blocking tool call ended: with its answer, or cancelled by the
/// client (the model gave up, or the user pressed Esc).
enum CallEnd<T> {
    Done(T),
    Cancelled,
}

impl CipcMcp {
    /// A handler for one session.
    pub(super) fn new(session: Arc<Session>) -> CipcMcp {
        CipcMcp {
            session,
            tool_router: Self::tool_router(),
        }
    }

    /// Runs a broker wait, sending progress notifications while it lasts
    /// (when the client gave a progress token) and giving up at once when
    /// the client cancels or the session ends. Dropping the broker's future
    /// is safe: a command is only taken in the step that answers.
    async fn waiting<T>(
        &self,
        ctx: &RequestContext<RoleServer>,
        caller: &Caller,
        what: &str,
        timeout: Duration,
        fut: impl Future<Output = T>,
    ) -> CallEnd<T> {
        let token = ctx.meta.get_progress_token();
        // A caller waiting on the broker is in contact: its peer stays online.
        let _contact = caller
            .peer
            .and_then(|p| self.session.broker().contact(p).ok());
        // The end of the response stream (stateless request, client timeout,
        // proxy) counts as cancellation.
        let closed = self
            .session
            .watch(&ctx.extensions)
            .map(|w| w.closed().clone())
            .unwrap_or_default();
        let every = self.session.hub().progress_every;
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(start + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                _ = ctx.ct.cancelled() => return CallEnd::Cancelled,
                _ = self.session.ended().cancelled() => return CallEnd::Cancelled,
                _ = closed.cancelled() => return CallEnd::Cancelled,
                out = &mut fut => return CallEnd::Done(out),
                _ = tick.tick() => {
                    if let Some(token) = &token {
                        let elapsed = start.elapsed().as_secs_f64();
                        let param = ProgressNotificationParam::new(token.clone(), elapsed)
                            .with_total(timeout.as_secs_f64())
                            .with_message(format!(
                                "still waiting for {what} ({}s of {}s)",
                                elapsed.round(),
                                timeout.as_secs()
                            ));
                        let _ = ctx.peer.notify_progress(param).await;
                    }
                }
            }
        }
    }

    fn cancelled() -> CallToolResult {
        refuse(
            "the wait was cancelled before anything arrived; call the tool again to keep waiting",
        )
    }

    /// Who calls: the peer its `peer_key` proves, else the peer bound to
    /// this session, else an anonymous MCP client. A wrong key is refused.
    fn caller(&self, peer_key: Option<&str>) -> Result<Caller, Refusal> {
        let key = peer_key.map(str::trim).filter(|k| !k.is_empty());
        let caller = match key {
            Some(k) => Caller::presented(None, Some(k.to_string()), Some("mcp".into())),
            None => self.session.caller(),
        };
        match self.session.broker().admit(&caller) {
            Ok(()) => Ok(caller),
            Err(e) => Err(Box::new(refuse(format!(
                "{e}. If the broker was reset or this peer forgotten, call connect with your role again (without peer_key) and use the new peerKey"
            )))),
        }
    }

    /// The caller's peer, which must exist (a reset forgets every peer).
    fn me(&self, tool: &str, peer_key: Option<&str>) -> Result<(Uuid, Caller), Refusal> {
        let caller = self.caller(peer_key)?;
        let Some(id) = caller.peer else {
            return Err(Box::new(not_registered(tool)));
        };
        match self.session.broker().peer(id) {
            Ok(_) => Ok((id, caller)),
            Err(_) => {
                if self.session.peer() == Some(id) {
                    self.session.unbind();
                }
                Err(Box::new(refuse(format!(
                    "peer {id} no longer exists on the broker (was it reset?); call connect with your role again (without peer_key), then call {tool} with the new peerKey"
                ))))
            }
        }
    }

    /// Where an unfinished command is: with which peer, or in which queue.
    fn whereabouts(&self, c: &Command) -> String {
        match (c.status, c.delivered_to) {
            (CommandStatus::Delivered, Some(p)) => match self.session.broker().peer(p) {
                Ok(peer) => format!(
                    "delivered to peer {p} (role {:?}, {}), which has not acked it",
                    peer.role,
                    peer.status.as_str()
                ),
                Err(_) => format!("delivered to peer {p}, which has not acked it"),
            },
            (CommandStatus::Pending, _) => {
                format!("pending for {:?} (nobody has taken it yet)", c.target)
            }
            (status, _) => status.as_str().to_string(),
        }
    }

    /// How a wait for a command's result reads: finished, overdue (the
    /// deadline passed during the wait, or had passed when it timed out), or
    /// timed out (`no_result` and `again` say so and how to keep waiting).
    /// `extra` adds fields to the JSON.
    fn result_outcome(
        &self,
        c: Command,
        (timed_out, timeout): (bool, Duration),
        extra: serde_json::Value,
        no_result: String,
        again: String,
    ) -> CallToolResult {
        let mut data = json!({"command": c});
        if let (Some(d), serde_json::Value::Object(more)) = (data.as_object_mut(), extra) {
            d.extend(more);
        }
        if is_overdue(&c) {
            data["overdue"] = json!(true);
            let late = overdue(&c, &self.whereabouts(&c));
            if timed_out {
                data["timedOut"] = json!(true);
                let waited = timeout.as_secs();
                return done(format!("No result within {waited}s. {late}"), data);
            }
            return done(late, data);
        }
        if timed_out {
            data["timedOut"] = json!(true);
            return done(format!("{no_result} {again}"), data);
        }
        done(format!("Done: {}.", describe(&c)), data)
    }

    async fn do_register(
        &self,
        role: String,
        capabilities: Option<Vec<String>>,
        name: Option<String>,
        id: Option<String>,
        peer_key: Option<String>,
    ) -> CallToolResult {
        let caller = match self.caller(peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let id = match id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => match parse_uuid("peer", raw) {
                Ok(id) => Some(id),
                Err(r) => return *r,
            },
            // Registering again (a new role) keeps the caller's peer.
            None => caller.peer,
        };
        let req = ConnectRequest {
            role: role.trim().to_string(),
            capabilities,
            name,
            id,
            protect: Some(true),
            via: None,
        };
        let (peer, key) = match self.session.broker().connect(req, Via::Mcp, &caller).await {
            Ok(p) => p,
            Err(e) if e.code.class() == ErrorClass::Forbidden => {
                return refuse(format!(
                    "{e}. To continue as that peer pass its peer_key; to start afresh call connect with only a role"
                ))
            }
            Err(e) => return broker_refusal(e),
        };
        self.session.bind(peer.id, key.clone()).await;
        let waiting = self
            .session
            .broker()
            .commands_for_peer(peer.id)
            .map_or(0, |c| c.len());
        let online = self.session.broker().discover();
        let queue = match waiting {
            0 => "No command is waiting for this role yet".to_string(),
            1 => "1 command is waiting for this role: call wait_for_command to take it".into(),
            n => format!(
                "{n} commands are waiting for this role: call wait_for_command to take them"
            ),
        };
        done(
            format!(
                "Registered as role {:?} (peer id {}). Your peer key is {key}: pass \"peer_key\": \"{key}\" in EVERY later cipc tool call (whoami, wait_for_command, ack_command, send_command, ...), so the broker knows they come from this peer; keep it to yourself. {queue}. Others reach you with send_command target {:?}. Online now: {} peer(s), roles {:?}. If anything says this peer is unknown, call connect with role {:?} and the same peer_key to continue as the same peer.",
                peer.role, peer.id, peer.role, online.count, online.roles, peer.role
            ),
            json!({"peer": peer, "peerKey": key, "pendingCommands": waiting, "online": online}),
        )
    }
}

#[tool_router]
impl CipcMcp {
    #[tool(
        description = "Start here. Shows who is online on the broker and registers you under a role. Without role: answers the online peers and roles and asks you to pick a role (ask the user which role this session should have). With role (e.g. \"backend\"): registers you as a peer of that role, so you receive commands sent to the role, and answers your peerKey: pass it as peer_key in every later cipc tool call. Pass peer_key (or id plus peer_key) to continue as the same peer.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn connect(&self, Parameters(args): Parameters<ConnectArgs>) -> CallToolResult {
        let role = args
            .role
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let Some(role) = role else {
            let online = self.session.broker().discover();
            let me = match self.caller(args.peer_key.as_deref()) {
                Ok(c) => c.peer,
                Err(r) => return *r,
            };
            let who = if online.count == 0 {
                "Nobody is online on the broker yet.".to_string()
            } else {
                format!(
                    "Online now: {} peer(s) with roles {:?}.",
                    online.count, online.roles
                )
            };
            let next = match me {
                Some(id) => format!("You are peer {id}; call connect with a role (and your peer_key) to change its role."),
                None => "You are not registered. Ask the user which role this session should take (e.g. \"backend\", \"frontend\", \"linux-client\"), then call connect again with that role.".into(),
            };
            return done(format!("{who} {next}"), online);
        };
        self.do_register(
            role.to_string(),
            args.capabilities,
            args.name,
            args.id,
            args.peer_key,
        )
        .await
    }

    #[tool(
        description = "Register as a peer with a specific role and capabilities (like connect with a role); answers your peerKey for peer_key. Registering again with your peer_key changes your role; your unacked commands go back to the old role's queue.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn register(&self, Parameters(args): Parameters<RegisterArgs>) -> CallToolResult {
        self.do_register(
            args.role,
            args.capabilities,
            args.name,
            args.id,
            args.peer_key,
        )
        .await
    }

    #[tool(
        description = "Who you are on the broker (pass your peer_key): your peer id, role, status and the commands you are working on, or that you are not registered yet.",
        annotations(read_only_hint = true)
    )]
    async fn whoami(&self, Parameters(args): Parameters<IdentityArgs>) -> CallToolResult {
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let Some(id) = caller.peer else {
            return done(
                "You are not registered (or did not pass your peer_key). Call connect with a role (e.g. {\"role\": \"backend\"}) to register, then pass its peerKey as peer_key.",
                json!({"registered": false}),
            );
        };
        match self.session.broker().peer(id) {
            Ok(peer) => done(
                format!(
                    "You are peer {} with role {:?} ({}), connected via MCP; working on {} command(s).",
                    peer.id,
                    peer.role,
                    peer.status.as_str(),
                    peer.working_on.len()
                ),
                json!({"registered": true, "peer": peer}),
            ),
            Err(_) => {
                if self.session.peer() == Some(id) {
                    self.session.unbind();
                }
                done(
                    format!("You were peer {id}, which the broker no longer knows (was it reset?). Call connect with your role (without peer_key) to register again."),
                    json!({"registered": false}),
                )
            }
        }
    }

    #[tool(
        description = "List the peers on the broker: by default the online ones with their roles and capabilities; all: true also lists stale and offline peers.",
        annotations(read_only_hint = true)
    )]
    async fn list_peers(&self, Parameters(args): Parameters<ListPeersArgs>) -> CallToolResult {
        if let Err(r) = self.caller(args.peer_key.as_deref()) {
            return *r;
        }
        if args.all.unwrap_or(false) {
            let peers = self.session.broker().peers();
            let online = peers
                .iter()
                .filter(|p| p.status == PeerStatus::Online)
                .count();
            return done(
                format!("{} known peer(s), {online} online.", peers.len()),
                json!({"peers": peers}),
            );
        }
        let d = self.session.broker().discover();
        done(
            format!("{} peer(s) online with roles {:?}.", d.count, d.roles),
            d,
        )
    }

    #[tool(
        description = "Send a command (an order) to a role, a peer id, or \"*\" (every online peer). A role is a queue: the first free peer of that role takes it; a role nobody holds yet is queued until one connects. With wait: true, waits (up to timeout_seconds) for the result; otherwise answers the command id at once and you can call get_command_result later. With deadline_seconds, a command not finished in time is marked overdue (the person is alerted) and a waiting call returns at once to say so.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn send_command(
        &self,
        Parameters(args): Parameters<SendCommandArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let wait = args.wait.unwrap_or(false);
        let req = SendRequest {
            from: None,
            target: args.target,
            action: args.action,
            params: args.params,
            dedupe_key: args.dedupe_key,
            ttl: args.ttl_seconds.map(|s| s.saturating_mul(1000)),
            deadline: args.deadline_seconds.map(|s| s.saturating_mul(1000)),
        };
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let outcome = match self.session.broker().send(req, &caller).await {
            Ok(o) => o,
            Err(e) => return broker_refusal(e),
        };
        let (command, queued) = match outcome {
            SendOutcome::FanOut(commands) => {
                let note = if wait {
                    " (wait does not apply to \"*\": call get_command_result for each id)"
                } else {
                    ""
                };
                return done(
                    format!(
                        "Sent {} cop(ies) of the command, one per online peer{note}.",
                        commands.len()
                    ),
                    json!({"commands": commands}),
                );
            }
            SendOutcome::Deduplicated(c) => (c, false),
            SendOutcome::Created { command, queued } => (command, queued),
        };
        let id = command.id;
        if !wait {
            let q = if queued {
                " Nobody holding that target is online yet, so it is queued until one connects."
            } else {
                ""
            };
            let by = command
                .deadline
                .map(|d| format!(" It should be finished by {d}; past that it is marked overdue."))
                .unwrap_or_default();
            return done(
                format!("Sent command {id} ({:?} to {}).{q}{by} Call get_command_result with command_id {:?} to wait for its result.", command.action, command.target, id.to_string()),
                json!({"command": command, "queued": queued}),
            );
        }
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let broker = self.session.broker().clone();
        let what = format!("the result of command {id}");
        match self
            .waiting(&ctx, &caller, &what, timeout, broker.wait_result(id, timeout))
            .await
        {
            CallEnd::Cancelled => refuse(format!(
                "the wait was cancelled, but command {id} was sent; call get_command_result with command_id {:?} to wait for its result",
                id.to_string()
            )),
            CallEnd::Done(Err(e)) => broker_refusal(e),
            CallEnd::Done(Ok((c, timed_out))) => {
                let no_result = format!(
                    "Sent command {id}, but no result arrived within {}s (it is {}).",
                    timeout.as_secs(),
                    c.status.as_str()
                );
                let again = format!(
                    "Call get_command_result with command_id {:?} to keep waiting.",
                    id.to_string()
                );
                self.result_outcome(
                    c,
                    (timed_out, timeout),
                    json!({"queued": queued}),
                    no_result,
                    again,
                )
            }
        }
    }

    #[tool(
        description = "Wait for the next command for you (sent to your role or your peer id) and take it; pass your peer_key. Do what it says, then call ack_command with its id, your peer_key and a result (or an error). If nothing arrives within timeout_seconds, answers that nothing arrived yet: call it again to keep listening. Needs connect first.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn wait_for_command(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let (me, caller) = match self.me("wait_for_command", args.peer_key.as_deref()) {
            Ok(m) => m,
            Err(r) => return *r,
        };
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let broker = self.session.broker().clone();
        let watch = self.session.watch(&ctx.extensions);
        let taken = self
            .waiting(
                &ctx,
                &caller,
                "a command",
                timeout,
                broker.wait_command(me, timeout, &caller),
            )
            .await;
        // A command taken for an answer that can no longer be written goes
        // straight back to its queue.
        if let (CallEnd::Done(Ok(Some(c))), Some(w)) = (&taken, &watch) {
            if !w.took(c.id, me) {
                return Self::cancelled();
            }
        }
        match taken {
            CallEnd::Cancelled => Self::cancelled(),
            CallEnd::Done(Err(e)) => broker_refusal(e),
            CallEnd::Done(Ok(None)) => done(
                format!(
                    "No command arrived within {}s. Call wait_for_command again to keep listening.",
                    timeout.as_secs()
                ),
                json!({"command": null, "timedOut": true}),
            ),
            CallEnd::Done(Ok(Some(c))) => {
                let again = if c.redelivered {
                    " It was delivered before to a peer that left without acking it; check whether part of it is already done."
                } else {
                    ""
                };
                done(
                    format!(
                        "New command {} from {}: action {:?} with params {}.{again} Do it, then call ack_command with command_id {:?} and a result (or an error if it failed).",
                        c.id, c.from, c.action, c.params, c.id.to_string()
                    ),
                    json!({"command": c}),
                )
            }
        }
    }

    #[tool(
        description = "Finish a command you took with wait_for_command (pass your peer_key): give result (any JSON) when it worked, or error (a sentence) when it failed. The sender is waiting for this.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn ack_command(&self, Parameters(args): Parameters<AckArgs>) -> CallToolResult {
        let id = match parse_uuid("command", &args.command_id) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        match self
            .session
            .broker()
            .ack(
                id,
                AckRequest {
                    result: args.result,
                    error: args.error,
                    attempt: None,
                },
                &caller,
            )
            .await
        {
            Ok(c) => done(
                format!("Recorded: {}.", describe(&c)),
                json!({"command": c}),
            ),
            Err(e) => broker_refusal(e),
        }
    }

    #[tool(
        description = "Wait for the result of a command sent earlier (by its command_id), up to timeout_seconds. Answers the finished command (acked with a result, failed with an error, cancelled or expired), or says it is still pending so you can call again.",
        annotations(read_only_hint = true)
    )]
    async fn get_command_result(
        &self,
        Parameters(args): Parameters<ResultArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let id = match parse_uuid("command", &args.command_id) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let broker = self.session.broker().clone();
        let what = format!("the result of command {id}");
        match self
            .waiting(
                &ctx,
                &caller,
                &what,
                timeout,
                broker.wait_result(id, timeout),
            )
            .await
        {
            CallEnd::Cancelled => Self::cancelled(),
            CallEnd::Done(Err(e)) => broker_refusal(e),
            CallEnd::Done(Ok((c, timed_out))) => {
                let no_result = format!(
                    "No result yet after {}s: {}.",
                    timeout.as_secs(),
                    describe(&c)
                );
                let again = "Call get_command_result again to keep waiting.".to_string();
                self.result_outcome(c, (timed_out, timeout), json!({}), no_result, again)
            }
        }
    }

    #[tool(
        description = "Append a message (any JSON) to a named channel, an append-only stream everyone can read by sequence number. Answers the message with its seq.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn channel_send(&self, Parameters(args): Parameters<ChannelSendArgs>) -> CallToolResult {
        let from = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c.peer.map(|p| p.to_string()),
            Err(r) => return *r,
        };
        match self
            .session
            .broker()
            .channel_send(&args.channel, args.data, from)
            .await
        {
            Ok(m) => done(
                format!("Sent message {} on channel {:?}.", m.seq, m.channel),
                json!({"message": m}),
            ),
            Err(e) => broker_refusal(e),
        }
    }

    #[tool(
        description = "Read messages of a channel with seq greater than since (default 0, from the start). Remember the answer's lastSeq and pass it as since next time to get only newer messages. With timeout_seconds, waits for a new message when there is none yet.",
        annotations(read_only_hint = true)
    )]
    async fn channel_read(
        &self,
        Parameters(args): Parameters<ChannelReadArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let since = args.since.unwrap_or(0);
        let limit = args
            .limit
            .unwrap_or(100)
            .clamp(1, crate::api::MAX_LIST_LIMIT);
        let timeout = wait_for(args.timeout_seconds, 0);
        let broker = self.session.broker().clone();
        let r = if timeout.is_zero() {
            match broker.channel_read(&args.channel, since, limit).await {
                Ok(r) => r,
                Err(e) => return broker_refusal(e),
            }
        } else {
            let what = format!("a message on channel {:?}", args.channel);
            match self
                .waiting(
                    &ctx,
                    &caller,
                    &what,
                    timeout,
                    broker.channel_wait(&args.channel, since, limit, timeout),
                )
                .await
            {
                CallEnd::Cancelled => return Self::cancelled(),
                CallEnd::Done(Err(e)) => return broker_refusal(e),
                CallEnd::Done(Ok(r)) => r,
            }
        };
        let next = r.messages.last().map_or(since, |m| m.seq);
        let summary = if r.messages.is_empty() && r.timed_out {
            format!(
                "No new message on channel {:?} after seq {since} within {}s. Call channel_read again with since {next} to keep waiting.",
                r.channel,
                timeout.as_secs()
            )
        } else if r.messages.is_empty() {
            format!(
                "No message on channel {:?} after seq {since} (lastSeq {}).",
                r.channel, r.last_seq
            )
        } else {
            let more = if next < r.last_seq {
                " There are more: call channel_read again with that since."
            } else {
                ""
            };
            format!(
                "{} message(s) on channel {:?}; next time pass since {next}.{more}",
                r.messages.len(),
                r.channel
            )
        };
        done(summary, r)
    }

    #[tool(
        description = "Emit a named signal (a latch) with optional data: everyone waiting for it is released, and later waiters return at once until it is cleared. Emitting again replaces the data and bumps its count.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn emit_signal(&self, Parameters(args): Parameters<EmitArgs>) -> CallToolResult {
        let by = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c.peer.map(|p| p.to_string()),
            Err(r) => return *r,
        };
        match self.session.broker().emit(&args.name, args.data, by).await {
            Ok(s) => done(
                format!("Emitted signal {:?} (count {}).", s.name, s.count),
                json!({"signal": s}),
            ),
            Err(e) => broker_refusal(e),
        }
    }

    #[tool(
        description = "Wait until a named signal is emitted (returns at once if it already was; with after = the count you saw last, waits for a newer emission). Answers the signal with its data, or says it was not emitted yet so you can call again.",
        annotations(read_only_hint = true)
    )]
    async fn wait_for_signal(
        &self,
        Parameters(args): Parameters<WaitSignalArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let broker = self.session.broker().clone();
        let what = format!("signal {:?}", args.name);
        match self
            .waiting(
                &ctx,
                &caller,
                &what,
                timeout,
                broker.wait_signal(&args.name, args.after, timeout),
            )
            .await
        {
            CallEnd::Cancelled => Self::cancelled(),
            CallEnd::Done(Err(e)) => broker_refusal(e),
            CallEnd::Done(Ok((s, true))) => done(
                format!(
                    "Signal {:?} was not emitted within {}s. Call wait_for_signal again to keep waiting.",
                    s.name,
                    timeout.as_secs()
                ),
                json!({"signal": s, "timedOut": true}),
            ),
            CallEnd::Done(Ok((s, false))) => done(
                format!(
                    "Signal {:?} is emitted (count {}){}.",
                    s.name,
                    s.count,
                    s.data
                        .as_ref()
                        .map(|d| format!(" with data {d}"))
                        .unwrap_or_default()
                ),
                json!({"signal": s}),
            ),
        }
    }

    #[tool(
        description = "Ask a person (the user, who sees it in the cipc dashboard; any peer may answer too) a question and wait for the answer. Use it for decisions a person must make (an approval, a choice between options, information only the user has) instead of guessing. Give text, optionally choices (the answer is then one of them) and context (any JSON that helps decide). Waits up to timeout_seconds (default 60) and answers the person's answer first. The question is durable: if nobody answers in time, or this call is cancelled, it stays open and keeps any answer given later; call get_answer with its question_id to keep waiting.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn ask_human(
        &self,
        Parameters(args): Parameters<AskHumanArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let req = AskRequest {
            text: args.text,
            choices: args.choices,
            context: args.context,
            from: None,
            ttl: args.ttl_seconds.map(|s| s.saturating_mul(1000)),
        };
        let broker = self.session.broker().clone();
        let q = match broker.ask(req, &caller).await {
            Ok(q) => q,
            Err(e) => return broker_refusal(e),
        };
        let id = q.id;
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let cancelled = format!(
            "the wait was cancelled, but question {id} was asked and stays open (it is durable); call get_answer with question_id {:?} to wait for its answer",
            id.to_string()
        );
        self.await_answer(&ctx, &caller, id, timeout, cancelled)
            .await
    }

    /// Waits (with progress) for question `id` to be answered or to end,
    /// and says how it ended; `cancelled` is the answer when the client
    /// cancels the call.
    async fn await_answer(
        &self,
        ctx: &RequestContext<RoleServer>,
        caller: &Caller,
        id: Uuid,
        timeout: Duration,
        cancelled: String,
    ) -> CallToolResult {
        let broker = self.session.broker().clone();
        let what = format!("an answer to question {id}");
        match self
            .waiting(
                ctx,
                caller,
                &what,
                timeout,
                broker.wait_question(id, timeout),
            )
            .await
        {
            CallEnd::Cancelled => refuse(cancelled),
            CallEnd::Done(Err(e)) => broker_refusal(e),
            CallEnd::Done(Ok((q, _))) => question_outcome(&q, timeout),
        }
    }

    #[tool(
        description = "Wait for the answer to a question asked earlier with ask_human (by its question_id), up to timeout_seconds (default 60; 0 just looks). Answers the person's answer, says it was cancelled or expired, or says it is still open so you can call again.",
        annotations(read_only_hint = true)
    )]
    async fn get_answer(
        &self,
        Parameters(args): Parameters<GetAnswerArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let id = match parse_uuid("question", &args.question_id) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let cancelled = format!(
            "the wait was cancelled; question {id} is unchanged. Call get_answer with question_id {:?} again to keep waiting",
            id.to_string()
        );
        self.await_answer(&ctx, &caller, id, timeout, cancelled)
            .await
    }

    #[tool(
        description = "Answer an open question (from list_questions) that another session asked; its asker is waiting for this. When the question has choices, the answer must be exactly one of them. Only answer what you really know or were told to decide; questions meant for the user are for the user.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn answer_question(
        &self,
        Parameters(args): Parameters<AnswerQuestionArgs>,
    ) -> CallToolResult {
        let id = match parse_uuid("question", &args.question_id) {
            Ok(id) => id,
            Err(r) => return *r,
        };
        let caller = match self.caller(args.peer_key.as_deref()) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        match self
            .session
            .broker()
            .answer(id, args.answer, None, &caller)
            .await
        {
            Ok(q) => done(
                format!(
                    "Recorded the answer {:?} to question {id} from {} ({:?}); its asker is told.",
                    q.answer.as_deref().unwrap_or_default(),
                    q.from,
                    q.text
                ),
                json!({"question": q}),
            ),
            Err(e) => broker_refusal(e),
        }
    }

    #[tool(
        description = "List the questions sessions asked (ask_human): open ones first, oldest first, then answered, cancelled and expired ones. status filters them (\"open\", \"answered\", \"cancelled\" or \"expired\").",
        annotations(read_only_hint = true)
    )]
    async fn list_questions(
        &self,
        Parameters(args): Parameters<ListQuestionsArgs>,
    ) -> CallToolResult {
        if let Err(r) = self.caller(args.peer_key.as_deref()) {
            return *r;
        }
        let status = match args.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => match raw.parse::<QuestionStatus>() {
                Ok(s) => Some(s),
                Err(_) => {
                    return refuse(format!(
                        "{raw:?} is not a question status; use \"open\", \"answered\", \"cancelled\" or \"expired\", or leave status out for all"
                    ))
                }
            },
        };
        let questions = self.session.broker().questions(status);
        let open = questions
            .iter()
            .filter(|q| q.status == QuestionStatus::Open)
            .count();
        let which = status
            .map(|s| format!(" {}", s.as_str()))
            .unwrap_or_default();
        let next = if open > 0 {
            " Answer one with answer_question (question_id and answer), if it is yours to decide."
        } else {
            ""
        };
        done(
            format!("{} question(s){which}, {open} open.{next}", questions.len()),
            json!({"questions": questions}),
        )
    }

    #[tool(
        description = "Everything on the broker at a glance: version, uptime, peers, command counts and recent commands, channels and signals.",
        annotations(read_only_hint = true)
    )]
    async fn status(&self, Parameters(args): Parameters<IdentityArgs>) -> CallToolResult {
        if let Err(r) = self.caller(args.peer_key.as_deref()) {
            return *r;
        }
        let s = self.session.broker().status();
        let online = s
            .peers
            .iter()
            .filter(|p| p.status == PeerStatus::Online)
            .count();
        done(
            format!(
                "cipc {}: {online} peer(s) online, {} channel(s), {} signal(s); commands by status {:?}.",
                s.version,
                s.channels.len(),
                s.signals.len(),
                s.commands.counts
            ),
            s,
        )
    }

    #[tool(
        description = "Erase everything on the broker for everyone: all peers, commands, channels and signals. Only when the user asks for it; needs confirm: true.",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn reset(&self, Parameters(args): Parameters<ResetArgs>) -> CallToolResult {
        if let Err(r) = self.caller(args.peer_key.as_deref()) {
            return *r;
        }
        if !args.confirm {
            return refuse("reset erases every peer, command, channel and signal for everyone; call it with confirm: true only if the user asked for it");
        }
        match self.session.broker().reset().await {
            Ok(()) => {
                self.session.unbind();
                done(
                    "The broker is reset: no peers, commands, channels or signals remain. This session is no longer registered; call connect with a role to register again.",
                    json!({"ok": true}),
                )
            }
            Err(e) => broker_refusal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every tool's input schema types each argument with one type (or one
    /// type per `anyOf` branch, for any JSON) and has no `"default": null`.
    #[test]
    fn argument_schemas_are_portable() {
        let tools = CipcMcp::tool_router().list_all();
        assert_eq!(tools.len(), 18);
        for tool in tools {
            let schema = Value::Object((*tool.input_schema).clone());
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (name, prop) in props {
                let at = format!("{}.{name}: {prop}", tool.name);
                assert!(!prop["type"].is_array(), "type array at {at}");
                let branches = prop["anyOf"].as_array().cloned().unwrap_or_default();
                assert!(
                    prop["type"].is_string()
                        || (!branches.is_empty() && branches.iter().all(|b| b["type"].is_string())),
                    "untyped at {at}"
                );
                assert!(prop.get("description").is_some(), "undescribed at {at}");
                assert_ne!(
                    prop.get("default"),
                    Some(&Value::Null),
                    "null default at {at}"
                );
            }
            assert!(
                schema["properties"].get("peer_key").is_some(),
                "{} takes peer_key",
                tool.name
            );
        }
    }
}
