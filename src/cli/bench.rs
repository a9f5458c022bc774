//! `cipc bench`: measure a broker the way `redis-benchmark` and `nats bench`
//! do: drive it over real HTTP and print a summary table.
//!
//! By default it starts its own broker (`cipc serve --port 0`, durable in a
//! temporary directory, or `--memory`) as a child process so the broker's
//! memory can be read from `/proc`; `--url` measures a running one instead
//! (two `--url`s: two nodes of one broker, the sender on the first and the
//! worker on the second). `--store postgres://...` measures the broker on
//! PostgreSQL with one node and with two, beside its own SQLite broker.

use super::exit;
use super::Exit;
use crate::api::{AckRequest, CommandStatus, ConnectRequest, EmitRequest, SendRequest};
use crate::client::{Client, ClientError};
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
struct Row {
    name: String,
    value: String,
    target: String,
    raw: Value,
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

/// The same typed client the CLI uses; errors become one line for the summary.
fn client(url: &str) -> Result<Client, String> {
    Client::new(url, None, None).map_err(|e| e.to_string())
}

fn send_to(target: &str, action: &str) -> SendRequest {
    SendRequest {
        target: target.to_string(),
        action: action.to_string(),
        ..SendRequest::default()
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>22} {bar:30} {pos}/{len} {elapsed}") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Request-reply the way scripts do it, two requests per round trip:
/// `POST /commands/send?wait=` by the sender, answered once a worker took
/// the command and acked it with `POST /commands/{id}/ack?next=` (which also
/// parks it for the next one). Beside each round trip, two `GET /healthz`
/// no-op requests, so the figure reads against what two requests cost on
/// the same machine in the same run.
async fn round_trips(url: &str, worker_url: &str, n: usize) -> Result<Vec<Row>, String> {
    let c = client(url)?;
    let on_worker_node = client(worker_url)?;
    let role = format!("bench-{}", std::process::id());
    let connected = on_worker_node
        .connect(&ConnectRequest {
            role: role.clone(),
            protect: Some(true),
            ..ConnectRequest::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let peer = connected.peer.id.to_string();
    // The key names the peer, as `ack?next=` needs.
    let worker_c = on_worker_node.anonymous().with_key(Some(connected.key));
    let worker = tokio::spawn(async move {
        let mut next = worker_c.wait_command(&peer, 10_000).await?.command;
        while let Some(cmd) = next {
            let ack = AckRequest {
                result: Some(json!({"ok": true})),
                error: None,
                attempt: Some(cmd.attempt),
            };
            if cmd.action == "stop" {
                worker_c.ack(&cmd.id.to_string(), &ack).await?;
                return Ok(());
            }
            next = worker_c
                .ack_and_next(&cmd.id.to_string(), &ack, 10_000)
                .await?
                .next;
        }
        Ok::<(), ClientError>(())
    });
    let pb = bar(n as u64, "command round trip");
    let mut times = Vec::with_capacity(n);
    let mut noops = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let sent = c
            .send_and_wait(&send_to(&role, "ping"), 10_000)
            .await
            .map_err(|e| e.to_string())?;
        let done = sent
            .commands()
            .first()
            .is_some_and(|c| c.status == CommandStatus::Acked);
        if !done {
            let status = sent.commands().first().map(|c| c.status);
            return Err(format!("a round trip did not complete: {status:?}"));
        }
        times.push(t.elapsed());
        let t = Instant::now();
        for _ in 0..2 {
            c.healthz().await.map_err(|e| e.to_string())?;
        }
        noops.push(t.elapsed());
        pb.inc(1);
    }
    pb.finish_and_clear();
    c.send_and_wait(&send_to(&role, "stop"), 10_000)
        .await
        .map_err(|e| e.to_string())?;
    let _ = worker.await;
    times.sort();
    noops.sort();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let (n50, n99) = (percentile(&noops, 0.5), percentile(&noops, 0.99));
    let ratio = if n50.is_zero() {
        0.0
    } else {
        p50.as_secs_f64() / n50.as_secs_f64()
    };
    Ok(vec![
        Row {
            name: format!("command round trip, send?wait + ack?next ({n})"),
            value: format!(
                "median {:.3} ms, p99 {:.3} ms ({ratio:.1}x two no-op requests)",
                ms(p50),
                ms(p99)
            ),
            target: "median < 1 ms memory, < 5 ms durable".into(),
            raw: json!({"medianMs": ms(p50), "p99Ms": ms(p99), "count": n,
                        "noopPairMedianMs": ms(n50), "ratioToNoopPair": ratio}),
        },
        Row {
            name: format!("two no-op requests, GET /healthz x2 ({n})"),
            value: format!("median {:.3} ms, p99 {:.3} ms", ms(n50), ms(n99)),
            target: "baseline".into(),
            raw: json!({"medianMs": ms(n50), "p99Ms": ms(n99), "count": n}),
        },
    ])
}

async fn channel_throughput(urls: &[String], n: usize, clients: usize) -> Result<Row, String> {
    let nodes = urls
        .iter()
        .map(|u| client(u))
        .collect::<Result<Vec<_>, _>>()?;
    let clients = clients.max(1);
    let per = n / clients;
    let pb = bar((per * clients) as u64, "channel sends");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (c, pb) = (nodes[i % nodes.len()].clone(), pb.clone());
        tasks.push(tokio::spawn(async move {
            let channel = format!("bench-{}", i % 4);
            for j in 0..per {
                c.channel_send(&channel, &json!({"client": i, "n": j}))
                    .await?;
                pb.inc(1);
            }
            Ok::<(), ClientError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let rate = (per * clients) as f64 / secs;
    Ok(Row {
        name: format!("channel sends ({} from {clients} clients)", per * clients),
        value: format!("{rate:.0} msg/s"),
        target: ">= 20,000/s memory, >= 5,000/s durable".into(),
        raw: json!({"perSecond": rate, "count": per * clients, "clients": clients}),
    })
}

use super::bench_scale::rss_kib;

async fn idle_waiters(url: &str, n: usize, pid: u32) -> Result<Row, String> {
    let before = rss_kib(pid).unwrap_or(0);
    let pb = bar(n as u64, "idle waiters");
    let c = client(url)?;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.wait_signal("bench-idle", None, 120_000).await })
        })
        .collect();
    // Parked once the broker's memory stops growing with every waiter open.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let open = tasks.iter().filter(|t| !t.is_finished()).count();
        pb.set_position(open as u64);
        let rss = rss_kib(pid).unwrap_or(0);
        if open == n && rss > 0 && rss.abs_diff(last) * 100 <= last {
            break;
        }
        last = rss;
    }
    let during = rss_kib(pid).unwrap_or(0);
    pb.finish_and_clear();
    c.emit("bench-idle", &EmitRequest::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut released = 0;
    for t in tasks {
        if matches!(t.await, Ok(Ok(r)) if !r.timed_out) {
            released += 1;
        }
    }
    Ok(Row {
        name: format!("{n} idle long-poll waiters"),
        value: format!(
            "broker RSS {:.1} MB (was {:.1} MB); {released} released by one emit",
            during as f64 / 1024.0,
            before as f64 / 1024.0
        ),
        target: "< 100 MB".into(),
        raw: json!({"rssMb": during as f64 / 1024.0, "baselineMb": before as f64 / 1024.0, "released": released}),
    })
}

/// Wall time of whole processes: `cipc signal emit` / `cipc chan send` against curl.
async fn cli_vs_curl(url: &str, n: usize) -> Result<Vec<Row>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let has_curl = Command::new("curl").arg("--version").output().is_ok();
    let mut rows = Vec::new();
    let cases: [(&str, Vec<String>, Vec<String>); 2] = [
        (
            "signal emit",
            vec![
                "signal".into(),
                "emit".into(),
                "bench-sig".into(),
                "--data".into(),
                "{\"x\":1}".into(),
            ],
            vec![
                "-sf".into(),
                "-XPOST".into(),
                format!("{url}/signals/bench-sig"),
                "-d".into(),
                "{\"data\":{\"x\":1}}".into(),
            ],
        ),
        (
            "chan send",
            vec![
                "chan".into(),
                "send".into(),
                "bench-chan".into(),
                "{\"x\":1}".into(),
            ],
            vec![
                "-sf".into(),
                "-XPOST".into(),
                format!("{url}/channels/bench-chan/send"),
                "-d".into(),
                "{\"x\":1}".into(),
            ],
        ),
    ];
    for (name, cipc_args, curl_args) in cases {
        let (exe, u) = (exe.clone(), url.to_string());
        let cipc_t = tokio::task::spawn_blocking(move || {
            time_runs(
                n,
                Box::new(move || {
                    let mut c = Command::new(&exe);
                    c.args(&cipc_args)
                        .arg("--url")
                        .arg(&u)
                        .env_remove("CIPC_TOKEN");
                    c
                }),
            )
        })
        .await
        .map_err(|e| e.to_string())??;
        let curl_t = if has_curl {
            Some(
                tokio::task::spawn_blocking(move || {
                    time_runs(
                        n,
                        Box::new(move || {
                            let mut c = Command::new("curl");
                            c.args(&curl_args);
                            c
                        }),
                    )
                })
                .await
                .map_err(|e| e.to_string())??,
            )
        } else {
            None
        };
        let ratio = curl_t.map(|c| cipc_t.as_secs_f64() / c.as_secs_f64());
        rows.push(Row {
            name: format!("`cipc {name}` process vs curl ({n} runs)"),
            value: match (curl_t, ratio) {
                (Some(c), Some(r)) => format!("{:.2} ms vs {:.2} ms ({r:.2}x)", ms(cipc_t), ms(c)),
                _ => format!("{:.2} ms (curl not installed)", ms(cipc_t)),
            },
            target: "<= 1.5x curl".into(),
            raw: json!({"cipcMs": ms(cipc_t), "curlMs": curl_t.map(ms), "ratio": ratio}),
        });
    }
    Ok(rows)
}

/// Mean wall time of `n` runs of the process `make` builds.
fn time_runs(n: usize, mut make: Box<dyn FnMut() -> Command + Send>) -> Result<Duration, String> {
    let n = n.max(1);
    let t = Instant::now();
    for _ in 0..n {
        let out = make()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "a timed process failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(t.elapsed() / n as u32)
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
