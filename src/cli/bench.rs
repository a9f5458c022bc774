//! `cipc bench`: measure a broker the way `redis-benchmark` and `nats bench`
//! do: drive it over real HTTP and print a summary table.
//!
//! By default it starts its own broker (`cipc serve --port 0`, durable in a
//! temporary directory, or `--memory`) as a child process so the broker's
//! memory can be read from `/proc`; `--url` measures a running one instead
//! (two `--url`s: two nodes of one broker, the sender on the first and the
//! worker on the second). `--store postgres://...` measures the broker on
//! PostgreSQL with one node and with two, beside its own SQLite broker.

use super::bench_measure::{channel_throughput, cli_vs_curl, idle_waiters, round_trips};
use super::exit;
use super::Exit;
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};
use std::process::Child;

/// Flags of `cipc bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Measure this running broker instead of starting one (idle-waiter memory
    /// is then not measured). Give it twice for two nodes of one broker
    /// (`--store postgres://...`): senders use the first, workers the second.
    #[arg(long, value_name = "URL", num_args = 1)]
    pub url: Vec<String>,
    /// Compare engines: round trips and channel sends on a broker of its own
    /// on SQLite, then on PostgreSQL at this URL with one node and with two
    /// (use an empty database: the benchmark leaves its data there).
    #[arg(long, value_name = "POSTGRES_URL", conflicts_with_all = ["url", "memory"])]
    pub store: Option<String>,
    /// Start the broker with `--memory` (default: durable, in a temporary dir).
    #[arg(long)]
    pub memory: bool,
    /// Command round trips to time.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub round_trips: usize,
    /// Channel messages to send in all.
    #[arg(long, default_value_t = 40_000, value_name = "N")]
    pub messages: usize,
    /// Concurrent channel senders.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub clients: usize,
    /// Idle long-poll waiters to hold open (0 skips).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub waiters: usize,
    /// Process spawns per CLI-vs-curl comparison (0 skips).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub spawns: usize,
    /// Instead of the rest: start-up time and memory of a durable broker
    /// whose file holds each of these many messages (e.g. 10000,100000,1000000).
    #[arg(long, value_delimiter = ',', value_name = "MESSAGES")]
    pub startup: Vec<usize>,
    /// Instead of the rest: one liveness sweep with each of these many peers
    /// (e.g. 10000,50000), each with 10,000 commands held.
    #[arg(long, value_delimiter = ',', value_name = "PEERS")]
    pub sweep: Vec<usize>,
    /// Instead of the rest: memory while this many token-less clients
    /// trickle a login body, and after they leave (e.g. 1000).
    #[arg(long, value_name = "CLIENTS")]
    pub trickle: Option<usize>,
    /// Instead of the rest: what Claude Code's edit check (the
    /// `pre-tool-use` hook of Edit and Write) adds to one edit, over this
    /// many runs each, beside a bare process start (e.g. 200).
    #[arg(long, value_name = "RUNS")]
    pub edit_hook: Option<usize>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--startup` and `--sweep`: the scale benchmarks, on brokers of their own.
fn run_scale(args: &BenchArgs, rt: &tokio::runtime::Runtime) -> Exit {
    let mut rows = Vec::new();
    for &n in &args.startup {
        match super::bench_scale::startup(n, n.max(1)) {
            Ok(m) => rows.push(Row {
                name: m.name,
                value: m.value,
                target: "flat in file size".into(),
                raw: m.raw,
            }),
            Err(e) => {
                eprintln!("cipc bench: {e}");
                return exit::ERROR;
            }
        }
    }
    for &n in &args.sweep {
        match rt.block_on(super::bench_scale::sweep(n, 10_000)) {
            Ok(m) => rows.push(Row {
                name: m.name,
                value: m.value,
                target: "no stall".into(),
                raw: m.raw,
            }),
            Err(e) => {
                eprintln!("cipc bench: {e}");
                return exit::ERROR;
            }
        }
    }
    if let Some(n) = args.trickle {
        match super::bench_scale::trickle(n) {
            Ok(m) => rows.push(Row {
                name: m.name,
                value: m.value,
                target: "bounded, comes back".into(),
                raw: m.raw,
            }),
            Err(e) => {
                eprintln!("cipc bench: {e}");
                return exit::ERROR;
            }
        }
    }
    print_rows(&rows, "scale", args.json);
    exit::OK
}

/// One line of the summary.
pub(super) struct Row {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) target: String,
    pub(super) raw: Value,
}

/// Runs the benchmark; returns the exit code.
pub fn run(args: BenchArgs) -> Exit {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cipc bench: cannot start the async runtime: {e}");
            return exit::ERROR;
        }
    };
    // Thousands of benchmark connections need more than the usual 1024 open files.
    let _ = super::fd_limit::raise_open_file_limit();
    if let Some(n) = args.edit_hook {
        return match super::bench_hook::edit_hook(n.max(1)) {
            Ok(rows) => {
                print_rows(&rows, "edit check (cipc hook pre-tool-use)", args.json);
                exit::OK
            }
            Err(e) => {
                eprintln!("cipc bench: {e}");
                exit::ERROR
            }
        };
    }
    if !args.startup.is_empty() || !args.sweep.is_empty() || args.trickle.is_some() {
        return run_scale(&args, &rt);
    }
    if let Some(store) = &args.store {
        return run_engines(&args, store, &rt);
    }
    if args.url.len() > 2 {
        eprintln!("cipc bench: give --url once (one broker) or twice (two nodes of one broker)");
        return exit::USAGE;
    }
    let mut child: Option<(Child, tempfile_dir::TempDir)> = None;
    let urls: Vec<String> = if args.url.is_empty() {
        match spawn_broker(args.memory) {
            Ok((c, dir, url)) => {
                child = Some((c, dir));
                vec![url]
            }
            Err(e) => {
                eprintln!("cipc bench: {e}");
                return exit::ERROR;
            }
        }
    } else {
        args.url
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect()
    };
    let url = urls[0].clone();
    let worker_url = urls.last().cloned().unwrap_or_else(|| url.clone());
    let pid = child.as_ref().map(|(c, _)| c.id());
    let mode = if urls.len() == 2 {
        "two nodes of an external broker".to_string()
    } else if !args.url.is_empty() {
        "external broker".to_string()
    } else if args.memory {
        "--memory".to_string()
    } else {
        "durable (SQLite, synchronous=FULL)".to_string()
    };
    let result = rt.block_on(async {
        let mut rows = Vec::new();
        // Waiters first, on a fresh broker, so their memory is not mixed up
        // with the messages and commands the other benchmarks leave behind.
        if args.waiters > 0 {
            if let Some(pid) = pid {
                rows.push(idle_waiters(&url, args.waiters, pid).await?);
            }
        }
        rows.extend(round_trips(&url, &worker_url, args.round_trips).await?);
        rows.push(channel_throughput(&urls, args.messages, args.clients).await?);
        if args.spawns > 0 {
            rows.extend(cli_vs_curl(&url, args.spawns).await?);
        }
        Ok::<_, String>(rows)
    });
    if let Some((mut c, _dir)) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    match result {
        Ok(rows) => {
            print_rows(&rows, &mode, args.json);
            exit::OK
        }
        Err(e) => {
            eprintln!("cipc bench: {e}");
            exit::ERROR
        }
    }
}

/// A temporary directory removed on drop (kept tiny to avoid a dependency).
mod tempfile_dir {
    /// The directory and its path.
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `--store`: the same round trips and channel sends on SQLite, then on
/// PostgreSQL with one node and with two, in one table.
fn run_engines(args: &BenchArgs, store: &str, rt: &tokio::runtime::Runtime) -> Exit {
    let measure = |urls: Vec<String>, label: &str| -> Result<Vec<Row>, String> {
        let worker = urls.last().cloned().unwrap_or_default();
        let mut rows = rt.block_on(async {
            let mut rows = round_trips(&urls[0], &worker, args.round_trips).await?;
            rows.push(channel_throughput(&urls, args.messages, args.clients).await?);
            Ok::<_, String>(rows)
        })?;
        for r in &mut rows {
            r.name = format!("{label}: {}", r.name);
            r.target = String::new();
        }
        Ok(rows)
    };
    let stop = |children: Vec<Child>| {
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    let result = (|| {
        let mut rows = Vec::new();
        let (c, _dir, url) = spawn_broker(false)?;
        let sqlite = measure(vec![url], "SQLite, one node");
        stop(vec![c]);
        rows.extend(sqlite?);
        let store_args = ["--store", store, "--max-waiters", "20000"];
        let (a, url_a) = super::bench_scale::start_broker(store_args)?;
        let one = measure(vec![url_a.clone()], "PostgreSQL, one node");
        let (b, url_b) = match super::bench_scale::start_broker(store_args) {
            Ok(x) => x,
            Err(e) => {
                stop(vec![a]);
                return Err(e);
            }
        };
        let two = measure(vec![url_a, url_b], "PostgreSQL, two nodes");
        stop(vec![a, b]);
        rows.extend(one?);
        rows.extend(two?);
        Ok::<_, String>(rows)
    })();
    match result {
        Ok(rows) => {
            print_rows(
                &rows,
                "SQLite beside PostgreSQL (two nodes: senders on the first, workers on the second)",
                args.json,
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("cipc bench: {e}");
            exit::ERROR
        }
    }
}

fn spawn_broker(memory: bool) -> Result<(Child, tempfile_dir::TempDir, String), String> {
    let dir = std::env::temp_dir().join(format!("cipc-bench-{}", std::process::id()));
    let dir = tempfile_dir::TempDir(dir);
    let mut args: Vec<std::ffi::OsString> = vec!["--max-waiters".into(), "20000".into()];
    if memory {
        args.push("--memory".into());
    } else {
        args.push("--data-dir".into());
        args.push(dir.0.clone().into_os_string());
    }
    let (child, url) = super::bench_scale::start_broker(args)?;
    Ok((child, dir, url))
}

fn print_rows(rows: &[Row], mode: &str, as_json: bool) {
    if as_json {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| json!({"name": r.name, "result": r.raw, "target": r.target}))
            .collect();
        println!("{}", json!({"mode": mode, "results": out}));
        return;
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec!["benchmark", "result", "target"]);
    for r in rows {
        t.add_row(vec![r.name.clone(), r.value.clone(), r.target.clone()]);
    }
    println!(
        "cipc bench, broker: {mode}, {} cores",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    println!("{t}");
}
