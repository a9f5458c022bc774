//! Tools about commands: send_command, wait_for_command, ack_command,
//! get_command_result.

use super::super::args::*;
use super::super::render::{self, Answer};
use super::{parse_id, CipcMcp};
use crate::api::{AckRequest, Command, SendRequest};
use crate::broker::{SendOutcome, Sent};
use crate::error_code::ErrorCode;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use serde_json::json;

impl CipcMcp {
    /// Where an unfinished command is: with which peer, or in which queue.
    fn whereabouts(&self, c: &Command) -> String {
        let holder = c
            .delivered_to
            .and_then(|p| self.session.broker().peer(p).ok());
        render::whereabouts(c, holder.as_ref())
    }
}

#[tool_router(router = command_tools, vis = "pub(super)")]
impl CipcMcp {
    #[tool(
        description = "Send a command (an order) to a role, a peer id, or \"*\" (every online peer). A role is a queue: the first free peer of that role takes it; a role nobody holds yet is queued until one connects. With wait: true, waits (up to timeout_seconds) for the result (for \"*\", for the result of every copy); otherwise answers the command id at once and you can call get_command_result later. With deadline_seconds, a command not finished in time is marked overdue (the person is alerted) and a waiting call returns at once to say so.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn send_command(
        &self,
        Parameters(args): Parameters<SendCommandArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Answer {
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
        let caller = self.caller(args.peer_key.as_deref())?;
        let broker = self.session.broker().clone();
        // The send and its wait are one broker operation (as on REST); the
        // wait runs apart so a cancelled one can name what was sent.
        let Sent { outcome, .. } = broker.send_and_wait(req, &caller, None).await?;
        if !wait {
            return Ok(match outcome {
                SendOutcome::FanOut(commands) => render::fanned_out(&commands, None),
                SendOutcome::Deduplicated(c) => render::sent(&c, false),
                SendOutcome::Created { command, queued } => render::sent(&command, queued),
            });
        }
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let ids: Vec<_> = match &outcome {
            SendOutcome::FanOut(commands) => commands.iter().map(|c| c.id).collect(),
            SendOutcome::Deduplicated(c) | SendOutcome::Created { command: c, .. } => vec![c.id],
        };
        let what = match ids.as_slice() {
            [one] => format!("the result of command {one}"),
            _ => format!("the results of {} copies", ids.len()),
        };
        let sent = self
            .waiting(
                &ctx,
                &what,
                timeout,
                broker.wait_sent(outcome, timeout, &caller),
            )
            .await
            .ok_or_else(|| render::sent_wait_cancelled(&ids))??;
        let (c, queued) = match sent.outcome {
            SendOutcome::FanOut(commands) => {
                return Ok(render::fanned_out(
                    &commands,
                    Some((sent.timed_out, timeout)),
                ))
            }
            SendOutcome::Deduplicated(c) => (c, false),
            SendOutcome::Created { command, queued } => (command, queued),
        };
        let (no_result, again) = render::sent_no_result(&c, timeout);
        Ok(render::result_outcome(
            &c,
            &self.whereabouts(&c),
            (sent.timed_out, timeout),
            json!({"command": c, "queued": queued}),
            no_result,
            again,
        ))
    }

    #[tool(
        description = "Wait for the next command for you (sent to your role or your peer id) and take it; pass your peer_key. Do what it says, then call ack_command with its id, your peer_key and a result (or an error). If nothing arrives within timeout_seconds, answers that nothing arrived yet: call it again to keep listening. Needs connect first.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn wait_for_command(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Answer {
        let (me, caller) = self.me("wait_for_command", args.peer_key.as_deref())?;
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let broker = self.session.broker().clone();
        let watch = self.session.watch(&ctx.extensions);
        let taken = self
            .waiting(
                &ctx,
                "a command",
                timeout,
                broker.wait_command(me, timeout, &caller),
            )
            .await
            .ok_or_else(render::cancelled)??;
        let Some(c) = taken else {
            return Ok(render::no_command(timeout));
        };
        // A command taken for an answer that can no longer be written goes
        // straight back to its queue.
        if let Some(w) = &watch {
            if !w.took(c.id, me) {
                return Err(render::cancelled());
            }
        }
        Ok(render::new_command(&c))
    }

    #[tool(
        description = "Finish a command you took with wait_for_command (pass your peer_key): give result (any JSON) when it worked, or error (a sentence) when it failed. The sender is waiting for this.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn ack_command(&self, Parameters(args): Parameters<AckArgs>) -> Answer {
        let id = parse_id(ErrorCode::UnknownCommand, "command", &args.command_id)?;
        let caller = self.caller(args.peer_key.as_deref())?;
        let req = AckRequest {
            result: args.result,
            error: args.error,
            attempt: None,
        };
        let c = self.session.broker().ack(id, req, &caller).await?;
        Ok(render::acked(&c))
    }

    #[tool(
        description = "Wait for the result of a command sent earlier (by its command_id), up to timeout_seconds. Answers the finished command (acked with a result, failed with an error, cancelled or expired), or says it is still pending so you can call again.",
        annotations(read_only_hint = true)
    )]
    async fn get_command_result(
        &self,
        Parameters(args): Parameters<ResultArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Answer {
        let id = parse_id(ErrorCode::UnknownCommand, "command", &args.command_id)?;
        let caller = self.caller(args.peer_key.as_deref())?;
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let broker = self.session.broker().clone();
        let what = format!("the result of command {id}");
        let (c, timed_out) = self
            .waiting(
                &ctx,
                &what,
                timeout,
                broker.wait_result(id, timeout, &caller),
            )
            .await
            .ok_or_else(render::cancelled)??;
        let (no_result, again) = render::still_waiting(&c, timeout);
        Ok(render::result_outcome(
            &c,
            &self.whereabouts(&c),
            (timed_out, timeout),
            json!({"command": c}),
            no_result,
            again,
        ))
    }
}
