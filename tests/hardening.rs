//! Inputs and failures that must not break the broker: numbers past any
//! sane bound are a 400 that names the bound, and a store that cannot save is
//! reported by `/healthz` instead of staying silent.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_ttl_past_the_bound_is_a_400_and_breaks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BinaryBroker::durable(dir.path());
    let u = b.url.clone();
    for ttl in [252_000_000_000_000_u64, u64::MAX] {
        let (st, v) = post(
            &format!("{u}/commands/send"),
            json!({"target": "backend", "action": "x", "ttl": ttl}),
        )
        .await;
        assert_eq!(st, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("ttl") && msg.contains("maximum"), "{msg}");
    }
    // The longest allowed ttl is stored and rendered.
    let (st, v) = post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "x", "ttl": cipc::api::MAX_TTL_MS}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, _) = get(&format!("{u}/healthz")).await;
    assert_eq!(st, 200);
    let (st, v) = post(&format!("{u}/channels/c/send"), json!(1)).await;
    assert_eq!(st, 201, "the store still writes: {v}");
}

#[tokio::test]
async fn mcp_ttl_seconds_past_the_bound_is_refused() {
    let server = start().await;
    let base = server.url();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "send_command",
        "arguments": {"target": "backend", "action": "x", "ttl_seconds": 300_000_000_000_u64},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }
    }});
    let text = http()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "send_command")
        .json(&body)
        .send()
        .await
        .expect("tools/call")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains("\"isError\":true") && text.contains("ttl"),
        "{text}"
    );
    let (_, cmds) = get(&format!("{base}/commands")).await;
    assert_eq!(cmds["commands"], json!([]), "nothing was sent");
}

#[tokio::test]
async fn healthz_reports_a_store_that_cannot_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BinaryBroker::durable(dir.path());
    let u = b.url.clone();
    let (st, _) = get(&format!("{u}/healthz")).await;
    assert_eq!(st, 200);

    // Another process holds SQLite's write lock: a stand-in for a stalled disk.
    let db = rusqlite::Connection::open(dir.path().join("cipc.db")).expect("open db");
    db.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let (st, v) = post(&format!("{u}/channels/c/send"), json!(1)).await;
    assert_eq!(st, 503, "the write is not answered as saved: {v}");
    let (st, v): (u16, Value) = get(&format!("{u}/healthz")).await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable");

    // Once the disk is back, so is the broker.
    db.execute_batch("ROLLBACK").expect("release");
    let healthy = eventually(Duration::from_secs(20), || async {
        post(&format!("{u}/channels/c/send"), json!(2)).await.0 == 201
    })
    .await;
    assert!(healthy);
    let (st, _) = get(&format!("{u}/healthz")).await;
    assert_eq!(st, 200);
}

/// Sends `request` as raw bytes and reads the status line of the answer.
async fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn tokens_in_the_query_are_refused_however_they_are_spelled() {
    let b = start_with_token("s3cret").await;
    let u = b.url();
    for q in [
        "token=x",
        "TOKEN=x",
        "%74oken=x",
        "a=1&Access_Token=x",
        "cipc%5Ftoken=x",
    ] {
        let (st, v) = get(&format!("{u}/status?{q}")).await;
        assert_eq!(st, 400, "?{q}: {v}");
    }
}

#[tokio::test]
async fn a_host_that_is_not_text_is_refused() {
    let b = start().await;
    let status = raw_status(
        b.addr,
        b"GET /status HTTP/1.1\r\nHost: evil\xff.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(status.contains(" 400 "), "{status}");
}

#[tokio::test]
async fn a_long_from_is_a_400_naming_the_limit() {
    let b = start().await;
    let u = b.url();
    let (st, v) = post(
        &format!("{u}/commands/send"),
        json!({"from": "x".repeat(900_000), "target": "r", "action": "a"}),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("128"));
    let (st, _) = post(
        &format!("{u}/commands/send"),
        json!({"from": "x".repeat(128), "target": "r", "action": "a"}),
    )
    .await;
    assert_eq!(st, 201);
}

#[tokio::test]
async fn the_public_login_reads_only_a_token_sized_body() {
    let b = start_with_token("s3cret").await;
    let u = b.url();
    let (st, v) = post(
        &format!("{u}/dashboard/login"),
        json!({"token": "x".repeat(8192)}),
    )
    .await;
    assert_eq!(st, 413, "{v}");
}

#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off_with_408() {
    use cipc::broker::BrokerConfig;
    use cipc::server::ServerConfig;
    let server = ServerConfig {
        body_read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let b = start_with(BrokerConfig::default(), server, None).await;
    // Headers promise 1000 bytes; only 10 ever come.
    let status = raw_status(
        b.addr,
        b"POST /channels/c/send HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\": 1, ",
    )
    .await;
    assert!(status.contains(" 408 "), "{status}");
    assert_eq!(get(&format!("{}/healthz", b.url())).await.0, 200);
}

#[tokio::test]
async fn a_request_without_the_token_keeps_no_peer_alive() {
    use cipc::broker::{clock::ManualClock, Broker, BrokerConfig};
    use cipc::server::{RunningServer, ServerConfig};
    use std::sync::Arc;
    // The broker's clock moves only when told to, so "offline" is reached
    // at once and nothing but contact could bring the peer back.
    let clock = Arc::new(ManualClock::new(cipc::time::Timestamp::now()));
    let store = test_store().await;
    let config = BrokerConfig::default();
    let offline_after = config.offline_after;
    let broker = Broker::open_with_clock(store, config, clock.clone()).expect("open");
    let b = RunningServer::start(broker, ServerConfig::default(), Some("s3cret".into()))
        .await
        .expect("start broker");
    let u = b.url();
    let r = http()
        .post(format!("{u}/peers/connect"))
        .bearer_auth("s3cret")
        .json(&json!({"role": "backend"}))
        .send()
        .await
        .expect("connect");
    let v: Value = r.json().await.expect("json");
    let id = v["peer"]["id"].as_str().expect("id").to_string();
    let status = || async {
        let r = http()
            .get(format!("{u}/peers/{id}"))
            .bearer_auth("s3cret")
            .send()
            .await
            .expect("peer");
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["peer"]["status"].clone()
    };
    clock.advance(offline_after);
    assert_eq!(status().await, "offline");
    // Someone without the token names the peer, on a public and a private path.
    for path in ["/healthz", "/status"] {
        let _ = http()
            .get(format!("{u}{path}"))
            .header("X-Cipc-Peer", &id)
            .send()
            .await;
    }
    assert_eq!(
        status().await,
        "offline",
        "token-less requests kept the peer alive"
    );
    // The same request with the token is contact (so the check above can fail).
    http()
        .get(format!("{u}/status"))
        .bearer_auth("s3cret")
        .header("X-Cipc-Peer", &id)
        .send()
        .await
        .expect("status");
    assert_eq!(status().await, "online");
}
