//! The command line's shape: the clap structs of `cipc` and its client
//! flags, the environment that fills them, the flags moved before the
//! subcommand, and the value parsers several subcommands share (spans,
//! JSON arguments). Each subcommand's own flags live beside its code.

use super::{
    bench, chan, claude, codex, commands, doctor, generate, guard, hook, lease, peers, questions,
    serve, signal, system, work, CliError,
};
use crate::client::DEFAULT_URL;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 error (the broker said no, or the command failed), 2 usage,
3 cannot reach the broker, 124 a wait timed out.

Output: tables on a terminal; one JSON document per result when stdout is not
a terminal or with --json. Durations: 500ms, 30s, 5m, 1h. The client flags
(--url, --token, --token-file, --peer, --json, --table) go before or after
the subcommand.

Environment: CIPC_URL, CIPC_TOKEN, CIPC_PEER, CIPC_PEER_KEY (clients); CIPC_HOST, CIPC_PORT,
CIPC_DATA_DIR, CIPC_TOKEN (serve); RUST_LOG (serve logging); NO_COLOR.";

/// cipc: let AI coding sessions and the people watching them work together.
#[derive(Debug, Parser)]
#[command(name = "cipc", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (REST API, dashboard, MCP endpoint).
    Serve(serve::ServeArgs),
    /// Measure a broker: command round trips, channel throughput, idle waiters.
    Bench(bench::BenchArgs),
    /// List, register and manage peers (sessions with a role).
    Peers(peers::PeersArgs),
    /// Send a command to a role, a peer, or "*" (every online peer).
    Send(commands::SendArgs),
    /// Wait for the next command for this peer (--peer / CIPC_PEER) and print it.
    Wait(commands::WaitArgs),
    /// Report a command done (with a result) or failed (with --error).
    Ack(commands::AckArgs),
    /// Wait for a command's result and print it (exit 1 if it failed).
    Result(commands::ResultArgs),
    /// Cancel a pending or delivered command.
    Cancel(commands::CancelArgs),
    /// List commands, newest first (--overdue: those past their deadline).
    Commands(commands::CommandsArgs),
    /// Ask a person (or any peer) a question, wait for the answer and print it.
    Ask(questions::AskArgs),
    /// Answer an open question (with one of its choices, if it has them).
    Answer(questions::AnswerArgs),
    /// List questions (open ones first); show, wait for or cancel one.
    Questions(questions::QuestionsArgs),
    /// Channels: named append-only message streams.
    Chan(chan::ChanArgs),
    /// Signals: named latches that release waiters when emitted.
    Signal(signal::SignalArgs),
    /// Leases: say which paths of a repository this session works on; see and check who holds what.
    Lease(lease::LeaseArgs),
    /// A git pre-commit hook that refuses a commit of paths another session leases.
    Guard(guard::GuardArgs),
    /// Peers, commands, channels and signals at a glance.
    Status(system::StatusArgs),
    /// Clear every peer, command, channel and signal.
    Reset(system::ResetArgs),
    /// Serve a role with any program: take orders, run CMD for each, ack with its output.
    Work(work::WorkArgs),
    /// Check the broker URL, token, peer and key, and say what to fix.
    Doctor(doctor::DoctorArgs),
    /// Make Claude Code sessions peers: MCP tools plus hooks that reach them even when idle.
    Claude(claude::ClaudeArgs),
    /// Make Codex sessions peers: MCP tools plus hooks, the same as for Claude Code.
    Codex(codex::CodexArgs),
    /// Run by Claude Code or Codex at each hook `cipc claude setup` or `cipc codex setup` installed (reads the hook's JSON on stdin).
    Hook(hook::HookArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the man page (or write every page into a directory).
    Man(generate::ManArgs),
}

/// Where `--help` lists the client flags, apart from each subcommand's own.
const CLIENT_HEADING: &str = "Broker and output options";

/// The flags every client subcommand takes: where the broker is, who we are,
/// and how to print. They are global within each subcommand group, so they
/// go anywhere after the subcommand's name.
///
/// The environment variables are read by [`ClientArgs::apply_env`] after
/// parsing rather than by clap: clap counts a value from the environment as
/// given on the command line, and would print `--peer <ID>` in the usage
/// line of every error while CIPC_PEER is set.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The broker's URL (plain http) [env: CIPC_URL] [default: http://127.0.0.1:9100].
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        default_value = "",
        hide_default_value = true,
        value_name = "URL"
    )]
    pub url: String,
    /// The broker's token, sent as `Authorization: Bearer` (prefer CIPC_TOKEN or --token-file: flags show in `ps`) [env: CIPC_TOKEN].
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the token from a file that is not world-readable (wins over --token).
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// This session's peer id, sent as X-Cipc-Peer (see `cipc peers connect
    /// --export`); the full id, or a unique part of it [env: CIPC_PEER].
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_name = "ID")]
    pub peer: Option<String>,
    /// This session's peer key, sent as X-Cipc-Peer-Key: it proves the peer
    /// (`cipc peers connect --export` sets it; the key alone also names the
    /// peer) [env: CIPC_PEER_KEY].
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_name = "KEY")]
    pub peer_key: Option<String>,
    /// Print one JSON document per result (the default when stdout is not a terminal).
    #[arg(long, global = true, help_heading = CLIENT_HEADING)]
    pub json: bool,
    /// Print tables and short lines even when stdout is not a terminal.
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        conflicts_with = "json"
    )]
    pub table: bool,
}

