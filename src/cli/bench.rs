//! `cipc bench`: measure a broker the way `redis-benchmark` and `nats bench`
//! do: drive it over real HTTP and print a summary table.
//!
//! By default it starts its own broker (`cipc serve --port 0`, durable in a
//! temporary directory, or `--memory`) as a child process so the broker's
//! memory can be read from `/proc`; `--url` measures a running one instead
//! (two `--url`s: two nodes of one broker, the sender on the first and the
//! worker on the second). `--store postgres://...` measures the broker on
//! PostgreSQL with one node and with two, beside its own SQLite broker.
//!
//! Every figure is printed beside its floor, measured in the same run
//! (`bench_floor.rs`), and as a ratio to it: the HTTP floor (`GET /healthz`),
//! Redis with `appendfsync always` for the durable rows, one `fdatasync` for
//! the disk. `--smoke` is the CI-light run: a few seconds, failing only when
//! a ratio is more than twice what it should be (`bench_smoke.rs`).

use super::bench_measure::{
    cli_vs_curl, commits, commits_between, idle_waiters, rate, round_trips, Load,
};
use super::exit;
use super::Exit;
use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};
use std::process::Child;

use super::bench_floor::{redis_round_trips, redis_xadd_rate, Redis};
use super::bench_measure::{ms, percentile};

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
    /// Durable (the default); with `--memory`, both brokers, one after the other.
    #[arg(long)]
    pub durable: bool,
    /// Only these measurements (default: all of them).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    pub only: Vec<Part>,
    /// Runs of each measurement beside its floor; results are ranges.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub repeat: usize,
    /// Do not start `redis-server` for the durable floors, even if installed.
    #[arg(long)]
    pub no_redis: bool,
    /// The CI-light run: every row briefly on a memory and a durable broker,
    /// exit 1 if a ratio to its floor is more than twice its bound, or a
    /// durable round trip costs more than 2.5 commits.
    #[arg(long, conflicts_with_all = ["url", "store"])]
    pub smoke: bool,
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

/// A measurement of `cipc bench` (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// `send?wait` + `ack?next`, beside two `GET /healthz` (and Redis
    /// RPUSH/BLPOP on a durable broker).
    RoundTrip,
    /// Channel sends from `--clients` clients, beside `GET /healthz` at the
    /// same concurrency (and Redis XADD on a durable broker).
    Sends,
    /// Idle long-polls: the broker's memory for each.
    Waiters,
    /// `cipc` processes against curl.
    Cli,
}

