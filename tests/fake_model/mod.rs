//! A scripted stand-in for the Anthropic Messages API, so the real Claude Code
//! CLI can run headless against a real broker without ever reaching Anthropic.
//!
//! [`FakeModel::start`] serves on `127.0.0.1:0`; point Claude Code at it with
//! `ANTHROPIC_BASE_URL`. The conversation follows a script: a list of
//! [`Step`]s, each a function of what has happened so far (the tool results
//! Claude Code sent back, see [`Transcript`]) that answers the next assistant
//! turn ([`Turn`]): `tool_use` blocks or a final text.
//!
//! What Claude Code 2.1.328 does against it (found by running it with
//! `-p ... --output-format stream-json --verbose` and logging every request):
//!
//! - It calls only `POST /v1/messages?beta=true`, always with `"stream": true`,
//!   once per assistant turn: no `count_tokens`, no model listing, no title,
//!   summary or "haiku" side calls in `-p` mode. Without
//!   `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` it also sends a
//!   `HEAD /api/hello` at startup (a reachability probe; a 404 does not
//!   bother it). The server still answers `/v1/messages/count_tokens`, any
//!   other path (logged, answered with an Anthropic-style 404 error), and
//!   non-main message calls, in case another version makes them.
//! - Main conversation vs side request: every main-conversation request
//!   carries the `tools` array (with `ToolSearch` in it) and `"stream": true`;
//!   a request without tools, or a non-streaming one, is treated as a side
//!   request: it gets a short plain text answer and never consumes the script.
//! - Each request resends the whole conversation: a `user` message with the
//!   prompt, a `system` message (the environment, and the list of *deferred*
//!   tools), then per turn an `assistant` message with the `tool_use` blocks
//!   and a `user` message with their `tool_result` blocks (sometimes another
//!   `system` message at the end). Claude Code folds consecutive assistant
//!   messages with the same message id into one (as it does for the chunks
//!   of one streamed message), so every answer here gets its own id. The fake
//!   reads all `tool_use` and `tool_result` blocks wherever they are, pairs
//!   them by id, and keeps them in order of first appearance.
//! - MCP tools are deferred: the `tools` array holds only built-in tools,
//!   `ToolSearch` and a `DeferredToolPlaceholder`; the MCP tools
//!   (`mcp__cipc__connect`, ...) are only *named* in the system message. A
//!   model must first call `ToolSearch` with input
//!   `{"query": "select:mcp__cipc__connect,mcp__cipc__whoami", "max_results": 5}`
//!   (both fields are required by its schema); its tool result is a list of
//!   `{"type": "tool_reference", "tool_name": ...}` blocks (followed by a
//!   "Tool loaded." text in the same user message), and from the next request
//!   on those tools appear in `tools` with their full schemas. It also takes
//!   keyword queries (`"notebook jupyter"`, `"+slack send"`).
//!
//! Which step to play is derived from the request itself, not from a
//! counter: the fake names its tool uses `toolu_step<N>_<i>`, and the next
//! step is one past the highest `N` in the conversation. A retried request
//! therefore gets the same answer again instead of skipping a step.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// The prefix of every tool use id the fake hands out; the step number and
/// the block index follow (`toolu_step3_0`).
const ID_PREFIX: &str = "toolu_step";

/// One tool call the model makes.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The tool's name as Claude Code lists it (`ToolSearch`, `mcp__cipc__connect`).
    pub name: String,
    /// The tool's input, a JSON object.
    pub input: Value,
}

/// An assistant turn.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Call these tools (in parallel, as one turn); stop reason `tool_use`.
    Tools(Vec<ToolCall>),
    /// Say this and end the conversation; stop reason `end_turn`.
    Text(String),
}

impl Turn {
    /// A turn with one tool call.
    pub fn tool(name: &str, input: Value) -> Turn {
        Turn::Tools(vec![ToolCall {
            name: name.to_string(),
            input,
        }])
    }

