//! `cipc bench`: drive a broker like `redis-benchmark` and print a summary.

use clap::Args;

/// Flags of `cipc bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {}

/// Runs the benchmark; returns the exit code.
pub fn run(_args: BenchArgs) -> i32 {
    eprintln!("cipc bench: not built yet");
    super::exit::ERROR
}
