//! The MCP tools. One [`CipcMcp`] handler serves one MCP session on either
//! transport; every tool calls the same [`Broker`](crate::broker::Broker)
//! methods as the REST routes and answers with the same wire types.
//!
//! Tools are grouped by subject, one `#[tool_router]` block per file, and
//! `CipcMcp::tool_router` adds the routers up: `peers.rs` (connect,
//! register, whoami, list_peers, status, reset), `commands.rs` (send, wait,
//! ack, results), `channels.rs` (channels and signals), `questions.rs`
//! (ask_human and its answers), `leases.rs` (claim_paths, release_paths,
//! check_paths). Each tool body answers
//! `render::Answer` and refuses with `?`; every sentence
//! comes from `render.rs`. The arguments live in `args.rs`, the protocol
//! side (start-up, listing, the call door) in `handler.rs`.

mod channels;
mod commands;
mod leases;
mod peers;
mod questions;

use super::render::{self, Refusal};
use super::session::Session;
use crate::broker::Caller;
use crate::error_code::ErrorCode;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub use super::args::{DEFAULT_WAIT_SECS, MAX_WAIT_SECS};

/// What the server tells the model at start-up: the workflow in brief.
pub(super) const INSTRUCTIONS: &str = "cipc is a broker that lets several Claude Code sessions and the people watching them coordinate. \
Start with `connect`: without a role it shows who is online; with a role (e.g. \"backend\") it registers you as a peer of that role and answers your peerKey. Pass that key as peer_key in every later cipc tool call: it is how the broker knows each call comes from the same peer. \
Commands are orders sent to a role, a peer id, or \"*\" (every online peer): the target calls `wait_for_command`, does the work, then `ack_command` with a result or an error; \
the sender waits with `send_command` (wait: true) or `get_command_result`. \
A command may carry deadline_seconds: if it is not finished by then it is marked overdue, the person is alerted, and a waiting sender is told at once. \
When a decision belongs to a person (an approval, a choice between options, information only the user has), do not guess: call `ask_human` with the question (and choices); it waits for the answer, and if nobody answers in time the question stays open and `get_answer` keeps waiting. Others' questions are listed by `list_questions` and answered with `answer_question`. \
When several sessions share a repository, `claim_paths` the files you are about to edit (paths relative to the repository's top level, with the repo name you were given) and `release_paths` them when done; `check_paths` says who holds what: do not edit a path another session holds, ask it with `send_command` or pick other work. \
Channels are append-only message streams (`channel_send`, `channel_read` with since = the last seq you saw); signals are named latches (`emit_signal`, `wait_for_signal`). \
Waiting tools return after timeout_seconds (default 60, at most 3600) saying nothing arrived yet: call them again to keep waiting.";

/// The MCP server of one session.
pub struct CipcMcp {
    pub(super) session: Arc<Session>,
    pub(super) tool_router: ToolRouter<Self>,
}

impl CipcMcp {
    /// A handler for one session.
    pub(super) fn new(session: Arc<Session>) -> CipcMcp {
        CipcMcp {
            session,
            tool_router: Self::tool_router(),
        }
    }

    /// Every tool: the routers of each subject, added up.
    pub(super) fn tool_router() -> ToolRouter<Self> {
        Self::peer_tools()
            + Self::command_tools()
            + Self::channel_tools()
            + Self::question_tools()
            + Self::lease_tools()
    }

    /// Runs a broker wait, sending progress notifications while it lasts
    /// (when the client gave a progress token) and giving up at once when
    /// the client cancels or the session ends: `None` then. Dropping the
    /// broker's future is safe: a command is only taken in the step that
    /// answers.
    async fn waiting<T>(
        &self,
        ctx: &RequestContext<RoleServer>,
        what: &str,
        timeout: Duration,
        fut: impl Future<Output = T>,
    ) -> Option<T> {
        let token = ctx.meta.get_progress_token();
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
                _ = ctx.ct.cancelled() => return None,
                _ = self.session.ended().cancelled() => return None,
                _ = closed.cancelled() => return None,
                out = &mut fut => return Some(out),
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

    /// Who calls: the peer its `peer_key` proves, else the peer bound to
    /// this session, else an anonymous MCP client. A wrong key is refused.
    fn caller(&self, peer_key: Option<&str>) -> Result<Caller, Refusal> {
        let key = peer_key.map(str::trim).filter(|k| !k.is_empty());
        let caller = match key {
            Some(k) => Caller::presented(
                None,
                Some(k.to_string()),
                Some(crate::broker::MCP_DOOR.into()),
            ),
            None => self.session.caller(),
        };
        self.session
            .broker()
            .admit(&caller)
            .map_err(render::key_refused)?;
        Ok(caller)
    }

    /// The caller's peer, which must exist (a reset forgets every peer).
    fn me(&self, tool: &str, peer_key: Option<&str>) -> Result<(Uuid, Caller), Refusal> {
        let caller = self.caller(peer_key)?;
        let id = caller.peer.ok_or_else(|| render::not_registered(tool))?;
        if self.session.broker().peer(id).is_err() {
            if self.session.peer() == Some(id) {
                self.session.unbind();
            }
            return Err(render::peer_gone(id, tool));
        }
        Ok((id, caller))
    }
}

/// Parses an id argument; anything else names nothing (`code`: which
/// `unknown_*` reason, as REST answers for a bad id in a path).
fn parse_id(code: ErrorCode, kind: &str, raw: &str) -> Result<Uuid, Refusal> {
    Uuid::parse_str(raw.trim()).map_err(|_| render::not_an_id(code, kind, raw))
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
        assert_eq!(tools.len(), 21);
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
