//! MCP over both HTTP transports, against a real broker: rmcp's Streamable
//! HTTP client on `/mcp`, and a hand-written client of the legacy HTTP+SSE
//! wire format on `/mcp/sse` + `/mcp/messages`.

mod common;

use common::mcp::{call, reason};
use common::{connect, eventually, get, http, post};
use futures::StreamExt;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::mpsc;

const TOOLS: [&str; 21] = [
    "ack_command",
    "answer_question",
    "ask_human",
    "channel_read",
    "channel_send",
    "check_paths",
    "claim_paths",
    "connect",
    "emit_signal",
    "get_answer",
    "get_command_result",
    "list_peers",
    "list_questions",
    "register",
    "release_paths",
    "reset",
    "send_command",
    "status",
    "wait_for_command",
    "wait_for_signal",
    "whoami",
];

/// A safety net so a broken test fails instead of hanging; never a timing claim.
const LIMIT: Duration = Duration::from_secs(20);

// ---- the Streamable HTTP client (rmcp) ----

#[derive(Clone, Default)]
struct Client {
    progress: Option<mpsc::UnboundedSender<ProgressNotificationParam>>,
}

impl ClientHandler for Client {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(params);
        }
    }
}

type Mcp = RunningService<RoleClient, Client>;

async fn streamable_with(base: &str, headers: &[(&'static str, &str)], client: Client) -> Mcp {
    let mut h = HashMap::new();
    for (k, v) in headers {
        h.insert(
            reqwest::header::HeaderName::from_static(k),
            reqwest::header::HeaderValue::from_str(v).expect("header value"),
        );
    }
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).custom_headers(h);
    let transport = StreamableHttpClientTransport::from_config(config);
    client
        .serve(transport)
        .await
        .expect("MCP initialize over /mcp")
}

async fn streamable(base: &str) -> Mcp {
    streamable_with(base, &[], Client::default()).await
}

// ---- the legacy HTTP+SSE client (by hand, following the wire format) ----

struct Legacy {
    base: String,
    token: Option<String>,
    endpoint: String,
    events: mpsc::UnboundedReceiver<(String, String)>,
    /// Notifications seen while waiting for responses.
    notifications: Vec<Value>,
    reader: tokio::task::JoinHandle<()>,
    next_id: u64,
}

impl Drop for Legacy {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Legacy {
    async fn open(base: &str, token: Option<&str>) -> Legacy {
        let mut req = http()
            .get(format!("{base}/mcp/sse"))
            .header("accept", "text/event-stream");
        if let Some(t) = token {
            req = req.header("x-cipc-token", t);
        }
        let resp = req.send().await.expect("GET /mcp/sse");
        assert_eq!(resp.status(), 200);
        assert!(resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .starts_with("text/event-stream"));
        let (tx, mut events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut event = "message".to_string();
                    let mut data = Vec::new();
                    let mut comment = true;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_string();
                            comment = false;
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                            comment = false;
                        }
                    }
                    if !comment && tx.send((event, data.join("\n"))).is_err() {
                        return;
                    }
                }
            }
        });
        let (event, data) = tokio::time::timeout(LIMIT, events.recv())
            .await
            .expect("endpoint event in time")
            .expect("stream open");
        assert_eq!(event, "endpoint", "the first event names the POST endpoint");
        let sid = data
            .strip_prefix("/mcp/messages?sessionId=")
            .unwrap_or_else(|| panic!("endpoint data {data:?}"));
        assert!(sid.len() >= 16 && sid.chars().all(|c| c.is_ascii_alphanumeric()));
        Legacy {
            base: base.to_string(),
            token: token.map(str::to_string),
            endpoint: data,
            events,
            notifications: Vec::new(),
            reader,
            next_id: 1,
        }
    }

    async fn send(&self, msg: Value) {
        let mut req = http()
            .post(format!("{}{}", self.base, self.endpoint))
            .json(&msg);
        if let Some(t) = &self.token {
            req = req.header("x-cipc-token", t);
        }
        let r = req.send().await.expect("POST /mcp/messages");
        assert_eq!(r.status(), 202, "POSTs are answered 202 Accepted");
    }

    /// Sends a request and returns its response's `result` (or the error object).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response(id).await
    }

    async fn response(&mut self, id: u64) -> Value {
        loop {
            let (event, data) = tokio::time::timeout(LIMIT, self.events.recv())
                .await
                .expect("a response in time")
                .expect("stream open");
            assert_eq!(event, "message", "responses come as `event: message`");
            let v: Value = serde_json::from_str(&data).expect("JSON-RPC on the stream");
            if v["id"] == json!(id) {
                return if v.get("error").is_some() {
                    v["error"].clone()
                } else {
                    v["result"].clone()
                };
            }
            self.notifications.push(v);
        }
    }

    async fn initialize(&mut self) -> Value {
        let r = self
            .request(
                "initialize",
                json!({"protocolVersion": "2024-11-05", "capabilities": {},
                       "clientInfo": {"name": "legacy-test", "version": "0"}}),
            )
            .await;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        r
    }

    async fn call(&mut self, tool: &str, args: Value) -> (String, Value, bool) {
        let r = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        legacy_parse(&r)
    }
}

fn legacy_parse(r: &Value) -> (String, Value, bool) {
    let text = |i: usize| {
        r["content"][i]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let json = serde_json::from_str(&text(1)).unwrap_or(Value::Null);
    (text(0), json, r["isError"] == json!(true))
}

async fn legacy(base: &str) -> Legacy {
    let mut l = Legacy::open(base, None).await;
    l.initialize().await;
    l
}

async fn command(base: &str, id: &str) -> Value {
    let (s, b) = get(&format!("{base}/commands?limit=1000")).await;
    assert_eq!(s, 200);
    b["commands"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == json!(id)).cloned())
        .unwrap_or(Value::Null)
}

async fn peer(base: &str, id: &str) -> Value {
    get(&format!("{base}/peers/{id}")).await.1["peer"].clone()
}

// ---- tests ----

