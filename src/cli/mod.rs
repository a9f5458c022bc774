//! The `cipc` command line: argument definitions and dispatch.
//!
//! `serve` runs the broker; every other subcommand is a client of its HTTP API.

pub mod bench;
pub mod serve;

use clap::{Parser, Subcommand};

/// Exit codes, documented in `--help` and the man page.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The broker said no, a command failed, or another error.
    pub const ERROR: i32 = 1;
    /// Bad usage (unknown flag, bad value, unsafe configuration refused).
    pub const USAGE: i32 = 2;
    /// The broker could not be reached.
    pub const UNREACHABLE: i32 = 3;
    /// A wait ran out of time.
    pub const TIMED_OUT: i32 = 124;
}

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 error (the broker said no, or the command failed), 2 usage,
3 cannot reach the broker, 124 a wait timed out.

Environment: CIPC_URL, CIPC_TOKEN, CIPC_PEER (clients); CIPC_HOST, CIPC_PORT,
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
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
