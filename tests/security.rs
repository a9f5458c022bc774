//! Safe by default: tokens, Origin/Host checks, bind refusal, limits.

mod common;

use cipc::broker::BrokerConfig;
use cipc::server::ServerConfig;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "s3cret-token-for-tests-0123456789abcdef";

/// Every route of the API, as (method, path).
fn routes(peer: &str, cmd: &str, question: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GET", "/peers/discover".into()),
        ("POST", "/peers/connect".into()),
        ("GET", "/peers".into()),
        ("GET", format!("/peers/{peer}")),
        ("POST", format!("/peers/{peer}/heartbeat")),
        ("POST", "/commands/send".into()),
        ("GET", "/commands".into()),
        ("GET", format!("/commands/{peer}")),
        ("GET", format!("/commands/{peer}/wait?timeout=10")),
        ("POST", format!("/commands/{cmd}/ack")),
        ("GET", format!("/commands/{cmd}/result?timeout=10")),
        ("GET", "/channels".into()),
        ("POST", "/channels/c/send".into()),
        ("GET", "/channels/c/messages".into()),
        ("GET", "/channels/c/stream".into()),
        ("GET", "/signals".into()),
        ("POST", "/signals/s".into()),
        ("GET", "/signals/s".into()),
        ("GET", "/signals/s/wait?timeout=10".into()),
        ("GET", "/status".into()),
        ("POST", "/reset".into()),
        ("GET", "/events".into()),
        ("GET", "/openapi.json".into()),
        ("DELETE", format!("/commands/{cmd}")),
        ("DELETE", "/signals/s".into()),
        ("PUT", format!("/peers/{peer}/attention")),
        ("GET", "/questions".into()),
        ("POST", "/questions".into()),
        ("GET", format!("/questions/{question}")),
        ("GET", format!("/questions/{question}/wait?timeout=10")),
        ("POST", format!("/questions/{question}/answer")),
        ("DELETE", format!("/questions/{question}")),
        ("POST", "/dashboard/logout".into()),
        ("DELETE", format!("/peers/{peer}")),
    ]
}

async fn call(method: &str, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let c = http();
    let mut rb = match method {
        "GET" => c.get(url),
        "POST" => c.post(url).body(
            "{\"role\":\"x\",\"target\":\"x\",\"action\":\"a\",\"text\":\"q?\",\"answer\":\"a\"}",
        ),
        "PUT" => c.put(url).body("{\"attention\":\"look\"}"),
        _ => c.delete(url),
    };
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn every_route_needs_the_token_in_either_header_form() {
    // Separate attempts budget: use distinct brokers for the wrong/missing runs.
    let b = start_with_token(TOKEN).await;
    let u = b.url();
    let auth = format!("Bearer {TOKEN}");
    let r = call(
        "POST",
        &format!("{u}/peers/connect"),
        &[("Authorization", &auth)],
    )
    .await;
    let peer = r.json::<Value>().await.unwrap()["peer"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        "POST",
        &format!("{u}/commands/send"),
        &[("Authorization", &auth)],
    )
    .await;
    let cmd = r.json::<Value>().await.unwrap()["command"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        "POST",
        &format!("{u}/questions"),
        &[("Authorization", &auth)],
    )
    .await;
    let question = r.json::<Value>().await.unwrap()["question"]["id"]
        .as_str()
        .expect("a question")
        .to_string();

    // Fresh brokers per chunk, so the brake on repeated failures (20 a
    // minute per address) does not hide what each route answers.
    for chunk in routes(&peer, &cmd, &question).chunks(9) {
        let fresh = start_with_token(TOKEN).await;
        let f = fresh.url();
        for (m, p) in chunk {
            let r = call(m, &format!("{f}{p}"), &[]).await;
            assert_eq!(r.status().as_u16(), 401, "{m} {p} without a token");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["code"], "unauthorized", "{m} {p}");
            let r = call(m, &format!("{f}{p}"), &[("Authorization", "Bearer wrong")]).await;
            assert_eq!(r.status().as_u16(), 401, "{m} {p} with a wrong token");
        }
    }
    for (i, (m, p)) in routes(&peer, &cmd, &question).into_iter().enumerate() {
        let header = if i % 2 == 0 {
            ("Authorization", auth.as_str())
        } else {
            ("X-Cipc-Token", TOKEN)
        };
        let r = call(m, &format!("{u}{p}"), &[header]).await;
        let st = r.status().as_u16();
        assert!(
            st != 401 && st != 403,
            "{m} {p} with the token ({}): {st}",
            header.0
        );
    }
    // healthz never needs it.
    let (st, _) = get(&format!("{u}/healthz")).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn mcp_routes_answer_403_without_www_authenticate_and_no_oauth_discovery() {
    let b = start_with_token(TOKEN).await;
    let u = b.url();
    for (m, p) in [
        ("GET", "/mcp/sse"),
        ("POST", "/mcp/messages?sessionId=x"),
        ("POST", "/mcp"),
        ("GET", "/mcp"),
    ] {
        let r = call(m, &format!("{u}{p}"), &[]).await;
        assert_eq!(r.status().as_u16(), 403, "{m} {p}");
        assert!(r.headers().get("www-authenticate").is_none(), "{m} {p}");
    }
    for p in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/openid-configuration",
    ] {
        let r = call("GET", &format!("{u}{p}"), &[("X-Cipc-Token", TOKEN)]).await;
        assert_eq!(r.status().as_u16(), 404, "{p}");
        let r = call("GET", &format!("{u}{p}"), &[]).await;
        assert_eq!(r.status().as_u16(), 404, "{p}");
    }
}

