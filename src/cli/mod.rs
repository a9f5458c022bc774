//! The `cipc` command line: argument definitions and dispatch.
//!
//! `serve` runs the broker; every other subcommand is a client of its HTTP API
//! (through [`crate::client::Client`]), one file per group: [`peers`],
//! [`commands`] (send/wait/ack/result/cancel/commands), [`questions`]
//! (ask/answer/questions), [`chan`],
//! [`signal`], [`system`] (status/reset), [`doctor`] (what is wrong with
//! the setup) and [`generate`] (completions/man).
//! [`output`] decides between tables and JSON; [`poll`] turns long-polls into
//! waits of any length. Ids may be given whole or as a unique part
//! ([`resolve_id`]); error lines start with the whole subcommand
//! ([`prefix`]).

pub mod bench;
mod bench_scale;
pub mod chan;
pub mod claude;
pub mod commands;
pub mod doctor;
pub mod fd_limit;
pub mod generate;
pub mod output;
pub mod peers;
pub mod poll;
pub mod questions;
pub mod serve;
pub mod signal;
pub mod system;
pub mod work;

use crate::client::{Client, ClientError, DEFAULT_URL};
use clap::{Args, Parser, Subcommand};
use output::Output;
use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use uuid::Uuid;

/// How a `cipc` process ends: its exit status, documented in `--help`, the
/// man page and docs/cli.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The broker said no, a command failed, or another error.
    Error = 1,
    /// Bad usage (unknown flag, bad value, unsafe configuration refused).
    Usage = 2,
    /// The broker could not be reached.
    Unreachable = 3,
    /// A wait ran out of time.
    TimedOut = 124,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// The exit statuses by their short names (`exit::OK`, ...).
pub mod exit {
    use super::Exit;
    /// Success.
    pub const OK: Exit = Exit::Ok;
    /// The broker said no, a command failed, or another error.
    pub const ERROR: Exit = Exit::Error;
    /// Bad usage (unknown flag, bad value, unsafe configuration refused).
    pub const USAGE: Exit = Exit::Usage;
    /// The broker could not be reached.
    pub const UNREACHABLE: Exit = Exit::Unreachable;
    /// A wait ran out of time.
    pub const TIMED_OUT: Exit = Exit::TimedOut;
    /// `cipc hook stop` found an order: Claude Code wakes an idle session
    /// when a background (`asyncRewake`) hook exits 2.
    pub const WAKE: Exit = Exit::Usage;
}

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
    /// Run by Claude Code at each hook `cipc claude setup` installed (reads the hook's JSON on stdin).
    Hook(claude::hook::HookArgs),
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

/// Why a subcommand stopped: an exit code and, usually, one line for stderr.
#[derive(Debug, Clone)]
pub struct CliError {
    /// The process exit code ([`exit`]).
    pub code: Exit,
    /// What failed and what to do; `None` when everything was already said.
    pub message: Option<String>,
}

impl CliError {
    /// Exit code 1 with a message.
    pub fn error(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::ERROR,
            message: Some(message.into()),
        }
    }

    /// Exit code 2 (bad usage) with a message.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::USAGE,
            message: Some(message.into()),
        }
    }

    /// An exit code with nothing more to say.
    pub fn quiet(code: Exit) -> CliError {
        CliError {
            code,
            message: None,
        }
    }

    /// The same error, its message starting with `prefix`.
    pub fn prefixed(mut self, prefix: &str) -> CliError {
        self.message = self.message.map(|m| format!("{prefix}{m}"));
        self
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match &e {
            ClientError::Config(_) => CliError::usage(e.to_string()),
            ClientError::Unreachable { .. } => CliError {
                code: exit::UNREACHABLE,
                message: Some(format!(
                    "{e}; is it running? Start one with `cipc serve`, or point --url / CIPC_URL at it"
                )),
            },
            ClientError::Api { .. } => CliError::error(format!("the broker said: {e}")),
            ClientError::Protocol { .. } => CliError::error(e.to_string()),
            // No broker where we looked: like nothing answering at all.
            ClientError::Foreign { .. } => CliError {
                code: exit::UNREACHABLE,
                message: Some(e.to_string()),
            },
        }
    }
}

