//! One MCP client, one peer, under both protocol generations: rmcp's client
//! speaking `2026-07-28` (`server/discover`, no sessions: every call is a
//! stateless POST) stays the same peer by passing `peer_key`; and a tool
//! call whose response stream closes never strands a command.

mod common;

use common::mcp::{call, reason};
use common::{eventually, get, http, post};
use rmcp::model::ProtocolVersion;
use rmcp::service::{serve_client_with_lifecycle, ClientLifecycleMode, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::RoleClient;
use serde_json::{json, Value};
use std::time::Duration;

/// A safety net so a broken test fails instead of hanging; never a timing claim.
const LIMIT: Duration = Duration::from_secs(20);

type Mcp = RunningService<RoleClient, ()>;

/// rmcp's client on `/mcp`, negotiating `version` the way that version does.
async fn client(base: &str, version: ProtocolVersion) -> Mcp {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")),
    );
    let lifecycle = if version.has_initialize() {
        ClientLifecycleMode::Initialize
    } else {
        ClientLifecycleMode::Discover {
            preferred_versions: vec![version],
        }
    };
    serve_client_with_lifecycle((), transport, lifecycle)
        .await
        .expect("MCP start-up over /mcp")
}

async fn peer_status(base: &str, id: &str) -> Value {
    get(&format!("{base}/peers/{id}")).await.1["peer"]["status"].clone()
}

