//! The real Claude Code CLI, headless, against a real broker, with a scripted
//! fake Anthropic API ([`fake_model`]) so it never reaches Anthropic.
//!
//! Each scenario runs for both MCP transports docs/claude-code.md documents
//! (`"type": "http"` on `/mcp`, `"type": "sse"` on `/mcp/sse`). The scripted
//! model first loads the cipc tools with Claude Code's `ToolSearch` (they are
//! deferred), reads the `peerKey` out of `connect`'s answer and passes it as
//! `peer_key` on every later cipc call, as the broker tells a model to.
//! - **worker**: Claude Code connects as `backend`, checks `whoami`, waits
//!   for a command the test sends over REST, and acks it; the test sees the
//!   result over REST, and exactly one `backend` peer, online via MCP, from
//!   connect until the ack.
//! - **orchestrator**: Claude Code connects as `lead` and sends a command
//!   (waiting for its result) to a REST worker; the answer carries the
//!   worker's result and the command is `from` `lead`.
//! - **long wait**: `wait_for_command` stays open past Claude Code's idle
//!   watchdog, kept alive only by the broker's progress notifications.
//!
//! Claude Code is found in `CIPC_CLAUDE_BIN`, then where
//! `.ci/install-claude-code` puts it, then on `PATH`. Without it these tests
//! print a note and pass, except under `CI=true`, where they fail. With
//! `CIPC_CLAUDE_TRACE` set, a passing run prints the same report a failing
//! one does (Claude Code's output, every model request, the peer list).
//!
//! How Claude Code is run (2.1.328, found by running it):
//! - `claude -p PROMPT --output-format stream-json --verbose` with an empty
//!   environment but `PATH`, `HOME` and `TMPDIR` in a temporary directory
//!   (next to the working directory, so no settings, `CLAUDE.md` or
//!   `.mcp.json` of the machine or repository leak in, and nothing is left
//!   behind), `ANTHROPIC_BASE_URL` at the fake and
//!   `ANTHROPIC_API_KEY=test-key` (it then sends `x-api-key: test-key` and
//!   never tries an OAuth login), plus `DISABLE_AUTOUPDATER`,
//!   `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`, `DISABLE_TELEMETRY` and
//!   `DISABLE_ERROR_REPORTING`.
//! - `--mcp-config FILE --strict-mcp-config`: only the broker, with exactly
//!   docs/claude-code.md's `.mcp.json` entry; nothing else the machine has configured.
//!   In `-p` mode Claude Code connects MCP servers before its first request.
//! - `--allowedTools=mcp__cipc__*`: without it every cipc tool call is
//!   refused ("you haven't granted it yet") in `-p` mode (`ToolSearch` needs
//!   no permission). `--dangerously-skip-permissions` and `--permission-mode
//!   bypassPermissions` refuse to run as root, which CI is.
//! - `--no-session-persistence`, and stdin closed (`-p` would read it).
//! - An MCP tool call is aborted once it has sent neither an answer nor a
//!   progress notification for `CLAUDE_CODE_MCP_TOOL_IDLE_TIMEOUT` ms (5
//!   minutes by default for http and sse servers), checked by a watchdog
//!   every 30 s. The long-wait scenario sets 5 s and waits past the first
//!   check. With the broker's progress slowed to every 20 s instead, Claude
//!   Code aborts the wait at that check ("sent no response or progress for
//!   9s"), so the scenario really proves that progress keeps a wait alive.
//!   Progress notifications do not appear in the stream-json output.

mod common;

use common::claude::{capture, claude_or_skip, Scenario};
mod fake_model;

use cipc::broker::BrokerConfig;
use cipc::server::{RunningServer, ServerConfig};
use fake_model::{fixed, step, FakeModel, Step, ToolResult, Transcript, Turn};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A safety net on every wait, so a broken run fails instead of hanging;
/// never a timing claim.
const LIMIT: Duration = Duration::from_secs(40);

/// The long-wait scenario: the broker reports progress this often...
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// ...Claude Code gives up on a tool call silent this long (ms)...
const IDLE_TIMEOUT_MS: u64 = 5_000;
/// ...but only notices at its watchdog's ticks, every 30 s from the call's
/// start (2.1.328)...
const WATCHDOG_TICK: Duration = Duration::from_secs(30);
/// ...so the command is sent this long after the wait started: past the
/// first tick, which would abort a wait nothing kept alive.
const LONG_WAIT: Duration = Duration::from_secs(WATCHDOG_TICK.as_secs() + 3);

