//! The `cipc` binary: parse the command line, run it, exit with its code.

use clap::Parser;

/// jemalloc leaves the untouched part of each idle connection's buffers out
/// of resident memory (glibc's inline chunk headers touch those pages), which
/// is most of what ten thousand parked long-polls cost (`cipc bench`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args = cipc::cli::hoist_client_flags(std::env::args_os().collect());
    let cli = cipc::cli::Cli::parse_from(args);
    std::process::exit(cipc::cli::run(cli));
}
