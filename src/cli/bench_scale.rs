//! `cipc bench --startup` and `--sweep`: how the broker scales with what it
//! holds. Start-up time and memory against the size of the database (they
//! must not grow with retained history), and the cost of one liveness sweep
//! against the number of peers.

use crate::api::{ConnectRequest, SendRequest, Via};
use crate::broker::{Broker, BrokerConfig, Caller};
use crate::store::SqliteStore;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One measurement: a label, a human result, and the raw figures.
pub struct Measured {
    /// What was measured.
    pub name: String,
    /// The result, for the table.
    pub value: String,
    /// The figures, for `--json`.
    pub raw: Value,
}

/// Starts `cipc serve --port 0 ARGS` from this very binary; answers the
/// child and the URL its start line names.
pub fn start_broker<I, A>(args: I) -> Result<(Child, String), String>
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(["serve", "--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CIPC_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start a broker: {e}"))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let Some(url) = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(|u| u.trim_end_matches('/').to_string())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("the broker did not start: {line:?}"));
    };
    Ok((child, url))
}

/// Channels the generated history is spread over.
const CHANNELS: usize = 10;

/// Fills a fresh data dir with `messages` messages (about 100 bytes each),
/// the way a long-running broker would have left it.
fn populate(dir: &Path, messages: usize) -> Result<(), String> {
    // Let the store create its schema, then write rows in bulk.
    drop(SqliteStore::open(dir, false).map_err(|e| e.to_string())?);
    let mut db = rusqlite::Connection::open(dir.join("cipc.db")).map_err(|e| e.to_string())?;
    let tx = db.transaction().map_err(|e| e.to_string())?;
    {
        let mut insert = tx
            .prepare("INSERT INTO messages (channel, seq, body) VALUES (?1, ?2, ?3)")
            .map_err(|e| e.to_string())?;
        let per = messages / CHANNELS;
        for c in 0..CHANNELS {
            let channel = format!("log-{c}");
            for seq in 1..=per {
                let body = json!({
                    "seq": seq,
                    "channel": channel,
                    "data": {"line": format!("build step {seq} finished without warnings")},
                    "sentAt": "2026-11-27T10:00:00.000Z"
                });
                insert
                    .execute(rusqlite::params![channel, seq as i64, body.to_string()])
                    .map_err(|e| e.to_string())?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO channels (name, last_seq) VALUES (?1, ?2)",
                rusqlite::params![channel, per as i64],
            )
            .map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

/// `GET /channels` over a plain socket, summing the channels' counts.
fn count_messages(url: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://")?.trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET /channels HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split("\r\n\r\n").nth(1)?;
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    Some(
        v["channels"]
            .as_array()?
            .iter()
            .filter_map(|c| c["count"].as_u64())
            .sum(),
    )
}

/// The resident memory of process `pid`, from `/proc`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Start-up time (spawn to "listening") and RSS once started, for a database
/// holding `messages` messages.
pub fn startup(messages: usize, retention: usize) -> Result<Measured, String> {
    let dir = std::env::temp_dir().join(format!(
        "cipc-bench-startup-{}-{messages}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    populate(&dir, messages)?;
    let size: u64 = ["cipc.db", "cipc.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let started = Instant::now();
    let retention = retention.to_string();
    let (mut child, url) = start_broker([
        "--channel-retention".as_ref(),
        retention.as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ])?;
    let took = started.elapsed();
    // It really holds them: the channel counts add up.
    let counted = count_messages(&url);
    let rss = rss_kib(child.id()).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let expected = (messages / CHANNELS * CHANNELS) as u64;
    if counted != Some(expected) {
        return Err(format!(
            "the broker lists {counted:?} messages, not the {expected} in its file"
        ));
    }
    Ok(Measured {
        name: format!(
            "start-up, {messages} messages ({:.0} MB file)",
            size as f64 / 1e6
        ),
        value: format!(
            "{:.0} ms to listening, RSS {:.1} MB",
            took.as_secs_f64() * 1000.0,
            rss as f64 / 1024.0
        ),
        raw: json!({"messages": messages, "fileBytes": size, "startMs": took.as_secs_f64() * 1000.0, "rssMb": rss as f64 / 1024.0}),
    })
}

/// One liveness sweep with `peers` peers and `commands` delivered commands:
/// when every peer changes state at once (the worst case), and when none does.
pub async fn sweep(peers: usize, commands: usize) -> Result<Measured, String> {
    let broker = Broker::in_memory(BrokerConfig {
        stale_after: Duration::from_millis(200),
        offline_after: Duration::from_secs(3600),
        max_peers: peers + 1,
        max_waiters: commands + 16,
        ..BrokerConfig::default()
    });
    let nobody = Caller::default();
    let mut ids = Vec::with_capacity(peers);
    for i in 0..peers {
        let req = ConnectRequest {
            role: format!("r{}", i % 100),
            ..ConnectRequest::default()
        };
        let (p, _) = broker
            .connect(req, Via::Http, &nobody)
            .await
            .map_err(|e| e.to_string())?;
        ids.push(p.id);
    }
    for i in 0..commands {
        let target = ids[i % ids.len().max(1)].to_string();
        let req = SendRequest {
            target: target.clone(),
            action: "work".into(),
            ..SendRequest::default()
        };
        broker.send(req, &nobody).await.map_err(|e| e.to_string())?;
        broker
            .wait_command(ids[i % ids.len().max(1)], Duration::ZERO, &nobody)
            .await
            .map_err(|e| e.to_string())?;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let all_change = broker.sweep_timed();
    let none_change = broker.sweep_timed();
    Ok(Measured {
        name: format!("liveness sweep, {peers} peers, {commands} held commands"),
        value: format!(
            "{:.1} ms when all turn stale, {:.1} ms when none changes",
            all_change.as_secs_f64() * 1000.0,
            none_change.as_secs_f64() * 1000.0
        ),
        raw: json!({"peers": peers, "commands": commands,
                    "allChangeMs": all_change.as_secs_f64() * 1000.0,
                    "noneChangeMs": none_change.as_secs_f64() * 1000.0}),
    })
}

/// Memory while `n` token-less clients each trickle a login body (the
/// public route), and after they leave: it must stay bounded and come back.
pub fn trickle(n: usize) -> Result<Measured, String> {
    use std::io::Write;
    let (mut child, url) =
        start_broker(["--memory", "--token", "bench-token-that-nobody-guesses"])?;
    let addr = url.trim_start_matches("http://").to_string();
    let pid = child.id();
    let before = rss_kib(pid).unwrap_or(0);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(&addr).map_err(|e| e.to_string())?;
        let head = "POST /dashboard/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"token\": \"";
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(&[b'a'; 3000]).map_err(|e| e.to_string())?;
        conns.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let during = rss_kib(pid).unwrap_or(0);
    drop(conns);
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(pid).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    let mb = |k: u64| k as f64 / 1024.0;
    Ok(Measured {
        name: format!("{n} token-less clients trickling a login body"),
        value: format!(
            "RSS {:.1} MB before, {:.1} MB while they trickle, {:.1} MB 3 s after they leave",
            mb(before),
            mb(during),
            mb(after)
        ),
        raw: json!({"clients": n, "beforeMb": mb(before), "duringMb": mb(during), "afterMb": mb(after)}),
    })
}
