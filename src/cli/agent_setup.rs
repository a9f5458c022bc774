//! What `cipc claude setup` and `cipc codex setup` both take, and how both
//! print what they did.

use super::{exit, CliError, Exit};
use crate::agents::{Report, SetupRequest};
use crate::client::DEFAULT_URL;
use clap::Args;
use std::path::PathBuf;

/// The flags every agent's setup takes (flattened into each).
#[derive(Debug, Args)]
pub struct PeerFlags {
    /// The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    pub role: String,
    /// A name for the sessions' peers (default: the project directory and session).
    #[arg(long)]
    pub name: Option<String>,
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The broker's URL.
    #[arg(long, env = "CIPC_URL", hide_env_values = true, default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,
    /// The broker has a token (given here or in CIPC_TOKEN): the MCP server entry sends it.
    #[arg(long, env = "CIPC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the token from this file; the hooks read it from there too.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The cipc program the hooks run (default: `cipc`, found on PATH, in a
    /// project's shared files; this executable's absolute path in your own
    /// configuration).
    #[arg(long, value_name = "PATH")]
    pub cipc: Option<String>,
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

impl PeerFlags {
    /// What the person asks of setup, with `permission_wait` (each agent
    /// has its own default), and the broker's token read from
    /// `--token-file` when given.
    pub fn resolve(self, permission_wait: std::time::Duration) -> Result<SetupRequest, CliError> {
        let token = match &self.token_file {
            Some(p) => Some(super::token::read_token_file(p)?),
            None => self.token.filter(|t| !t.trim().is_empty()),
        };
        Ok(SetupRequest {
            role: self.role,
            name: self.name,
            url: self.url,
            token,
            token_file: self.token_file,
            cipc: self.cipc,
            permission_wait,
            claim_on_edit: self.claim_on_edit,
            dir: self.dir,
            dry_run: self.dry_run,
        })
    }
}

/// Prints what an agent's setup or remove did, and ends `cipc AGENT`.
pub fn finish(command: &str, result: Result<Report, CliError>, dry_run: bool) -> Exit {
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
