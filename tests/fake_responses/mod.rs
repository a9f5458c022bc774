//! A scripted stand-in for the OpenAI Responses API, so the real Codex CLI can
//! run headless against a real broker without ever reaching OpenAI.
//!
//! [`FakeResponses::start`] serves on `127.0.0.1:0`; point Codex at it with a
//! model provider whose `base_url` is [`FakeResponses::base_url`] and whose
//! `wire_api` is `"responses"` (`tests/common/codex.rs` writes that config).
//! The conversation follows a script: a list of [`Step`]s, each a function
//! of what has happened so far ([`Transcript`]: the tool results Codex sent
//! back, the request itself) that answers the next model turn ([`Turn`]):
//! tool calls or a final message.
//!
//! What Codex 0.171.0 does against it (found by running it; the detail is in
//! the facts file the Codex integration was built from):
//!
//! - It calls only `POST /v1/responses` (`{base_url}/responses`), always with
//!   `"stream": true` and an uncompressed JSON body, once per model turn,
//!   and reads a server-sent event stream: `response.created`, then per
//!   output item `response.output_item.added` and `response.output_item.done`,
//!   then `response.completed` (with `usage`). Any other path is logged and
//!   answered 404.
//! - Each request resends the whole conversation in `input`: `developer`
//!   messages (instructions, skills), a `user` message with the
//!   `<environment_context>`, the prompt as a `user` message, and per turn
//!   the items the model produced followed by their outputs. Hook
//!   `additionalContext` (SessionStart, UserPromptSubmit, PreToolUse,
//!   PostToolUse) arrives as a `developer` message holding exactly the text;
//!   a Stop hook's block reason as a `user` message
//!   `<hook_prompt hook_run_id="...">REASON</hook_prompt>`.
//! - Tool calls the fake can make (see [`Call`]): an MCP tool as a
//!   `function_call` with `namespace: "mcp__<server>"` and the tool's bare
//!   name (Codex defers MCP tools behind `tool_search`, but accepts a
//!   namespaced call without a search); a plain `function_call`
//!   (`exec_command` runs a shell command); a freeform `custom_tool_call`
//!   (`apply_patch` takes the patch text). Outputs come back as
//!   `function_call_output` / `custom_tool_call_output` with the same
//!   `call_id`; an MCP tool's output is an array of `input_text` blocks, the
//!   first a `Wall time: ...\nOutput:` header, then one per MCP content block.
//! - Side requests: Codex also asks the same provider for a thread title (the
//!   interactive TUI) and for approval reviews (`--approve-for-me`). Those
//!   carry `x-codex-turn-metadata` with a `thread_source` other than `user`
//!   (`thread_title`, `guardian_review`); they get a short text answer and
//!   never consume the script.
//!
//! Which step to play is derived from the request itself, not from a
//! counter: the fake names its calls `call_step<N>_<i>` and its messages
//! `msg_step<N>`, Codex sends those ids back in `input`, and the next step is
//! one past the highest `N` there. A retried request therefore gets the same
//! answer again instead of skipping a step, and a turn that Codex continues
//! after a final message (a Stop hook's block, a queued message, `exec
//! resume`) plays the step after it.
//!
//! (A file of one concern: the fake Responses API; long because the wire
//! shapes Codex sends and expects are written down with it.)
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// The prefix of every call id the fake hands out; the step number and the
/// call's index in the step follow (`call_step3_0`).
const CALL_PREFIX: &str = "call_step";

/// The prefix of every message id the fake hands out; the step number
/// follows (`msg_step3`).
const MESSAGE_PREFIX: &str = "msg_step";

/// The model name the fake reports when a request names none.
const DEFAULT_MODEL: &str = "gpt-5.5";

/// One tool call the model makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// An MCP tool, called through its server's namespace tool
    /// (`namespace: "mcp__<server>"`, `name: <tool>`); hooks see it as
    /// `mcp__<server>__<tool>`.
    Mcp {
        /// The server's name in `config.toml` (`cipc` for `[mcp_servers.cipc]`).
        server: String,
        /// The tool's own name (`connect`, `whoami`).
        tool: String,
        /// The arguments, a JSON object.
        arguments: Value,
    },
    /// A function tool (`exec_command`, `write_stdin`, ...), with JSON
    /// arguments.
    Function {
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object.
        arguments: Value,
    },
    /// A freeform (custom) tool, such as `apply_patch`, with a text input.
    Custom {
        /// The tool's name.
        name: String,
        /// The raw input text.
        input: String,
    },
}