/// A variable of the environment, `None` when unset or blank.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl ClientArgs {
    /// Fills what the command line left out from CIPC_URL, CIPC_TOKEN,
    /// CIPC_PEER and CIPC_PEER_KEY (flags win; blank variables count as
    /// unset), and the URL's default.
    pub fn apply_env(&mut self) {
        if self.url.trim().is_empty() {
            self.url = env_value("CIPC_URL").unwrap_or_else(|| DEFAULT_URL.to_string());
        }
        if self.token.is_none() {
            self.token = env_value("CIPC_TOKEN");
        }
        if self.peer.is_none() {
            self.peer = env_value("CIPC_PEER");
        }
        if self.peer_key.is_none() {
            self.peer_key = env_value("CIPC_PEER_KEY");
        }
    }
}

/// Reads a JSON argument given inline, as `@file`, or as `-` (stdin).
pub fn read_json_arg(arg: &str, what: &str) -> Result<serde_json::Value, CliError> {
    let (text, source) = if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::error(format!("cannot read {what} from stdin: {e}")))?;
        (s, "stdin".to_string())
    } else if let Some(path) = arg.strip_prefix('@') {
        let s = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {what} from {path}: {e}")))?;
        (s, path.to_string())
    } else {
        (arg.to_string(), "the argument".to_string())
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{what} from {source} is not valid JSON ({e}); quote text as JSON, e.g. '\"hello\"' or '{{\"key\":\"value\"}}'"
        ))
    })
}

/// The most the broker accepts for a ttl or a deadline: 365 days.
const MAX_SPAN: std::time::Duration = std::time::Duration::from_millis(crate::api::MAX_TTL_MS);

/// Parses a `--ttl` or `--deadline` (`10m`, `1h30m`): more than nothing and
/// at most 365 days, the broker's limit.
pub fn parse_span(text: &str) -> Result<std::time::Duration, SpanError> {
    let d = humantime::parse_duration(text.trim()).map_err(SpanError::NotADuration)?;
    if d.is_zero() {
        return Err(SpanError::Zero);
    }
    if d > MAX_SPAN {
        return Err(SpanError::TooLong);
    }
    Ok(d)
}

/// Why a `--ttl` or `--deadline` was refused (clap shows the sentence).
#[derive(Debug, thiserror::Error)]
pub enum SpanError {
    /// Not a duration at all.
    #[error("{0}; write a duration like 500ms, 30s, 10m, 2h or 7days")]
    NotADuration(humantime::DurationError),
    /// Zero.
    #[error("it must be longer than 0; e.g. 30s or 10m")]
    Zero,
    /// Past the broker's limit.
    #[error("it must be at most 365 days (the broker's limit)")]
    TooLong,
}

/// A duration in whole milliseconds, for the wire.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Client flags that take a value, and those that do not.
const HOISTED_WITH_VALUE: [&str; 5] = ["--url", "--token", "--token-file", "--peer", "--peer-key"];
const HOISTED_SWITCHES: [&str; 2] = ["--json", "--table"];

/// Lets the client flags come before the subcommand too (`cipc --json
/// status`, `cipc --url URL peers`), as people type them: clap defines them on
/// each subcommand (`serve` has its own `--token`), so they are moved to just
/// after the subcommand's name. Anything else is left exactly as given.
pub fn hoist_client_flags(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut iter = args.into_iter();
    let mut out: Vec<std::ffi::OsString> = iter.next().into_iter().collect();
    let mut hoisted = Vec::new();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy().into_owned();
        let name = text.split('=').next().unwrap_or_default();
        if HOISTED_SWITCHES.contains(&text.as_str())
            || (HOISTED_WITH_VALUE.contains(&name) && text.contains('='))
        {
            hoisted.push(arg);
        } else if HOISTED_WITH_VALUE.contains(&text.as_str()) {
            hoisted.push(arg);
            hoisted.extend(iter.next());
        } else {
            // The subcommand (or anything clap should judge, like --help).
            out.push(arg);
            out.extend(hoisted);
            out.extend(iter);
            return out;
        }
    }
    out.extend(hoisted);
    out
}

#[cfg(test)]
mod tests {
    use super::{hoist_client_flags, millis, parse_span};
    use std::time::Duration;

    #[test]
    fn spans_are_positive_and_at_most_a_year() {
        assert_eq!(parse_span("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(parse_span(" 300ms ").ok(), Some(Duration::from_millis(300)));
        assert_eq!(millis(Duration::from_millis(300)), 300);
        assert!(parse_span("365days").is_ok());
        let refusal =
            |text: &str| parse_span(text).map_or_else(|e| e.to_string(), |_| String::new());
        assert!(refusal("0s").contains("longer than 0"));
        assert!(refusal("366days").contains("365 days"));
        assert!(refusal("soon").contains("like 500ms"));
    }
    use std::ffi::OsString;

    fn hoist(args: &[&str]) -> Vec<String> {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        hoist_client_flags(v)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn moves_leading_client_flags_after_the_subcommand() {
        assert_eq!(
            hoist(&["cipc", "--url", "http://x", "--json", "chan", "read", "c"]),
            ["cipc", "chan", "--url", "http://x", "--json", "read", "c"]
        );
        assert_eq!(
            hoist(&["cipc", "--token=t", "serve", "--port", "0"]),
            ["cipc", "serve", "--token=t", "--port", "0"]
        );
        assert_eq!(
            hoist(&["cipc", "status", "--json"]),
            ["cipc", "status", "--json"]
        );
        assert_eq!(hoist(&["cipc", "--help"]), ["cipc", "--help"]);
    }
}