// ---- the transports ----

#[derive(Debug, Clone, Copy)]
enum Transport {
    /// Streamable HTTP on `/mcp`.
    Http,
    /// Legacy HTTP+SSE on `/mcp/sse`.
    Sse,
}

impl Transport {
    /// The `mcpServers.cipc` entry, as docs/claude-code.md has users write it.
    fn server_entry(self, base: &str) -> Value {
        match self {
            Transport::Http => json!({"type": "http", "url": format!("{base}/mcp")}),
            Transport::Sse => json!({"type": "sse", "url": format!("{base}/mcp/sse")}),
        }
    }
}

// ---- Claude Code as a child process ----

/// A running `claude -p`, its output captured line by line.
struct Claude {
    child: Mutex<tokio::process::Child>,
    exit: Mutex<Option<ExitStatus>>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The tasks copying stdout and stderr, done once both pipes closed.
    readers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    version: String,
    /// `HOME`, `TMPDIR` and the working directory; removed on drop.
    _dir: tempfile::TempDir,
}

impl Claude {
    /// Starts Claude Code on `prompt`, with the broker as its only MCP server
    /// and the fake as its API; `env` adds variables.
    async fn spawn(
        bin: &Path,
        api: &str,
        mcp_server: Value,
        prompt: &str,
        env: &[(&str, String)],
    ) -> Claude {
        let dir = tempfile::tempdir().expect("a temporary HOME for Claude Code");
        let home = dir.path().join("home");
        let project = dir.path().join("project");
        // Claude Code leaves probe directories in its TMPDIR after every run.
        let tmp = dir.path().join("tmp");
        for d in [&home, &project, &tmp] {
            std::fs::create_dir_all(d).expect("create Claude Code's directories");
        }
        let config = dir.path().join("mcp.json");
        let mcp = json!({"mcpServers": {"cipc": mcp_server}});
        std::fs::write(&config, mcp.to_string()).expect("write the MCP config");

        let path = std::env::var_os("PATH").unwrap_or_default();
        let base_env = |cmd: &mut tokio::process::Command| {
            common::claude::quiet_env(cmd, &path, &home, &tmp, &project, api);
        };
        let version = common::claude::version(bin, base_env).await;

        let mut cmd = tokio::process::Command::new(bin);
        base_env(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg("-p")
            .arg(prompt)
            .args(["--output-format", "stream-json", "--verbose"])
            .arg("--mcp-config")
            .arg(&config)
            .arg("--strict-mcp-config")
            .arg("--allowedTools=mcp__cipc__*")
            .arg("--no-session-persistence")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            capture(
                child.stdout.take().expect("piped stdout"),
                stdout.clone(),
                |l| l,
            ),
            capture(
                child.stderr.take().expect("piped stderr"),
                stderr.clone(),
                |l| l,
            ),
        ];
        Claude {
            child: Mutex::new(child),
            exit: Mutex::new(None),
            stdout,
            stderr,
            readers: Mutex::new(readers),
            version,
            _dir: dir,
        }
    }

    /// How it exited, once it has.
    fn exited(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock();
        if exit.is_none() {
            *exit = self.child.lock().try_wait().ok().flatten();
        }
        *exit
    }

    /// Waits (briefly) until all its output has been read, after it exited.
    async fn drained(&self) {
        let readers = std::mem::take(&mut *self.readers.lock());
        for reader in readers {
            // A grandchild could hold a pipe open: do not wait for it forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
    }

    /// The stream-json events it printed.
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last lines of its stdout and stderr.
    fn tail(&self) -> String {
        fn last(lines: &[String], n: usize) -> String {
            let mut s = String::new();
            for line in &lines[lines.len().saturating_sub(n)..] {
                let mut cut = line.len().min(800);
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                let more = if cut < line.len() { "..." } else { "" };
                let _ = writeln!(s, "  {}{more}", &line[..cut]);
            }
            s
        }
        // One lock at a time: parking_lot's locks are not reentrant.
        let (count, stdout) = {
            let lines = self.stdout.lock();
            (lines.len(), last(&lines, 30))
        };
        let stderr = last(&self.stderr.lock(), 30);
        format!(
            "Claude Code {} stdout (last of {count} lines):\n{stdout}stderr:\n{stderr}",
            self.version
        )
    }
}

// ---- watching the peer list ----

/// One peer as `GET /peers` showed it.
#[derive(Debug, Clone, PartialEq)]
struct PeerRow {
    id: String,
    role: String,
    status: String,
    via: String,
}

/// The peer list at one moment (`at`: when its answer arrived).
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    peers: Vec<PeerRow>,
}