/// `--startup` and `--sweep`: the scale benchmarks, on brokers of their own.
fn run_scale(args: &BenchArgs, rt: &tokio::runtime::Runtime) -> Exit {
    let mut rows = Vec::new();
    for &n in &args.startup {
        match super::bench_scale::startup(n, n.max(1)) {
            Ok(m) => rows.push(Row {
                name: m.name,
                value: m.value,
                floor: "-".into(),
                ratio: "-".into(),
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
                floor: "-".into(),
                ratio: "-".into(),
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
                floor: "-".into(),
                ratio: "-".into(),
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
    /// What the same work costs without cipc, measured in the same run.
    pub(super) floor: String,
    /// The value over the floor.
    pub(super) ratio: String,
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
    if args.smoke {
        return super::bench_smoke::run(&args, &rt);
    }
    let wants = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let redis = if args.no_redis || !(wants(Part::RoundTrip) || wants(Part::Sends)) {
        None
    } else {
        match rt.block_on(Redis::start()) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("cipc bench: no Redis floor: {e}");
                None
            }
        }
    };
    let mut rows = Vec::new();
    let mut modes: Vec<bool> = Vec::new(); // true: memory
    if !args.url.is_empty() {
        modes.push(false);
    } else {
        if args.memory {
            modes.push(true);
        }
        if args.durable || !args.memory {
            modes.push(false);
        }
    }
    for memory in modes {
        let mut child: Option<(Child, tempfile_dir::TempDir)> = None;
        let urls: Vec<String> = if args.url.is_empty() {
            match spawn_broker(memory) {
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
        let label = if urls.len() == 2 {
            "two nodes"
        } else if !args.url.is_empty() {
            "external"
        } else if memory {
            "memory"
        } else {
            "durable"
        };
        let pid = child.as_ref().map(|(c, _)| c.id());
        let result = rt.block_on(async {
            let mut rows = Vec::new();
            // Waiters first, on a fresh broker, so their memory is not mixed up
            // with the messages and commands the other benchmarks leave behind.
            if args.waiters > 0 && wants(Part::Waiters) {
                if let Some(pid) = pid {
                    rows.push(waiters_row(&urls[0], args.waiters, pid, label).await?);
                }
            }
            let floor = if memory { None } else { redis.as_ref() };
            if wants(Part::RoundTrip) {
                rows.push(
                    round_trip_row(&urls, args.round_trips, args.repeat, floor, label).await?,
                );
            }
            if wants(Part::Sends) {
                rows.push(
                    sends_row(
                        &urls,
                        args.messages,
                        args.clients,
                        args.repeat,
                        floor,
                        label,
                    )
                    .await?,
                );
            }
            if args.spawns > 0 && wants(Part::Cli) {
                rows.extend(cli_vs_curl(&urls[0], args.spawns).await?);
            }
            Ok::<_, String>(rows)
        });
        if let Some((mut c, _dir)) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
        match result {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("cipc bench: {e}");
                return exit::ERROR;
            }
        }
    }
    print_rows(
        &rows,
        "side by side with their floors, in this run",
        args.json,
    );
    exit::OK
}

/// `lo-hi` of some figures, formatted alike.
pub(super) fn range(values: &[f64], fmt: impl Fn(f64) -> String) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        "-".into()
    } else if fmt(lo) == fmt(hi) {
        fmt(lo)
    } else {
        format!("{}-{}", fmt(lo), fmt(hi))
    }
}

fn f2(x: f64) -> String {
    format!("{x:.2}")
}

fn f3(x: f64) -> String {
    format!("{x:.3}")
}

fn k(x: f64) -> String {
    format!("{:.1}k", x / 1000.0)
}

async fn waiters_row(url: &str, n: usize, pid: u32, label: &str) -> Result<Row, String> {
    let w = idle_waiters(url, n, pid).await?;
    let each = w.per_waiter_kb();
    Ok(Row {
        name: format!("{label}: {n} parked long-polls"),
        value: format!(
            "{each:.1} KB each (RSS {:.1} MB, idle {:.1} MB); {} released by one emit",
            w.during_kib as f64 / 1024.0,
            w.before_kib as f64 / 1024.0,
            w.released
        ),
        floor: "-".into(),
        ratio: "-".into(),
        target: "<= 6 KB each".into(),
        raw: json!({"perWaiterKb": each, "rssMb": w.during_kib as f64 / 1024.0,
                    "idleMb": w.before_kib as f64 / 1024.0, "released": w.released, "count": n}),
    })
}

async fn round_trip_row(
    urls: &[String],
    n: usize,
    repeat: usize,
    redis: Option<&Redis>,
    label: &str,
) -> Result<Row, String> {
    let (mut cipc, mut p99, mut floor, mut ratio) = (vec![], vec![], vec![], vec![]);
    let mut syncs = vec![];
    for _ in 0..repeat.max(1) {
        let before = commits(urls).await?;
        let r = round_trips(&urls[0], urls.last().unwrap_or(&urls[0]), n).await?;
        if let Some((each, _)) = commits_between(before, commits(urls).await?, n) {
            syncs.push(each);
        }
        let f = match redis {
            Some(redis) => {
                let mut t = redis_round_trips(redis.port, n).await?;
                t.sort();
                percentile(&t, 0.5)
            }
            None => r.noop_pair_p50,
        };
        cipc.push(ms(r.p50));
        p99.push(ms(r.p99));
        floor.push(ms(f));
        ratio.push(r.p50.as_secs_f64() / f.as_secs_f64().max(1e-9));
    }
    let (floor_name, target) = match redis {
        Some(_) => (
            "Redis RPUSH + BLPOP, 2 parties, appendfsync always",
            "<= 1.0x Redis",
        ),
        None if label == "memory" => ("two GET /healthz", "<= 1.3x"),
        None => ("two GET /healthz", "-"),
    };
    Ok(Row {
        name: format!(
            "{label}: round trip send?wait + ack?next, p50 ({n} x {})",
            repeat.max(1)
        ),
        value: format!(
            "{} ms (p99 {} ms){}",
            range(&cipc, f3),
            range(&p99, f3),
            commits_note(&syncs, "commits each")
        ),
        floor: format!("{floor_name}: {} ms", range(&floor, f3)),
        ratio: format!("{}x", range(&ratio, f2)),
        target: target.into(),
        raw: json!({"medianMs": cipc, "p99Ms": p99, "floorMs": floor, "floor": floor_name, "ratio": ratio,
                    "commitsEach": syncs}),
    })
}

async fn sends_row(
    urls: &[String],
    n: usize,
    clients: usize,
    repeat: usize,
    redis: Option<&Redis>,
    label: &str,
) -> Result<Row, String> {
    let (mut cipc, mut floor, mut ratio, mut batches) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeat.max(1) {
        let f = match redis {
            Some(redis) => redis_xadd_rate(redis.port, n, clients).await?,
            None => rate(urls, n, clients, Load::Healthz).await?,
        };
        let before = commits(urls).await?;
        let c = rate(urls, n, clients, Load::ChannelSend).await?;
        if let Some((_, per_commit)) = commits_between(before, commits(urls).await?, n) {
            batches.push(per_commit);
        }
        cipc.push(c);
        floor.push(f);
        ratio.push(c / f.max(1e-9));
    }
    let (floor_name, target) = match redis {
        Some(_) => ("Redis XADD, appendfsync always", ">= 1.0x Redis"),
        None if label == "memory" => ("GET /healthz", ">= 0.9x"),
        None => ("GET /healthz", "-"),
    };
    Ok(Row {
        name: format!(
            "{label}: channel sends/s, {clients} clients ({n} x {})",
            repeat.max(1)
        ),
        value: format!(
            "{}{}",
            range(&cipc, k),
            commits_note(&batches, "sends per commit")
        ),
        floor: format!("{floor_name}: {}/s", range(&floor, k)),
        ratio: format!("{}x", range(&ratio, f2)),
        target: target.into(),
        raw: json!({"perSecond": cipc, "floorPerSecond": floor, "floor": floor_name, "ratio": ratio, "clients": clients,
                    "sendsPerCommit": batches}),
    })
}

/// `; 2.01 commits each` after a durable figure (nothing on `--memory`,
/// whose broker never commits): what it cost in syncs.
fn commits_note(values: &[f64], what: &str) -> String {
    if values.is_empty() {
        String::new()
    } else {
        format!("; {} {what}", range(values, |x| format!("{x:.2}")))
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
        rt.block_on(async {
            Ok::<_, String>(vec![
                round_trip_row(&urls, args.round_trips, args.repeat, None, label).await?,
                sends_row(&urls, args.messages, args.clients, args.repeat, None, label).await?,
            ])
        })
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

pub(super) fn spawn_broker(memory: bool) -> Result<(Child, tempfile_dir::TempDir, String), String> {
    let dir = std::env::temp_dir().join(format!("cipc-bench-{}", std::process::id()));
    let dir = tempfile_dir::TempDir(dir);
    let mut args: Vec<std::ffi::OsString> = vec![
        "--max-waiters".into(),
        "20000".into(),
        "--max-connections".into(),
        "20000".into(),
    ];
    if memory {
        args.push("--memory".into());
    } else {
        args.push("--data-dir".into());
        args.push(dir.0.clone().into_os_string());
    }
    let (child, url) = super::bench_scale::start_broker(args)?;
    Ok((child, dir, url))
}

pub(super) fn print_rows(rows: &[Row], mode: &str, as_json: bool) {
    if as_json {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| json!({"name": r.name, "result": r.raw, "floor": r.floor, "ratio": r.ratio, "target": r.target}))
            .collect();
        println!("{}", json!({"mode": mode, "results": out}));
        return;
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "benchmark",
        "cipc",
        "floor, same run",
        "ratio",
        "target",
    ]);
    for r in rows {
        t.add_row(vec![
            r.name.clone(),
            r.value.clone(),
            r.floor.clone(),
            r.ratio.clone(),
            r.target.clone(),
        ]);
    }
    println!(
        "cipc bench, broker: {mode}, {} cores",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    println!("{t}");
}
