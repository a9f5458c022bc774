//! Tools about channels (append-only message streams) and signals (named
//! latches): channel_send, channel_read, emit_signal, wait_for_signal.

use super::super::args::*;
use super::super::render::{self, Answer};
use super::CipcMcp;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};

#[tool_router(router = channel_tools, vis = "pub(super)")]
impl CipcMcp {
    #[tool(
        description = "Append a message (any JSON) to a named channel, an append-only stream everyone can read by sequence number. Answers the message with its seq.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn channel_send(&self, Parameters(args): Parameters<ChannelSendArgs>) -> Answer {
        let from = self
            .caller(args.peer_key.as_deref())?
            .peer
            .map(|p| p.to_string());
        let m = self
            .session
            .broker()
            .channel_send(&args.channel, args.data, from)
            .await?;
        Ok(render::channel_sent(&m))
    }

    #[tool(
        description = "Read messages of a channel with seq greater than since (default 0, from the start). Remember the answer's lastSeq and pass it as since next time to get only newer messages. With timeout_seconds, waits for a new message when there is none yet.",
        annotations(read_only_hint = true)
    )]
    async fn channel_read(
        &self,
        Parameters(args): Parameters<ChannelReadArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Answer {
        let caller = self.caller(args.peer_key.as_deref())?;
        let since = args.since.unwrap_or(0);
        let limit = args
            .limit
            .unwrap_or(100)
            .clamp(1, crate::api::MAX_LIST_LIMIT);
        let timeout = wait_for(args.timeout_seconds, 0);
        let broker = self.session.broker().clone();
        let r = if timeout.is_zero() {
            broker.channel_read(&args.channel, since, limit).await?
        } else {
            let what = format!("a message on channel {:?}", args.channel);
            self.waiting(
                &ctx,
                &what,
                timeout,
                broker.channel_wait(&args.channel, since, limit, timeout, &caller),
            )
            .await
            .ok_or_else(render::cancelled)??
        };
        Ok(render::channel_read(r, since, timeout))
    }

    #[tool(
        description = "Emit a named signal (a latch) with optional data: everyone waiting for it is released, and later waiters return at once until it is cleared. Emitting again replaces the data and bumps its count.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn emit_signal(&self, Parameters(args): Parameters<EmitArgs>) -> Answer {
        let by = self
            .caller(args.peer_key.as_deref())?
            .peer
            .map(|p| p.to_string());
        let s = self
            .session
            .broker()
            .emit(&args.name, args.data, by)
            .await?;
        Ok(render::emitted(&s))
    }

    #[tool(
        description = "Wait until a named signal is emitted (returns at once if it already was; with after = the count you saw last, waits for a newer emission). Answers the signal with its data, or says it was not emitted yet so you can call again.",
        annotations(read_only_hint = true)
    )]
    async fn wait_for_signal(
        &self,
        Parameters(args): Parameters<WaitSignalArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Answer {
        let caller = self.caller(args.peer_key.as_deref())?;
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let broker = self.session.broker().clone();
        let what = format!("signal {:?}", args.name);
        let (s, timed_out) = self
            .waiting(
                &ctx,
                &what,
                timeout,
                broker.wait_signal(&args.name, args.after, timeout, &caller),
            )
            .await
            .ok_or_else(render::cancelled)??;
        Ok(render::signal_outcome(&s, timed_out, timeout))
    }
}
