//! The measurements of `cipc bench` (`bench.rs` starts the brokers and
//! prints the table): command round trips, channel throughput, idle
//! waiters' memory, and the CLI's start-up against curl's. Each answers
//! rows for the summary, or one line saying why it could not measure.

use crate::api::{
    AckRequest, CommandStatus, ConnectRequest, EmitRequest, SendRequest, StoreCommits,
};
use crate::client::{Client, ClientError};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::bench::Row;

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

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The figures of one [`round_trips`] run.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoundTrips {
    /// Median and 99th percentile of a round trip.
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    /// Median of two `GET /healthz` timed right after each round trip.
    pub(super) noop_pair_p50: Duration,
}

/// Request-reply the way scripts do it, two requests per round trip:
/// `POST /commands/send?wait=` by the sender, answered once a worker took
/// the command and acked it with `POST /commands/{id}/ack?next=` (which also
/// parks it for the next one). Beside each round trip, two `GET /healthz`
/// no-op requests, so the figure reads against what two requests cost on
/// the same machine in the same run.
pub(super) async fn round_trips(
    url: &str,
    worker_url: &str,
    n: usize,
) -> Result<RoundTrips, String> {
    let c = client(url)?;
    let on_worker_node = client(worker_url)?;
    let role = format!(
        "bench-{}-{}",
        std::process::id(),
        ROLE.fetch_add(1, Ordering::Relaxed)
    );
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
    Ok(RoundTrips {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        noop_pair_p50: percentile(&noops, 0.5),
    })
}

/// The commits the brokers at `urls` made so far, summed over distinct
/// nodes; `None` when one of them keeps nothing (`--memory`) or is older
/// than the count.
pub(super) async fn commits(urls: &[String]) -> Result<Option<StoreCommits>, String> {
    let mut seen: Vec<&String> = Vec::new();
    let mut sum = StoreCommits::default();
    for url in urls {
        if seen.contains(&url) {
            continue;
        }
        seen.push(url);
        let status = client(url)?.status().await.map_err(|e| e.to_string())?;
        let Some(s) = status.store else {
            return Ok(None);
        };
        sum.commits += s.commits;
        sum.writes += s.writes;
    }
    Ok(Some(sum))
}

/// What `units` of work (round trips, sends) cost in commits, between two
/// [`commits`] readings: commits per unit, and units per commit (a
/// channel send past retention also trims, two writes in one unit).
pub(super) fn commits_between(
    before: Option<StoreCommits>,
    after: Option<StoreCommits>,
    units: usize,
) -> Option<(f64, f64)> {
    let (b, a) = (before?, after?);
    let commits = a.commits.checked_sub(b.commits)?;
    Some((
        commits as f64 / units.max(1) as f64,
        units as f64 / commits.max(1) as f64,
    ))
}

/// A distinct worker role for every round-trip run against one broker.
static ROLE: AtomicUsize = AtomicUsize::new(0);

/// What [`rate`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    /// `POST /channels/{name}/send`, four channels.
    ChannelSend,
    /// `GET /healthz`: the HTTP floor.
    Healthz,
}

/// Requests per second from `clients` concurrent clients, `n` in all
/// (clients spread over `urls`).
pub(super) async fn rate(
    urls: &[String],
    n: usize,
    clients: usize,
    load: Load,
) -> Result<f64, String> {
    let nodes = urls
        .iter()
        .map(|u| client(u))
        .collect::<Result<Vec<_>, _>>()?;
    let clients = clients.max(1);
    let per = n / clients;
    let what = match load {
        Load::ChannelSend => "channel sends",
        Load::Healthz => "GET /healthz",
    };
    let pb = bar((per * clients) as u64, what);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (c, pb) = (nodes[i % nodes.len()].clone(), pb.clone());
        tasks.push(tokio::spawn(async move {
            let channel = format!("bench-{}", i % 4);
            for j in 0..per {
                match load {
                    Load::ChannelSend => {
                        c.channel_send(&channel, &json!({"client": i, "n": j}))
                            .await?;
                    }
                    Load::Healthz => {
                        c.healthz().await?;
                    }
                }
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
    Ok((per * clients) as f64 / secs)
}

use super::bench_scale::rss_kib;

/// What [`idle_waiters`] saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiters {
    pub(super) n: usize,
    /// The broker's RSS before they came, and while all were parked (KiB).
    pub(super) before_kib: u64,
    pub(super) during_kib: u64,
    /// How many one emit released.
    pub(super) released: usize,
}

impl Waiters {
    /// Memory per parked waiter beyond the idle broker, in KB.
    pub(super) fn per_waiter_kb(&self) -> f64 {
        self.during_kib.saturating_sub(self.before_kib) as f64 * 1.024 / self.n.max(1) as f64
    }
}

/// Quarter-second samples of the broker's memory, each within 0.5% of the
/// one before, that count as settled (2 s).
const SETTLED_SAMPLES: usize = 8;

/// `n` long-polls parked on one signal of the broker `pid`, then released
/// by one emit.
pub(super) async fn idle_waiters(url: &str, n: usize, pid: u32) -> Result<Waiters, String> {
    let before = rss_kib(pid).unwrap_or(0);
    let pb = bar(n as u64, "idle waiters");
    let c = client(url)?;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.wait_signal("bench-idle", None, 120_000).await })
        })
        .collect();
    // Parked once the broker counts every waiter and its memory has stopped
    // moving for a while: what the burst of arrivals allocated and freed is
    // given back within about a second (jemalloc's background thread), and
    // what stays is what the parked waiters hold.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut still) = (0, 0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let parked = c.status().await.map_or(0, |s| s.waiters as usize);
        pb.set_position(parked.min(n) as u64);
        let rss = rss_kib(pid).unwrap_or(0);
        if parked >= n && rss > 0 && rss.abs_diff(last) * 200 <= last {
            still += 1;
            if still >= SETTLED_SAMPLES {
                break;
            }
        } else {
            still = 0;
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
    Ok(Waiters {
        n,
        before_kib: before,
        during_kib: during,
        released,
    })
}

/// Wall time of whole processes: `cipc signal emit` / `cipc chan send` against curl.
pub(super) async fn cli_vs_curl(url: &str, n: usize) -> Result<Vec<Row>, String> {
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
            value: format!("{:.2} ms", ms(cipc_t)),
            floor: match curl_t {
                Some(c) => format!("the same request by curl: {:.2} ms", ms(c)),
                None => "curl not installed".into(),
            },
            ratio: ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
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