#[tokio::test]
async fn a_token_in_the_query_string_is_refused() {
    let b = start_with_token(TOKEN).await;
    let u = b.url();
    for q in ["token", "access_token"] {
        let r = call("GET", &format!("{u}/status?{q}={TOKEN}"), &[]).await;
        assert_eq!(r.status().as_u16(), 400, "{q}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"]["message"].as_str().unwrap().contains("header"));
    }
}

#[tokio::test]
async fn foreign_origins_and_rebound_hosts_are_refused() {
    let b = start().await;
    let u = b.url();
    let port = b.addr.port();
    let r = call(
        "GET",
        &format!("{u}/status"),
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "forbidden");
    let own = format!("http://127.0.0.1:{port}");
    let r = call(
        "POST",
        &format!("{u}/signals/x"),
        &[("Origin", own.as_str())],
    )
    .await;
    assert_eq!(r.status().as_u16(), 200, "same origin is fine");
    // DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its Host.
    let host = format!("evil.example:{port}");
    let r = call("GET", &format!("{u}/status"), &[("Host", host.as_str())]).await;
    assert_eq!(r.status().as_u16(), 403);
    let lh = format!("localhost:{port}");
    let r = call("GET", &format!("{u}/status"), &[("Host", lh.as_str())]).await;
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn repeated_auth_failures_are_slowed_down_and_the_right_token_never_is() {
    let b = start_with_token(TOKEN).await;
    let u = b.url();
    let mut codes = Vec::new();
    for _ in 0..22 {
        codes.push(
            call("GET", &format!("{u}/status"), &[("X-Cipc-Token", "nope")])
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(codes[..19].iter().all(|c| *c == 401), "{codes:?}");
    assert!(codes[19..].iter().all(|c| *c == 429), "{codes:?}");
    // The right token from that same address is never refused or slowed.
    let r = call("GET", &format!("{u}/status"), &[("X-Cipc-Token", TOKEN)]).await;
    assert_eq!(r.status().as_u16(), 200);
    // An empty X-Cipc-Token does not hide a valid Bearer token.
    let bearer = format!("Bearer {TOKEN}");
    let r = call(
        "GET",
        &format!("{u}/status"),
        &[("X-Cipc-Token", ""), ("Authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    // healthz stays open.
    assert_eq!(get(&format!("{u}/healthz")).await.0, 200);
}

/// A client whose connections come from `ip` (any of 127/8 works on Linux).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .expect("client")
}

#[tokio::test]
async fn guesses_spread_over_many_addresses_meet_the_brake_too() {
    let b = start_with_token(TOKEN).await;
    let u = b.url();
    // 200 wrong guesses from 100 addresses, two each: no address alone comes
    // near its own limit.
    for i in 0..200u32 {
        let ip = [127, 0, 1, (i / 2 + 2) as u8];
        let st = client_from(ip)
            .get(format!("{u}/status"))
            .header("X-Cipc-Token", "guess")
            .send()
            .await
            .expect("guess")
            .status()
            .as_u16();
        let want = if i < 199 { 401 } else { 429 };
        assert_eq!(st, want, "guess {i}");
    }
    // From now on wrong guesses from anywhere queue behind each other.
    let start = std::time::Instant::now();
    let guesses: Vec<_> = (0..4u8)
        .map(|i| {
            let url = format!("{u}/status");
            tokio::spawn(async move {
                client_from([127, 0, 2, i + 2])
                    .get(url)
                    .header("X-Cipc-Token", "guess")
                    .send()
                    .await
                    .expect("guess")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for g in guesses {
        assert_eq!(g.await.expect("task"), 429);
    }
    assert!(
        start.elapsed() >= Duration::from_millis(4 * 250),
        "four braked guesses took {:?}",
        start.elapsed()
    );
    // The right token, from a fresh address or a guessing one, passes.
    for ip in [[127, 0, 3, 9], [127, 0, 1, 2]] {
        let st = client_from(ip)
            .get(format!("{u}/status"))
            .header("X-Cipc-Token", TOKEN)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        assert_eq!(st, 200);
    }
}

#[tokio::test]
async fn waiter_limit_answers_429_and_the_broker_keeps_serving() {
    let cfg = BrokerConfig {
        max_waiters: 3,
        ..BrokerConfig::default()
    };
    let b = start_with(cfg, ServerConfig::default(), None).await;
    let u = b.url();
    let mut parked = Vec::new();
    for _ in 0..3 {
        let url = format!("{u}/signals/never/wait?timeout=30000");
        parked.push(tokio::spawn(async move { get(&url).await }));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 3
        })
        .await
    );
    let (st, e) = get(&format!("{u}/signals/never/wait?timeout=30000")).await;
    assert_eq!(st, 429);
    assert_eq!(e["error"]["code"], "too_many_requests");
    let r = http().get(format!("{u}/events")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    // Everything else still works, and the parked waiters are released.
    let (st, _) = post(&format!("{u}/signals/never"), json!({})).await;
    assert_eq!(st, 200);
    for p in parked {
        assert_eq!(p.await.unwrap().0, 200);
    }
}

#[test]
fn a_public_bind_without_a_token_refuses_to_start_and_says_how() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
        .args(["serve", "--memory", "--port", "0", "--host", "0.0.0.0"])
        .env_remove("CIPC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
    assert!(
        err.contains("CIPC_TOKEN") && err.contains("--token-file"),
        "{err}"
    );
    assert!(err.contains("--insecure-no-auth"), "{err}");
}

#[test]
fn a_world_readable_token_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, TOKEN).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
        .args([
            "serve",
            "--memory",
            "--port",
            "0",
            "--token-file",
            path.to_str().unwrap(),
        ])
        .env_remove("CIPC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("world-readable") && err.contains("chmod 600"),
        "{err}"
    );
}

#[tokio::test]
async fn a_private_token_file_works_and_the_binary_enforces_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let b = BinaryBroker::start(&["--memory", "--token-file", path.to_str().unwrap()], &[]);
    let r = call("GET", &format!("{}/status", b.url), &[]).await;
    assert_eq!(r.status().as_u16(), 401);
    let r = call(
        "GET",
        &format!("{}/status", b.url),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn generated_tokens_are_long_random_and_url_safe() {
    let gen = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
            .args(["serve", "--generate-token"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (a, b) = (gen(), gen());
    assert_ne!(a, b);
    assert!(a.len() >= 43, "32 bytes base64: {a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{a}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let b = start_with(BrokerConfig::default(), server, None).await;
    let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the broker closed the connection");
    // Others are still served.
    assert_eq!(get(&format!("{}/healthz", b.url())).await.0, 200);
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_disconnected_and_others_keep_working() {
    let server = ServerConfig {
        sse_buffer: 1,
        slow_reader_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let b = start_with(BrokerConfig::default(), server, None).await;
    let u = b.url();
    // Subscribe, then never read the body.
    let stalled = http().get(format!("{u}/events")).send().await.unwrap();
    assert_eq!(stalled.status().as_u16(), 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 1
        })
        .await
    );
    // Enough event data to fill every buffer between the broker and the reader.
    let blob = "x".repeat(256 * 1024);
    let mut sent = 0;
    while b.broker.open_waiters() > 0 && sent < 200 {
        let (st, _) = post(&format!("{u}/channels/bulk/send"), json!({ "blob": blob })).await;
        assert_eq!(st, 201, "writers are never held up by a slow reader");
        sent += 1;
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.broker.open_waiters() == 0
        })
        .await,
        "the stalled reader was cut off after {sent} messages"
    );
    drop(stalled);
    // A fresh reader resumes from an event id and gets the history.
    let r = http()
        .get(format!("{u}/events"))
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_legacy_mcp_reader_that_falls_behind_loses_its_session() {
    let server = ServerConfig {
        sse_buffer: 1,
        slow_reader_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let b = start_with(BrokerConfig::default(), server, None).await;
    let u = b.url();
    let blob = "x".repeat(256 * 1024);
    for _ in 0..4 {
        post(&format!("{u}/channels/bulk/send"), json!({ "blob": blob })).await;
    }
    // Open the stream and read only as far as the endpoint event.
    let resp = http().get(format!("{u}/mcp/sse")).send().await.unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let endpoint = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap()
        .trim()
        .to_string();
    let post_rpc = |msg: Value| {
        let url = format!("{u}{endpoint}");
        async move {
            http()
                .post(url)
                .json(&msg)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post_rpc(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "slow", "version": "0"}}})).await, 202);
    assert_eq!(
        post_rpc(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await,
        202
    );
    // Ask for about a megabyte per answer and never read the stream.
    let mut ended = false;
    for id in 1..200 {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "channel_read", "arguments": {"channel": "bulk", "limit": 4}}});
        if post_rpc(call).await == 404 {
            ended = true;
            break;
        }
    }
    if !ended {
        ended = eventually(Duration::from_secs(10), || {
            let ping = json!({"jsonrpc": "2.0", "id": 999, "method": "ping"});
            let url = format!("{u}{endpoint}");
            async move {
                http()
                    .post(url)
                    .json(&ping)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
                    == 404
            }
        })
        .await;
    }
    assert!(ended, "the stalled session was ended");
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.broker.open_waiters() == 0
        })
        .await,
        "its stream slot was freed"
    );
    assert_eq!(get(&format!("{u}/healthz")).await.0, 200);
}

/// Sends `request` as raw bytes on a new connection and answers the status
/// code and the JSON body (or `Null`).
async fn raw(addr: std::net::SocketAddr, request: String) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn the_host_check_parses_host_strictly_and_checks_every_form_of_request() {
    let b = start().await;
    let port = b.addr.port();
    let get = |target: String, headers: String| {
        format!("GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n")
    };
    // A well-formed own name passes (the baseline).
    for host in [
        format!("127.0.0.1:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (st, v) = raw(b.addr, get("/status".into(), format!("Host: {host}\r\n"))).await;
        assert_eq!(st, 200, "{host}: {v}");
    }
    // Smuggling another name after our own is malformed, not ours.
    for host in [
        format!("127.0.0.1:{port}@evil.example"),
        format!("127.0.0.1:{port}\tevil.example"),
        format!("127.0.0.1:{port} evil.example"),
        format!("evil.example@127.0.0.1:{port}"),
        "127.0.0.1:".to_string(),
    ] {
        let (st, v) = raw(b.addr, get("/status".into(), format!("Host: {host}\r\n"))).await;
        assert_eq!(st, 400, "{host:?}: {v}");
        assert_eq!(v["error"]["reason"], "invalid_header", "{host:?}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("host name or IP address"), "{m}");
    }
    // Two Host headers.
    let two = format!("Host: 127.0.0.1:{port}\r\nHost: evil.example\r\n");
    let (st, v) = raw(b.addr, get("/status".into(), two)).await;
    assert_eq!(st, 400, "{v}");
    // An absolute-form target names the host too, and it must be ours.
    let own = format!("Host: 127.0.0.1:{port}\r\n");
    let (st, v) = raw(
        b.addr,
        get(format!("http://evil.example:{port}/status"), own.clone()),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["reason"], "foreign_host");
    let (st, v) = raw(
        b.addr,
        get(
            format!("http://127.0.0.1:{port}@evil.example/status"),
            own.clone(),
        ),
    )
    .await;
    assert!(st == 400 || st == 403, "{st} {v}");
    let (st, v) = raw(
        b.addr,
        get(format!("http://127.0.0.1:{port}/status"), own.clone()),
    )
    .await;
    assert_eq!(st, 200, "our own absolute-form target is fine: {v}");
    // HTTP/1.0 without Host names no host: refused on a broker that checks names.
    let (st, v) = raw(
        b.addr,
        "GET /status HTTP/1.0\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["reason"], "foreign_host");
    assert!(v["error"]["message"].as_str().unwrap().contains("Host"));
    // With Host, HTTP/1.0 is served.
    let (st, v) = raw(
        b.addr,
        format!("GET /status HTTP/1.0\r\nHost: localhost:{port}\r\n\r\n"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn cross_site_browser_requests_without_origin_are_refused() {
    let b = start().await;
    let port = b.addr.port();
    let req = |method: &str, path: &str, fetch: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{fetch}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let peer = connect(&b.url(), "backend").await;
    // An <img src> on another site, or one on another port of this machine
    // (same-site), would take the peer's command off its queue.
    for site in ["cross-site", "same-site"] {
        let fetch = format!("Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: no-cors\r\n");
        let target = format!("/commands/{peer}/wait?timeout=10");
        let (st, v) = raw(b.addr, req("GET", &target, &fetch)).await;
        assert_eq!(st, 403, "{site}: {v}");
        assert_eq!(v["error"]["reason"], "foreign_origin", "{site}");
        let (st, _) = raw(b.addr, req("POST", "/reset", &fetch)).await;
        assert_eq!(st, 403, "{site}");
        // A link to the API is refused too; a link to the dashboard's page is not.
        let nav = format!("Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: navigate\r\n");
        let (st, _) = raw(b.addr, req("GET", "/status", &nav)).await;
        assert_eq!(st, 403, "{site} navigation to the API");
        let (st, _) = raw(b.addr, req("GET", "/dashboard", &nav)).await;
        assert_eq!(st, 200, "{site} navigation to the dashboard page");
    }
    // The dashboard's own requests, a typed URL, and curl all pass.
    for fetch in [
        "Sec-Fetch-Site: same-origin\r\n",
        "Sec-Fetch-Site: none\r\n",
        "",
    ] {
        let (st, v) = raw(b.addr, req("GET", "/status", fetch)).await;
        assert_eq!(st, 200, "{fetch:?}: {v}");
    }
}