#[tokio::test]
async fn streamable_initialize_and_list_tools() {
    let server = common::start().await;
    let client = streamable(&server.url()).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("cipc")
    );
    assert!(info
        .instructions
        .as_deref()
        .unwrap_or_default()
        .contains("wait_for_command"));
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        names,
        TOOLS.iter().map(std::string::ToString::to_string).collect()
    );
    for t in &tools {
        let d = t.description.as_deref().unwrap_or_default();
        assert!(d.len() > 30, "{} needs a real description", t.name);
        assert_eq!(
            t.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            t.name
        );
    }
    let send = tools
        .iter()
        .find(|t| t.name == "send_command")
        .expect("send_command");
    let props = send.input_schema.get("properties").expect("properties");
    for arg in [
        "target",
        "action",
        "params",
        "wait",
        "timeout_seconds",
        "deadline_seconds",
    ] {
        assert!(props.get(arg).is_some(), "send_command has {arg}");
    }
    let ask = tools
        .iter()
        .find(|t| t.name == "ask_human")
        .expect("ask_human");
    let props = ask.input_schema.get("properties").expect("properties");
    for arg in [
        "text",
        "choices",
        "context",
        "timeout_seconds",
        "ttl_seconds",
    ] {
        assert!(props.get(arg).is_some(), "ask_human has {arg}");
    }
    assert!(
        ask.description
            .as_deref()
            .unwrap_or_default()
            .contains("get_answer"),
        "ask_human says how to keep waiting"
    );
    assert!(info
        .instructions
        .as_deref()
        .unwrap_or_default()
        .contains("ask_human"));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn legacy_sse_initialize_and_list_tools() {
    let server = common::start().await;
    let mut l = Legacy::open(&server.url(), None).await;
    let init = l.initialize().await;
    assert_eq!(init["protocolVersion"], "2024-11-05");
    assert_eq!(init["serverInfo"]["name"], "cipc");
    assert!(init["capabilities"]["tools"].is_object());
    assert!(init["instructions"]
        .as_str()
        .unwrap_or_default()
        .contains("connect"));
    let list = l.request("tools/list", json!({})).await;
    let tools = list["tools"].as_array().expect("tools");
    let names: BTreeSet<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, TOOLS.into_iter().collect());
    for t in tools {
        assert!(t["description"].as_str().unwrap_or_default().len() > 30);
        assert_eq!(t["inputSchema"]["type"], "object");
    }

    // A POST for an unknown session, or with a body that is not JSON-RPC.
    let (s, b) = post(
        &format!("{}/mcp/messages?sessionId=nope", server.url()),
        json!({}),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = post(
        &format!("{}{}", server.url(), l.endpoint),
        json!({"hello": 1}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("JSON-RPC"));
}

#[tokio::test]
async fn connect_binds_the_session_to_its_peer() {
    let server = common::start().await;
    let base = server.url();
    let rest_peer = connect(&base, "frontend").await;
    let client = streamable(&base).await;

    let (text, _, err) = call(&client, "whoami", json!({})).await;
    assert!(!err && text.contains("not registered"), "{text}");

    // Without a role: who is online, and a request to pick a role.
    let (text, online, err) = call(&client, "connect", json!({})).await;
    assert!(!err);
    assert!(text.contains("role"), "{text}");
    assert_eq!(online["roles"], json!(["frontend"]));

    let (text, body, err) = call(
        &client,
        "connect",
        json!({"role": "backend", "capabilities": ["rust"], "name": "be-1"}),
    )
    .await;
    assert!(!err, "{text}");
    let id = body["peer"]["id"].as_str().expect("peer id").to_string();
    assert_eq!(body["peer"]["via"], "mcp");

    let (_, me, _) = call(&client, "whoami", json!({})).await;
    assert_eq!(me["peer"]["id"], json!(id));
    assert_eq!(me["peer"]["role"], "backend");

    let (_, peers) = get(&format!("{base}/peers")).await;
    let p = peers["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == json!(id)))
        .expect("the MCP peer in GET /peers")
        .clone();
    assert_eq!(p["via"], "mcp");
    assert_eq!(p["status"], "online");
    assert_eq!(p["capabilities"], json!(["rust"]));

    let (_, listed, _) = call(&client, "list_peers", json!({})).await;
    let roles: BTreeSet<&str> = listed["roles"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(roles, ["backend", "frontend"].into_iter().collect());
    assert!(!rest_peer.is_empty());

    // Registering again changes the role of the same peer.
    let (_, again, err) = call(&client, "register", json!({"role": "backend-2"})).await;
    assert!(!err);
    assert_eq!(again["peer"]["id"], json!(id));
    assert_eq!(again["peer"]["role"], "backend-2");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn command_round_trip_between_two_mcp_sessions() {
    let server = common::start().await;
    let base = server.url();
    // The orchestrator on Streamable HTTP, the worker on legacy SSE.
    let boss = streamable(&base).await;
    call(&boss, "connect", json!({"role": "orchestrator"})).await;
    let mut worker = legacy(&base).await;
    let (_, reg, err) = worker.call("connect", json!({"role": "backend"})).await;
    assert!(!err);
    let worker_id = reg["peer"]["id"].as_str().expect("id").to_string();

    let sender = tokio::spawn(async move {
        let r = call(
            &boss,
            "send_command",
            json!({"target": "backend", "action": "start-server", "params": {"port": 8080},
                   "wait": true, "timeout_seconds": 60}),
        )
        .await;
        boss.cancel().await.expect("close");
        r
    });

    let (text, got, err) = worker
        .call("wait_for_command", json!({"timeout_seconds": 60}))
        .await;
    assert!(!err, "{text}");
    assert!(text.contains("ack_command"), "{text}");
    let cmd = &got["command"];
    assert_eq!(cmd["action"], "start-server");
    assert_eq!(cmd["params"], json!({"port": 8080}));
    assert_eq!(cmd["from"], "orchestrator");
    assert_eq!(cmd["deliveredTo"], json!(worker_id));
    let cid = cmd["id"].as_str().expect("id").to_string();

    let (_, acked, err) = worker
        .call(
            "ack_command",
            json!({"command_id": cid, "result": {"url": "http://localhost:8080"}}),
        )
        .await;
    assert!(!err);
    assert_eq!(acked["command"]["status"], "acked");

    let (text, done, err) = tokio::time::timeout(LIMIT, sender)
        .await
        .expect("the sender's wait ends")
        .expect("task");
    assert!(!err, "{text}");
    assert_eq!(done["command"]["status"], "acked");
    assert_eq!(
        done["command"]["result"],
        json!({"url": "http://localhost:8080"})
    );

    // Acking twice is a tool error with a sentence, not a protocol error.
    let (text, e, err) = worker.call("ack_command", json!({"command_id": cid})).await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "already_finished", "{text}");
}

#[tokio::test]
async fn command_round_trip_between_mcp_and_rest() {
    let server = common::start().await;
    let base = server.url();
    let client = streamable(&base).await;
    call(&client, "connect", json!({"role": "backend"})).await;

    // REST -> MCP.
    let (s, sent) = post(
        &format!("{base}/commands/send"),
        json!({"from": "script", "target": "backend", "action": "build"}),
    )
    .await;
    assert_eq!(s, 201, "{sent}");
    let cid = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, got, _) = call(&client, "wait_for_command", json!({"timeout_seconds": 30})).await;
    assert_eq!(got["command"]["id"], json!(cid));
    call(
        &client,
        "ack_command",
        json!({"command_id": cid, "error": "compiler crashed"}),
    )
    .await;
    let (_, r) = get(&format!("{base}/commands/{cid}/result?timeout=5000")).await;
    assert_eq!(r["command"]["status"], "failed");
    assert_eq!(r["command"]["error"], "compiler crashed");

    // MCP -> REST.
    let rest = connect(&base, "tester").await;
    let (text, sent, err) = call(
        &client,
        "send_command",
        json!({"target": "tester", "action": "run-tests"}),
    )
    .await;
    assert!(!err && text.contains("get_command_result"), "{text}");
    assert_eq!(sent["command"]["from"], "backend");
    let cid = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, w) = get(&format!("{base}/commands/{rest}/wait?timeout=5000")).await;
    assert_eq!(w["command"]["id"], json!(cid));
    let (s, _) = post(
        &format!("{base}/commands/{cid}/ack"),
        json!({"result": {"passed": 12}}),
    )
    .await;
    assert_eq!(s, 200);
    let (text, res, err) = call(
        &client,
        "get_command_result",
        json!({"command_id": cid, "timeout_seconds": 30}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(res["command"]["result"], json!({"passed": 12}));

    // A wait that times out is a normal result that says to call again.
    let (text, res, err) = call(&client, "wait_for_command", json!({"timeout_seconds": 0})).await;
    assert!(!err);
    assert_eq!(res["timedOut"], true);
    assert!(text.contains("again"), "{text}");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn signals_and_channels() {
    let server = common::start().await;
    let base = server.url();
    let client = streamable(&base).await;
    let (_, me, _) = call(&client, "connect", json!({"role": "watcher"})).await;
    let my_id = me["peer"]["id"].as_str().expect("id").to_string();

    // wait_for_signal released by a REST emit.
    let b = base.clone();
    let waiter = tokio::spawn(async move {
        let r = call(
            &client,
            "wait_for_signal",
            json!({"name": "server-ready", "timeout_seconds": 60}),
        )
        .await;
        (client, r)
    });
    // The waiter is parked once the broker counts its wait.
    assert!(eventually(LIMIT, || async { server.broker.open_waiters() >= 1 }).await);
    let (s, _) = post(
        &format!("{b}/signals/server-ready"),
        json!({"data": {"port": 8080}}),
    )
    .await;
    assert_eq!(s, 200);
    let (client, (text, sig, err)) = tokio::time::timeout(LIMIT, waiter)
        .await
        .expect("released")
        .expect("task");
    assert!(!err, "{text}");
    assert_eq!(sig["signal"]["data"], json!({"port": 8080}));
    assert_eq!(sig["signal"]["count"], 1);

    // emit_signal from MCP, seen over REST; a later wait with after=count times out.
    let (_, emitted, _) = call(
        &client,
        "emit_signal",
        json!({"name": "deployed", "data": "v2"}),
    )
    .await;
    assert_eq!(emitted["signal"]["emittedBy"], json!(my_id));
    let (_, s) = get(&format!("{base}/signals/deployed")).await;
    assert_eq!(s["signal"]["emitted"], true);
    let (text, w, err) = call(
        &client,
        "wait_for_signal",
        json!({"name": "deployed", "after": 1, "timeout_seconds": 0}),
    )
    .await;
    assert!(
        !err && w["timedOut"] == json!(true) && text.contains("again"),
        "{text}"
    );

    // Channels: MCP and REST writers, read by since.
    let (_, m1, _) = call(
        &client,
        "channel_send",
        json!({"channel": "build-log", "data": {"text": "start"}}),
    )
    .await;
    assert_eq!(m1["message"]["seq"], 1);
    let (s, _) = post(
        &format!("{base}/channels/build-log/send"),
        json!({"text": "done"}),
    )
    .await;
    assert_eq!(s, 201);
    let (_, all, _) = call(&client, "channel_read", json!({"channel": "build-log"})).await;
    assert_eq!(all["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(all["lastSeq"], 2);
    let (_, newer, _) = call(
        &client,
        "channel_read",
        json!({"channel": "build-log", "since": 1}),
    )
    .await;
    assert_eq!(newer["messages"][0]["data"], json!({"text": "done"}));
    let (_, rest_view) = get(&format!("{base}/channels/build-log/messages?since=0")).await;
    assert_eq!(rest_view["messages"][0]["from"], json!(my_id));
    let (text, none, err) = call(
        &client,
        "channel_read",
        json!({"channel": "build-log", "since": 2, "timeout_seconds": 0}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(none["messages"], json!([]));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn blocking_tools_send_progress_while_they_wait() {
    // A broker with a short progress interval.
    let server = cipc::server::ServerConfig {
        mcp_progress_every: Duration::from_millis(100),
        ..Default::default()
    };
    let broker = common::start_with(Default::default(), server, None).await;
    let base = broker.url();

    // Streamable HTTP: rmcp's client always sends a progress token.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = streamable_with(&base, &[], Client { progress: Some(tx) }).await;
    let waiter = tokio::spawn(async move {
        let r = call(
            &client,
            "wait_for_signal",
            json!({"name": "go", "timeout_seconds": 600}),
        )
        .await;
        client.cancel().await.expect("close");
        r
    });
    let mut last = -1.0;
    for _ in 0..3 {
        let p = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("progress in time")
            .expect("open");
        assert!(p.progress > last, "progress only grows");
        assert_eq!(p.total, Some(600.0));
        assert!(p.message.as_deref().unwrap_or_default().contains("signal"));
        last = p.progress;
    }
    let (s, _) = post(&format!("{base}/signals/go"), json!({})).await;
    assert_eq!(s, 200);
    let (text, sig, err) = tokio::time::timeout(LIMIT, waiter)
        .await
        .expect("done")
        .expect("task");
    assert!(!err, "{text}");
    assert_eq!(sig["signal"]["emitted"], true);

    // Legacy SSE: progress arrives as notifications/progress on the stream.
    let mut l = legacy(&base).await;
    l.call("connect", json!({"role": "worker"})).await;
    let id = l.next_id;
    l.next_id += 1;
    l.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                  "params": {"name": "wait_for_command", "arguments": {"timeout_seconds": 600},
                             "_meta": {"progressToken": "tok-1"}}}))
        .await;
    let mut seen = 0;
    while seen < 2 {
        let (_, data) = tokio::time::timeout(LIMIT, l.events.recv())
            .await
            .expect("event")
            .expect("open");
        let v: Value = serde_json::from_str(&data).expect("json");
        if v["method"] == "notifications/progress" {
            assert_eq!(v["params"]["progressToken"], "tok-1");
            seen += 1;
        }
    }
    let (s, _) = post(
        &format!("{base}/commands/send"),
        json!({"target": "worker", "action": "ping"}),
    )
    .await;
    assert_eq!(s, 201);
    let r = l.response(id).await;
    let (_, got, err) = legacy_parse(&r);
    assert!(!err);
    assert_eq!(got["command"]["action"], "ping");
    drop(l);
    broker.stop().await;
}

#[tokio::test]
async fn cancelled_wait_returns_and_takes_nothing() {
    let server = common::start().await;
    let base = server.url();
    let mut l = legacy(&base).await;
    l.call("connect", json!({"role": "worker"})).await;
    let streams = server.broker.open_waiters();
    let id = l.next_id;
    l.next_id += 1;
    l.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                  "params": {"name": "wait_for_command", "arguments": {"timeout_seconds": 600}}}))
        .await;
    assert!(eventually(LIMIT, || async { server.broker.open_waiters() > streams }).await);
    l.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                  "params": {"requestId": id, "reason": "user pressed Esc"}}),
    )
    .await;
    // The parked wait lets go of its slot once cancelled.
    assert!(eventually(LIMIT, || async { server.broker.open_waiters() == streams }).await);
    let (_, sent) = post(
        &format!("{base}/commands/send"),
        json!({"target": "worker", "action": "x"}),
    )
    .await;
    let cid = sent["command"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        command(&base, &cid).await["status"],
        "pending",
        "a cancelled wait takes nothing"
    );
    let (_, got, _) = l
        .call("wait_for_command", json!({"timeout_seconds": 30}))
        .await;
    assert_eq!(got["command"]["id"], json!(cid));
    assert_eq!(got["command"]["attempt"], 1);
}