impl Call {
    /// A call of the cipc broker's MCP tool `tool` (server `cipc`).
    pub fn cipc(tool: &str, arguments: Value) -> Call {
        Call::mcp("cipc", tool, arguments)
    }

    /// A call of MCP tool `tool` on server `server`.
    pub fn mcp(server: &str, tool: &str, arguments: Value) -> Call {
        Call::Mcp {
            server: server.to_string(),
            tool: tool.to_string(),
            arguments,
        }
    }

    /// A shell command through `exec_command` (hooks see it as `Bash` with
    /// `tool_input.command`).
    pub fn shell(cmd: &str) -> Call {
        Call::function("exec_command", json!({ "cmd": cmd }))
    }

    /// A file edit through `apply_patch`: `patch` is the whole patch text,
    /// `*** Begin Patch` to `*** End Patch` (see [`add_file_patch`]).
    pub fn apply_patch(patch: &str) -> Call {
        Call::Custom {
            name: "apply_patch".to_string(),
            input: patch.to_string(),
        }
    }

    /// A call of function tool `name`.
    pub fn function(name: &str, arguments: Value) -> Call {
        Call::Function {
            name: name.to_string(),
            arguments,
        }
    }

    /// The name Codex's hooks give this call (`tool_name`): `mcp__cipc__whoami`,
    /// `exec_command` (hooks say `Bash` for it), `apply_patch`.
    pub fn name(&self) -> String {
        match self {
            Call::Mcp { server, tool, .. } => format!("mcp__{server}__{tool}"),
            Call::Function { name, .. } | Call::Custom { name, .. } => name.clone(),
        }
    }

    /// The call as an output item with call id `call_id`.
    fn item(&self, call_id: &str) -> Value {
        match self {
            Call::Mcp {
                server,
                tool,
                arguments,
            } => json!({
                "type": "function_call",
                "id": format!("fc_{call_id}"),
                "call_id": call_id,
                "namespace": format!("mcp__{server}"),
                "name": tool,
                "arguments": arguments.to_string(),
                "status": "completed",
            }),
            Call::Function { name, arguments } => json!({
                "type": "function_call",
                "id": format!("fc_{call_id}"),
                "call_id": call_id,
                "name": name,
                "arguments": arguments.to_string(),
                "status": "completed",
            }),
            Call::Custom { name, input } => json!({
                "type": "custom_tool_call",
                "id": format!("ctc_{call_id}"),
                "call_id": call_id,
                "name": name,
                "input": input,
                "status": "completed",
            }),
        }
    }

    /// Reads a call back from an `input` item Codex sent (any call, not
    /// only the fake's own).
    fn from_item(item: &Value) -> Option<Call> {
        let name = item["name"].as_str()?;
        match item["type"].as_str()? {
            "function_call" => {
                let arguments = item["arguments"]
                    .as_str()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .unwrap_or(Value::Null);
                Some(match item["namespace"].as_str() {
                    Some(ns) => Call::Mcp {
                        server: ns.strip_prefix("mcp__").unwrap_or(ns).to_string(),
                        tool: name.to_string(),
                        arguments,
                    },
                    None => Call::function(name, arguments),
                })
            }
            "custom_tool_call" => Some(Call::Custom {
                name: name.to_string(),
                input: item["input"].as_str().unwrap_or_default().to_string(),
            }),
            _ => None,
        }
    }
}

/// A patch that creates `path` holding `lines` (each without its newline).
pub fn add_file_patch(path: &str, lines: &[&str]) -> String {
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    for line in lines {
        let _ = writeln!(patch, "+{line}");
    }
    patch.push_str("*** End Patch\n");
    patch
}

/// A model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// Make these calls (in parallel, as one turn).
    Calls(Vec<Call>),
    /// Say this; the turn ends (unless a hook continues it).
    Text(String),
}

impl Turn {
    /// A turn with one call.
    pub fn call(call: Call) -> Turn {
        Turn::Calls(vec![call])
    }

    /// A final message.
    pub fn text(text: &str) -> Turn {
        Turn::Text(text.to_string())
    }
}

/// A tool output Codex sent back, paired with the call it answers.
#[derive(Debug, Clone)]
pub struct ToolResult {
    /// The `call_id` of the call it answers.
    pub call_id: String,
    /// The call, as Codex sent it back (`None` if the conversation did not
    /// contain it).
    pub call: Option<Call>,
    /// The output's blocks: a plain string output as one block; an MCP
    /// output's `input_text` blocks without the leading `Wall time: ...`
    /// header (kept in [`ToolResult::header`]).
    pub blocks: Vec<String>,
    /// The `Wall time: ...\nOutput:` header block of an MCP output, if any.
    pub header: Option<String>,
    /// When the fake first saw it.
    pub seen_at: Instant,
}

