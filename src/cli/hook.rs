//! `cipc hook EVENT`: the flags of the command the agents' hooks run. What
//! each event does is [`crate::agents::hook`]'s.

use super::{ClientArgs, Exit};
use crate::agents::hook::{self, HookOptions, DEFAULT_PERMISSION_WAIT_SECS, EVENTS};
use crate::agents::Agent;
use clap::Args;

/// Flags of `cipc hook`.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// The hook event (the agent runs this; `cipc claude setup` and `cipc codex setup` install it).
    #[arg(value_parser = EVENTS)]
    pub event: String,
    /// Which agent runs the hook.
    #[arg(long, default_value = "claude-code", value_parser = ["claude-code", "codex"])]
    pub agent: String,
    /// The role this session takes.
    #[arg(long)]
    pub role: String,
    /// A name for the session's peer (default: the project directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// How long a relayed permission prompt waits for an answer from the
    /// dashboard or `cipc answer` (the `permission` hook; seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_PERMISSION_WAIT_SECS)]
    pub permission_wait: u64,
    /// Lease each file the session edits (the `pre-tool-use` hook of the
    /// editing tools), renewed while it keeps editing, released when the
    /// session ends.
    #[arg(long)]
    pub claim_on_edit: bool,
    /// Broker and token flags (--peer and --peer-key are not used: the
    /// session's identity is kept per agent session).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs `cipc hook EVENT`; returns the exit code (0, or 2 to wake).
pub fn run(a: HookArgs) -> Exit {
    hook::run(HookOptions {
        agent: Agent::from_id(&a.agent).unwrap_or_default(),
        event: a.event,
        role: a.role,
        name: a.name,
        permission_wait: a.permission_wait,
        claim_on_edit: a.claim_on_edit,
        url: a.client.url,
        token: a.client.token,
        token_file: a.client.token_file,
    })
}