#[tokio::test]
async fn deleting_a_streamable_session_requeues_its_commands() {
    let server = common::start().await;
    let base = server.url();
    let client = streamable(&base).await;
    let (_, me, _) = call(&client, "connect", json!({"role": "backend"})).await;
    let pid = me["peer"]["id"].as_str().expect("id").to_string();
    let (_, sent) = post(
        &format!("{base}/commands/send"),
        json!({"target": "backend", "action": "migrate"}),
    )
    .await;
    let cid = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, got, _) = call(&client, "wait_for_command", json!({"timeout_seconds": 30})).await;
    assert_eq!(got["command"]["id"], json!(cid));
    assert_eq!(command(&base, &cid).await["status"], "delivered");

    // rmcp's client ends its session with DELETE /mcp.
    client.cancel().await.expect("close");
    assert!(
        eventually(LIMIT, || async {
            command(&base, &cid).await["status"] == "pending"
        })
        .await
    );
    let c = command(&base, &cid).await;
    assert_eq!(c["redelivered"], true);
    assert_eq!(peer(&base, &pid).await["status"], "offline");

    // A new session with the same role picks it up.
    let again = streamable(&base).await;
    call(&again, "connect", json!({"role": "backend"})).await;
    let (_, got, _) = call(&again, "wait_for_command", json!({"timeout_seconds": 30})).await;
    assert_eq!(got["command"]["id"], json!(cid));
    assert_eq!(got["command"]["redelivered"], true);
    again.cancel().await.expect("close");
}