impl ToolResult {
    /// The call's name as hooks see it ([`Call::name`]), or `""`.
    pub fn name(&self) -> String {
        self.call.as_ref().map(Call::name).unwrap_or_default()
    }

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

    /// Whether Codex reported the call as failed or refused rather than
    /// answered: a tool call error, a hook's block, a rejection. (Codex
    /// sends no error flag; this reads its fixed wordings.)
    pub fn is_failure(&self) -> bool {
        let text = self.text();
        [
            "tool call error:",
            "blocked by PreToolUse hook",
            "requires approval",
            "unsupported call:",
            "Rejected(",
            "patch rejected:",
        ]
        .iter()
        .any(|w| text.contains(w))
    }

    /// A one-line description for failure messages.
    pub fn brief(&self) -> String {
        format!(
            "{} {} -> {}",
            self.call_id,
            self.name(),
            clip(&self.text(), 400)
        )
    }
}

/// What a step sees: the conversation so far, as of the request it answers.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// Every tool result in the request, in order.
    pub results: Vec<ToolResult>,
    /// The names in the request's `tools` array (namespace tools by their
    /// namespace name; `tool_search` and `web_search` by their type).
    pub tools: Vec<String>,
    /// The request's whole JSON body.
    pub request: Value,
}

impl Transcript {
    /// The latest result of the call named `name` ([`Call::name`], e.g.
    /// `mcp__cipc__connect`).
    pub fn last_of(&self, name: &str) -> Option<&ToolResult> {
        self.results.iter().rev().find(|r| r.name() == name)
    }

    /// The latest result of cipc MCP tool `tool`.
    pub fn cipc(&self, tool: &str) -> Option<&ToolResult> {
        self.last_of(&format!("mcp__cipc__{tool}"))
    }

    /// The texts of the request's `developer` messages (where hook
    /// `additionalContext` arrives), in order.
    pub fn developer_texts(&self) -> Vec<String> {
        message_texts(&self.request, "developer")
    }

    /// The texts of the request's `user` messages, in order.
    pub fn user_texts(&self) -> Vec<String> {
        message_texts(&self.request, "user")
    }
}