/// What a client subcommand runs with: the connected client and the output policy.
pub struct Ctx {
    /// The typed API client.
    pub client: Client,
    /// Tables or JSON, colours, spinners.
    pub out: Output,
}

impl Ctx {
    async fn new(args: &ClientArgs) -> Result<Ctx, CliError> {
        let token = match &args.token_file {
            Some(path) => Some(serve::read_token_file(path).map_err(CliError::usage)?),
            None => args.token.clone(),
        };
        let base = Client::new(&args.url, token, None)?;
        let (peer, key) = identity(args, &base).await?;
        Ok(Ctx {
            client: base.with_peer(peer).with_key(key),
            out: Output::detect(args.json, args.table),
        })
    }

    /// The peer this session is (`--peer` / `CIPC_PEER`, or the one its key
    /// names), for subcommands that act as it; `explicit` wins when given.
    /// The error names the fix without naming the subcommand (the error
    /// line starts with that already).
    pub fn peer_or(&self, explicit: Option<&str>, _what: &str) -> Result<String, CliError> {
        if let Some(id) = explicit {
            return Ok(id.to_string());
        }
        self.client.peer().map(|p| p.to_string()).ok_or_else(|| {
            CliError::usage(
                "which peer? pass --peer ID, or set CIPC_PEER and CIPC_PEER_KEY for this shell: \
                 eval \"$(cipc peers connect ROLE --export)\"",
            )
        })
    }

    /// The peer a subcommand with an optional `[ID]` argument acts on: the
    /// argument (a full id or a unique part, see [`resolve_id`]), else this
    /// session's peer.
    pub async fn peer_arg(&self, given: Option<&str>) -> Result<String, CliError> {
        match given {
            Some(g) => resolve_id(self, g, IdKind::Peer).await,
            None => self.client.peer().map(|p| p.to_string()).ok_or_else(|| {
                CliError::usage(
                    "which peer? give its id (or a unique part of it, as `cipc peers` shows), \
                     pass --peer ID, or set CIPC_PEER and CIPC_PEER_KEY: eval \"$(cipc peers connect ROLE --export)\"",
                )
            }),
        }
    }
}

/// The peer a client acts as and the key proving it, from `--peer` /
/// `CIPC_PEER` and `--peer-key` / `CIPC_PEER_KEY`: the peer named (a unique
/// part of an id is looked up with `lookup`, a client speaking for nobody),
/// else the one its key names. A malformed id or key, or an id and a key
/// naming different peers, is a usage error saying how to fix it; `cipc
/// doctor` shows the same error as one of its check lines.
pub async fn identity(
    args: &ClientArgs,
    lookup: &Client,
) -> Result<(Option<Uuid>, Option<String>), CliError> {
    let key = args
        .peer_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let key_peer = match key {
        None => None,
        Some(k) => Some(crate::broker::keys::key_peer(k).ok_or_else(|| {
            CliError::usage(
                "--peer-key / CIPC_PEER_KEY is not a cipc peer key (pk_...); use the key printed by `cipc peers connect ROLE --export`",
            )
        })?),
    };
    let peer = match args.peer.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(match Uuid::parse_str(p) {
            Ok(id) => id,
            // Part of an id, as tables show them: the broker's list says whose.
            Err(_) if IdKind::Peer.fragment(p).is_ok() => {
                let id = resolve_with(lookup, p, IdKind::Peer)
                    .await
                    .map_err(|e| e.prefixed("--peer / CIPC_PEER: "))?;
                Uuid::parse_str(&id).map_err(|_| CliError::error("the broker listed a peer id that is not a UUID"))?
            }
            Err(_) => {
                return Err(CliError::usage(format!(
                    "--peer / CIPC_PEER {p:?} is not a peer id; use the id printed by `cipc peers connect ROLE` (or a unique part of it, at least 6 characters)"
                )))
            }
        }),
    };
    if let (Some(p), Some(k)) = (peer, key_peer) {
        if p != k {
            return Err(CliError::usage(format!(
                "CIPC_PEER ({p}) and CIPC_PEER_KEY (peer {k}) name different peers; export both from one `cipc peers connect ROLE --export`"
            )));
        }
    }
    Ok((peer.or(key_peer), key.map(str::to_string)))
}

