//! The measurements of `cipc bench` (`bench.rs` starts the brokers and
//! prints the table): command round trips, channel throughput, idle
//! waiters' memory, and the CLI's start-up against curl's. Each answers
//! rows for the summary, or one line saying why it could not measure.

use crate::api::{AckRequest, CommandStatus, ConnectRequest, EmitRequest, SendRequest};
use crate::client::{Client, ClientError};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::process::{Command, Stdio};
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
pub(super) async fn round_trips(url: &str, worker_url: &str, n: usize) -> Result<Vec<Row>, String> {
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

pub(super) async fn channel_throughput(
    urls: &[String],
    n: usize,
    clients: usize,
) -> Result<Row, String> {
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

pub(super) async fn idle_waiters(url: &str, n: usize, pid: u32) -> Result<Row, String> {
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
