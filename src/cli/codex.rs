//! `cipc codex setup | remove`: the flags, and printing what was done.
//! What is written where is [`crate::agents::codex::setup`]'s.

use super::agent_setup::{finish, PeerFlags};
use super::{CliError, Exit};
use crate::agents::codex::setup::{self as codex, Scope as CodexScope};
use crate::agents::{parse_wait, Report};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Flags of `cipc codex`.
#[derive(Debug, Args)]
pub struct CodexArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: CodexCmd,
}

/// The `cipc codex` subcommands.
#[derive(Debug, Subcommand)]
pub enum CodexCmd {
    /// Configure Codex so its sessions are peers of ROLE from their first moment.
    Setup(SetupArgs),
    /// Take out exactly what `setup` added (the MCP server, the hooks and their trust).
    Remove(RemoveArgs),
}

/// Which Codex configuration to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// This project: .codex/config.toml and .codex/hooks.json (Codex reads them once you trust the project).
    Project,
    /// Every project of yours: $CODEX_HOME/config.toml and $CODEX_HOME/hooks.json (~/.codex by default).
    User,
}

impl From<Scope> for CodexScope {
    fn from(s: Scope) -> CodexScope {
        match s {
            Scope::Project => CodexScope::Project,
            Scope::User => CodexScope::User,
        }
    }
}

/// Flags of `cipc codex setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The role, the broker and how the hooks reach it.
    #[command(flatten)]
    pub peer: PeerFlags,
    /// Which configuration to write.
    #[arg(long, value_enum, default_value_t = Scope::Project)]
    pub scope: Scope,
    /// How long a permission prompt relayed to the dashboard waits for the
    /// person (e.g. 30s, 10m) before Codex asks in its own way; Codex runs
    /// the hook first, so this holds its own prompt back. 0 relays nothing.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_wait)]
    pub permission_wait: std::time::Duration,
}

/// Flags of `cipc codex remove`.
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

/// Runs `cipc codex ...`.
pub fn run(args: CodexArgs) -> Exit {
    let (result, dry_run) = match args.cmd {
        CodexCmd::Setup(a) => {
            let dry_run = a.peer.dry_run;
            (setup(a), dry_run)
        }
        CodexCmd::Remove(a) => (
            codex::remove(a.scope.into(), a.dir.as_deref(), a.dry_run),
            a.dry_run,
        ),
    };
    finish("codex", result, dry_run)
}

fn setup(a: SetupArgs) -> Result<Report, CliError> {
    codex::setup(&codex::Setup {
        request: a.peer.resolve(a.permission_wait)?,
        scope: a.scope.into(),
    })
}