    /// A final text turn.
    pub fn text(text: &str) -> Turn {
        Turn::Text(text.to_string())
    }
}

/// A tool result Claude Code sent back, paired with the call it answers.
#[derive(Debug, Clone)]
pub struct ToolResult {
    /// The id of the `tool_use` it answers.
    pub tool_use_id: String,
    /// The tool that was called (from the matching `tool_use`; empty if the
    /// conversation did not contain it).
    pub name: String,
    /// The input the tool was called with.
    pub input: Value,
    /// The content blocks: a text block as its text, anything else (such as
    /// ToolSearch's `tool_reference`) as its JSON.
    pub blocks: Vec<String>,
    /// Whether Claude Code marked it as an error.
    pub is_error: bool,
    /// When the fake first saw it.
    pub seen_at: Instant,
}

impl ToolResult {
    /// All blocks joined by newlines.
    pub fn text(&self) -> String {
        self.blocks.join("\n")
    }

    /// The first block that is a JSON object (cipc tools answer a sentence,
    /// then the JSON).
    pub fn json(&self) -> Option<Value> {
        self.blocks
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .find(Value::is_object)
    }

    /// A one-line description for failure messages.
    pub fn brief(&self) -> String {
        let mut text = self.text().replace('\n', " ");
        if text.len() > 400 {
            let mut cut = 400;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        format!(
            "{} {}{} -> {}",
            self.tool_use_id,
            self.name,
            if self.is_error { " (is_error)" } else { "" },
            text
        )
    }
}

/// What a step sees: the conversation so far, as of the request it answers.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// Every tool result so far, in order.
    pub results: Vec<ToolResult>,
    /// The names in the request's `tools` array.
    pub tools: Vec<String>,
    /// The request's whole JSON body (for steps that read what the model
    /// was told, such as hook context or a wake-up message).
    pub request: Value,
}

impl Transcript {
    /// The latest result of the tool called `name`.
    pub fn last_of(&self, name: &str) -> Option<&ToolResult> {
        self.results.iter().rev().find(|r| r.name == name)
    }
}

/// One scripted assistant turn: a function of the transcript. An `Err` ends
/// the conversation (the fake answers a text saying why) and is kept in
/// [`FakeModel::failures`], so the test can report it.
pub type Step = Box<dyn Fn(&Transcript) -> Result<Turn, String> + Send + Sync>;

/// Wraps a closure as a [`Step`].
pub fn step<F>(f: F) -> Step
where
    F: Fn(&Transcript) -> Result<Turn, String> + Send + Sync + 'static,
{
    Box::new(f)
}

/// A step that always answers the same turn.
pub fn fixed(turn: Turn) -> Step {
    Box::new(move |_| Ok(turn.clone()))
}

/// How the fake classified a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A main-conversation turn, answered with this step (`None`: the script
    /// was over, answered with a closing text).
    Main(Option<usize>),
    /// A message request outside the conversation (no tools, or not streaming).
    Side,
    /// `/v1/messages/count_tokens`.
    CountTokens,
    /// Any other path.
    Unknown,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The JSON body (`Null` if there was none or it was not JSON).
    pub body: Value,
    /// How it was answered.
    pub kind: Kind,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Log {
    requests: Vec<Recorded>,
    results: Vec<ToolResult>,
    failures: Vec<String>,
}

struct Shared {
    script: Vec<Step>,
    log: Mutex<Log>,
    started: Instant,
}

/// The running fake; stops serving when dropped.
pub struct FakeModel {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeModel {
    /// Serves `script` on a free loopback port.
    pub async fn start(script: Vec<Step>) -> FakeModel {
        let shared = Arc::new(Shared {
            script,
            log: Mutex::new(Log::default()),
            started: Instant::now(),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .fallback(unknown)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake model on a free loopback port");
        let addr = listener.local_addr().expect("fake model address");
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake model: server stopped: {e}");
            }
        });
        FakeModel {
            url: format!("http://{addr}"),
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().requests.clone()
    }