#[tokio::test]
async fn closing_the_legacy_stream_requeues_and_reopening_picks_up() {
    let server = common::start().await;
    let base = server.url();
    let mut l = legacy(&base).await;
    let (_, me, _) = l.call("connect", json!({"role": "linux-client"})).await;
    let pid = me["peer"]["id"].as_str().expect("id").to_string();
    let key = me["peerKey"].as_str().expect("peerKey").to_string();
    let (_, sent) = post(
        &format!("{base}/commands/send"),
        json!({"target": "linux-client", "action": "apt-update"}),
    )
    .await;
    let cid = sent["command"]["id"].as_str().expect("id").to_string();
    l.call("wait_for_command", json!({"timeout_seconds": 30}))
        .await;
    assert_eq!(command(&base, &cid).await["status"], "delivered");
    assert_eq!(peer(&base, &pid).await["status"], "online");
    let endpoint = format!("{base}{}", l.endpoint);

    drop(l); // the client goes away: its stream closes
    assert!(
        eventually(LIMIT, || async {
            command(&base, &cid).await["status"] == "pending"
        })
        .await
    );
    assert!(
        eventually(LIMIT, || async {
            peer(&base, &pid).await["status"] == "offline"
        })
        .await
    );
    let (s, _) = post(
        &endpoint,
        json!({"jsonrpc": "2.0", "method": "ping", "id": 1}),
    )
    .await;
    assert_eq!(s, 404, "the old session is gone");

    // Re-opening is a new session; registering as the same peer (by id,
    // proven with its key) continues where the old one left off.
    let mut l = legacy(&base).await;
    let (text, e, err) = l
        .call("connect", json!({"role": "linux-client", "id": pid}))
        .await;
    assert!(err, "a protected peer's id alone is not enough: {text}");
    assert_eq!(reason(&e), "key_required", "{text}");
    let (_, me2, err) = l
        .call(
            "connect",
            json!({"role": "linux-client", "id": pid, "peer_key": key}),
        )
        .await;
    assert!(!err);
    assert_eq!(me2["peer"]["id"], json!(pid));
    assert_eq!(me2["pendingCommands"], 1);
    let (_, got, _) = l
        .call("wait_for_command", json!({"timeout_seconds": 30}))
        .await;
    assert_eq!(got["command"]["id"], json!(cid));
    assert_eq!(got["command"]["attempt"], 2);
}

#[tokio::test]
async fn tool_errors_are_results_with_a_sentence() {
    let server = common::start().await;
    let client = streamable(&server.url()).await;
    // The sentence says what to do (connect); the reason says what failed.
    let (text, e, err) = call(&client, "wait_for_command", json!({})).await;
    assert!(err && text.contains("connect"), "{text}");
    assert_eq!(reason(&e), "not_registered", "{text}");
    assert_eq!(
        e["error"]["code"], "bad_request",
        "the REST class beside the reason"
    );
    let (text, e, err) = call(&client, "ack_command", json!({"command_id": "nope"})).await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "unknown_command", "{text}");
    // Arguments that miss the schema name the tool to call again.
    let (text, e, err) = call(&client, "send_command", json!({"target": "backend"})).await;
    assert!(
        err && text.contains("send_command") && text.contains("action"),
        "{text}"
    );
    assert_eq!(reason(&e), "invalid_body", "{text}");
    let (text, e, err) = call(&client, "connect", json!({"role": "has space"})).await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "invalid_name", "{text}");
    let (text, e, err) = call(
        &client,
        "get_command_result",
        json!({"command_id": "0190a8c2-0000-7000-8000-000000000000", "timeout_seconds": 0}),
    )
    .await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "unknown_command", "{text}");
    // The sentence must say how to confirm.
    let (text, e, err) = call(&client, "reset", json!({"confirm": false})).await;
    assert!(err && text.contains("confirm"), "{text}");
    assert_eq!(reason(&e), "confirm_required", "{text}");

    // After a reset the session must register again.
    call(&client, "connect", json!({"role": "a"})).await;
    let (_, _, err) = call(&client, "reset", json!({"confirm": true})).await;
    assert!(!err);
    let (text, e, err) = call(&client, "wait_for_command", json!({"timeout_seconds": 0})).await;
    assert!(err && text.contains("connect"), "{text}");
    assert_eq!(reason(&e), "not_registered", "{text}");
    let (_, st, err) = call(&client, "status", json!({})).await;
    assert!(!err);
    assert_eq!(st["peers"], json!([]));
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn mcp_routes_need_the_token() {
    let server = common::start_with_token("sekrit").await;
    let base = server.url();

    // No token: 403 without WWW-Authenticate on every MCP route.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let checks = [
        http()
            .post(format!("{base}/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&init),
        http().get(format!("{base}/mcp/sse")),
        http()
            .post(format!("{base}/mcp/messages?sessionId=x"))
            .json(&init),
        http()
            .post(format!("{base}/mcp"))
            .header("authorization", "Bearer wrong")
            .json(&init),
    ];
    for req in checks {
        let r = req.send().await.expect("send");
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("www-authenticate").is_none());
    }
    let r = http()
        .get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);

    // X-Cipc-Token on Streamable HTTP (as .mcp.json "headers" sends it).
    let client = streamable_with(&base, &[("x-cipc-token", "sekrit")], Client::default()).await;
    let (_, me, err) = call(&client, "connect", json!({"role": "secure"})).await;
    assert!(!err);
    assert_eq!(me["peer"]["via"], "mcp");
    client.cancel().await.expect("close");

    // Authorization: Bearer works too.
    let client = streamable_with(
        &base,
        &[("authorization", "Bearer sekrit")],
        Client::default(),
    )
    .await;
    assert_eq!(
        client.list_all_tools().await.expect("tools").len(),
        TOOLS.len()
    );
    client.cancel().await.expect("close");

    // Legacy SSE with the token header.
    let mut l = Legacy::open(&base, Some("sekrit")).await;
    l.initialize().await;
    let (_, me, err) = l.call("whoami", json!({})).await;
    assert!(!err);
    assert_eq!(me["registered"], false);
}

