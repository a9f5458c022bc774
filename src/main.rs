//! The `cipc` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() {
    let cli = cipc::cli::Cli::parse();
    std::process::exit(cipc::cli::run(cli));
}
