//! The `cipc` binary: parse the command line, run it, exit with its code.

use clap::Parser;

/// jemalloc leaves the untouched part of each idle connection's buffers out
/// of resident memory (glibc's inline chunk headers touch those pages), which
/// is most of what ten thousand parked long-polls cost (`cipc bench`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: a background thread returns
/// freed pages to the system within about a second, so memory comes back
/// after a burst of clients (many connections, large bodies) has left,
/// instead of staying resident until the next allocation pressure.
#[cfg(all(not(target_env = "msvc"), not(target_os = "macos")))]
#[allow(non_upper_case_globals, unsafe_code)] // jemalloc reads this symbol by name
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

fn main() -> std::process::ExitCode {
    let args = cipc::cli::hoist_client_flags(std::env::args_os().collect());
    let cli = cipc::cli::Cli::parse_from(args);
    cipc::cli::run(cli).into()
}
