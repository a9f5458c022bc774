//! The `cipc` command line: dispatch, on top of its arguments ([`args`]),
//! exit codes ([`exit`]) and id resolution ([`ids`]), as ripgrep keeps
//! its flags apart from what runs them.
//!
//! `serve` runs the broker; every other subcommand is a client of its HTTP API
//! (through [`crate::client::Client`]), one file per group: [`peers`],
//! [`commands`] (send/wait/ack/result/cancel/commands), [`questions`]
//! (ask/answer/questions), [`chan`],
//! [`signal`], [`lease`] (who works on which paths of a repository, named
//! through [`repo`]), [`guard`] (the git pre-commit hook that enforces
//! leases), [`system`] (status/reset), [`doctor`] (what is wrong with
//! the setup) and [`generate`] (completions/man).
//! [`output`] decides between tables and JSON; [`poll`] turns long-polls into
//! waits of any length, and [`backoff`] paces every retry. Ids may be given whole or as a unique part
//! ([`resolve_id`]); error lines start with the whole subcommand
//! ([`prefix`]). This file keeps what runs a subcommand: its [`Ctx`], the
//! runtime, the error line, and the one `match` that picks the subcommand.

pub mod agent_setup;
pub mod backoff;
pub mod bench;
mod bench_floor;
mod bench_hook;
mod bench_measure;
mod bench_scale;
mod bench_smoke;
pub mod chan;
pub mod claude;
pub mod codex;
pub mod commands;
pub mod doctor;
pub mod fd_limit;
pub mod generate;
pub mod guard;
pub mod hook;
pub mod lease;
pub mod output;
pub mod peers;
pub mod poll;
pub mod questions;
pub mod repo;
pub mod serve;
pub mod signal;
pub mod system;
pub mod token;
pub mod work;

pub mod args;
pub mod exit;
pub mod ids;

pub use args::{hoist_client_flags, millis, parse_span, read_json_arg, Cli, ClientArgs, Command};
pub use exit::{CliError, Exit};
pub use ids::{identity, pick_id, resolve_id, IdKind, MIN_ID_PART};

use crate::client::Client;
use output::Output;
use std::future::Future;
use std::sync::OnceLock;

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
            Some(path) => Some(token::read_token_file(path)?),
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
        Command::Lease(a) => ("lease", Some(a.cmd.name())),
        Command::Guard(a) => ("guard", Some(a.cmd.name())),
        Command::Status(_) => ("status", None),
        Command::Reset(_) => ("reset", None),
        Command::Work(_) => ("work", None),
        Command::Doctor(_) => ("doctor", None),
        Command::Claude(_) => ("claude", None),
        Command::Codex(_) => ("codex", None),
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
        Command::Lease(a) => Some(&mut a.client),
        Command::Guard(a) => match &mut a.cmd {
            guard::GuardCmd::Check(c) => Some(&mut c.client),
            guard::GuardCmd::Install { .. } | guard::GuardCmd::Remove { .. } => None,
        },
        Command::Status(a) => Some(&mut a.client),
        Command::Reset(a) => Some(&mut a.client),
        Command::Work(a) => Some(&mut a.client),
        Command::Doctor(a) => Some(&mut a.client),
        Command::Hook(a) => Some(&mut a.client),
        Command::Serve(_)
        | Command::Bench(_)
        | Command::Claude(_)
        | Command::Codex(_)
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
        Command::Lease(a) => run_client("lease", &a.client.clone(), |ctx| lease::run(a, ctx)),
        // The guard's check lets a commit through when it cannot ask, so it
        // runs its own client rather than `run_client`'s errors.
        Command::Guard(a) => guard::run(a),
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
        Command::Codex(a) => codex::run(a),
        Command::Hook(a) => hook::run(a),
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
    }
}