/// The kinds of id a user types: a command's, a peer's, a question's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A command id (`cipc send`, `cipc commands`).
    Command,
    /// A peer id (`cipc peers`).
    Peer,
    /// A question id (`cipc ask`, `cipc questions`).
    Question,
}

/// The fewest characters of an id that name it (besides the whole id).
pub const MIN_ID_PART: usize = 6;

impl IdKind {
    fn noun(self) -> &'static str {
        match self {
            IdKind::Command => "command",
            IdKind::Peer => "peer",
            IdKind::Question => "question",
        }
    }

    fn lister(self) -> &'static str {
        match self {
            IdKind::Command => "`cipc commands`",
            IdKind::Peer => "`cipc peers`",
            IdKind::Question => "`cipc questions`",
        }
    }

    /// The hex digits of a part of an id (dashes dropped, lower case), or
    /// the usage error saying what an id looks like.
    pub fn fragment(self, given: &str) -> Result<String, CliError> {
        let part = given.trim().to_ascii_lowercase().replace('-', "");
        if part.len() >= MIN_ID_PART
            && part.len() <= 32
            && part.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Ok(part);
        }
        let why = if !part.is_empty()
            && part.chars().all(|c| c.is_ascii_hexdigit())
            && part.len() < MIN_ID_PART
        {
            "is too short"
        } else {
            "is not"
        };
        Err(CliError::usage(format!(
            "{given:?} {why} a {noun} id: give the whole id, or at least {MIN_ID_PART} characters from its start or end (the short id that {lister} shows works)",
            noun = self.noun(),
            lister = self.lister(),
        )))
    }
}

/// Picks the one id of `candidates` (each with a few words about it) that
/// `given` names: the whole id, or a part of at least [`MIN_ID_PART`]
/// characters from its start or its end (UUID v7 ids begin with their
/// time, so tables show their ends). None, or several, is an error saying
/// which.
pub fn pick_id(
    given: &str,
    kind: IdKind,
    candidates: impl IntoIterator<Item = (Uuid, String)>,
) -> Result<Uuid, CliError> {
    let part = kind.fragment(given)?;
    let found: Vec<(Uuid, String)> = candidates
        .into_iter()
        .filter(|(id, _)| {
            let hex = id.simple().to_string();
            hex.starts_with(&part) || hex.ends_with(&part)
        })
        .collect();
    match found.as_slice() {
        [(id, _)] => Ok(*id),
        [] => Err(CliError::error(format!(
            "no {noun} id starts or ends with {given}; list them with {lister}",
            noun = kind.noun(),
            lister = kind.lister(),
            given = given.trim()
        ))),
        many => {
            const SHOWN: usize = 5;
            let mut list: Vec<String> = many
                .iter()
                .take(SHOWN)
                .map(|(id, what)| format!("{id} ({what})"))
                .collect();
            if many.len() > SHOWN {
                list.push(format!("and {} more", many.len() - SHOWN));
            }
            Err(CliError::usage(format!(
                "{given} matches {n} {noun}s: {list}; give more of the id",
                given = given.trim(),
                n = many.len(),
                noun = kind.noun(),
                list = list.join(", ")
            )))
        }
    }
}

/// An id as the broker wants it: a whole id as given (no request), or the
/// one id that a part names, looked up in the broker's list of that kind
/// (`GET /commands?limit=10000`, `GET /peers`, `GET /questions`).
pub async fn resolve_id(ctx: &Ctx, given: &str, kind: IdKind) -> Result<String, CliError> {
    resolve_with(&ctx.client, given, kind).await
}

