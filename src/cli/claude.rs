//! `cipc claude setup | remove`: the flags, and printing what was done.
//! What is written where is [`crate::agents::claude::setup`]'s.

use super::agent_setup::{finish, PeerFlags};
use super::{CliError, Exit};
use crate::agents::claude::setup::{self as claude, Scope as ClaudeScope};
use crate::agents::{parse_wait, Report};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Flags of `cipc claude`.
#[derive(Debug, Args)]
pub struct ClaudeArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: ClaudeCmd,
}

/// The `cipc claude` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClaudeCmd {
    /// Configure Claude Code so its sessions are peers of ROLE from their first moment.
    Setup(SetupArgs),
    /// Take out exactly what `setup` added (the MCP server and the hooks).
    Remove(RemoveArgs),
}

/// Which Claude Code configuration to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// This project, shared with the team: .mcp.json and .claude/settings.json.
    Project,
    /// This project, only for you: ~/.claude.json and .claude/settings.local.json.
    Local,
    /// Every project of yours: ~/.claude.json and ~/.claude/settings.json.
    User,
}

/// Which MCP transport the server entry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Streamable HTTP at /mcp (recommended).
    Http,
    /// The older HTTP+SSE transport at /mcp/sse.
    Sse,
}

/// Flags of `cipc claude setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The role, the broker and how the hooks reach it.
    #[command(flatten)]
    pub peer: PeerFlags,
    /// Which configuration to write.
    #[arg(long, value_enum, default_value_t = Scope::Project)]
    pub scope: Scope,
    /// The MCP transport.
    #[arg(long, value_enum, default_value_t = Transport::Http)]
    pub transport: Transport,
    /// How long a permission prompt relayed to the dashboard waits for the
    /// person (e.g. 10m, 1h); the terminal's own dialog shows beside it all
    /// along and whichever answers first wins. 0 relays nothing.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_wait)]
    pub permission_wait: std::time::Duration,
}

/// Flags of `cipc claude remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Which configuration to clean.
    #[arg(long, value_enum, default_value_t = Scope::Project)]
    pub scope: Scope,
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl From<Scope> for ClaudeScope {
    fn from(s: Scope) -> ClaudeScope {
        match s {
            Scope::Project => ClaudeScope::Project,
            Scope::Local => ClaudeScope::Local,
            Scope::User => ClaudeScope::User,
        }
    }
}

/// Runs `cipc claude ...`.
pub fn run(args: ClaudeArgs) -> Exit {
    let (result, dry_run) = match args.cmd {
        ClaudeCmd::Setup(a) => {
            let dry_run = a.peer.dry_run;
            (setup(a), dry_run)
        }
        ClaudeCmd::Remove(a) => (
            claude::remove(a.scope.into(), a.dir.as_deref(), a.dry_run),
            a.dry_run,
        ),
    };
    finish("claude", result, dry_run)
}

fn setup(a: SetupArgs) -> Result<Report, CliError> {
    claude::setup(&claude::Setup {
        request: a.peer.resolve(a.permission_wait)?,
        scope: a.scope.into(),
        sse: a.transport == Transport::Sse,
    })
}
