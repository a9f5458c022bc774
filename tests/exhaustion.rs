//! No client can exhaust the broker: readers that stop reading are cut off
//! and freed, connections are bounded (a clear 503 past the bound), and wrong
//! tokens waiting in the brake never hold enough connections to lock a right
//! token out. Each test reproduces the attack that found the hole.

mod common;

use cipc::broker::BrokerConfig;
use cipc::server::ServerConfig;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The resident memory of process `pid`, in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// How many long-polls and streams the broker has open (`/status`).
async fn waiters(u: &str) -> u64 {
    let (_, s) = get(&format!("{u}/status")).await;
    s["waiters"].as_u64().expect("waiters in /status")
}

/// A raw connection that asks for `path` and then never reads.
async fn non_reader(addr: &str, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    s
}

/// Reads until the server closes the connection; false if it is still open
/// after `limit`.
async fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_stop_reading_are_cut_off_and_their_memory_freed() {
    let b = BinaryBroker::start(&["--memory", "--channel-retention", "10"], &[]);
    let u = b.url.clone();
    let addr = u.trim_start_matches("http://").to_string();
    // Warm up, then measure what the idle broker holds.
    let (st, _) = post(&format!("{u}/channels/big/send"), json!("hello")).await;
    assert_eq!(st, 201);
    let idle = rss(b.child.id());

    let mut readers = Vec::new();
    for i in 0..10 {
        let path = if i % 2 == 0 {
            "/channels/big/stream?since=1"
        } else {
            "/events"
        };
        readers.push(non_reader(&addr, path).await);
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            waiters(&u).await == 10
        })
        .await,
        "the ten streams are open"
    );
    // 300 messages of 200 KB: 60 MB that each reader would have buffered.
    let big = "x".repeat(200 * 1024);
    for _ in 0..300 {
        let (st, v) = post(&format!("{u}/channels/big/send"), json!(big)).await;
        assert_eq!(st, 201, "{v}");
    }
    // Each reader is cut off once its byte budget stays full past the grace
    // period (5 s), and its connection is closed.
    assert!(
        eventually(Duration::from_secs(60), || async { waiters(&u).await == 0 }).await,
        "the non-reading streams were cut off: {} still open",
        waiters(&u).await
    );
    for (i, r) in readers.iter_mut().enumerate() {
        assert!(
            closed_by_server(r, Duration::from_secs(30)).await,
            "reader {i}'s connection was closed by the broker"
        );
    }
    let grown = rss(b.child.id()).saturating_sub(idle);
    eprintln!(
        "ten non-reading streams and 60 MB of messages grew the broker by {} MB",
        grown / (1024 * 1024)
    );
    // Before: 650 MB for ten such readers. Now each holds at most its byte
    // budget (1 MiB) while it is open; the event history keeps at most 32 MiB.
    assert!(
        grown < 160 * 1024 * 1024,
        "the broker grew by {} MB",
        grown / (1024 * 1024)
    );
    // The broker still serves.
    let (st, _) = post(&format!("{u}/channels/big/send"), json!("after")).await;
    assert_eq!(st, 201);
}

#[tokio::test]
async fn connections_past_the_cap_get_a_clear_503_and_room_frees_up() {
    let server = ServerConfig {
        max_connections: 20,
        ..ServerConfig::default()
    };
    let b = start_with(BrokerConfig::default(), server, None).await;
    let addr = b.addr.to_string();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    // The 21st is answered at once, without being read, and closed.
    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
        .expect("a JSON error body");
    assert_eq!(body["error"]["reason"], "too_many_connections", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--max-connections"),
        "{body}"
    );
    // Closing idle connections makes room again.
    idle.truncate(10);
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&format!("{}/healthz", b.url())).await.0 == 200
        })
        .await,
        "served again once connections closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_in_the_brake_never_lock_a_right_token_out() {
    // Both ends of 1,100 connections live in this process.
    let _ = rlimit::increase_nofile_limit(8192);
    let token = "right-token-0123456789";
    let b = start_with_token(token).await;
    let u = b.url();
    let addr = b.addr.to_string();
    // Twenty wrong guesses put the brake on for this address.
    for _ in 0..20 {
        let r = http()
            .get(format!("{u}/status"))
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .expect("wrong guess");
        assert!(matches!(r.status().as_u16(), 401 | 429), "{}", r.status());
    }
    // 1,100 wrong-token connections that never read their answer.
    let mut guesses = Vec::new();
    for i in 0..1100 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        let req = format!(
            "GET /status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer wrong-{i:016}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("request");
        guesses.push(s);
    }
    // A right token is served at once, every time.
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            http().get(format!("{u}/status")).bearer_auth(token).send(),
        )
        .await
        .expect("a right token is not kept waiting")
        .expect("status");
        assert_eq!(r.status().as_u16(), 200);
    }
    // At most the brake's queue (32) still waits; every other guess was
    // answered 429 and its connection closed.
    let mut closed = 0;
    for s in &mut guesses {
        if closed_by_server(s, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 1100 - 40,
        "only {closed} of 1,100 braked connections were answered and closed"
    );
}