#[tokio::test]
async fn an_idle_streamable_session_ends_with_its_peer_but_not_during_a_wait() {
    use cipc::broker::BrokerConfig;
    use cipc::server::ServerConfig;
    // Sessions end after the broker's offline limit without traffic. The
    // limit (3 s) is several times what a loaded machine needs between the
    // wait's end and the next call.
    let config = BrokerConfig {
        stale_after: Duration::from_secs(1),
        offline_after: Duration::from_secs(3),
        sweep_interval: Duration::from_millis(50),
        ..BrokerConfig::default()
    };
    let server = common::start_with(config, ServerConfig::default(), None).await;
    let base = server.url();
    let client = streamable(&base).await;
    let (_, me, _) = call(&client, "connect", json!({"role": "sleepy"})).await;
    let pid = me["peer"]["id"].as_str().expect("id").to_string();
    let key = me["peerKey"].as_str().expect("peerKey").to_string();

    // A wait longer than the idle limit is not cut short: it is traffic.
    let (text, w, err) = call(&client, "wait_for_command", json!({"timeout_seconds": 4})).await;
    assert!(!err && w["timedOut"] == json!(true), "{text}");
    let (_, me, _) = call(&client, "whoami", json!({})).await;
    assert_eq!(me["registered"], true);

    // Then silence. REST requests naming the peer keep it fresh, so only the
    // session ending (an explicit disconnect) can make it offline.
    let url = format!("{base}/peers/{pid}");
    let offline = eventually(Duration::from_secs(30), || async {
        let r = http()
            .get(&url)
            .header("x-cipc-peer", &pid)
            .header("x-cipc-peer-key", &key)
            .send()
            .await
            .expect("get");
        let b: Value = r.json().await.unwrap_or(Value::Null);
        b["peer"]["status"] == "offline"
    })
    .await;
    assert!(offline, "the idle session disconnected its peer");
    drop(client);
}

// ---- questions and deadlines ----