/// Polls `GET /peers` for as long as it lives.
struct PeerWatch {
    snapshots: Arc<Mutex<Vec<Snapshot>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PeerWatch {
    fn start(base: &str) -> PeerWatch {
        let snapshots = Arc::new(Mutex::new(Vec::new()));
        let into = snapshots.clone();
        let url = format!("{base}/peers");
        let task = tokio::spawn(async move {
            let http = common::http();
            loop {
                if let Ok(r) = http.get(&url).send().await {
                    if let Ok(body) = r.json::<Value>().await {
                        let peers = body["peers"]
                            .as_array()
                            .map(|peers| {
                                peers
                                    .iter()
                                    .map(|p| PeerRow {
                                        id: text(&p["id"]),
                                        role: text(&p["role"]),
                                        status: text(&p["status"]),
                                        via: text(&p["via"]),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        into.lock().push(Snapshot {
                            at: Instant::now(),
                            peers,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        PeerWatch { snapshots, task }
    }

    fn snapshots(&self) -> Vec<Snapshot> {
        self.snapshots.lock().clone()
    }

    /// The last `n` snapshots (fewer at the start).
    fn recent(&self, n: usize) -> Vec<Snapshot> {
        let snaps = self.snapshots.lock();
        snaps[snaps.len().saturating_sub(n)..].to_vec()
    }

    /// The changes seen, one line each, for failure messages.
    fn summary(&self, since: Instant) -> String {
        let mut s = String::from("GET /peers as polled (changes only):\n");
        let mut last: Option<&Vec<PeerRow>> = None;
        let snaps = self.snapshots.lock();
        for snap in snaps.iter() {
            if last == Some(&snap.peers) {
                continue;
            }
            last = Some(&snap.peers);
            let peers: Vec<String> = snap
                .peers
                .iter()
                .map(|p| format!("{} {} {} via {}", p.role, p.id, p.status, p.via))
                .collect();
            let _ = writeln!(
                s,
                "  +{:.2}s [{}]",
                snap.at.saturating_duration_since(since).as_secs_f64(),
                peers.join("; ")
            );
        }
        s
    }
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

// ---- one scenario run ----

/// A broker, the fake model and Claude Code, started together.
struct Run {
    name: String,
    started: Instant,
    base: String,
    model: FakeModel,
    claude: Claude,
    peers: PeerWatch,
    /// Last, so the broker outlives the rest when a run is dropped.
    _broker: RunningServer,
}

impl Scenario for Run {
    /// Everything worth seeing when a run fails.
    fn report(&self) -> String {
        format!(
            "{}, {:.1}s in; Claude Code exit: {}\n{}\n{}\n{}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.claude
                .exited()
                .map_or("still running".to_string(), |s| s.to_string()),
            self.claude.tail(),
            self.model.summary(),
            self.peers.summary(self.started)
        )
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.claude.exited()
    }

    async fn drained(&self) {
        self.claude.drained().await;
    }
}

impl Run {
    async fn start(
        name: &str,
        bin: &Path,
        transport: Transport,
        broker: RunningServer,
        script: Vec<Step>,
        prompt: &str,
        env: &[(&str, String)],
    ) -> Run {
        let base = broker.url();
        let model = FakeModel::start(script).await;
        let peers = PeerWatch::start(&base);
        let started = Instant::now();
        let claude =
            Claude::spawn(bin, model.url(), transport.server_entry(&base), prompt, env).await;
        Run {
            name: format!("{name} over {transport:?}"),
            started,
            base,
            model,
            claude,
            peers,
            _broker: broker,
        }
    }

    /// Waits for Claude Code to exit and checks it finished its turn cleanly.
    /// With `CIPC_CLAUDE_TRACE` set, prints the run's report even when it passes.
    async fn finish(&self) {
        let status = self
            .until("Claude Code's exit", LIMIT, || async {
                self.claude.exited()
            })
            .await;
        self.claude.drained().await;
        self.check(
            status.success(),
            format!("Claude Code exited with {status}"),
        );
        let failures = self.model.failures();
        self.check(
            failures.is_empty(),
            format!("the script could not go on: {failures:?}"),
        );
        let events = self.claude.events();
        let result = events.iter().rev().find(|e| e["type"] == "result");
        self.check(
            result.is_some_and(|r| r["is_error"] == false && r["subtype"] == "success"),
            format!("Claude Code's last result event is not a success: {result:?}"),
        );
        if std::env::var_os("CIPC_CLAUDE_TRACE").is_some() {
            eprintln!("---- {} ----", self.report());
        }
    }

    /// The first result of the tool called `name` (`ToolSearch`,
    /// `mcp__cipc__connect`), which must not be an error.
    fn ok_result(&self, name: &str) -> ToolResult {
        let Some(r) = self.model.result_of(name) else {
            self.fail(format!("Claude Code sent back no result of {name}"));
        };
        self.check(
            !r.is_error,
            format!("{name} answered an error: {}", r.brief()),
        );
        r
    }

    /// Checks ToolSearch loaded the cipc tools.
    fn check_tool_search(&self, tools: &[&str]) {
        let r = self.ok_result("ToolSearch");
        for tool in tools {
            let reference = json!({"type": "tool_reference", "tool_name": cipc(tool)});
            self.check(
                r.blocks
                    .iter()
                    .any(|b| serde_json::from_str::<Value>(b).ok() == Some(reference.clone())),
                format!("ToolSearch did not load {}: {}", cipc(tool), r.brief()),
            );
        }
    }

    /// Waits until the last few polls of `GET /peers` all showed a `role`
    /// peer online, so [`Run::check_one_online_peer`] has a window of
    /// snapshots to look at; answers the peer's id.
    async fn online_peer(&self, role: &str) -> String {
        const POLLS: usize = 3;
        self.until(&format!("{role} peer online"), LIMIT, || async {
            let recent = self.peers.recent(POLLS);
            let ids: Vec<&str> = recent
                .iter()
                .filter_map(|s| {
                    s.peers
                        .iter()
                        .find(|p| p.role == role && p.status == "online")
                })
                .map(|p| p.id.as_str())
                .collect();
            (ids.len() == POLLS && ids.iter().all(|id| *id == ids[0])).then(|| ids[0].to_string())
        })
        .await
    }

    /// Waits until command `id` is finished; answers it.
    async fn finished_command(&self, id: &str) -> Value {
        let url = format!("{}/commands/{id}/result?timeout=200", self.base);
        self.until(&format!("result of command {id}"), LIMIT, || async {
            let (status, body) = common::get(&url).await;
            (status == 200 && body.get("timedOut").is_none()).then(|| body["command"].clone())
        })
        .await
    }

    /// Checks that exactly one peer of `role` ever showed up, that it is an
    /// MCP peer, and that it was online in every snapshot from the first one
    /// showing it until `until` (a moment Claude Code was certainly still
    /// running its session).
    fn check_one_online_peer(&self, role: &str, until: Instant) {
        let snaps = self.peers.snapshots();
        let mut ids: Vec<&str> = snaps
            .iter()
            .flat_map(|s| s.peers.iter())
            .filter(|p| p.role == role)
            .map(|p| p.id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.check(
            ids.len() == 1,
            format!("expected exactly one {role} peer over the run, saw {ids:?}"),
        );
        let mut checked = 0;
        for snap in snaps.iter().filter(|s| s.at < until) {
            let mine: Vec<&PeerRow> = snap.peers.iter().filter(|p| p.role == role).collect();
            if mine.is_empty() && checked == 0 {
                continue; // not connected yet
            }
            let at = snap
                .at
                .saturating_duration_since(self.started)
                .as_secs_f64();
            self.check(
                mine.len() == 1,
                format!("+{at:.2}s: {} {role} peers: {mine:?}", mine.len()),
            );
            self.check(
                mine[0].status == "online" && mine[0].via == "mcp",
                format!("+{at:.2}s: the {role} peer is not online via mcp: {mine:?}"),
            );
            checked += 1;
        }
        self.check(
            checked >= 3,
            format!("only {checked} snapshot(s) showed the {role} peer before the deadline"),
        );
    }
}

// ---- the scripts ----

/// A cipc tool's name as Claude Code calls it.
fn cipc(tool: &str) -> String {
    format!("mcp__cipc__{tool}")
}

/// Loads the cipc tools' schemas, as a model has to before calling them.
fn tool_search(tools: &[&str]) -> Step {
    let names: Vec<String> = tools.iter().map(|t| cipc(t)).collect();
    fixed(Turn::tool(
        "ToolSearch",
        json!({"query": format!("select:{}", names.join(",")), "max_results": tools.len()}),
    ))
}

/// A call of cipc tool `tool` with `input`, plus the peer key `connect`
/// answered (as a model would pass it on every call after connect).
fn keyed(t: &Transcript, tool: &str, mut input: Value) -> Result<Turn, String> {
    input["peer_key"] = Value::String(peer_key(t)?);
    Ok(Turn::tool(&cipc(tool), input))
}

/// The `peerKey` in connect's tool result.
fn peer_key(t: &Transcript) -> Result<String, String> {
    fn find(v: &Value) -> Option<&str> {
        match v {
            Value::Object(m) => m
                .get("peerKey")
                .and_then(Value::as_str)
                .or_else(|| m.values().find_map(find)),
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let connect = t
        .last_of(&cipc("connect"))
        .ok_or("no result of connect yet")?;
    if connect.is_error {
        return Err(format!("connect failed: {}", connect.brief()));
    }
    connect
        .json()
        .as_ref()
        .and_then(find)
        .map(str::to_string)
        .ok_or_else(|| format!("connect answered no peerKey: {}", connect.brief()))
}

/// The command the last `wait_for_command` handed over.
fn taken_command(t: &Transcript) -> Result<Value, String> {
    let wait = t
        .last_of(&cipc("wait_for_command"))
        .ok_or("no result of wait_for_command yet")?;
    let command = wait.json().map(|j| j["command"].clone());
    match command {
        Some(c) if !wait.is_error && c["id"].is_string() => Ok(c),
        _ => Err(format!(
            "wait_for_command handed over no command: {}",
            wait.brief()
        )),
    }
}

/// Connect as `role`, wait for a command, ack it with a result that echoes
/// its params. Steps: 0 ToolSearch, 1 connect, 2 whoami, 3 wait, 4 ack, 5 text.
fn worker_script(role: &'static str, wait_seconds: u64) -> Vec<Step> {
    vec![
        tool_search(&["connect", "whoami", "wait_for_command", "ack_command"]),
        fixed(Turn::tool(&cipc("connect"), json!({"role": role}))),
        step(|t| keyed(t, "whoami", json!({}))),
        step(move |t| {
            keyed(
                t,
                "wait_for_command",
                json!({"timeout_seconds": wait_seconds}),
            )
        }),
        step(|t| {
            let command = taken_command(t)?;
            keyed(
                t,
                "ack_command",
                json!({"command_id": command["id"], "result": worker_result(&command["params"])}),
            )
        }),
        fixed(Turn::text("Done: the command is acked.")),
    ]
}

/// The index of the `wait_for_command` step in [`worker_script`].
const WAIT_STEP: usize = 3;

/// What the scripted worker acks a command with.
fn worker_result(params: &Value) -> Value {
    json!({"built": true, "artifact": "app.tar", "params": params})
}

// ---- scenario 1: Claude Code as a worker ----

async fn worker(transport: Transport) {
    let Some(bin) = claude_or_skip(&format!("worker over {transport:?}")) else {
        return;
    };
    let run = Run::start(
        "worker",
        &bin,
        transport,
        common::start().await,
        worker_script("backend", 30),
        "Connect to the IPC broker as the backend, then do the next command you get.",
        &[],
    )
    .await;

    let backend = run.online_peer("backend").await;
    let params = json!({"release": true, "target": "x86_64"});
    let (status, sent) = common::post(
        &format!("{}/commands/send", run.base),
        json!({"target": "backend", "action": "build", "params": params}),
    )
    .await;
    run.check(status == 201, format!("send answered {status}: {sent}"));
    let id = text(&sent["command"]["id"]);

    let command = run.finished_command(&id).await;
    run.check(
        command["status"] == "acked" && command["result"] == worker_result(&params),
        format!("command {id} did not come back acked with the worker's result: {command}"),
    );
    run.finish().await;

    run.check_tool_search(&["connect", "whoami", "wait_for_command", "ack_command"]);
    let connect = run.ok_result(&cipc("connect"));
    let whoami = run.ok_result(&cipc("whoami"));
    run.check(
        whoami.json().is_some_and(|j| j["registered"] == true)
            && !whoami.text().contains("not registered"),
        format!(
            "whoami does not say the session is registered: {}",
            whoami.brief()
        ),
    );
    let wait = run.ok_result(&cipc("wait_for_command"));
    run.check(
        wait.json().is_some_and(|j| {
            j["command"]["id"] == id.as_str() && j["command"]["action"] == "build"
        }),
        format!(
            "wait_for_command did not hand over command {id}: {}",
            wait.brief()
        ),
    );
    let ack = run.ok_result(&cipc("ack_command"));
    run.check(
        ack.json()
            .is_some_and(|j| j["command"]["status"] == "acked"),
        format!("ack_command did not record the ack: {}", ack.brief()),
    );
    let peer = Some(backend.clone());
    run.check(
        connect.json().map(|j| text(&j["peer"]["id"])) == peer
            && whoami.json().map(|j| text(&j["peer"]["id"])) == peer
            && command["deliveredTo"] == backend.as_str(),
        format!(
            "connect, whoami, GET /peers and the delivery disagree on the backend peer {backend}: {}; {}; {}",
            connect.brief(),
            whoami.brief(),
            command["deliveredTo"]
        ),
    );
    // Claude Code sent the ack's result back to the model: the session was
    // still alive then, so its peer must have been online up to that moment.
    run.check_one_online_peer("backend", ack.seen_at);
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_over_http() {
    worker(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_over_sse() {
    worker(Transport::Sse).await;
}

// ---- scenario 2: Claude Code as an orchestrator ----

async fn orchestrator(transport: Transport) {
    let Some(bin) = claude_or_skip(&format!("orchestrator over {transport:?}")) else {
        return;
    };
    let script = vec![
        tool_search(&["connect", "send_command"]),
        fixed(Turn::tool(&cipc("connect"), json!({"role": "lead"}))),
        step(|t| {
            keyed(
                t,
                "send_command",
                json!({"target": "worker", "action": "x", "params": {"n": 7},
                       "wait": true, "timeout_seconds": 30}),
            )
        }),
        fixed(Turn::text("The worker answered.")),
    ];
    // The REST worker is there, waiting, before Claude Code starts.
    let broker = common::start().await;
    let base = broker.url();
    let (status, body) =
        common::post(&format!("{base}/peers/connect"), json!({"role": "worker"})).await;
    assert_eq!(status, 201, "the REST worker's connect: {body}");
    let peer = text(&body["peer"]["id"]);
    // REST's connect answers the peer's secret as `key` (MCP's as `peerKey`).
    let key = body["key"].as_str().map(str::to_string);
    assert!(key.is_some(), "the REST worker's connect has a key: {body}");
    let worker = tokio::spawn(rest_worker(base.clone(), peer, key));
    let run = Run::start(
        "orchestrator",
        &bin,
        transport,
        broker,
        script,
        "Tell the worker to do x and wait for its answer.",
        &[],
    )
    .await;

    run.until("the REST worker's ack", LIMIT, || async {
        worker.is_finished().then_some(())
    })
    .await;
    let taken = match worker.await {
        Ok(Ok(command)) => command,
        Ok(Err(e)) => run.fail(format!("the REST worker failed: {e}")),
        Err(e) => run.fail(format!("the REST worker panicked: {e}")),
    };
    run.finish().await;

    run.check_tool_search(&["connect", "send_command"]);
    run.ok_result(&cipc("connect"));
    let id = text(&taken["id"]);
    let sent = run.ok_result(&cipc("send_command"));
    run.check(
        sent.json().is_some_and(|j| {
            j["command"]["id"] == id.as_str()
                && j["command"]["status"] == "acked"
                && j["command"]["result"] == json!({"answer": 42})
        }),
        format!(
            "send_command did not answer the worker's result: {}",
            sent.brief()
        ),
    );
    let (_, result) = common::get(&format!("{base}/commands/{id}/result?timeout=1")).await;
    run.check(
        result["command"]["from"] == "lead" && taken["from"] == "lead",
        format!(
            "the command is not from the MCP session's role \"lead\": {}",
            result["command"]
        ),
    );
    run.check(
        taken["params"] == json!({"n": 7}) && taken["action"] == "x",
        format!("the worker got another command: {taken}"),
    );
}

/// A REST peer that takes one command and acks it with `{"answer": 42}`;
/// answers the command as it took it.
async fn rest_worker(base: String, peer: String, key: Option<String>) -> Result<Value, String> {
    let http = common::http();
    let with_key = |r: reqwest::RequestBuilder| match &key {
        Some(k) => r.header("X-Cipc-Peer-Key", k),
        None => r,
    };
    let wait = with_key(http.get(format!("{base}/commands/{peer}/wait?timeout=35000")))
        .send()
        .await
        .map_err(|e| format!("wait: {e}"))?;
    let status = wait.status();
    let body: Value = wait.json().await.map_err(|e| format!("wait body: {e}"))?;
    if !status.is_success() || body.get("timedOut").is_some() {
        return Err(format!("wait answered {status}: {body}"));
    }
    let command = body["command"].clone();
    let id = text(&command["id"]);
    let ack = with_key(http.post(format!("{base}/commands/{id}/ack")))
        .json(&json!({"result": {"answer": 42}}))
        .send()
        .await
        .map_err(|e| format!("ack: {e}"))?;
    if !ack.status().is_success() {
        let status = ack.status();
        return Err(format!(
            "ack answered {status}: {}",
            ack.text().await.unwrap_or_default()
        ));
    }
    Ok(command)
}

#[tokio::test(flavor = "multi_thread")]
async fn orchestrator_over_http() {
    orchestrator(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orchestrator_over_sse() {
    orchestrator(Transport::Sse).await;
}

// ---- scenario 3: a wait past Claude Code's idle watchdog ----

async fn long_wait(transport: Transport) {
    let Some(bin) = claude_or_skip(&format!("long wait over {transport:?}")) else {
        return;
    };
    let server = ServerConfig {
        mcp_progress_every: PROGRESS_EVERY,
        ..ServerConfig::default()
    };
    let run = Run::start(
        "long wait",
        &bin,
        transport,
        common::start_with(BrokerConfig::default(), server, None).await,
        worker_script("sleeper", 60),
        "Connect to the IPC broker as the sleeper and wait for a command.",
        &[(
            "CLAUDE_CODE_MCP_TOOL_IDLE_TIMEOUT",
            IDLE_TIMEOUT_MS.to_string(),
        )],
    )
    .await;

    let waiting_since = run
        .until("wait_for_command call", LIMIT, || async {
            run.model.served_at(WAIT_STEP)
        })
        .await;
    // The point of this scenario: stay silent far longer than the idle limit
    // (Claude Code must not give up, nor the broker drop the peer).
    run.until("the end of the long wait", LONG_WAIT + LIMIT, || async {
        if let Some(r) = run.model.result_of(&cipc("wait_for_command")) {
            run.fail(format!(
                "wait_for_command answered before any command was sent: {}",
                r.brief()
            ));
        }
        (waiting_since.elapsed() >= LONG_WAIT).then_some(())
    })
    .await;
    let (status, sent) = common::post(
        &format!("{}/commands/send", run.base),
        json!({"target": "sleeper", "action": "wake", "params": {"after": LONG_WAIT.as_secs()}}),
    )
    .await;
    run.check(status == 201, format!("send answered {status}: {sent}"));
    let id = text(&sent["command"]["id"]);
    let command = run.finished_command(&id).await;
    run.check(
        command["status"] == "acked",
        format!("command {id} was not acked: {command}"),
    );
    run.finish().await;

    let wait = run.ok_result(&cipc("wait_for_command"));
    run.check(
        wait.json()
            .is_some_and(|j| j["command"]["id"] == id.as_str()),
        format!(
            "wait_for_command did not hand over command {id}: {}",
            wait.brief()
        ),
    );
    let waited = wait.seen_at.duration_since(waiting_since);
    run.check(
        waited >= LONG_WAIT,
        format!("wait_for_command came back after only {waited:?}, not past Claude Code's first idle check"),
    );
    let ack = run.ok_result(&cipc("ack_command"));
    run.check_one_online_peer("sleeper", ack.seen_at);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_wait_over_http() {
    long_wait(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn long_wait_over_sse() {
    long_wait(Transport::Sse).await;
}
