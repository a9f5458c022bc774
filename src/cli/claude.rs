//! `cipc claude setup | remove`: the flags, and printing what was done.
//! What is written where is [`crate::agents::claude::setup`]'s.

use super::{exit, CliError, Exit};
use crate::agents::claude::setup::{self as claude, Scope as ClaudeScope};
use crate::agents::{parse_wait, HookSetup, Report};
use crate::client::DEFAULT_URL;
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
    /// The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    pub role: String,
    /// A name for the sessions' peers (default: the project directory and session).
    #[arg(long)]
    pub name: Option<String>,
    /// Which configuration to write.
    #[arg(long, value_enum, default_value_t = Scope::Project)]
    pub scope: Scope,
    /// The MCP transport.
    #[arg(long, value_enum, default_value_t = Transport::Http)]
    pub transport: Transport,
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The broker's URL.
    #[arg(long, env = "CIPC_URL", hide_env_values = true, default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,
    /// The broker has a token (given here or in CIPC_TOKEN): the MCP entry sends it.
    #[arg(long, env = "CIPC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the token from this file; the hooks read it from there too.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The cipc program the hooks run (default: `cipc`, found on PATH, in a
    /// project's shared settings; this executable's absolute path for the
    /// local and user scopes).
    #[arg(long, value_name = "PATH")]
    pub cipc: Option<String>,
    /// How long a permission prompt relayed to the dashboard waits for the
    /// person (e.g. 10m, 1h); the terminal's own dialog shows beside it all
    /// along and whichever answers first wins. 0 relays nothing.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_wait)]
    pub permission_wait: std::time::Duration,
    /// Also lease each file a session edits (30 minutes, renewed while it
    /// keeps editing, released when it ends), so other sessions are refused
    /// it. Off by default: edits of files another session leased are
    /// refused either way.
    #[arg(long)]
    pub claim_on_edit: bool,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
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
            let dry_run = a.dry_run;
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
    let token = match &a.token_file {
        Some(p) => Some(super::token::read_token_file(p)?),
        None => a.token.clone().filter(|t| !t.trim().is_empty()),
    };
    claude::setup(&claude::Setup {
        hooks: HookSetup {
            role: a.role,
            name: a.name,
            url: a.url,
            token_file: a.token_file,
            cipc: a.cipc,
            permission_wait: a.permission_wait,
            claim_on_edit: a.claim_on_edit,
        },
        scope: a.scope.into(),
        sse: a.transport == Transport::Sse,
        dir: a.dir,
        token,
        dry_run: a.dry_run,
    })
}

/// Prints what an agent's setup or remove did, and ends `cipc AGENT`.
pub(crate) fn finish(command: &str, result: Result<Report, CliError>, dry_run: bool) -> Exit {
    match result {
        Ok(report) => {
            for c in &report.changes {
                println!("{}", c.describe(dry_run));
            }
            for note in &report.notes {
                println!("{note}");
            }
            for w in &report.warnings {
                eprintln!("cipc {command}: {w}");
            }
            exit::OK
        }
        Err(e) => {
            if let Some(m) = e.message {
                eprintln!("cipc {command}: {m}");
            }
            e.code
        }
    }
}