/// The open questions, over REST.
async fn open_questions(base: &str) -> Vec<Value> {
    let (s, b) = get(&format!("{base}/questions?status=open")).await;
    assert_eq!(s, 200, "{b}");
    b["questions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn ask_human_waits_for_an_answer_given_over_rest() {
    let broker = common::start_with(
        Default::default(),
        cipc::server::ServerConfig {
            mcp_progress_every: Duration::from_millis(100),
            ..Default::default()
        },
        None,
    )
    .await;
    let base = broker.url();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = streamable_with(&base, &[], Client { progress: Some(tx) }).await;
    let (_, me, _) = call(&client, "connect", json!({"role": "planner"})).await;
    let key = me["peerKey"].as_str().expect("peerKey").to_string();

    let asker = tokio::spawn(async move {
        let r = call(
            &client,
            "ask_human",
            json!({"text": "Deploy v2 to production?", "choices": ["yes", "no"],
                   "context": {"diff": "3 files"}, "timeout_seconds": 600, "peer_key": key}),
        )
        .await;
        client.cancel().await.expect("close");
        r
    });
    // It waits with progress, like the other waiting tools.
    let p = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("progress in time")
        .expect("open");
    assert_eq!(p.total, Some(600.0));
    assert!(
        p.message
            .as_deref()
            .unwrap_or_default()
            .contains("question"),
        "{p:?}"
    );
    // The question is open, asked by the caller's role.
    assert!(eventually(LIMIT, || async { !open_questions(&base).await.is_empty() }).await);
    let open = open_questions(&base).await;
    let q = &open[0];
    assert_eq!(q["from"], "planner");
    assert_eq!(q["choices"], json!(["yes", "no"]));
    assert_eq!(q["context"], json!({"diff": "3 files"}));
    let qid = q["id"].as_str().expect("id").to_string();

    let (s, b) = post(
        &format!("{base}/questions/{qid}/answer"),
        json!({"answer": "yes", "by": "alice"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (text, got, err) = tokio::time::timeout(LIMIT, asker)
        .await
        .expect("the wait ends")
        .expect("task");
    assert!(!err, "{text}");
    assert!(text.starts_with("The person answered: yes"), "{text}");
    assert_eq!(got["question"]["id"], json!(qid));
    assert_eq!(got["question"]["answer"], "yes");
    assert_eq!(got["question"]["answeredBy"], "alice");
    broker.stop().await;
}

#[tokio::test]
async fn answer_question_enforces_choices_and_answers_once() {
    let server = common::start().await;
    let base = server.url();
    let asker = streamable(&base).await;
    call(&asker, "connect", json!({"role": "frontend"})).await;
    // timeout_seconds 0 asks without waiting.
    let (text, asked, err) = call(
        &asker,
        "ask_human",
        json!({"text": "Which database?", "choices": ["postgres", "sqlite"], "timeout_seconds": 0}),
    )
    .await;
    assert!(!err, "{text}");
    assert!(
        text.contains("still open") && text.contains("get_answer"),
        "{text}"
    );
    let qid = asked["question"]["id"].as_str().expect("id").to_string();
    assert!(text.contains(&qid), "{text}");

    // Another session lists it and answers it, over legacy SSE.
    let mut other = legacy(&base).await;
    other.call("connect", json!({"role": "backend"})).await;
    let (text, listed, err) = other
        .call("list_questions", json!({"status": "open"}))
        .await;
    assert!(!err && text.contains("answer_question"), "{text}");
    assert_eq!(listed["questions"][0]["id"], json!(qid));
    let (text, e, err) = other
        .call("list_questions", json!({"status": "maybe"}))
        .await;
    assert!(
        err && text.contains("open"),
        "the statuses are listed: {text}"
    );
    assert_eq!(reason(&e), "invalid_query", "{text}");

    let (text, e, err) = other
        .call(
            "answer_question",
            json!({"question_id": qid, "answer": "mysql"}),
        )
        .await;
    assert!(err, "an answer that is not a choice is refused: {text}");
    assert_eq!(reason(&e), "invalid_choice", "{text}");
    assert!(
        text.contains("not one of the choices")
            && text.contains("postgres")
            && text.contains("sqlite"),
        "{text}"
    );
    let (text, done, err) = other
        .call(
            "answer_question",
            json!({"question_id": qid, "answer": "sqlite"}),
        )
        .await;
    assert!(!err, "{text}");
    assert_eq!(done["question"]["answeredBy"], "backend");
    let (text, e, err) = other
        .call(
            "answer_question",
            json!({"question_id": qid, "answer": "postgres"}),
        )
        .await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "already_finished", "{text}");
    let (text, _, err) = other
        .call(
            "answer_question",
            json!({"question_id": "nope", "answer": "x"}),
        )
        .await;
    assert!(err && text.contains("question id"), "{text}");

    // The asker looks (timeout 0) and finds the answer.
    let (text, got, err) = call(
        &asker,
        "get_answer",
        json!({"question_id": qid, "timeout_seconds": 0}),
    )
    .await;
    assert!(!err, "{text}");
    assert!(text.starts_with("The person answered: sqlite"), "{text}");
    assert_eq!(got["question"]["status"], "answered");
    asker.cancel().await.expect("close");
}

#[tokio::test]
async fn an_unanswered_ask_stays_open_and_get_answer_finds_the_answer() {
    let server = common::start().await;
    let base = server.url();
    let mut l = legacy(&base).await;
    l.call("connect", json!({"role": "reviewer"})).await;

    // Nobody answers within the second: the question stays open.
    let (text, asked, err) = l
        .call(
            "ask_human",
            json!({"text": "Merge the refactor?", "timeout_seconds": 1}),
        )
        .await;
    assert!(!err, "{text}");
    let qid = asked["question"]["id"].as_str().expect("id").to_string();
    assert_eq!(asked["question"]["status"], "open");
    assert_eq!(asked["timedOut"], true);
    assert!(
        text.contains("still open") && text.contains("get_answer") && text.contains(&qid),
        "{text}"
    );

    // Answered meanwhile (free text); get_answer returns it.
    let (s, b) = post(
        &format!("{base}/questions/{qid}/answer"),
        json!({"answer": "yes, after CI is green"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (text, got, err) = l
        .call(
            "get_answer",
            json!({"question_id": qid, "timeout_seconds": 30}),
        )
        .await;
    assert!(!err, "{text}");
    assert!(
        text.starts_with("The person answered: yes, after CI is green"),
        "{text}"
    );
    assert_eq!(got["question"]["answer"], "yes, after CI is green");

    // A question withdrawn while get_answer waits says so.
    let (_, asked, _) = l
        .call(
            "ask_human",
            json!({"text": "Rename the crate?", "timeout_seconds": 0}),
        )
        .await;
    let qid = asked["question"]["id"].as_str().expect("id").to_string();
    let id = l.next_id;
    l.next_id += 1;
    let streams = server.broker.open_waiters();
    l.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                  "params": {"name": "get_answer",
                             "arguments": {"question_id": qid, "timeout_seconds": 600}}}))
        .await;
    assert!(eventually(LIMIT, || async { server.broker.open_waiters() > streams }).await);
    let (s, _) = common::delete(&format!("{base}/questions/{qid}")).await;
    assert_eq!(s, 200);
    let (text, got, err) = legacy_parse(&l.response(id).await);
    assert!(!err && text.contains("cancelled"), "{text}");
    assert_eq!(got["question"]["status"], "cancelled");
}

#[tokio::test]
async fn a_missed_deadline_ends_the_wait_and_says_so() {
    use cipc::broker::BrokerConfig;
    // The sweeper marks overdue commands and expires questions; run it often.
    let config = BrokerConfig {
        sweep_interval: Duration::from_millis(50),
        ..BrokerConfig::default()
    };
    let server = common::start_with(config, Default::default(), None).await;
    let base = server.url();
    let worker = connect(&base, "slowpoke").await;
    let boss = streamable(&base).await;
    call(&boss, "connect", json!({"role": "orchestrator"})).await;

    // The worker takes the command and never acks it.
    let waits = server.broker.open_waiters();
    let w = base.clone();
    let wid = worker.clone();
    let taker =
        tokio::spawn(async move { get(&format!("{w}/commands/{wid}/wait?timeout=20000")).await });
    assert!(eventually(LIMIT, || async { server.broker.open_waiters() > waits }).await);
    let (text, sent, err) = tokio::time::timeout(
        LIMIT,
        call(
            &boss,
            "send_command",
            json!({"target": "slowpoke", "action": "migrate", "wait": true,
                   "timeout_seconds": 600, "deadline_seconds": 1}),
        ),
    )
    .await
    .expect("the deadline ends the wait, not the timeout");
    assert!(!err, "{text}");
    let (s, taken) = taker.await.expect("task");
    assert_eq!(s, 200);
    let cid = sent["command"]["id"].as_str().expect("id").to_string();
    assert_eq!(taken["command"]["id"], json!(cid));
    assert_eq!(sent["command"]["overdue"], true);
    assert_eq!(sent["command"]["status"], "delivered");
    assert_eq!(sent["overdue"], true);
    assert!(sent.get("timedOut").is_none(), "{sent}");
    assert!(
        text.contains("deadline")
            && text.contains("passed")
            && text.contains("delivered to peer")
            && text.contains(&worker)
            && text.contains("slowpoke")
            && text.contains("get_command_result"),
        "{text}"
    );

    // Looking again still says the deadline passed, not just "no result".
    let (text, res, err) = call(
        &boss,
        "get_command_result",
        json!({"command_id": cid, "timeout_seconds": 0}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(res["timedOut"], true);
    assert_eq!(res["overdue"], true);
    assert!(
        text.contains("deadline") && text.contains("passed"),
        "{text}"
    );

    // The late ack still ends the wait with the result.
    let (s, _) = post(
        &format!("{base}/commands/{cid}/ack"),
        json!({"result": {"rows": 7}}),
    )
    .await;
    assert_eq!(s, 200);
    let (text, res, err) = call(
        &boss,
        "get_command_result",
        json!({"command_id": cid, "timeout_seconds": 30}),
    )
    .await;
    assert!(!err && text.starts_with("Done"), "{text}");
    assert_eq!(res["command"]["result"], json!({"rows": 7}));

    // get_command_result also returns when the deadline passes mid-wait.
    let (_, sent, _) = call(
        &boss,
        "send_command",
        json!({"target": "nobody-yet", "action": "build", "deadline_seconds": 1}),
    )
    .await;
    let cid = sent["command"]["id"].as_str().expect("id").to_string();
    let (text, res, err) = tokio::time::timeout(
        LIMIT,
        call(
            &boss,
            "get_command_result",
            json!({"command_id": cid, "timeout_seconds": 600}),
        ),
    )
    .await
    .expect("the deadline ends the wait");
    assert!(!err, "{text}");
    assert_eq!(res["overdue"], true);
    assert!(
        text.contains("deadline") && text.contains("pending") && text.contains("nobody-yet"),
        "{text}"
    );

    // A question whose ttl runs out while ask_human waits says it expired.
    let (text, q, err) = tokio::time::timeout(
        LIMIT,
        call(
            &boss,
            "ask_human",
            json!({"text": "Ship it?", "ttl_seconds": 1, "timeout_seconds": 600}),
        ),
    )
    .await
    .expect("expiry ends the wait");
    assert!(!err && text.contains("expired"), "{text}");
    assert_eq!(q["question"]["status"], "expired");
    boss.cancel().await.expect("close");
}

// ---- the cap on live sessions ----

/// An `initialize` on `/mcp` by hand, without `notifications/initialized`
/// (what a flood sends): (status, session id, body of an error answer).
async fn raw_initialize(http: &reqwest::Client, base: &str) -> (u16, Option<String>, Value) {
    let r = http
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "flood", "version": "0"}
            }}),
        )
        .send()
        .await
        .expect("POST /mcp initialize");
    let status = r.status().as_u16();
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.unwrap_or_default();
    (
        status,
        sid,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// `tools/list` in session `sid` by hand: (status, the answer: the
/// JSON-RPC result on success, the error body otherwise).
async fn raw_tools_list(http: &reqwest::Client, base: &str, sid: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}))
        .send()
        .await
        .expect("POST /mcp tools/list");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find_map(|m| m.get("result").cloned())
        .or_else(|| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    (status, answer)
}