async fn resolve_with(client: &Client, given: &str, kind: IdKind) -> Result<String, CliError> {
    let given = given.trim();
    if let Ok(id) = Uuid::parse_str(given) {
        return Ok(id.to_string());
    }
    kind.fragment(given)?;
    let candidates: Vec<(Uuid, String)> = match kind {
        IdKind::Command => client
            .list_commands(None, None, Some(crate::api::MAX_LIST_LIMIT))
            .await?
            .commands
            .into_iter()
            .map(|c| {
                let what = format!("{} for {}, {}", c.action, c.target, c.status.as_str());
                (c.id, what)
            })
            .collect(),
        IdKind::Peer => client
            .peers()
            .await?
            .peers
            .into_iter()
            .map(|p| {
                let what = format!("{}, {}", p.role, p.status.as_str());
                (p.id, what)
            })
            .collect(),
        IdKind::Question => client
            .questions(None)
            .await?
            .questions
            .into_iter()
            .map(|q| {
                let what = format!("from {}, {}", q.from, q.status.as_str());
                (q.id, what)
            })
            .collect(),
    };
    pick_id(given, kind, candidates).map(|id| id.to_string())
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
pub fn parse_span(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; write a duration like 500ms, 30s, 10m, 2h or 7days"))?;
    if d.is_zero() {
        return Err("it must be longer than 0; e.g. 30s or 10m".to_string());
    }
    if d > MAX_SPAN {
        return Err("it must be at most 365 days (the broker's limit)".to_string());
    }
    Ok(d)
}

/// A duration in whole milliseconds, for the wire.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one client subcommand on a lean single-threaded runtime and turns
/// its outcome into an exit code, printing the error line if there is one.
fn run_client<F, Fut>(group: &str, args: &ClientArgs, f: F) -> Exit
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<Exit, CliError>>,
{
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::error(format!("cannot start the async runtime: {e}")))
        .and_then(|rt| {
            rt.block_on(async {
                let ctx = Ctx::new(args).await?;
                f(ctx).await
            })
        });
    match result {
        Ok(code) => code,
        Err(e) => report(group, e),
    }
}

/// The subcommand being run, as typed: "chan send", "peers show", "wait".
static COMMAND_PATH: OnceLock<String> = OnceLock::new();

/// "cipc chan send": how the lines this process prints on stderr begin,
/// naming the whole subcommand once.
pub fn prefix() -> String {
    match COMMAND_PATH.get() {
        Some(p) => format!("cipc {p}"),
        None => "cipc".to_string(),
    }
}

/// The words naming a parsed subcommand.
fn command_path(cmd: &Command) -> String {
    let (group, sub): (&str, Option<&str>) = match cmd {
        Command::Serve(_) => ("serve", None),
        Command::Bench(_) => ("bench", None),
        Command::Peers(a) => ("peers", a.cmd.as_ref().map(peers::PeersCmd::name)),
        Command::Send(_) => ("send", None),
        Command::Wait(_) => ("wait", None),
        Command::Ack(_) => ("ack", None),
        Command::Result(_) => ("result", None),
        Command::Cancel(_) => ("cancel", None),
        Command::Commands(_) => ("commands", None),
        Command::Ask(_) => ("ask", None),
        Command::Answer(_) => ("answer", None),
        Command::Questions(a) => (
            "questions",
            a.cmd.as_ref().map(questions::QuestionsCmd::name),
        ),
        Command::Chan(a) => ("chan", Some(a.cmd.name())),
        Command::Signal(a) => ("signal", Some(a.cmd.name())),
        Command::Status(_) => ("status", None),
        Command::Reset(_) => ("reset", None),
        Command::Work(_) => ("work", None),
        Command::Doctor(_) => ("doctor", None),
        Command::Claude(_) => ("claude", None),
        Command::Hook(_) => ("hook", None),
        Command::Completions(_) => ("completions", None),
        Command::Man(_) => ("man", None),
    };
    match sub {
        Some(s) => format!("{group} {s}"),
        None => group.to_string(),
    }
}

/// The client flags of a subcommand that has them.
fn client_args(cmd: &mut Command) -> Option<&mut ClientArgs> {
    match cmd {
        Command::Peers(a) => Some(&mut a.client),
        Command::Send(a) => Some(&mut a.client),
        Command::Wait(a) => Some(&mut a.client),
        Command::Ack(a) => Some(&mut a.client),
        Command::Result(a) => Some(&mut a.client),
        Command::Cancel(a) => Some(&mut a.client),
        Command::Commands(a) => Some(&mut a.client),
        Command::Ask(a) => Some(&mut a.client),
        Command::Answer(a) => Some(&mut a.client),
        Command::Questions(a) => Some(&mut a.client),
        Command::Chan(a) => Some(&mut a.client),
        Command::Signal(a) => Some(&mut a.client),
        Command::Status(a) => Some(&mut a.client),
        Command::Reset(a) => Some(&mut a.client),
        Command::Work(a) => Some(&mut a.client),
        Command::Doctor(a) => Some(&mut a.client),
        Command::Hook(a) => Some(&mut a.client),
        Command::Serve(_)
        | Command::Bench(_)
        | Command::Claude(_)
        | Command::Completions(_)
        | Command::Man(_) => None,
    }
}

