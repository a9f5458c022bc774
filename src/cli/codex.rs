//! `cipc codex setup | remove`: the flags, and printing what was done.
//! What is written where is [`crate::agents::codex::setup`]'s.

use super::claude::finish;
use super::{CliError, Exit};
use crate::agents::codex::setup::{self as codex, Scope as CodexScope};
use crate::agents::{parse_wait, HookSetup, Report};
use crate::client::DEFAULT_URL;
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
#[derive(Debug, Clone, Args)]
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
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The broker's URL.
    #[arg(long, env = "CIPC_URL", hide_env_values = true, default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,
    /// The broker has a token (given here or in CIPC_TOKEN): the MCP server sends it.
    #[arg(long, env = "CIPC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the token from this file; the hooks read it from there too.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The cipc program the hooks run (default: `cipc`, found on PATH, for
    /// the project scope; this executable's absolute path for the user scope).
    #[arg(long, value_name = "PATH")]
    pub cipc: Option<String>,
    /// How long a permission prompt relayed to the dashboard waits for the
    /// person (e.g. 30s, 10m) before Codex asks in its own way; Codex runs
    /// the hook first, so this holds its own prompt back. 0 relays nothing.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_wait)]
    pub permission_wait: std::time::Duration,
    /// Also lease each file a session edits (30 minutes, renewed while it
    /// keeps editing, released when it ends). Off by default: edits of
    /// files another session leased are refused either way.
    #[arg(long)]
    pub claim_on_edit: bool,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
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
            let dry_run = a.dry_run;
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
    let token = match &a.token_file {
        Some(p) => Some(super::token::read_token_file(p)?),
        None => a.token.clone().filter(|t| !t.trim().is_empty()),
    };
    codex::setup(&codex::Setup {
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
        dir: a.dir,
        token,
        dry_run: a.dry_run,
    })
}
