//! `cipc work ROLE -- CMD [ARGS...]`: serve a role with any program.
//!
//! It registers a protected peer of ROLE (reusing `CIPC_PEER` /
//! `CIPC_PEER_KEY` when they name a peer of that role), takes its orders and
//! runs CMD once per command, without a shell: the command's id, action and
//! params come in the environment (`CIPC_COMMAND_ID`, `CIPC_ACTION`,
//! `CIPC_PARAMS`, `CIPC_FROM`, `CIPC_ATTEMPT`, plus `CIPC_URL`, `CIPC_PEER`
//! and `CIPC_PEER_KEY` so the handler can use `cipc` itself) and the params
//! as JSON on stdin. Exit 0 acks the command with stdout (the JSON it
//! printed, else `{"stdout": "..."}`); anything else fails it with the exit
//! code (or signal) and the tail of stderr.
//!
//! The loop costs one request per command while busy: a finished handler is
//! acked with `POST /commands/{id}/ack?next=ms` when a slot is free (the ack
//! and the next take in one request), else with a plain ack; an idle worker
//! sits in the `wait` long-poll. Every ack carries the `attempt` it was
//! delivered with, so a late ack after a redelivery is refused. The broker
//! may restart: requests are retried with backoff, and a peer the broker
//! forgot is registered again.
//!
//! SIGINT or SIGTERM stops taking orders, lets the running handlers finish
//! and acks them, then disconnects the peer and exits 0. A second signal
//! kills the handlers (SIGKILL) and disconnects the peer, which gives their
//! commands back to the queue, and exits 128 + the signal's number.
//!
//! One concern per file: this one takes the flags and starts the worker;
//! `peer.rs` is the worker's peer (its identity, registering it, retrying
//! the broker); `orders.rs` takes commands and acks them; `worker.rs` is the
//! loop (signals, slots, stopping, one line per command); `handler.rs` runs
//! CMD for one command and turns how it ended into a result or an error.

mod handler;
mod orders;
mod peer;
mod worker;

use super::output::human_duration;
use super::{CliError, ClientArgs, Ctx, Exit};
use clap::Args;
use handler::Spec;
use peer::{register, reusable_identity, Shared};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;
use worker::{Signals, Worker};

/// Flags of `cipc work`.
#[derive(Debug, Args)]
#[command(after_help = WORK_HELP)]
pub struct WorkArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The role to serve, e.g. build (1-64 of A-Z a-z 0-9 . _ -).
    pub role: String,
    /// Run up to N handlers at once.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub concurrency: u16,
    /// Kill a handler that runs longer than this (SIGKILL) and fail its command.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_span)]
    pub timeout: Option<Duration>,
    /// A human-friendly name for the peer (default: "cipc work CMD").
    #[arg(long)]
    pub name: Option<String>,
    /// The program to run for each command and its arguments, after `--`
    /// (run directly, not through a shell).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<OsString>,
}

/// The end of `cipc work --help`: what a handler gets and how stopping
/// works, which the flags alone do not say.
const WORK_HELP: &str = "\
For each command CMD gets, in its environment: CIPC_COMMAND_ID, CIPC_ACTION,
CIPC_PARAMS (JSON), CIPC_FROM, CIPC_ATTEMPT, and CIPC_URL, CIPC_PEER,
CIPC_PEER_KEY (so it can run cipc itself); and the params JSON on stdin.
Exit 0 acks the command with stdout (as JSON when it parses, else
{\"stdout\": \"...\"}); any other exit fails it with the exit code and the last
2 KB of stderr.

Ctrl-C (or SIGTERM) stops taking orders, lets running handlers finish and
acks them, then disconnects the peer and exits 0; a second one kills the
handlers and gives their commands back to the queue (exit 130 after SIGINT,
143 after SIGTERM). A broker that goes away is retried with backoff; one that
forgot the peer gets it registered again.

Example: cipc work build --concurrency 2 --timeout 10m -- ./build.sh";

/// Runs `cipc work`: checks the flags and CMD, registers the peer (a signal
/// meanwhile exits at once), then hands over to the worker's loop (`worker.rs`).
pub async fn run(args: WorkArgs, ctx: Ctx) -> Result<Exit, CliError> {
    crate::api::validate_name("role", &args.role).map_err(|e| CliError::usage(e.to_string()))?;
    let spec = Arc::new(Spec::new(&args.cmd)?);
    if let Some(n) = &args.name {
        if n.chars().count() > 128 {
            return Err(CliError::usage("--name must be at most 128 characters"));
        }
    }
    let token = match &args.client.token_file {
        Some(path) => Some(super::token::read_token_file(path)?),
        None => args.client.token.clone(),
    }
    .map(|t| t.trim().to_string())
    .filter(|t| !t.is_empty());
    // Catch the signals before anything can be taken, so none is lost.
    let mut signals = Signals::new()?;
    let name = args.name.clone().or_else(|| {
        Some(
            format!("cipc work {}", spec.shown)
                .chars()
                .take(128)
                .collect(),
        )
    });
    let shared = Arc::new(Shared::new(
        ctx.client.anonymous(),
        args.role.clone(),
        name,
        token,
    ));
    // Registering retries while the broker is away; a signal ends that.
    let ident = tokio::select! {
        ident = async {
            let reuse = reusable_identity(&ctx.client, &args.role, &shared).await?;
            register(&shared, reuse).await
        } => ident?,
        sig = signals.next() => {
            eprintln!("cipc work: interrupted before the peer was registered");
            std::process::exit(128 + sig);
        }
    };
    shared.set(ident.clone());
    let timeout = args
        .timeout
        .map(|t| format!(", killed after {}", human_duration(t)))
        .unwrap_or_default();
    eprintln!(
        "cipc work: serving role {} as peer {} with `{}` (up to {} at once{timeout}); Ctrl-C to stop",
        args.role, ident.id, spec.shown, args.concurrency
    );
    let worker = Worker::new(
        shared,
        spec,
        ctx.out,
        usize::from(args.concurrency),
        args.timeout,
    );
    worker.run(signals).await
}
