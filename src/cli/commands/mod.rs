//! `cipc send`, `cipc wait`, `cipc ack`, `cipc result`, `cipc cancel` and
//! `cipc commands`: the command round trip from a shell.
//!
//! `send --wait` is request and reply in one line of shell; `wait` hands the
//! next command to a script as JSON; `ack` reports the outcome. `result`
//! waits for a command sent earlier (the same wait as `send --wait`),
//! `cancel` withdraws one, and `commands` lists them newest first.
//!
//! This file holds their arguments; [`send`] sends (and `--wait`s), `take.rs`
//! is the taker's side (`wait`, `ack`), and `results.rs` follows what was
//! sent (`result`, `cancel`, `commands`).

mod results;
mod send;
mod take;

pub use results::{cancel, command_table, list, result};
pub use send::send;
pub use take::{ack, wait};

use super::{parse_span, ClientArgs};
use crate::api::CommandStatus;
use clap::Args;
use std::time::Duration;

/// Flags of `cipc send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// A role, a peer id, or "*" for a copy to every online peer.
    pub target: String,
    /// What to do, e.g. start-server.
    pub action: String,
    /// One parameter: key=value (a string) or key:=JSON (a number, object, ...); repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// All parameters as JSON: inline, @file, or - for stdin (--param adds to it).
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub params: Option<String>,
    /// Who is sending [default: this peer's role, else "anonymous"].
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// An idempotency key: sending it again answers the original command.
    #[arg(long, value_name = "KEY")]
    pub dedupe_key: Option<String>,
    /// Let the command expire if nobody takes it within this long (e.g. 10m).
    #[arg(long, value_parser = parse_span, value_name = "DURATION")]
    pub ttl: Option<Duration>,
    /// It should be finished within this long (e.g. 10m): past it, an
    /// unfinished command is marked overdue, shown to the people watching and
    /// listed by `cipc commands --overdue`. It keeps running.
    #[arg(long, value_parser = parse_span, value_name = "DURATION")]
    pub deadline: Option<Duration>,
    /// Refuse to send (exit 1) unless an online peer holds the target
    /// (has that role, or is that peer) right now; without it a command for
    /// an absent role is queued until one connects.
    #[arg(long)]
    pub require_online: bool,
    /// Block until the command is acked and print its result alone, into a pipe too (--json: the whole command; exit 1 if it failed).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 124) [default: 5m].
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// With --wait: wait as long as it takes.
    #[arg(long, requires = "wait", conflicts_with = "timeout")]
    pub forever: bool,
}

/// Flags of `cipc wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Broker, identity and output flags (--peer says whose commands to take).
    #[command(flatten)]
    pub client: ClientArgs,
    /// Give up after this long (exit 124).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Wait as long as it takes.
    #[arg(long, conflicts_with = "timeout")]
    pub forever: bool,
}

/// Flags of `cipc ack`.
#[derive(Debug, Args)]
pub struct AckArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The command's id (from `cipc wait`): whole, or a unique part of at
    /// least 6 characters (the short id `cipc commands` shows).
    pub command_id: String,
    /// It succeeded, with this outcome as JSON: inline, @file, or - for stdin.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub result: Option<String>,
    /// It failed, with this message (instead of --result: a command either
    /// succeeded or failed).
    #[arg(long, value_name = "MESSAGE", conflicts_with = "result")]
    pub error: Option<String>,
    /// The delivery you are acking (`attempt` in what `cipc wait` printed):
    /// if the command was since given to another taker, the ack is refused.
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
}

/// Flags of `cipc commands`.
#[derive(Debug, Args)]
pub struct CommandsArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only commands with this status.
    #[arg(long, value_name = "STATUS", value_parser = status_parser())]
    pub status: Option<CommandStatus>,
    /// Only commands sent to this target (a role, a peer id, or "*").
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Only commands whose deadline (`send --deadline`) passed before they
    /// finished: still running late, or finished late.
    #[arg(long)]
    pub overdue: bool,
    /// At most this many, newest first (broker default 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `--status`: one of the wire names, offered to shell completion.
fn status_parser() -> impl clap::builder::TypedValueParser<Value = CommandStatus> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(CommandStatus::ALL.map(CommandStatus::as_str))
        .try_map(|s| s.parse::<CommandStatus>())
}

/// Flags of `cipc result`.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The command's id (from `cipc send` or `cipc commands`): whole, or a
    /// unique part of at least 6 characters.
    pub command_id: String,
    /// Give up after this long (exit 124).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Wait as long as it takes.
    #[arg(long, conflicts_with = "timeout")]
    pub forever: bool,
}

/// Flags of `cipc cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The id of a pending or delivered command: whole, or a unique part of
    /// at least 6 characters (the short id `cipc commands` shows).
    pub command_id: String,
}