/// Prints an error's one line (if any) and returns its exit code. The line
/// starts with the whole subcommand (`cipc chan send: ...`), else `group`.
fn report(group: &str, e: CliError) -> Exit {
    if let Some(m) = e.message {
        match COMMAND_PATH.get() {
            Some(_) => eprintln!("{}: {m}", prefix()),
            None => eprintln!("cipc {group}: {m}"),
        }
    }
    e.code
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

/// Runs the parsed command line; returns the process exit code.
pub fn run(mut cli: Cli) -> Exit {
    let _ = COMMAND_PATH.set(command_path(&cli.command));
    if let Some(c) = client_args(&mut cli.command) {
        c.apply_env();
    }
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Peers(a) => run_client("peers", &a.client.clone(), |ctx| peers::run(a, ctx)),
        Command::Send(a) => run_client("send", &a.client.clone(), |ctx| commands::send(a, ctx)),
        Command::Wait(a) => run_client("wait", &a.client.clone(), |ctx| commands::wait(a, ctx)),
        Command::Ack(a) => run_client("ack", &a.client.clone(), |ctx| commands::ack(a, ctx)),
        Command::Result(a) => {
            run_client("result", &a.client.clone(), |ctx| commands::result(a, ctx))
        }
        Command::Cancel(a) => {
            run_client("cancel", &a.client.clone(), |ctx| commands::cancel(a, ctx))
        }
        Command::Commands(a) => {
            run_client("commands", &a.client.clone(), |ctx| commands::list(a, ctx))
        }
        Command::Ask(a) => run_client("ask", &a.client.clone(), |ctx| questions::ask(a, ctx)),
        Command::Answer(a) => {
            run_client("answer", &a.client.clone(), |ctx| questions::answer(a, ctx))
        }
        Command::Questions(a) => {
            run_client("questions", &a.client.clone(), |ctx| questions::run(a, ctx))
        }
        Command::Chan(a) => run_client("chan", &a.client.clone(), |ctx| chan::run(a, ctx)),
        Command::Signal(a) => run_client("signal", &a.client.clone(), |ctx| signal::run(a, ctx)),
        Command::Status(a) => run_client("status", &a.client.clone(), |ctx| system::status(a, ctx)),
        Command::Reset(a) => run_client("reset", &a.client.clone(), |ctx| system::reset(a, ctx)),
        Command::Work(a) => run_client("work", &a.client.clone(), |ctx| work::run(a, ctx)),
        Command::Doctor(a) => {
            // The doctor judges CIPC_PEER and CIPC_PEER_KEY itself, as one of
            // its check lines, so a mismatch cannot stop it before any check.
            let mut anonymous = a.client.clone();
            anonymous.peer = None;
            anonymous.peer_key = None;
            run_client("doctor", &anonymous, |ctx| doctor::run(a, ctx))
        }
        Command::Claude(a) => claude::run(a),
        Command::Hook(a) => claude::hook::run(a),
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
    }
}

#[cfg(test)]
mod tests {
    use super::{hoist_client_flags, millis, parse_span};
    use std::time::Duration;

    #[test]
    fn spans_are_positive_and_at_most_a_year() {
        assert_eq!(parse_span("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_span(" 300ms "), Ok(Duration::from_millis(300)));
        assert_eq!(millis(Duration::from_millis(300)), 300);
        assert!(parse_span("365days").is_ok());
        assert!(parse_span("0s").unwrap_err().contains("longer than 0"));
        assert!(parse_span("366days").unwrap_err().contains("365 days"));
        assert!(parse_span("soon").unwrap_err().contains("like 500ms"));
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