/// One scripted model turn: a function of the transcript. An `Err` ends the
/// conversation (the fake answers a text saying why) and is kept in
/// [`FakeResponses::failures`], so the test can report it.
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
    /// A request outside the conversation (its `thread_source`, such as
    /// `thread_title` or `guardian_review`), answered with a short text.
    Side(String),
    /// Any other path, answered 404.
    Unknown,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The `session-id` header (the Codex thread id, the same `session_id`
    /// hooks get), if any.
    pub session_id: Option<String>,
    /// The `x-codex-turn-metadata` header, parsed (`Null` if absent).
    pub metadata: Value,
    /// The JSON body (`Null` if there was none or it was not JSON).
    pub body: Value,
    /// How it was answered.
    pub kind: Kind,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// The `input` items.
    pub fn input(&self) -> &[Value] {
        self.body["input"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The texts of the `developer` messages (where hook `additionalContext`
    /// arrives), in order.
    pub fn developer_texts(&self) -> Vec<String> {
        message_texts(&self.body, "developer")
    }

    /// The texts of the `user` messages (the prompt, queued messages, Stop
    /// hook prompts), in order.
    pub fn user_texts(&self) -> Vec<String> {
        message_texts(&self.body, "user")
    }

    /// The reasons of Stop hooks that continued the turn (the text inside
    /// each `<hook_prompt ...>...</hook_prompt>` user message), in order.
    pub fn hook_prompts(&self) -> Vec<String> {
        self.user_texts()
            .iter()
            .filter_map(|t| {
                let rest = t.trim().strip_prefix("<hook_prompt")?;
                let (_, body) = rest.split_once('>')?;
                Some(
                    body.strip_suffix("</hook_prompt>")
                        .unwrap_or(body)
                        .to_string(),
                )
            })
            .collect()
    }

    /// Whether any message text in `input` contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.input()
            .iter()
            .filter(|i| i["type"] == "message")
            .flat_map(item_texts)
            .any(|t| t.contains(needle))
    }
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
pub struct FakeResponses {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeResponses {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeResponses {
    /// Serves `script` on a free loopback port.
    pub async fn start(script: Vec<Step>) -> FakeResponses {
        let shared = Arc::new(Shared {
            script,
            log: Mutex::new(Log::default()),
            started: Instant::now(),
        });
        let app = Router::new()
            .route("/v1/responses", post(responses))
            .fallback(unknown)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Responses API on a free loopback port");
        let addr = listener.local_addr().expect("fake Responses API address");
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake Responses API: server stopped: {e}");
            }
        });
        FakeResponses {
            url: format!("http://{addr}"),
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:<port>/v1`, a model provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().requests.clone()
    }

    /// The main-conversation requests so far, in order.
    pub fn main_requests(&self) -> Vec<Recorded> {
        self.shared
            .log
            .lock()
            .requests
            .iter()
            .filter(|r| matches!(r.kind, Kind::Main(_)))
            .cloned()
            .collect()
    }

    /// The first main-conversation request (what the model was told before
    /// doing anything: the prompt, SessionStart and UserPromptSubmit context).
    pub fn first_main_request(&self) -> Option<Recorded> {
        self.main_requests().into_iter().next()
    }

    /// Every tool result Codex sent back so far, in order of first appearance.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.shared.log.lock().results.clone()
    }

    /// The first result of the call named `name` ([`Call::name`]).
    pub fn result_of(&self, name: &str) -> Option<ToolResult> {
        self.shared
            .log
            .lock()
            .results
            .iter()
            .find(|r| r.name() == name)
            .cloned()
    }

    /// Steps that could not produce a turn, with why.
    pub fn failures(&self) -> Vec<String> {
        self.shared.log.lock().failures.clone()
    }

    /// When step `index` was first served (the model "made" its calls).
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
            "fake Responses API at {}: {} request(s)",
            self.url,
            log.requests.len()
        );
        for (i, r) in log.requests.iter().enumerate() {
            let at = r.at.duration_since(self.shared.started).as_secs_f64();
            let what = match &r.kind {
                Kind::Main(Some(n)) => format!("main, answered step {n}"),
                Kind::Main(None) => "main, script over: answered a closing text".to_string(),
                Kind::Side(source) => format!("side request ({source}): answered a short text"),
                Kind::Unknown => "unknown path: answered 404".to_string(),
            };
            let tools = r.body["tools"].as_array().map_or(0, Vec::len);
            let last = r
                .input()
                .last()
                .map(|i| clip(&i.to_string(), 200))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  #{i} +{at:.2}s {} {} ({what}; model {}, {} input item(s), {tools} tool(s); last: {last})",
                r.method,
                r.uri,
                r.body["model"].as_str().unwrap_or("-"),
                r.input().len(),
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

fn record(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Value,
    kind: Kind,
) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    shared.log.lock().requests.push(Recorded {
        method: method.to_string(),
        uri: uri.to_string(),
        session_id: header("session-id").map(str::to_string),
        metadata: header("x-codex-turn-metadata")
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null),
        body,
        kind,
        at: Instant::now(),
    });
}

async fn responses(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or(DEFAULT_MODEL).to_string();
    let source = headers
        .get("x-codex-turn-metadata")
        .and_then(|v| v.to_str().ok())
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .and_then(|m| m["thread_source"].as_str().map(str::to_string));
    if let Some(source) = source.filter(|s| s != "user") {
        record(&shared, &method, &uri, &headers, body, Kind::Side(source));
        return sse(&model, None, &Turn::text("OK."));
    }

    let (transcript, next) = read_conversation(&body);
    {
        // Keep every result, in order of first appearance.
        let mut log = shared.log.lock();
        for r in &transcript.results {
            if !log.results.iter().any(|k| k.call_id == r.call_id) {
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
            // connection Codex would retry.
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
    record(&shared, &method, &uri, &headers, body, kind);
    sse(&model, Some(next), &turn)
}

async fn unknown(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    eprintln!("fake Responses API: unexpected {method} {uri}");
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&shared, &method, &uri, &headers, body, Kind::Unknown);
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": {
                "message": format!("the fake Responses API does not serve {uri}"),
                "type": "invalid_request_error",
                "code": "not_found",
            }
        })),
    )
        .into_response()
}

/// The step number in one of the fake's ids (`call_step3_0`, `msg_step3`).
fn step_of(id: &str) -> Option<usize> {
    if let Some(rest) = id.strip_prefix(CALL_PREFIX) {
        return rest.split('_').next()?.parse().ok();
    }
    id.strip_prefix(MESSAGE_PREFIX)?.parse().ok()
}

/// The transcript in a main request, and the index of the step to play next.
fn read_conversation(body: &Value) -> (Transcript, usize) {
    let empty = Vec::new();
    let input = body["input"].as_array().unwrap_or(&empty);
    let next = input
        .iter()
        .filter_map(|i| {
            let id = match i["type"].as_str()? {
                "message" if i["role"] == "assistant" => i["id"].as_str()?,
                "function_call" | "custom_tool_call" | "tool_search_call" => {
                    i["call_id"].as_str()?
                }
                _ => return None,
            };
            step_of(id)
        })
        .map(|n| n + 1)
        .max()
        .unwrap_or(0);
    let calls: Vec<(&str, Call)> = input
        .iter()
        .filter_map(|i| Some((i["call_id"].as_str()?, Call::from_item(i)?)))
        .collect();
    let now = Instant::now();
    let results = input
        .iter()
        .filter(|i| {
            matches!(
                i["type"].as_str(),
                Some("function_call_output" | "custom_tool_call_output")
            )
        })
        .filter_map(|i| {
            let call_id = i["call_id"].as_str()?;
            let (header, blocks) = output_blocks(&i["output"]);
            Some(ToolResult {
                call_id: call_id.to_string(),
                call: calls
                    .iter()
                    .find(|(id, _)| *id == call_id)
                    .map(|(_, c)| c.clone()),
                blocks,
                header,
                seen_at: now,
            })
        })
        .collect();
    let tools = body["tools"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|t| t["name"].as_str().or_else(|| t["type"].as_str()))
        .map(str::to_string)
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

/// A tool output: a plain string, or `input_text` blocks (an MCP output,
/// whose first block is a `Wall time: ...` header).
fn output_blocks(output: &Value) -> (Option<String>, Vec<String>) {
    match output {
        Value::String(s) => (None, vec![s.clone()]),
        Value::Array(blocks) => {
            let mut texts: Vec<String> = blocks
                .iter()
                .map(|b| match b["text"].as_str() {
                    Some(text) => text.to_string(),
                    None => b.to_string(),
                })
                .collect();
            let header = texts
                .first()
                .filter(|t| t.starts_with("Wall time:"))
                .cloned();
            if header.is_some() {
                texts.remove(0);
            }
            (header, texts)
        }
        Value::Null => (None, Vec::new()),
        other => (None, vec![other.to_string()]),
    }
}

/// The texts in one `message` item's content.
fn item_texts(item: &Value) -> Vec<String> {
    match &item["content"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The texts of the `role` messages in a request body's `input`, in order.
fn message_texts(body: &Value, role: &str) -> Vec<String> {
    body["input"]
        .as_array()
        .map(|input| {
            input
                .iter()
                .filter(|i| i["type"] == "message" && i["role"] == role)
                .flat_map(item_texts)
                .collect()
        })
        .unwrap_or_default()
}

/// `text` cut to at most `max` bytes (on a character boundary), on one line.
fn clip(text: &str, max: usize) -> String {
    let mut text = text.replace('\n', " ");
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// The output items of a turn.
fn turn_items(step: Option<usize>, turn: &Turn) -> Vec<Value> {
    let n = step.unwrap_or(0);
    match turn {
        Turn::Text(text) => vec![json!({
            "type": "message",
            "id": match step {
                Some(n) => format!("{MESSAGE_PREFIX}{n}"),
                None => "msg_side".to_string(),
            },
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })],
        Turn::Calls(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, c)| c.item(&format!("{CALL_PREFIX}{n}_{i}")))
            .collect(),
    }
}

/// A streamed answer: the Responses API event sequence for one response.
fn sse(model: &str, step: Option<usize>, turn: &Turn) -> Response {
    let id = match step {
        Some(n) => format!("resp_step{n}"),
        None => "resp_side".to_string(),
    };
    let items = turn_items(step, turn);
    let mut out = String::new();
    let mut event = |data: Value| {
        let name = data["type"].as_str().unwrap_or("message").to_string();
        let _ = write!(out, "event: {name}\ndata: {data}\n\n");
    };
    event(json!({
        "type": "response.created",
        "response": {"id": id, "object": "response", "model": model, "status": "in_progress"},
    }));
    for (index, item) in items.iter().enumerate() {
        event(json!({"type": "response.output_item.added", "output_index": index, "item": item}));
        event(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }
    event(json!({
        "type": "response.completed",
        "response": {
            "id": id, "object": "response", "model": model, "status": "completed",
            "output": items,
            "usage": {
                "input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 110,
            },
        },
    }));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        out,
    )
        .into_response()
}