    /// Every tool result Claude Code sent back so far, in order.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.shared.log.lock().results.clone()
    }

    /// The first result of the tool called `name`.
    pub fn result_of(&self, name: &str) -> Option<ToolResult> {
        self.shared
            .log
            .lock()
            .results
            .iter()
            .find(|r| r.name == name)
            .cloned()
    }

    /// Steps that could not produce a turn, with why.
    pub fn failures(&self) -> Vec<String> {
        self.shared.log.lock().failures.clone()
    }

    /// When step `index` was first served (the model "called" its tools).
    pub fn served_at(&self, index: usize) -> Option<Instant> {
        self.shared
            .log
            .lock()
            .requests
            .iter()
            .find(|r| r.kind == Kind::Main(Some(index)))
            .map(|r| r.at)
    }

    /// A readable account of every request, tool result and script failure,
    /// for failure messages.
    pub fn summary(&self) -> String {
        let log = self.shared.log.lock();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fake model at {}: {} request(s)",
            self.url,
            log.requests.len()
        );
        for (i, r) in log.requests.iter().enumerate() {
            let at = r.at.duration_since(self.shared.started).as_secs_f64();
            let what = match &r.kind {
                Kind::Main(Some(n)) => format!("main, answered step {n}"),
                Kind::Main(None) => "main, script over: answered a closing text".to_string(),
                Kind::Side => "side request: answered a short text".to_string(),
                Kind::CountTokens => "count_tokens".to_string(),
                Kind::Unknown => "unknown path: answered 404".to_string(),
            };
            let tools = r.body["tools"].as_array().map_or(0, Vec::len);
            let _ = writeln!(
                s,
                "  #{i} +{at:.2}s {} {} ({what}; model {}, {} message(s), {tools} tool(s))",
                r.method,
                r.uri,
                r.body["model"].as_str().unwrap_or("-"),
                r.body["messages"].as_array().map_or(0, Vec::len),
            );
        }
        let _ = writeln!(s, "tool results ({}):", log.results.len());
        for r in &log.results {
            let _ = writeln!(s, "  {}", r.brief());
        }
        if !log.failures.is_empty() {
            let _ = writeln!(s, "script failures:");
            for f in &log.failures {
                let _ = writeln!(s, "  {f}");
            }
        }
        s
    }
}

// ---- request handling ----

fn record(shared: &Shared, method: &Method, uri: &Uri, body: Value, kind: Kind) {
    shared.log.lock().requests.push(Recorded {
        method: method.to_string(),
        uri: uri.to_string(),
        body,
        kind,
        at: Instant::now(),
    });
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("claude-fake").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if !(stream && has_tools) {
        let turn = Turn::text("OK.");
        record(&shared, &method, &uri, body, Kind::Side);
        return if stream {
            sse(&model, None, &turn)
        } else {
            json_message(&model, &turn)
        };
    }

    let (transcript, next) = read_conversation(&body);
    {
        // Keep every result, in order of first appearance.
        let mut log = shared.log.lock();
        for r in &transcript.results {
            if !log.results.iter().any(|k| k.tool_use_id == r.tool_use_id) {
                log.results.push(r.clone());
            }
        }
    }
    let (kind, turn) = match shared.script.get(next) {
        None => (
            Kind::Main(None),
            Turn::text("The fake model's script is over."),
        ),
        Some(step) => {
            // A step that panics is a failure to report, not a dropped
            // connection Claude Code would retry.
            let played =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(&transcript)))
                    .unwrap_or_else(|_| Err("the step panicked".to_string()));
            match played {
                Ok(turn) => (Kind::Main(Some(next)), turn),
                Err(why) => {
                    let why = format!("step {next}: {why}");
                    shared.log.lock().failures.push(why.clone());
                    (
                        Kind::Main(Some(next)),
                        Turn::Text(format!("The fake model's script failed at {why}")),
                    )
                }
            }
        }
    };
    record(&shared, &method, &uri, body, kind);
    sse(&model, Some(next), &turn)
}