#[tokio::test]
async fn a_stateless_client_is_one_peer_from_connect_to_ack() {
    let server = common::start().await;
    let base = server.url();
    let mcp = client(&base, ProtocolVersion::V_2026_07_28).await;
    assert_eq!(
        mcp.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28),
        "the broker speaks the current protocol"
    );

    let (text, me, err) = call(&mcp, "connect", json!({"role": "backend"})).await;
    assert!(!err, "{text}");
    let id = me["peer"]["id"].as_str().expect("id").to_string();
    let key = me["peerKey"].as_str().expect("peerKey").to_string();
    assert!(
        text.contains("peer_key"),
        "the answer tells the model: {text}"
    );
    assert_eq!(me["peer"]["protected"], true);
    // The request is over, the peer is not.
    assert_eq!(peer_status(&base, &id).await, "online");

    let (text, who, _) = call(&mcp, "whoami", json!({"peer_key": key})).await;
    assert_eq!(who["registered"], true, "{text}");
    assert_eq!(who["peer"]["id"], json!(id));
    // Without the key a stateless caller is nobody, and says how to fix it.
    let (text, e, err) = call(&mcp, "wait_for_command", json!({"timeout_seconds": 0})).await;
    assert!(err && text.contains("peer_key"), "{text}");
    assert_eq!(reason(&e), "not_registered", "{text}");

    // Connecting again with the key is the same peer, not a new one.
    let (_, again, err) = call(&mcp, "connect", json!({"role": "backend", "peer_key": key})).await;
    assert!(!err);
    assert_eq!(again["peer"]["id"], json!(id));
    assert_eq!(again["peerKey"], json!(key));
    let (_, peers) = get(&format!("{base}/peers")).await;
    assert_eq!(peers["peers"].as_array().map(Vec::len), Some(1), "{peers}");

    // A command sent over REST reaches it; its ack reaches the sender.
    let (_, sent) = post(
        &format!("{base}/commands/send"),
        json!({"target": "backend", "action": "build", "params": {"n": 1}}),
    )
    .await;
    let cmd = sent["command"]["id"].as_str().expect("id").to_string();
    let (text, got, err) = call(
        &mcp,
        "wait_for_command",
        json!({"timeout_seconds": 10, "peer_key": key}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(got["command"]["id"], json!(cmd));
    assert_eq!(got["command"]["deliveredTo"], json!(id));
    assert_eq!(peer_status(&base, &id).await, "online");
    let (text, _, err) = call(
        &mcp,
        "ack_command",
        json!({"command_id": cmd, "result": {"ok": true}, "peer_key": key}),
    )
    .await;
    assert!(!err, "{text}");
    let (_, done) = get(&format!("{base}/commands/{cmd}/result?timeout=0")).await;
    assert_eq!(done["command"]["status"], "acked");
    assert_eq!(done["command"]["result"], json!({"ok": true}));

    // What it sends carries its name, never "anonymous".
    let (_, sent, err) = call(
        &mcp,
        "send_command",
        json!({"target": "frontend", "action": "reload", "peer_key": key}),
    )
    .await;
    assert!(!err);
    assert_eq!(sent["command"]["from"], "backend");
    assert_eq!(sent["command"]["origin"], json!(format!("peer:{id}")));
    let (_, m, _) = call(
        &mcp,
        "channel_send",
        json!({"channel": "log", "data": "hi", "peer_key": key}),
    )
    .await;
    assert_eq!(m["message"]["from"], json!(id));
    let (_, s, _) = call(
        &mcp,
        "emit_signal",
        json!({"name": "ready", "peer_key": key}),
    )
    .await;
    assert_eq!(s["signal"]["emittedBy"], json!(id));
    assert_eq!(peer_status(&base, &id).await, "online");
}

#[tokio::test]
async fn nobody_takes_a_protected_peer_by_its_id() {
    let server = common::start().await;
    let base = server.url();
    // The holder: a session-based client (2025-11-25) with a command in hand.
    let holder = client(&base, ProtocolVersion::V_2025_11_25).await;
    let (_, me, _) = call(&holder, "connect", json!({"role": "backend"})).await;
    let id = me["peer"]["id"].as_str().expect("id").to_string();
    let key = me["peerKey"].as_str().expect("peerKey").to_string();
    let (_, sent) = post(
        &format!("{base}/commands/send"),
        json!({"target": "backend", "action": "build"}),
    )
    .await;
    let cmd = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, got, _) = call(&holder, "wait_for_command", json!({"timeout_seconds": 10})).await;
    assert_eq!(got["command"]["id"], json!(cmd));

    // A stateless client follows connect's old advice: connect with the id.
    let thief = client(&base, ProtocolVersion::V_2026_07_28).await;
    let (text, e, err) = call(&thief, "connect", json!({"role": "backend", "id": id})).await;
    assert!(err, "refused: {text}");
    assert_eq!(reason(&e), "key_required", "{text}");
    let wrong = format!("{}x", &key[..key.len() - 1]);
    for (args, why) in [
        (
            json!({"command_id": cmd, "result": "forged"}),
            "key_required",
        ),
        (
            json!({"command_id": cmd, "result": "forged", "peer_key": wrong}),
            "wrong_key",
        ),
    ] {
        let (text, e, err) = call(&thief, "ack_command", args).await;
        assert!(err, "refused: {text}");
        assert_eq!(reason(&e), why, "{text}");
    }
    // The holder still holds it and its own ack (through its session) wins.
    let (_, c) = get(&format!("{base}/commands/{cmd}/result?timeout=0")).await;
    assert_eq!(c["command"]["status"], "delivered");
    assert_eq!(c["command"]["deliveredTo"], json!(id));
    let (text, _, err) = call(
        &holder,
        "ack_command",
        json!({"command_id": cmd, "result": "real"}),
    )
    .await;
    assert!(!err, "{text}");
    let (_, c) = get(&format!("{base}/commands/{cmd}/result?timeout=0")).await;
    assert_eq!(c["command"]["result"], "real");
}

/// One MCP client by hand, so a test can drop a response mid-stream:
/// stateless (`2026-07-28`, per-request metadata) or with a session
/// (`2025-11-25`, `initialize` then `Mcp-Session-Id`).
struct Raw {
    base: String,
    session: Option<String>,
    stateless: bool,
}

