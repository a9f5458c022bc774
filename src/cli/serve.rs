//! `cipc serve`: run the broker. (Its tokens, made, read and judged, are in
//! [`super::token`].)

use super::exit;
use super::token::{
    check_token_length, generate_token, read_token_file, stdout_file_exposed, write_token_file,
};
use super::Exit;
use crate::broker::{Broker, BrokerConfig};
use crate::server::{auth::Security, AppParts, AppState, Server, ServerConfig};
use crate::store::{MemoryStore, PgStore, SqliteStore, Store};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `cipc serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs a token (or --insecure-no-auth).
    #[arg(long, env = "CIPC_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, short, env = "CIPC_PORT", default_value_t = 9100)]
    pub port: u16,
    /// Where the SQLite file lives [env: CIPC_DATA_DIR; ignored, with a
    /// warning, under --memory] [default: $XDG_STATE_HOME/cipc or ~/.local/state/cipc].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep everything in memory; nothing survives a restart.
    #[arg(long, conflicts_with_all = ["data_dir", "store"])]
    pub memory: bool,
    /// Keep the state in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DB, with
    /// ?sslmode=require for TLS, verified; sslrootcert=FILE adds CAs):
    /// every node started with the same URL is the same broker.
    #[arg(
        long,
        env = "CIPC_STORE",
        hide_env_values = true,
        value_name = "URL",
        conflicts_with = "data_dir"
    )]
    pub store: Option<String>,
    /// With --store: a node that holds the write turn and says nothing to
    /// PostgreSQL this long (frozen, cut off) loses it; other nodes refuse
    /// writes (503 write_turn_stalled) after waiting half as long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION", requires = "store")]
    pub turn_timeout: Duration,
    /// Require this token from every client (prefer CIPC_TOKEN or --token-file: flags show in `ps`).
    /// At least 8 characters; under 16 draws a warning (--generate-token makes a good one).
    #[arg(long, env = "CIPC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the token from a file that is not world-readable (`chmod 600`;
    /// `--generate-token --out PATH` makes one).
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Print a new random token and exit (with --out, write it to a file only you can read).
    #[arg(long)]
    pub generate_token: bool,
    /// With --generate-token: write the token to this file, mode 600, ready
    /// for --token-file (an existing file is kept unless --force).
    #[arg(long, value_name = "PATH", requires = "generate_token")]
    pub out: Option<PathBuf>,
    /// With --out: replace the file if it exists.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Serve a non-loopback address without a token (trusted lab networks only).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Also accept this Host name (reverse proxies, DNS names); repeatable.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_body: usize,
    /// Messages kept per channel; older ones are trimmed.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub channel_retention: usize,
    /// Finished commands kept with their results; the oldest are forgotten.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub command_retention: usize,
    /// Open long-polls and streams allowed in all (429 past it).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_waiters: usize,
    /// A silent peer turns stale after this long.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stale_after: Duration,
    /// A silent peer goes offline (its unacked commands are requeued) after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub offline_after: Duration,
    /// An offline peer is forgotten (with its key) after this long.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub forget_after: Duration,
    /// Peers kept at most; past it the longest-offline one is forgotten, and
    /// when none is offline a new connect gets 429.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_peers: usize,
    /// Held leases at most (every repo together); past it a new lease gets
    /// 429 until some are released or expire.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_leases: usize,
    /// Live MCP sessions at once; past it the longest-idle one with nothing
    /// in flight ends, and when every one is busy a new one gets 429.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_mcp_sessions: usize,
    /// Channels kept at most; past it the longest-idle one nobody follows is
    /// forgotten with its messages, and when all are followed a send gets 429.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_channels: usize,
    /// Signals kept at most; past it the longest-idle one nobody waits for is
    /// forgotten, and when all are waited for an emit gets 429.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_signals: usize,
    /// Open connections at most; past it a new one is answered 503 and closed
    /// (lowered, with a warning, to what the open-file limit allows).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_connections: usize,
    /// Run SQLite's integrity check before starting (reads the whole file).
    #[arg(long)]
    pub check_store: bool,
}

/// The default data directory: `$XDG_STATE_HOME/cipc`, else `~/.local/state/cipc`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("cipc");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/cipc")
}

/// A `--host` that is not an IP address (or `localhost`).
#[derive(Debug, thiserror::Error)]
#[error("--host {0:?} is not an IP address; use e.g. 127.0.0.1, 0.0.0.0 or a LAN address")]
struct NotAnAddress(String);

fn parse_host(host: &str) -> Result<IpAddr, NotAnAddress> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    host.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| NotAnAddress(host.to_string()))
}

/// Runs `cipc serve` to completion; returns the exit code.
pub fn run(args: ServeArgs) -> Exit {
    if args.generate_token {
        let token = generate_token();
        if let Some(path) = &args.out {
            if let Err(e) = write_token_file(path, &token, args.force) {
                eprintln!("cipc serve: {e}");
                return exit::USAGE;
            }
            eprintln!(
                "cipc serve: wrote a new token to {p} (mode 600); serve with `cipc serve --token-file {p}`, \
                 and give clients the same --token-file (or CIPC_TOKEN=$(cat {p}))",
                p = path.display()
            );
            return exit::OK;
        }
        println!("{token}");
        if let Some(warning) = stdout_file_exposed() {
            eprintln!("{warning}");
        }
        return exit::OK;
    }
    init_logging();
    let ip = match parse_host(&args.host) {
        Ok(ip) => ip,
        Err(e) => {
            eprintln!("cipc serve: {e}");
            return exit::USAGE;
        }
    };
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) if !t.trim().is_empty() => Some(t.trim().to_string()),
        (_, Some(path)) => match read_token_file(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("cipc serve: {e}");
                return exit::USAGE;
            }
        },
        _ => None,
    };
    if let Some(t) = &token {
        match check_token_length(t) {
            Err(e) => {
                eprintln!("cipc serve: {e}");
                return exit::USAGE;
            }
            Ok(Some(warning)) => eprintln!("cipc serve: {warning}"),
            Ok(None) => {}
        }
    }
    if !ip.is_loopback() && token.is_none() {
        if !args.insecure_no_auth {
            eprintln!(
                "cipc serve: refusing to listen on {ip} without a token: anyone who can reach it could order your AI sessions to run commands.\n\
                 Either give it a token (clients then send it too):\n  \
                 export CIPC_TOKEN=$(cipc serve --generate-token)   # or --token-file PATH\n  \
                 cipc serve --host {host}\n\
                 or, on a trusted lab network only:\n  \
                 cipc serve --host {host} --insecure-no-auth",
                host = args.host
            );
            return exit::USAGE;
        }
        tracing::warn!("!!! --insecure-no-auth: listening on {ip} with NO authentication; anyone who can reach this port can send orders to your agents !!!");
        eprintln!("WARNING: listening on {ip} with NO authentication (--insecure-no-auth). Anyone who can reach this port can order your AI sessions to run commands.");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cipc serve: cannot start the async runtime: {e}");
            return exit::ERROR;
        }
    };
    runtime.block_on(serve(args, ip, token))
}

async fn serve(args: ServeArgs, ip: IpAddr, token: Option<String>) -> Exit {
    // CIPC_DATA_DIR is read here rather than by clap, so that --memory can
    // win over it (an explicit --data-dir with --memory is a usage error),
    // and so that an empty one means "unset".
    let env_dir = std::env::var_os("CIPC_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let store: Arc<dyn Store> = if args.memory {
        if let Some(dir) = &env_dir {
            tracing::warn!(
                "--memory: ignoring CIPC_DATA_DIR={}; nothing is saved and nothing there is read",
                dir.display()
            );
        }
        Arc::new(MemoryStore::default())
    } else if let Some(url) = args.store.as_deref().filter(|u| !u.trim().is_empty()) {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            eprintln!(
                "cipc serve: --store {url:?} is not a PostgreSQL URL; give postgres://USER:PASSWORD@HOST:PORT/DATABASE (leave --store out for the SQLite file in --data-dir)"
            );
            return exit::USAGE;
        }
        match PgStore::connect_with(url, args.turn_timeout).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("cipc serve: {e}");
                return exit::ERROR;
            }
        }
    } else {
        let dir = args
            .data_dir
            .clone()
            .or(env_dir)
            .unwrap_or_else(default_data_dir);
        match SqliteStore::open(&dir, args.check_store) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("cipc serve: {e}");
                return exit::ERROR;
            }
        }
    };
    let config = BrokerConfig {
        stale_after: args.stale_after,
        offline_after: args.offline_after.max(args.stale_after),
        channel_retention: args.channel_retention.max(1),
        command_retention: args.command_retention.max(1),
        max_waiters: args.max_waiters,
        forget_after: args.forget_after,
        max_peers: args.max_peers.max(1),
        max_leases: args.max_leases.max(1),
        max_channels: args.max_channels.max(1),
        max_signals: args.max_signals.max(1),
        ..BrokerConfig::default()
    };
    let broker = match Broker::open(store, config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cipc serve: cannot load the stored state: {e}");
            return exit::ERROR;
        }
    };
    let (max_connections, warning) = super::fd_limit::connections_that_fit(
        args.max_connections.max(1),
        super::fd_limit::raise_open_file_limit(),
    );
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    let state = AppState::new(AppParts {
        broker: broker.clone(),
        config: Arc::new(ServerConfig {
            max_body: args.max_body,
            max_connections,
            max_mcp_sessions: args.max_mcp_sessions.max(1),
            ..ServerConfig::default()
        }),
        security: Arc::new(Security::new(token.clone(), ip, &args.allowed_hosts)),
        mcp_sessions: Default::default(),
    });
    let addr = SocketAddr::new(ip, args.port);
    let server = match Server::bind(addr, state).await {
        Ok(s) => s,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (is another cipc serve running? pick another --port, or stop it)".to_string()
            } else {
                String::new()
            };
            eprintln!("cipc serve: cannot listen on {addr}: {e}{hint}");
            return exit::ERROR;
        }
    };
    let bound = server.local_addr().unwrap_or(addr);
    let shown = if ip.is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), bound.port())
    } else {
        bound
    };
    println!(
        "cipc {} listening on http://{bound} | dashboard http://{shown}/dashboard | data: {}{}",
        env!("CARGO_PKG_VERSION"),
        broker.store_description(),
        if token.is_some() {
            " | token required"
        } else {
            ""
        }
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match server.run(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            exit::OK
        }
        Err(e) => {
            eprintln!("cipc serve: server error: {e}");
            exit::ERROR
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// What is logged without RUST_LOG: warnings and errors only, from cipc
/// and every library (rmcp logs whole requests at INFO). The start line is
/// printed on stdout, not logged, so `cipc serve &` shows it and then stays
/// quiet until something needs attention.
const DEFAULT_LOG_FILTER: &str = "warn";

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        None => EnvFilter::new(DEFAULT_LOG_FILTER),
        Some(v) => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!(
                "cipc serve: RUST_LOG={v:?} is not a log filter ({e}); logging warnings only. \
                 Write e.g. RUST_LOG=info, or RUST_LOG=cipc=debug,warn"
            );
            EnvFilter::new(DEFAULT_LOG_FILTER)
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .try_init();
}