async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&shared, &method, &uri, body, Kind::CountTokens);
    axum::Json(json!({"input_tokens": 100})).into_response()
}

async fn unknown(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    eprintln!("fake model: unexpected {method} {uri}");
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&shared, &method, &uri, body, Kind::Unknown);
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "type": "error",
            "error": {"type": "not_found_error", "message": format!("the fake model does not serve {uri}")}
        })),
    )
        .into_response()
}

/// The transcript in a main request, and the index of the step to play next.
fn read_conversation(body: &Value) -> (Transcript, usize) {
    let empty = Vec::new();
    let messages = body["messages"].as_array().unwrap_or(&empty);
    let blocks = || {
        messages
            .iter()
            .filter_map(|m| m["content"].as_array())
            .flatten()
    };
    let calls: Vec<(&str, &str, &Value)> = blocks()
        .filter(|b| b["type"] == "tool_use")
        .filter_map(|b| Some((b["id"].as_str()?, b["name"].as_str()?, &b["input"])))
        .collect();
    let next = calls
        .iter()
        .filter_map(|(id, _, _)| id.strip_prefix(ID_PREFIX)?.split('_').next()?.parse().ok())
        .map(|n: usize| n + 1)
        .max()
        .unwrap_or(0);
    let now = Instant::now();
    let results = blocks()
        .filter(|b| b["type"] == "tool_result")
        .filter_map(|b| {
            let id = b["tool_use_id"].as_str()?;
            let call = calls.iter().find(|(cid, _, _)| *cid == id);
            Some(ToolResult {
                tool_use_id: id.to_string(),
                name: call.map(|c| c.1.to_string()).unwrap_or_default(),
                input: call.map_or(Value::Null, |c| c.2.clone()),
                blocks: content_blocks(&b["content"]),
                is_error: b["is_error"].as_bool().unwrap_or(false),
                seen_at: now,
            })
        })
        .collect();
    let tools = body["tools"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    (
        Transcript {
            results,
            tools,
            request: body.clone(),
        },
        next,
    )
}

/// A tool result's content: a plain string, or blocks.
fn content_blocks(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["text"].as_str() {
                Some(text) if b["type"] == "text" => text.to_string(),
                _ => b.to_string(),
            })
            .collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

/// The content blocks and stop reason of a turn, as the final message has them.
fn turn_blocks(step: Option<usize>, turn: &Turn) -> (Vec<Value>, &'static str) {
    match turn {
        Turn::Text(text) => (vec![json!({"type": "text", "text": text})], "end_turn"),
        Turn::Tools(calls) => (
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({
                        "type": "tool_use",
                        "id": format!("{ID_PREFIX}{}_{i}", step.unwrap_or(0)),
                        "name": c.name,
                        "input": c.input,
                    })
                })
                .collect(),
            "tool_use",
        ),
    }
}

fn message_id(step: Option<usize>) -> String {
    match step {
        Some(n) => format!("msg_fake_step{n}"),
        None => "msg_fake_side".to_string(),
    }
}

/// A streamed answer: the Anthropic SSE event sequence for one message.
fn sse(model: &str, step: Option<usize>, turn: &Turn) -> Response {
    let (blocks, stop_reason) = turn_blocks(step, turn);
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        let _ = write!(out, "event: {name}\ndata: {data}\n\n");
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": message_id(step), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1}
        }}),
    );
    for (index, block) in blocks.iter().enumerate() {
        let (start, delta) = if block["type"] == "tool_use" {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        };
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }
    event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": 10}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        out,
    )
        .into_response()
}

/// A non-streamed answer.
fn json_message(model: &str, turn: &Turn) -> Response {
    let (content, stop_reason) = turn_blocks(None, turn);
    axum::Json(json!({
        "id": message_id(None), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 10}
    }))
    .into_response()
}