impl Raw {
    async fn open(base: &str, stateless: bool) -> Raw {
        let mut raw = Raw {
            base: base.to_string(),
            session: None,
            stateless,
        };
        if !stateless {
            let r = raw
                .post(
                    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "0"}
                    }}),
                )
                .await;
            raw.session = r
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            assert!(raw.session.is_some(), "initialize gives a session");
            drop(r.text().await);
            let r = raw
                .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await;
            assert!(r.status().is_success());
        }
        raw
    }

    async fn post(&self, mut body: Value) -> reqwest::Response {
        let mut rb = http()
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json, text/event-stream");
        if let Some(sid) = &self.session {
            rb = rb
                .header("mcp-session-id", sid)
                .header("mcp-protocol-version", "2025-11-25");
        }
        if self.stateless {
            rb = rb.header("mcp-protocol-version", "2026-07-28");
            if let Some(params) = body.get_mut("params").and_then(Value::as_object_mut) {
                params.insert(
                    "_meta".into(),
                    json!({
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {},
                        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
                    }),
                );
            }
            if let Some(name) = body["params"]["name"].as_str() {
                rb = rb.header("mcp-name", name);
            }
            if let Some(method) = body["method"].as_str() {
                rb = rb.header("mcp-method", method);
            }
        }
        rb.json(&body).send().await.expect("POST /mcp")
    }

    /// Calls a tool and reads its whole answer: (sentence, JSON).
    async fn call(&self, tool: &str, args: Value) -> (String, Value) {
        let r = self
            .post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": tool, "arguments": args}}))
            .await;
        let text = r.text().await.expect("body");
        let msg: Value = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("result").is_some())
            .or_else(|| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| panic!("no result in {text}"));
        let content = &msg["result"]["content"];
        let sentence = content[0]["text"].as_str().unwrap_or_default().to_string();
        let data = content[1]["text"]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null);
        (sentence, data)
    }

    /// Starts `wait_for_command` in a task; aborting the task closes the
    /// connection wherever the response is (before its headers, as a
    /// stateless answer waits for its first message, or mid-stream).
    fn start_wait(self: &std::sync::Arc<Self>, key: &str) -> tokio::task::JoinHandle<()> {
        let raw = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let r = raw
                .post(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                    "params": {"name": "wait_for_command",
                               "arguments": {"timeout_seconds": 30, "peer_key": key}}}))
                .await;
            let _ = r.text().await;
        })
    }
}

/// The case: a wait whose response stream closes without a
/// cancellation must not take the next command.
async fn abandoned_wait_takes_nothing(stateless: bool) {
    let server = common::start().await;
    let base = server.url();
    let raw = std::sync::Arc::new(Raw::open(&base, stateless).await);
    let (text, me) = raw.call("connect", json!({"role": "backend"})).await;
    let key = me["peerKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no peerKey: {text}"))
        .to_string();

    let waiting = raw.start_wait(&key);
    assert!(
        eventually(LIMIT, || async { server.broker.open_waiters() == 1 }).await,
        "the wait is parked"
    );
    waiting.abort(); // client timeout, proxy, crash: the stream closes
    assert!(
        eventually(LIMIT, || async { server.broker.open_waiters() == 0 }).await,
        "the abandoned wait ends"
    );

    let (_, sent) = post(
        &format!("{base}/commands/send"),
        json!({"target": "backend", "action": "build"}),
    )
    .await;
    let cmd = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, c) = get(&format!("{base}/commands/{cmd}/result?timeout=0")).await;
    assert_eq!(c["command"]["status"], "pending", "{c}");

    // The next real wait gets it, as a first delivery.
    let (text, got) = raw
        .call(
            "wait_for_command",
            json!({"timeout_seconds": 10, "peer_key": key}),
        )
        .await;
    assert_eq!(got["command"]["id"], json!(cmd), "{text}");
    assert_eq!(got["command"]["redelivered"], false);
}

#[tokio::test]
async fn a_session_wait_whose_stream_closed_takes_nothing() {
    abandoned_wait_takes_nothing(false).await;
}

#[tokio::test]
async fn a_stateless_wait_whose_stream_closed_takes_nothing() {
    abandoned_wait_takes_nothing(true).await;
}