/// `mcpSessions` of `GET /status`.
async fn mcp_sessions(base: &str) -> u64 {
    let (s, status) = get(&format!("{base}/status")).await;
    assert_eq!(s, 200);
    status["mcpSessions"]
        .as_u64()
        .unwrap_or_else(|| panic!("mcpSessions in {status}"))
}

/// A broker allowing `cap` live MCP sessions.
async fn capped(cap: usize, broker: cipc::broker::BrokerConfig) -> cipc::server::RunningServer {
    let server = cipc::server::ServerConfig {
        max_mcp_sessions: cap,
        ..Default::default()
    };
    common::start_with(broker, server, None).await
}

#[tokio::test]
async fn thousands_of_initialize_calls_stay_bounded() {
    const CAP: u64 = 8;
    let server = capped(CAP as usize, Default::default()).await;
    let base = server.url();
    let client = http();
    let (s, first, b) = raw_initialize(&client, &base).await;
    assert_eq!(s, 200, "{b}");
    let first = first.expect("a session id");
    assert_eq!(mcp_sessions(&base).await, 1);

    // 3,000 more, eight at a time: none busy, so each new one takes the
    // seat of the longest-idle one, and what the broker holds stays at the
    // cap (an ended session is freed a moment after its seat).
    let mut ids = Vec::new();
    for _ in 0..6 {
        let chunk: Vec<String> = futures::stream::iter(0..500)
            .map(|_| {
                let (c, b) = (client.clone(), base.clone());
                async move { raw_initialize(&c, &b).await }
            })
            .buffer_unordered(8)
            .map(|(s, sid, body)| {
                assert_eq!(s, 200, "past the cap an idle session makes room: {body}");
                sid.expect("a session id")
            })
            .collect()
            .await;
        ids.extend(chunk);
        assert!(
            eventually(LIMIT, || async { mcp_sessions(&base).await == CAP }).await,
            "the broker holds {} sessions, not {CAP}",
            mcp_sessions(&base).await
        );
    }
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        3000,
        "every initialize opened its own session"
    );

    // An ended session's id is 404 unknown_session.
    let (s, b) = raw_tools_list(&client, &base, &first).await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"]["reason"], "unknown_session");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("initialize"));

    // Exactly CAP of them still answer; every other one is 404.
    let answers: Vec<u16> = futures::stream::iter(ids.clone())
        .map(|sid| {
            let (c, b) = (client.clone(), base.clone());
            async move { raw_tools_list(&c, &b, &sid).await.0 }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(answers.iter().filter(|s| **s == 200).count() as u64, CAP);
    assert_eq!(
        answers.iter().filter(|s| **s == 404).count() as u64,
        3000 - CAP
    );

    // A new session is live; DELETE ends it: 404 after, one fewer held.
    let (s, fresh, b) = raw_initialize(&client, &base).await;
    assert_eq!(s, 200, "{b}");
    let fresh = fresh.expect("a session id");
    let (s, tools) = raw_tools_list(&client, &base, &fresh).await;
    assert_eq!(s, 200);
    assert_eq!(tools["tools"].as_array().map(Vec::len), Some(TOOLS.len()));
    let r = client
        .delete(format!("{base}/mcp"))
        .header("mcp-session-id", &fresh)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("DELETE /mcp");
    assert!(r.status().is_success(), "{}", r.status());
    let (s, b) = raw_tools_list(&client, &base, &fresh).await;
    assert_eq!(s, 404, "{b}");
    assert!(
        eventually(LIMIT, || async { mcp_sessions(&base).await == CAP - 1 }).await,
        "a deleted session is freed"
    );
}

#[tokio::test]
async fn past_the_cap_with_every_session_busy_a_new_one_gets_429() {
    let server = capped(2, Default::default()).await;
    let base = server.url();
    let client = http();

    // Two live sessions, one per transport, each in a wait.
    let streamable_client = streamable(&base).await;
    let mut legacy_client = legacy(&base).await;
    assert_eq!(mcp_sessions(&base).await, 2);
    let waiter = tokio::spawn(async move {
        let r = call(
            &streamable_client,
            "wait_for_signal",
            json!({"name": "go", "timeout_seconds": 60}),
        )
        .await;
        (streamable_client, r)
    });
    let legacy_waiter = tokio::spawn(async move {
        let r = legacy_client
            .call(
                "wait_for_signal",
                json!({"name": "go", "timeout_seconds": 60}),
            )
            .await;
        (legacy_client, r)
    });
    assert!(eventually(LIMIT, || async { server.broker.open_waiters() >= 2 }).await);

    // Neither transport opens a third: 429 too_many_sessions, saying what to do.
    let (s, sid, b) = raw_initialize(&client, &base).await;
    assert_eq!(s, 429, "{b}");
    assert!(sid.is_none());
    assert_eq!(b["error"]["reason"], "too_many_sessions");
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("--max-mcp-sessions") && message.contains("DELETE /mcp"),
        "{message}"
    );
    let r = client
        .get(format!("{base}/mcp/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /mcp/sse");
    assert_eq!(r.status(), 429);
    let b: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(b["error"]["reason"], "too_many_sessions");

    // Stateless requests (2026-07-28) hold no seat: still served.
    let r = client
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
                }
            }}),
        )
        .send()
        .await
        .expect("stateless tools/list");
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap_or_default()
        .contains("wait_for_command"));
    assert_eq!(mcp_sessions(&base).await, 2);

    // Once the waits return, a new session takes an idle one's seat.
    let (s, _) = post(&format!("{base}/signals/go"), json!({"data": 1})).await;
    assert_eq!(s, 200);
    let (streamable_client, (text, _, err)) = tokio::time::timeout(LIMIT, waiter)
        .await
        .expect("released")
        .expect("task");
    assert!(!err, "{text}");
    let (_legacy_client, (text, _, err)) = tokio::time::timeout(LIMIT, legacy_waiter)
        .await
        .expect("released")
        .expect("task");
    assert!(!err, "{text}");
    let (s, sid, b) = raw_initialize(&client, &base).await;
    assert_eq!(s, 200, "{b}");
    assert!(sid.is_some());
    assert!(eventually(LIMIT, || async { mcp_sessions(&base).await == 2 }).await);
    drop(streamable_client);
}

#[tokio::test]
async fn an_idle_session_is_freed_and_its_id_is_404() {
    // The case: `initialize` and nothing else, then silence past the
    // idle limit (the broker's offline limit, short here).
    // 3 s: several times what a loaded machine needs to ask /status below.
    let config = cipc::broker::BrokerConfig {
        stale_after: Duration::from_secs(1),
        offline_after: Duration::from_secs(3),
        sweep_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let server = capped(16, config).await;
    let base = server.url();
    let client = http();
    let (s, sid, b) = raw_initialize(&client, &base).await;
    assert_eq!(s, 200, "{b}");
    let sid = sid.expect("a session id");
    assert_eq!(mcp_sessions(&base).await, 1);
    assert!(
        eventually(LIMIT, || async { mcp_sessions(&base).await == 0 }).await,
        "the idle session is freed"
    );
    let (s, b) = raw_tools_list(&client, &base, &sid).await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"]["reason"], "unknown_session");
}

/// `send_command` to `"*"` with a wait waits for every copy (the broker's
/// one send-and-wait, as on REST) instead of refusing the wait.
#[tokio::test]
async fn a_star_send_with_wait_waits_for_every_copy() {
    let server = common::start().await;
    let base = server.url();
    let client = streamable(&base).await;
    let peers = [connect(&base, "a").await, connect(&base, "b").await];
    let send = call(
        &client,
        "send_command",
        json!({"target": "*", "action": "reload", "wait": true, "timeout_seconds": 30}),
    );
    let workers = async {
        for (i, p) in peers.iter().enumerate() {
            let (_, w) = get(&format!("{base}/commands/{p}/wait?timeout=10000")).await;
            let cid = w["command"]["id"].as_str().expect("a copy").to_string();
            let (s, _) = post(
                &format!("{base}/commands/{cid}/ack"),
                json!({"result": {"copy": i}}),
            )
            .await;
            assert_eq!(s, 200);
        }
    };
    let ((text, sent, err), ()) =
        tokio::time::timeout(LIMIT, async { tokio::join!(send, workers) })
            .await
            .expect("in time");
    assert!(!err, "{text}");
    assert_eq!(sent["timedOut"], false, "{text}");
    let copies = sent["commands"].as_array().expect("commands");
    assert_eq!(copies.len(), 2, "{sent}");
    assert!(copies.iter().all(|c| c["status"] == "acked"), "{sent}");

    // A copy nobody takes ends the wait at its timeout, saying so.
    let (text, sent, err) = call(
        &client,
        "send_command",
        json!({"target": "*", "action": "reload", "wait": true, "timeout_seconds": 1}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(sent["timedOut"], true, "{text}");
    assert!(
        text.contains("get_command_result"),
        "says how to keep waiting: {text}"
    );
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn claim_check_and_release_paths_say_who_holds_what_until_when() {
    let server = common::start().await;
    let base = server.url();
    let ana = streamable(&base).await;
    let bob = streamable(&base).await;
    let (_, me, _) = call(&ana, "connect", json!({"role": "backend", "name": "ana"})).await;
    let ana_key = me["peerKey"].as_str().expect("peerKey").to_string();
    let ana_id = me["peer"]["id"].as_str().expect("id").to_string();
    let (_, me, _) = call(&bob, "connect", json!({"role": "frontend"})).await;
    let bob_key = me["peerKey"].as_str().expect("peerKey").to_string();
    let repo = "github.com/acme/shop";

    // Without repo, the refusal says what to pass.
    let (text, e, err) = call(&ana, "claim_paths", json!({"paths": ["src/db/"]})).await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "invalid_lease");
    assert!(text.contains("pass repo"), "{text}");

    let (text, got, err) = call(
        &ana,
        "claim_paths",
        json!({"paths": ["src/db/"], "repo": repo, "reason": "orders index", "ttl_seconds": 600, "peer_key": ana_key}),
    )
    .await;
    assert!(!err, "{text}");
    let lease = got["lease"].clone();
    let lid = lease["id"].as_str().expect("id").to_string();
    assert_eq!(lease["holder"], ana_id.as_str());
    assert!(
        text.contains(&lid)
            && text.contains("src/db/")
            && text.contains("10 min")
            && text.contains("release_paths"),
        "{text}"
    );

    // Another session is refused, with the lease in the way as structured content.
    let (text, e, err) = call(
        &bob,
        "claim_paths",
        json!({"paths": ["src/db/schema.sql"], "repo": repo, "peer_key": bob_key}),
    )
    .await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "lease_conflict");
    assert_eq!(e["conflicts"], json!([lease]));
    assert!(
        text.contains("backend") && text.contains("orders index"),
        "{text}"
    );

    let (text, c, err) = call(
        &bob,
        "check_paths",
        json!({"paths": ["src/db/schema.sql", "README.md"], "repo": repo, "peer_key": bob_key}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(c["conflicts"][0]["lease"]["id"], lid.as_str());
    assert_eq!(c["conflicts"].as_array().map(Vec::len), Some(1));
    assert!(
        text.contains("src/db/schema.sql is held by backend \"ana\"")
            && text.contains("until")
            && text.contains("send_command"),
        "{text}"
    );
    let (text, c, _) = call(
        &ana,
        "check_paths",
        json!({"paths": ["src/db/schema.sql"], "repo": repo, "peer_key": ana_key}),
    )
    .await;
    assert_eq!(c["conflicts"], json!([]), "{text}");
    assert!(text.contains("Nobody else holds"), "{text}");

    // Only the holder releases through MCP; by paths or by id.
    let (text, e, err) = call(
        &bob,
        "release_paths",
        json!({"lease_id": lid, "peer_key": bob_key}),
    )
    .await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "not_lease_holder");
    let (text, e, err) = call(&ana, "release_paths", json!({"peer_key": ana_key})).await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "invalid_lease");
    let (text, e, err) = call(
        &ana,
        "release_paths",
        json!({"paths": ["docs/"], "peer_key": ana_key}),
    )
    .await;
    assert!(err, "{text}");
    assert_eq!(reason(&e), "unknown_lease");
    assert!(text.contains("src/db/"), "names what ana holds: {text}");
    let (text, r, err) = call(
        &ana,
        "release_paths",
        json!({"paths": ["src/db"], "repo": repo, "peer_key": ana_key}),
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(r["leases"][0]["status"], "released");
    assert!(text.starts_with("Released 1 lease(s)"), "{text}");
    let (text, _, err) = call(
        &bob,
        "claim_paths",
        json!({"paths": ["src/db/schema.sql"], "repo": repo, "peer_key": bob_key, "shared": true}),
    )
    .await;
    assert!(!err, "{text}");
    assert!(text.contains("shared"), "{text}");
}
