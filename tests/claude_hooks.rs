//! `cipc claude setup` end to end: the real Claude Code CLI, started plainly
//! in a project that setup configured (no `--mcp-config`), against a real
//! broker and a scripted fake Anthropic API ([`fake_model`]).
//!
//! Every scenario checks what the model really received (the fake's recorded
//! requests) and what the broker shows over REST:
//! - **queued before start**: an order sent before Claude Code starts is in
//!   the first model request (the `SessionStart` hook took it), and the
//!   broker shows it delivered to a protected peer of the role, via `hook`.
//! - **between tool calls**: an order sent while the model is answering its
//!   first request reaches the second request (the `PostToolUse` hook).
//! - **idle wake**: with stdin held open (`--input-format stream-json`), an
//!   order sent after the turn ended wakes the idle session (the `Stop`
//!   hook, a background `asyncRewake` hook, exits 2 with it); the model acks
//!   it with plain `cipc ack` in Bash (the session's identity comes from the
//!   `CLAUDE_ENV_FILE` export of `SessionStart`), which completes the
//!   sender's `cipc send --wait`. Then stdin is closed and the time Claude
//!   Code takes to exit is printed (not asserted tightly).
//! - **permissions relayed**: two Bash calls nobody allowed become two
//!   permission questions on the broker; the person allows one (it runs)
//!   and denies the other with a note (it does not run, and the model is
//!   shown the note); none stays open.
//! - **no key in the model's hands**: the model calls `whoami`,
//!   `wait_for_command` and `ack_command` without any key (the
//!   `PreToolUse` hook adds it) and the order ends acked with its result;
//!   no `pk_` string is in any request the model received.
//! - **leases at the edit**: with another session holding `locked.txt`, a
//!   `Write` to it is refused (the file unchanged, the refusal names the
//!   holder and the reason) while a `Write` to a free file goes through.
//! - **no ghosts**: `claude mcp list` and `claude mcp get` leave no peer.
//! - **Claude Code to Codex**: the session sends an order to a role only a
//!   Codex session (the real Codex CLI, set up with `cipc codex setup`,
//!   against its own fake model) holds, waits for it with `send_command`,
//!   and gets the result the Codex session acked; neither knows which agent
//!   the other is.
//! - **remove**: after each run, `cipc claude remove` leaves `.mcp.json` and
//!   `.claude/settings.json` without cipc's entries (exactly as they were
//!   before setup, or gone when setup created them).
//!
//! Claude Code is found and run as in `tests/claude_code.rs`: in
//! `CIPC_CLAUDE_BIN`, then where `.ci/install-claude-code` puts it, then on
//! `PATH`; without it these tests print a note and pass, except under
//! `CI=true`. It runs with an empty environment but `PATH`, a temporary
//! `HOME` and `TMPDIR`, `CIPC_STATE_DIR` (the hooks' memory, inherited by
//! them), the fake's `ANTHROPIC_BASE_URL` and the switches that keep it
//! quiet. `--allowedTools=Bash,mcp__cipc__*` is still needed: `-p` refuses
//! tools nobody approved. `--include-hook-events` makes every hook's exit
//! code and output part of the report a failure prints (set
//! `CIPC_CLAUDE_TRACE` to print it on success too).
//!
//! (A file of one concern: `cipc claude setup` with the real Claude Code; long because each scenario drives a whole session.)

mod common;

use common::claude::{capture, claude_or_skip, Scenario};
mod fake_model;
mod fake_responses;

use cipc::server::RunningServer;
use fake_model::{fixed, step, FakeModel, Kind, Recorded, Step, Transcript, Turn};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A safety net on every wait, so a broken run fails instead of hanging;
/// never a timing claim.
const LIMIT: Duration = Duration::from_secs(40);

/// The safety net on Claude Code's exit after its last turn: it waits up to
/// 30 s for a background (`asyncRewake`) hook still running (2.1.328).
const EXIT_LIMIT: Duration = Duration::from_secs(45);

/// The `cipc` binary under test.
fn cipc_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cipc")
}

/// `PATH` for every child: the test's own, plus the system directories
/// (the hooks run `kill`, Claude Code runs `sh`).
fn path_env() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/bin", "/bin"] {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(PathBuf::from(d));
        }
    }
    std::env::join_paths(dirs).expect("a PATH")
}

// ---- the sandbox: a project, a HOME and the hooks' state ----

/// Temporary `HOME`, `TMPDIR`, project directory and `CIPC_STATE_DIR`;
/// removed on drop.
struct Sandbox {
    home: PathBuf,
    project: PathBuf,
    tmp: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = dir.path().join("home");
        let project = dir.path().join("project");
        // Claude Code leaves probe directories in its TMPDIR after every run.
        let tmp = dir.path().join("tmp");
        let state = dir.path().join("state");
        for d in [&home, &project, &tmp] {
            std::fs::create_dir_all(d).expect("create the sandbox's directories");
        }
        Sandbox {
            home,
            project,
            tmp,
            state,
            _dir: dir,
        }
    }

    fn settings_file(&self) -> PathBuf {
        self.project.join(".claude").join("settings.json")
    }

    fn mcp_file(&self) -> PathBuf {
        self.project.join(".mcp.json")
    }

    /// Runs `cipc ARGS` as a person would in a shell of this sandbox (only
    /// `PATH` and `HOME`, so no `CIPC_*` of the test's environment leaks in).
    async fn cipc(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(cipc_bin())
            .env_clear()
            .env("PATH", path_env())
            .env("HOME", &self.home)
            .current_dir(&self.project)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run cipc {args:?}: {e}"))
    }

    /// `cipc claude setup --role ROLE --url BASE --dir PROJECT --cipc BIN`,
    /// then a look at what it wrote.
    async fn setup(&self, role: &str, base: &str) {
        let dir = self.project.to_string_lossy().into_owned();
        let out = self
            .cipc(&[
                "claude",
                "setup",
                "--role",
                role,
                "--url",
                base,
                "--dir",
                &dir,
                "--cipc",
                cipc_bin(),
            ])
            .await;
        assert!(
            out.status.success(),
            "cipc claude setup failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mcp = read_json(&self.mcp_file());
        assert_eq!(
            mcp["mcpServers"]["cipc"]["url"],
            format!("{base}/mcp"),
            "setup wrote another .mcp.json: {mcp}"
        );
        let settings = read_json(&self.settings_file());
        for event in [
            "SessionStart",
            "UserPromptSubmit",
            "PreToolUse",
            "PermissionRequest",
            "PostToolUse",
            "Stop",
            "SessionEnd",
        ] {
            let commands = settings["hooks"][event].to_string();
            assert!(
                commands.contains(" hook ") && commands.contains(role),
                "setup installed no cipc {event} hook: {settings}"
            );
        }
    }

    /// What the hooks remember (their state files), for reports.
    fn state_summary(&self) -> String {
        let mut s = format!("hook state in {}:\n", self.state.display());
        let Ok(entries) = std::fs::read_dir(&self.state) else {
            s.push_str("  (none)\n");
            return s;
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {}: {}",
                entry.file_name().to_string_lossy(),
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        s
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()))
}

// ---- Claude Code as a child process ----

/// How Claude Code gets its prompt.
enum Input<'a> {
    /// `-p PROMPT`, stdin closed: one turn, then it exits.
    Prompt(&'a str),
    /// `-p --input-format stream-json`, stdin piped: user messages are lines
    /// on stdin; it lives until stdin closes.
    Stream,
}

/// A running Claude Code, its output captured line by line with the time
/// each line arrived.
struct Claude {
    child: Mutex<tokio::process::Child>,
    exit: Mutex<Option<(ExitStatus, Instant)>>,
    stdin: Mutex<Option<tokio::process::ChildStdin>>,
    stdout: Arc<Mutex<Vec<(Instant, String)>>>,
    stderr: Arc<Mutex<Vec<(Instant, String)>>>,
    readers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    version: String,
}

impl Claude {
    async fn spawn(
        bin: &Path,
        sandbox: &Sandbox,
        api: &str,
        input: &Input<'_>,
        allowed: &str,
    ) -> Claude {
        let path = path_env();
        let base_env = |cmd: &mut tokio::process::Command| {
            common::claude::quiet_env(
                cmd,
                &path,
                &sandbox.home,
                &sandbox.tmp,
                &sandbox.project,
                api,
            );
            cmd.env("CIPC_STATE_DIR", &sandbox.state);
        };
        let version = common::claude::version(bin, base_env).await;

        let mut cmd = tokio::process::Command::new(bin);
        base_env(&mut cmd);
        cmd.arg("-p");
        match input {
            Input::Prompt(prompt) => {
                cmd.arg(prompt);
            }
            Input::Stream => {
                cmd.args(["--input-format", "stream-json"])
                    .stdin(Stdio::piped());
            }
        }
        cmd.args(["--output-format", "stream-json", "--verbose"])
            .arg("--include-hook-events")
            .arg("--no-session-persistence")
            .arg(format!("--allowedTools={allowed}"))
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
                |l| (Instant::now(), l),
            ),
            capture(
                child.stderr.take().expect("piped stderr"),
                stderr.clone(),
                |l| (Instant::now(), l),
            ),
        ];
        Claude {
            stdin: Mutex::new(child.stdin.take()),
            child: Mutex::new(child),
            exit: Mutex::new(None),
            stdout,
            stderr,
            readers: Mutex::new(readers),
            version,
        }
    }

    /// How it exited and when it was first seen exited, once it has.
    fn exited(&self) -> Option<(ExitStatus, Instant)> {
        let mut exit = self.exit.lock();
        if exit.is_none() {
            *exit = self
                .child
                .lock()
                .try_wait()
                .ok()
                .flatten()
                .map(|s| (s, Instant::now()));
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

    /// The stream-json events it printed, with when each arrived.
    fn events(&self) -> Vec<(Instant, Value)> {
        self.stdout
            .lock()
            .iter()
            .filter_map(|(at, l)| Some((*at, serde_json::from_str(l).ok()?)))
            .collect()
    }

    /// The `result` events (one per finished turn), with when each arrived.
    fn results(&self) -> Vec<(Instant, Value)> {
        self.events()
            .into_iter()
            .filter(|(_, e)| e["type"] == "result")
            .collect()
    }

    /// What each hook run answered (`--include-hook-events`), one line each.
    fn hook_summary(&self, since: Instant) -> String {
        let mut s = String::from("hook runs (hook_response events):\n");
        for (at, e) in self.events() {
            if e["type"] != "system" || e["subtype"] != "hook_response" {
                continue;
            }
            let _ = writeln!(
                s,
                "  +{:.2}s {} exit {} {}: stdout {} stderr {}",
                at.saturating_duration_since(since).as_secs_f64(),
                text(&e["hook_name"]),
                e["exit_code"],
                text(&e["outcome"]),
                cut(&text(&e["stdout"]), 700),
                cut(&text(&e["stderr"]), 700),
            );
        }
        s
    }

    /// The last lines of its stdout and stderr.
    fn tail(&self, since: Instant) -> String {
        fn last(lines: &[(Instant, String)], n: usize, since: Instant) -> String {
            let mut s = String::new();
            for (at, line) in &lines[lines.len().saturating_sub(n)..] {
                let _ = writeln!(
                    s,
                    "  +{:.2}s {}",
                    at.saturating_duration_since(since).as_secs_f64(),
                    cut(line, 600)
                );
            }
            s
        }
        // One lock at a time: parking_lot's locks are not reentrant.
        let (count, stdout) = {
            let lines = self.stdout.lock();
            (lines.len(), last(&lines, 40, since))
        };
        let stderr = last(&self.stderr.lock(), 30, since);
        format!(
            "Claude Code {} stdout (last of {count} lines):\n{stdout}stderr:\n{stderr}",
            self.version
        )
    }
}

/// `s` on one line, at most `n` bytes.
fn cut(s: &str, n: usize) -> String {
    let s = s.replace('\n', "\\n");
    if s.len() <= n {
        return s;
    }
    let mut at = n;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}...", &s[..at])
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

// ---- what the model was sent ----

/// Each message of a request as (role, its text): strings, text blocks,
/// tool results' content and tool uses, joined.
fn messages(body: &Value) -> Vec<(String, String)> {
    fn block_text(b: &Value) -> String {
        match b["type"].as_str() {
            Some("text") => text(&b["text"]),
            Some("tool_use") => format!("[tool_use {} {}]", text(&b["name"]), b["input"]),
            Some("tool_result") => match &b["content"] {
                Value::Array(inner) => format!(
                    "[tool_result {}]",
                    inner.iter().map(block_text).collect::<Vec<_>>().join("\n")
                ),
                other => format!("[tool_result {}]", text(other)),
            },
            _ => b.to_string(),
        }
    }
    body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let content = match &m["content"] {
                        Value::Array(blocks) => {
                            blocks.iter().map(block_text).collect::<Vec<_>>().join("\n")
                        }
                        other => text(other),
                    };
                    (text(&m["role"]), content)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The index of the first message of `body` whose text holds `needle`.
fn message_with(body: &Value, needle: &str) -> Option<usize> {
    messages(body).iter().position(|(_, t)| t.contains(needle))
}

/// A request's messages for reports: the start and end of each, plus every
/// line that mentions cipc or a hook.
fn render_request(body: &Value) -> String {
    let mut s = String::new();
    for (i, (role, t)) in messages(body).iter().enumerate() {
        let _ = writeln!(s, "    [{i}] {role} ({} chars): {}", t.len(), cut(t, 160));
        if t.len() > 160 {
            for line in t
                .lines()
                .filter(|l| l.contains("cipc") || l.contains("hook"))
            {
                let _ = writeln!(s, "        | {}", cut(line, 500));
            }
        }
    }
    s
}

/// Every UUID in `s`, in order.
fn uuids(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= b.len() {
        let ok = (0..36).all(|k| match k {
            8 | 13 | 18 | 23 => b[i + k] == b'-',
            _ => b[i + k].is_ascii_hexdigit(),
        });
        if ok {
            out.push(s[i..i + 36].to_string());
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

// ---- watching the broker ----

/// Polls `GET /peers` and `GET /commands` for as long as it lives, keeping
/// each change.
struct Watch {
    changes: Arc<Mutex<Vec<(Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    fn start(base: &str) -> Watch {
        let changes = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
        let into = changes.clone();
        let base = base.to_string();
        let task = tokio::spawn(async move {
            let http = common::http();
            let fetch = |path: String| {
                let http = http.clone();
                async move {
                    match http.get(path).send().await {
                        Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                        Err(_) => Value::Null,
                    }
                }
            };
            loop {
                let peers = fetch(format!("{base}/peers")).await;
                let commands = fetch(format!("{base}/commands?limit=50")).await;
                let mut now = String::new();
                for p in peers["peers"].as_array().into_iter().flatten() {
                    let _ = write!(
                        now,
                        "\n    peer {} {} {} via {} protected {} name {} working on {}",
                        text(&p["role"]),
                        text(&p["id"]),
                        text(&p["status"]),
                        text(&p["via"]),
                        p["protected"],
                        text(&p["name"]),
                        p["workingOn"]
                    );
                }
                for c in commands["commands"].as_array().into_iter().flatten() {
                    let _ = write!(
                        now,
                        "\n    command {} {} for {} {} to {} attempt {} result {} error {}",
                        text(&c["id"]),
                        text(&c["action"]),
                        text(&c["target"]),
                        text(&c["status"]),
                        text(&c["deliveredTo"]),
                        c["attempt"],
                        c["result"],
                        c["error"]
                    );
                }
                {
                    let mut log = into.lock();
                    if log.last().map(|(_, s)| s) != Some(&now) {
                        log.push((Instant::now(), now));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Watch { changes, task }
    }

    fn summary(&self, since: Instant) -> String {
        let mut s = String::from("GET /peers and GET /commands as polled (changes only):\n");
        for (at, state) in self.changes.lock().iter() {
            let _ = writeln!(
                s,
                "  +{:.2}s{}",
                at.saturating_duration_since(since).as_secs_f64(),
                if state.is_empty() {
                    " (nothing)"
                } else {
                    state
                }
            );
        }
        s
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- one scenario run ----

/// How a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Claude Code exits on its own (after `-p`'s turn, or stdin closed).
    Natural,
    /// The test stops it with SIGTERM, as a person stopping it would.
    Interrupted,
}

/// A broker, a set-up project, the fake model and Claude Code.
struct Run {
    name: String,
    role: String,
    started: Instant,
    base: String,
    model: FakeModel,
    claude: Claude,
    watch: Watch,
    sandbox: Sandbox,
    /// Last, so the broker outlives the rest when a run is dropped.
    _broker: RunningServer,
}

impl Scenario for Run {
    /// Everything worth seeing when a run fails.
    fn report(&self) -> String {
        let mut requests = String::from("main model requests, message by message:\n");
        for (i, r) in self.main_requests().iter().enumerate() {
            let _ = writeln!(
                requests,
                "  main request {i} at +{:.2}s ({:?}):",
                r.at.saturating_duration_since(self.started).as_secs_f64(),
                r.kind
            );
            requests.push_str(&render_request(&r.body));
        }
        format!(
            "{} (role {}), {:.1}s in; Claude Code exit: {}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.name,
            self.role,
            self.started.elapsed().as_secs_f64(),
            self.claude
                .exited()
                .map_or("still running".to_string(), |(s, at)| format!(
                    "{s} at +{:.2}s",
                    at.saturating_duration_since(self.started).as_secs_f64()
                )),
            self.claude.tail(self.started),
            self.claude.hook_summary(self.started),
            self.model.summary(),
            requests,
            self.watch.summary(self.started),
            self.sandbox.state_summary(),
        )
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.claude.exited().map(|(s, _)| s)
    }

    async fn drained(&self) {
        self.claude.drained().await;
    }
}

impl Run {
    /// Starts Claude Code in `sandbox`'s project (already set up for
    /// `role` by the caller) against `broker`, with `script` as the model.
    async fn start(
        name: &str,
        bin: &Path,
        role: &str,
        sandbox: Sandbox,
        broker: RunningServer,
        script: Vec<Step>,
        input: &Input<'_>,
    ) -> Run {
        Run::start_allowing(
            name,
            bin,
            role,
            sandbox,
            broker,
            script,
            input,
            "Bash,mcp__cipc__*",
        )
        .await
    }

    /// [`Run::start`] with only the tools in `allowed` approved (`-p`
    /// refuses the others, or asks the `PermissionRequest` hook).
    #[allow(clippy::too_many_arguments)]
    async fn start_allowing(
        name: &str,
        bin: &Path,
        role: &str,
        sandbox: Sandbox,
        broker: RunningServer,
        script: Vec<Step>,
        input: &Input<'_>,
        allowed: &str,
    ) -> Run {
        let base = broker.url();
        let model = FakeModel::start(script).await;
        let watch = Watch::start(&base);
        let started = Instant::now();
        let claude = Claude::spawn(bin, &sandbox, model.url(), input, allowed).await;
        Run {
            name: name.to_string(),
            role: role.to_string(),
            started,
            base,
            model,
            claude,
            watch,
            sandbox,
            _broker: broker,
        }
    }

    /// Checks no request the model received (main or side) holds a peer
    /// key: the hooks keep the session's identity out of its hands.
    fn check_no_key_shown(&self) {
        for (i, r) in self.model.requests().iter().enumerate() {
            let body = r.body.to_string();
            if let Some(at) = body.find("pk_") {
                self.fail(format!(
                    "model request {i} holds a peer key: ...{}...",
                    cut(&body[at.saturating_sub(200)..], 400)
                ));
            }
        }
    }

    /// The main-conversation requests the fake got, in order.
    fn main_requests(&self) -> Vec<Recorded> {
        self.model
            .requests()
            .into_iter()
            .filter(|r| matches!(r.kind, Kind::Main(_)))
            .collect()
    }

    /// The first request answered with script step `n`.
    fn request_of_step(&self, n: usize) -> Recorded {
        self.main_requests()
            .into_iter()
            .find(|r| r.kind == Kind::Main(Some(n)))
            .unwrap_or_else(|| self.fail(format!("no model request was answered with step {n}")))
    }

    /// Waits until Claude Code has printed `n` `result` events (finished
    /// `n` turns); answers when the last arrived.
    async fn turns_done(&self, n: usize) -> Instant {
        self.until(&format!("result event #{n}"), LIMIT, || async {
            let results = self.claude.results();
            (results.len() >= n).then(|| results[n - 1].0)
        })
        .await
    }

    /// The peer the hooks registered for the role, once it is online.
    async fn hook_peer(&self) -> Value {
        let url = format!("{}/peers", self.base);
        self.until(
            &format!("{} peer online via hook", self.role),
            LIMIT,
            || async {
                let (_, body) = common::get(&url).await;
                body["peers"]
                    .as_array()?
                    .iter()
                    .find(|p| {
                        p["role"] == self.role.as_str()
                            && p["via"] == "hook"
                            && p["status"] == "online"
                    })
                    .cloned()
            },
        )
        .await
    }

    /// Checks the broker shows `command` delivered to `peer`, a protected
    /// peer of the role registered by the hooks.
    fn check_delivered_to_hook_peer(&self, command: &Value, peer: &Value) {
        self.check(
            command["status"] == "delivered" && command["deliveredTo"] == peer["id"],
            format!(
                "the command is not delivered to the hook peer {}: {command}",
                peer["id"]
            ),
        );
        self.check(
            peer["role"] == self.role.as_str()
                && peer["via"] == "hook"
                && peer["protected"] == true,
            format!(
                "the peer holding the command is not a protected {} peer via hook: {peer}",
                self.role
            ),
        );
    }

    /// Ends the run: lets Claude Code exit on its own ([`End::Natural`],
    /// within [`EXIT_LIMIT`] of `since`) or stops it with SIGTERM first
    /// ([`End::Interrupted`]); checks the script never failed, the last turn
    /// succeeded and the session's peer went offline (SessionEnd); answers
    /// how long after `since` Claude Code exited.
    async fn finish(&self, since: Instant, peer: &Value, end: End) -> Duration {
        if end == End::Interrupted {
            let pid = self.claude.child.lock().id();
            if let Some(pid) = pid {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .env("PATH", path_env())
                    .status()
                    .await;
            }
        }
        let (status, at) = loop {
            if let Some(exit) = self.claude.exited() {
                break exit;
            }
            if since.elapsed() > EXIT_LIMIT {
                self.fail(format!("Claude Code did not exit within {EXIT_LIMIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.claude.drained().await;
        let took = at.saturating_duration_since(since);
        self.check(
            end == End::Interrupted || status.success(),
            format!("Claude Code exited with {status}"),
        );
        let failures = self.model.failures();
        self.check(
            failures.is_empty(),
            format!("the script could not go on: {failures:?}"),
        );
        let results = self.claude.results();
        let last = results.last().map(|(_, r)| r);
        self.check(
            last.is_some_and(|r| r["is_error"] == false && r["subtype"] == "success"),
            format!("Claude Code's last result event is not a success: {last:?}"),
        );
        // SessionEnd ran before Claude Code exited and disconnected the
        // peer; the broker may take a moment to show it.
        let url = format!("{}/peers/{}", self.base, text(&peer["id"]));
        let deadline = Instant::now() + common::PATIENCE;
        loop {
            let (_, body) = common::get(&url).await;
            if body["peer"]["status"] == "offline" {
                break;
            }
            if Instant::now() > deadline {
                self.fail(format!(
                    "the hook peer is not offline after Claude Code exited (SessionEnd): {body}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if std::env::var_os("CIPC_CLAUDE_TRACE").is_some() {
            eprintln!("---- {} ----", self.report());
        }
        took
    }

    /// `cipc claude remove --dir PROJECT`: both files end exactly as they
    /// were before setup (`before_settings`; `.mcp.json` had nothing), and
    /// a file setup created is gone rather than left as `{}`.
    async fn check_remove(&self, before_settings: &Value) {
        let dir = self.sandbox.project.to_string_lossy().into_owned();
        let out = self
            .sandbox
            .cipc(&["claude", "remove", "--dir", &dir])
            .await;
        self.check(
            out.status.success(),
            format!(
                "cipc claude remove failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        self.check(
            !self.sandbox.mcp_file().exists(),
            "after remove, the .mcp.json setup created is still there",
        );
        if before_settings == &json!({}) {
            self.check(
                !self.sandbox.settings_file().exists(),
                "after remove, the .claude/settings.json setup created is still there",
            );
            return;
        }
        let settings = read_json(&self.sandbox.settings_file());
        self.check(
            &settings == before_settings && !settings.to_string().contains("cipc"),
            format!(
                "after remove, .claude/settings.json is {settings}, not {before_settings} as before setup"
            ),
        );
    }
}

/// What the broker shows of command `id` and of the peer holding it, read
/// from inside a script step: the model is being asked, so the session is
/// certainly alive (a `-p` session may end right after its last turn).
type BrokerView = Arc<Mutex<Option<(Value, Value)>>>;

fn look_at_broker(base: &str, id: &str, into: &BrokerView) {
    let (command, peer) = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let (_, c) = common::get(&format!("{base}/commands/{id}/result?timeout=0")).await;
            let holder = text(&c["command"]["deliveredTo"]);
            let (_, p) = common::get(&format!("{base}/peers/{holder}")).await;
            (c["command"].clone(), p["peer"].clone())
        })
    });
    *into.lock() = Some((command, peer));
}

impl Run {
    /// The broker's view a step recorded.
    fn seen(&self, view: &BrokerView) -> (Value, Value) {
        view.lock()
            .clone()
            .unwrap_or_else(|| self.fail("the script never looked at the broker"))
    }
}

// ---- scenario 1: an order queued before the session starts ----

#[tokio::test(flavor = "multi_thread")]
async fn an_order_queued_before_start_is_in_the_first_request() {
    let Some(bin) = claude_or_skip("queued before start") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    sandbox.setup("builder", &base).await;
    let (status, sent) = common::post(
        &format!("{base}/commands/send"),
        json!({"target": "builder", "action": "build", "params": {"release": true, "arch": "x86_64"}}),
    )
    .await;
    assert_eq!(status, 201, "send: {sent}");
    let id = text(&sent["command"]["id"]);

    let view = BrokerView::default();
    let (look, base_in, id_in) = (view.clone(), base.clone(), id.clone());
    let script = vec![step(move |_: &Transcript| {
        look_at_broker(&base_in, &id_in, &look);
        Ok(Turn::text("Hello."))
    })];
    let run = Run::start(
        "queued before start",
        &bin,
        "builder",
        sandbox,
        broker,
        script,
        &Input::Prompt("hi"),
    )
    .await;
    let ended = run.turns_done(1).await;

    let first = run.request_of_step(0);
    let first_messages = messages(&first.body);
    let at = message_with(&first.body, &id);
    run.check(
        at.is_some_and(|i| first_messages[i].1.contains("build")),
        format!("the first model request does not hold order {id} (build)"),
    );
    let at = at.unwrap_or_default();
    run.check(
        first_messages[at].0 == "system",
        format!(
            "order {id} reached the model in a {} message, not the hooks' system context",
            first_messages[at].0
        ),
    );
    let (command, peer) = run.seen(&view);
    run.check_delivered_to_hook_peer(&command, &peer);
    let peer_id = text(&peer["id"]);
    run.check(
        first_messages[at].1.contains(&peer_id),
        format!("the first request does not tell the model it is peer {peer_id}"),
    );
    run.check_no_key_shown();

    let took = run.finish(ended, &peer, End::Natural).await;
    eprintln!(
        "queued before start: `claude -p` exited {:.2}s after its result",
        took.as_secs_f64()
    );
    run.check_remove(&json!({})).await;
}

// ---- scenario 2: an order sent between two tool calls ----

#[tokio::test(flavor = "multi_thread")]
async fn an_order_sent_during_a_turn_reaches_the_next_request() {
    let Some(bin) = claude_or_skip("between tool calls") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    // Settings of the project's own, which setup and remove must keep.
    let before = json!({"permissions": {"allow": ["Bash(echo:*)"]}});
    std::fs::create_dir_all(sandbox.project.join(".claude")).expect("mkdir .claude");
    std::fs::write(sandbox.settings_file(), before.to_string()).expect("write settings");
    sandbox.setup("tester", &base).await;

    // The first step sends the order while the model "thinks" (before its
    // answer, a Bash call, goes back), so only PostToolUse can bring it.
    let sent: Arc<Mutex<Option<String>>> = Arc::default();
    let slot = sent.clone();
    let send_url = format!("{base}/commands/send");
    let view = BrokerView::default();
    let (look, base_in, sent_in) = (view.clone(), base.clone(), sent.clone());
    let script = vec![
        step(move |_: &Transcript| {
            if slot.lock().is_none() {
                let url = send_url.clone();
                let (status, body) = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(common::post(
                        &url,
                        json!({"target": "tester", "action": "test", "params": {"suite": "unit"}}),
                    ))
                });
                if status != 201 {
                    return Err(format!("sending the order answered {status}: {body}"));
                }
                *slot.lock() = Some(text(&body["command"]["id"]));
            }
            Ok(Turn::tool(
                "Bash",
                json!({"command": "echo one", "description": "Print one"}),
            ))
        }),
        step(move |_: &Transcript| {
            let id = sent_in.lock().clone().ok_or("no order was sent")?;
            look_at_broker(&base_in, &id, &look);
            Ok(Turn::text("Done."))
        }),
    ];
    let run = Run::start(
        "between tool calls",
        &bin,
        "tester",
        sandbox,
        broker,
        script,
        &Input::Prompt("Run echo one."),
    )
    .await;
    let ended = run.turns_done(1).await;

    let Some(id) = sent.lock().clone() else {
        run.fail("the first step never sent the order");
    };
    let first = run.request_of_step(0);
    run.check(
        message_with(&first.body, &id).is_none(),
        format!("order {id} is in the first request, which was made before it was sent"),
    );
    let second = run.request_of_step(1);
    let second_messages = messages(&second.body);
    let result_at = second_messages
        .iter()
        .position(|(_, t)| t.contains("[tool_result") && t.contains("one"));
    run.check(
        result_at.is_some(),
        "the second request holds no tool_result of the Bash call",
    );
    let at = message_with(&second.body, &id);
    run.check(
        at.is_some_and(|i| second_messages[i].1.contains("test")),
        format!("the second model request does not hold order {id} (test)"),
    );
    run.check(
        at > result_at
            && second_messages[at.unwrap_or_default()]
                .1
                .contains("PostToolUse"),
        format!("order {id} is not in PostToolUse context after the Bash tool_result"),
    );
    let (command, peer) = run.seen(&view);
    run.check_delivered_to_hook_peer(&command, &peer);

    // How `-p` ends on its own is the first scenario's; here the session
    // is stopped, which must end its peer too (and keeps the file fast).
    let took = run.finish(ended, &peer, End::Interrupted).await;
    eprintln!(
        "between tool calls: `claude -p` exited {:.2}s after its result (SIGTERM)",
        took.as_secs_f64()
    );
    run.check_remove(&before).await;
}

// ---- scenario 3: an idle session woken by an order, which it acks ----

/// The wake-up Claude Code sends the model: the last user message that
/// reports the Stop hook.
fn wake_message(body: &Value) -> Option<String> {
    messages(body)
        .into_iter()
        .rev()
        .find(|(role, t)| role == "user" && t.contains("Stop hook"))
        .map(|(_, t)| t)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_wakes_an_idle_session_which_acks_it() {
    let Some(bin) = claude_or_skip("idle wake") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    sandbox.setup("deployer", &base).await;

    // The fake picks its step from the tool calls so far, so step 0 answers
    // both the first prompt and the wake-up: idle first, then, woken, it acks
    // the order in Bash with plain `cipc ack`, after printing who `cipc`
    // acts as there.
    let ack_url = base.clone();
    let script = vec![
        step(move |t: &Transcript| {
            let Some(wake) = wake_message(&t.request) else {
                return Ok(Turn::text("Ready when you are."));
            };
            let id = uuids(&wake)
                .into_iter()
                .next()
                .ok_or_else(|| format!("no order id in the wake-up: {wake}"))?;
            Ok(Turn::tool(
                "Bash",
                json!({
                    "command": format!(
                        "printf 'peer=%s key=%s\\n' \"$CIPC_PEER\" \"${{CIPC_PEER_KEY:+set}}\"; '{}' ack {id} --result '{{\"ok\":true}}' --url {ack_url}",
                        cipc_bin()
                    ),
                    "description": "Ack the order"
                }),
            ))
        }),
        fixed(Turn::text("Deployed and acked.")),
    ];
    let run = Run::start(
        "idle wake",
        &bin,
        "deployer",
        sandbox,
        broker,
        script,
        &Input::Stream,
    )
    .await;
    let Some(mut stdin) = run.claude.stdin.lock().take() else {
        run.fail("Claude Code has no stdin pipe");
    };
    let line = json!({"type": "user", "message": {"role": "user", "content": "hi"}});
    if let Err(e) = stdin.write_all(format!("{line}\n").as_bytes()).await {
        run.fail(format!("cannot write the user message: {e}"));
    }
    let _ = stdin.flush().await;

    // The first turn is over and the session is idle: only the Stop hook's
    // waiter can take an order now.
    run.turns_done(1).await;
    let peer = run.hook_peer().await;
    let peer_id = text(&peer["id"]);
    run.check(
        run.main_requests().len() == 1,
        "a second model request came before any order was sent",
    );

    // A sender that waits for the result, as a person would in a shell.
    let sender = {
        let mut cmd = tokio::process::Command::new(cipc_bin());
        cmd.env_clear()
            .env("PATH", path_env())
            .env("HOME", &run.sandbox.home)
            .args(["send", "deployer", "deploy", "--param", "env=staging"])
            .args(["--wait", "--timeout", "60s", "--json", "--url", &base])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        tokio::spawn(async move { cmd.output().await })
    };
    let sent_at = Instant::now();
    run.until("the sender's result", LIMIT, || async {
        sender.is_finished().then_some(())
    })
    .await;
    let out = match sender.await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => run.fail(format!("cannot run cipc send: {e}")),
        Err(e) => run.fail(format!("the sender task failed: {e}")),
    };
    let answered = sent_at.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let said: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    let command = if said["command"].is_object() {
        said["command"].clone()
    } else {
        said.clone()
    };
    run.check(
        out.status.success()
            && command["status"] == "acked"
            && command["result"] == json!({"ok": true}),
        format!(
            "`cipc send --wait` did not end acked with {{\"ok\":true}} ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    );
    let id = text(&command["id"]);
    run.check(
        command["deliveredTo"] == peer["id"],
        format!("the order was taken by another peer than the hook peer {peer_id}: {command}"),
    );

    // What the model was told on waking, and what its Bash call saw.
    let woken = run
        .main_requests()
        .get(1)
        .cloned()
        .unwrap_or_else(|| run.fail("no model request came after the first turn"));
    let wake = wake_message(&woken.body)
        .unwrap_or_else(|| run.fail("the request after the first turn holds no Stop hook wake-up"));
    run.check(
        wake.contains(&id) && wake.contains("deploy"),
        format!(
            "the wake-up does not carry order {id} (deploy): {}",
            cut(&wake, 800)
        ),
    );
    // (The ack may finish the sender's wait before the tool result reaches
    // the fake with the next request.)
    let bash = run
        .until("the Bash tool result", LIMIT, || async {
            run.model.result_of("Bash")
        })
        .await;
    run.check(
        !bash.is_error
            && bash.text().contains(&format!("peer={peer_id} key=set"))
            && bash.text().contains(&id),
        format!(
            "in Bash, `cipc` did not act as the session's peer {peer_id} (from CLAUDE_ENV_FILE) or the ack failed: {}",
            bash.brief()
        ),
    );

    // The woken turn ends (and a new waiter parks); then the person leaves.
    run.turns_done(2).await;
    drop(stdin);
    let closed = Instant::now();
    let took = run.finish(closed, &peer, End::Natural).await;
    eprintln!(
        "idle wake: the sender's wait ended {:.2}s after it sent; Claude Code exited {:.2}s after stdin closed",
        answered.as_secs_f64(),
        took.as_secs_f64()
    );
    run.check_remove(&json!({})).await;
}

// ---- scenario 4: permission prompts answered by a person through cipc ----

#[tokio::test(flavor = "multi_thread")]
async fn permission_prompts_reach_the_person_and_their_answers_decide() {
    let Some(bin) = claude_or_skip("permissions relayed") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    sandbox.setup("guard", &base).await;
    let allowed_file = sandbox.project.join("allowed.txt");
    let denied_file = sandbox.project.join("denied.txt");

    // The person: allows the first permission question and denies the
    // second, with a note, as the dashboard or `cipc answer` would.
    let answered: Arc<Mutex<Vec<Value>>> = Arc::default();
    let person = {
        let (base, answered) = (base.clone(), answered.clone());
        tokio::spawn(async move {
            loop {
                let (_, open) = common::get(&format!("{base}/questions?status=open")).await;
                for q in open["questions"].as_array().into_iter().flatten() {
                    let n = answered.lock().len();
                    let body = if n == 0 {
                        json!({"answer": "allow", "by": "ana"})
                    } else {
                        json!({"answer": "deny", "by": "ana", "note": "not in this project, use the build dir"})
                    };
                    let id = text(&q["id"]);
                    let (st, _) =
                        common::post(&format!("{base}/questions/{id}/answer"), body).await;
                    if st == 200 {
                        answered.lock().push(q.clone());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (a, d) = (
        allowed_file.to_string_lossy().into_owned(),
        denied_file.to_string_lossy().into_owned(),
    );
    let script = vec![
        fixed(Turn::tool(
            "Bash",
            json!({"command": format!("touch '{a}'"), "description": "Make the first file"}),
        )),
        fixed(Turn::tool(
            "Bash",
            json!({"command": format!("touch '{d}'"), "description": "Make the second file"}),
        )),
        fixed(Turn::text("Done.")),
    ];
    let run = Run::start_allowing(
        "permissions relayed",
        &bin,
        "guard",
        sandbox,
        broker,
        script,
        &Input::Prompt("Make the two files."),
        "mcp__cipc__*",
    )
    .await;
    // Read while the session runs: a -p session may end right after.
    let peer = run.hook_peer().await;
    let ended = run.turns_done(1).await;
    person.abort();

    let asked = answered.lock().clone();
    run.check(
        asked.len() == 2,
        format!("expected two permission questions, the person answered {asked:?}"),
    );
    for (q, command) in asked.iter().zip([&a, &d]) {
        run.check(
            q["kind"] == "permission"
                && q["peer"] == peer["id"]
                && q["context"]["tool"] == "Bash"
                && text(&q["context"]["input"]["command"]).contains(command.as_str()),
            format!("not a permission question of the session's Bash call {command}: {q}"),
        );
    }
    let bash: Vec<_> = run
        .model
        .tool_results()
        .into_iter()
        .filter(|r| r.name == "Bash")
        .collect();
    run.check(
        bash.len() == 2 && !bash[0].is_error && allowed_file.exists(),
        format!(
            "the allowed call did not run: {:?}",
            bash.iter()
                .map(fake_model::ToolResult::brief)
                .collect::<Vec<_>>()
        ),
    );
    run.check(
        bash.len() == 2
            && bash[1].is_error
            && bash[1]
                .text()
                .contains("not in this project, use the build dir")
            && !denied_file.exists(),
        format!(
            "the denied call ran, or the model was not shown the note: {:?}",
            bash.iter()
                .map(fake_model::ToolResult::brief)
                .collect::<Vec<_>>()
        ),
    );
    let (_, open) = common::get(&format!("{}/questions?status=open", run.base)).await;
    run.check(
        open["questions"].as_array().is_some_and(Vec::is_empty),
        format!("questions left open: {open}"),
    );
    run.finish(ended, &peer, End::Natural).await;
    run.check_remove(&json!({})).await;
}

// ---- scenario 5: cipc's MCP tools without a key in the model's hands ----

#[tokio::test(flavor = "multi_thread")]
async fn the_model_takes_and_acks_an_order_without_ever_holding_a_key() {
    let Some(bin) = claude_or_skip("no key in the model's hands") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    sandbox.setup("worker", &base).await;

    let script = vec![
        fixed(Turn::tool(
            "ToolSearch",
            json!({"query": "select:mcp__cipc__whoami,mcp__cipc__wait_for_command,mcp__cipc__ack_command", "max_results": 5}),
        )),
        fixed(Turn::tool("mcp__cipc__whoami", json!({}))),
        fixed(Turn::tool(
            "mcp__cipc__wait_for_command",
            json!({"timeout_seconds": 30}),
        )),
        step(|t: &Transcript| {
            let waited = t
                .last_of("mcp__cipc__wait_for_command")
                .ok_or("no wait_for_command result")?;
            let id = waited
                .json()
                .and_then(|v| v["command"]["id"].as_str().map(str::to_string))
                .ok_or_else(|| format!("wait_for_command gave no command: {}", waited.brief()))?;
            Ok(Turn::tool(
                "mcp__cipc__ack_command",
                json!({"command_id": id, "result": {"resized": true}}),
            ))
        }),
        fixed(Turn::text("Resized and acked.")),
    ];
    let run = Run::start_allowing(
        "no key in the model's hands",
        &bin,
        "worker",
        sandbox,
        broker,
        script,
        &Input::Prompt("Take your next order and do it."),
        "mcp__cipc__*",
    )
    .await;
    // The sender: once the model has called wait_for_command (step 2) and
    // the call is parked on the broker, an order for the role arrives (any
    // sooner and the hooks, which take orders between tool calls, would
    // hand it to the model themselves).
    let status_url = format!("{base}/status");
    run.until("wait_for_command parked", LIMIT, || async {
        run.model.served_at(2)?;
        let (_, status) = common::get(&status_url).await;
        (status["waiters"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;
    // The session's peer, read while the session surely runs (once the
    // order is done the session may end before anyone looks).
    let peer = run.hook_peer().await;
    let peer_id = text(&peer["id"]);
    let (st, body) = common::post(
        &format!("{base}/commands/send"),
        json!({"target": "worker", "action": "resize", "params": {"px": 64}}),
    )
    .await;
    run.check(
        st == 201,
        format!("sending the order answered {st}: {body}"),
    );
    let id = text(&body["command"]["id"]);
    let ended = run.turns_done(1).await;

    let whoami = run
        .model
        .result_of("mcp__cipc__whoami")
        .unwrap_or_else(|| run.fail("no whoami result"));
    run.check(
        !whoami.is_error && whoami.text().contains(&peer_id),
        format!(
            "whoami is not the session's peer {peer_id}: {}",
            whoami.brief()
        ),
    );
    let ack = run
        .model
        .result_of("mcp__cipc__ack_command")
        .unwrap_or_else(|| run.fail("no ack_command result"));
    run.check(
        !ack.is_error,
        format!("ack_command failed: {}", ack.brief()),
    );
    let (_, c) = common::get(&format!("{}/commands/{id}/result?timeout=0", run.base)).await;
    run.check(
        c["command"]["status"] == "acked"
            && c["command"]["result"] == json!({"resized": true})
            && c["command"]["deliveredTo"] == peer["id"],
        format!("the order did not end acked by the session's peer: {c}"),
    );
    run.check_no_key_shown();
    run.finish(ended, &peer, End::Natural).await;
    run.check_remove(&json!({})).await;
}

// ---- scenario 6: `claude mcp list` and `claude mcp get` leave no ghost ----

#[tokio::test(flavor = "multi_thread")]
async fn claude_mcp_list_and_get_leave_no_ghost_peer() {
    let Some(bin) = claude_or_skip("no ghost peers") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    sandbox.setup("ghost", &base).await;
    // A project whose folder is trusted and whose server is approved, as
    // after a newcomer's first `claude` there: only then do these commands
    // start (and end) a session with the project's hooks.
    let project = sandbox.project.to_string_lossy().into_owned();
    let config = json!({
        "hasCompletedOnboarding": true,
        "projects": {project: {"hasTrustDialogAccepted": true, "enabledMcpjsonServers": ["cipc"]}}
    });
    std::fs::write(sandbox.home.join(".claude.json"), config.to_string())
        .expect("write ~/.claude.json");
    // An order waiting for the role is not taken by these runs.
    let (_, sent) = common::post(
        &format!("{base}/commands/send"),
        json!({"target": "ghost", "action": "waits for a real session"}),
    )
    .await;
    let order = sent["command"]["id"]
        .as_str()
        .expect("command id")
        .to_string();
    let path = path_env();
    for args in [&["mcp", "list"][..], &["mcp", "get", "cipc"][..]] {
        let mut cmd = tokio::process::Command::new(&bin);
        common::claude::quiet_env(
            &mut cmd,
            &path,
            &sandbox.home,
            &sandbox.tmp,
            &sandbox.project,
            "http://127.0.0.1:9",
        );
        cmd.env("CIPC_STATE_DIR", &sandbox.state);
        let out = tokio::time::timeout(LIMIT, cmd.args(args).output())
            .await
            .unwrap_or_else(|_| panic!("claude {args:?} did not finish within {LIMIT:?}"))
            .unwrap_or_else(|e| panic!("cannot run claude {args:?}: {e}"));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("Connected"),
            "claude {args:?} ({}): {said}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sessions = std::fs::read_dir(&sandbox.state).map_or(0, Iterator::count);
    assert!(
        sessions >= 2,
        "the hooks did not run for these sessions ({sessions} state files)\n{}",
        sandbox.state_summary()
    );
    let (_, after) = common::get(&format!("{base}/commands")).await;
    let c = after["commands"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == json!(order)))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            c["status"].clone(),
            c["attempt"].clone(),
            c["redelivered"].clone()
        ),
        (json!("pending"), json!(0), json!(false)),
        "a run that never took a turn took the role's order: {after}"
    );
    let (_, peers) = common::get(&format!("{base}/peers")).await;
    assert_eq!(
        peers["peers"],
        json!([]),
        "sessions that never took a turn left peers behind\n{}",
        sandbox.state_summary()
    );
}

// ---- scenario 7: a leased file is refused at the edit ----

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_file_another_session_leases_is_refused() {
    let Some(bin) = claude_or_skip("leases at the edit") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&sandbox.project)
        .status()
        .expect("run git");
    assert!(git.success(), "git init");
    sandbox.setup("frontend", &base).await;
    let locked = sandbox.project.join("locked.txt");
    let free = sandbox.project.join("free.txt");
    std::fs::write(&locked, "original\n").expect("write locked.txt");

    // Another session holds locked.txt (the repo is the checkout's top-level
    // directory's name: it has no origin).
    let (st, v) = common::post(
        &format!("{base}/peers/connect"),
        json!({"role": "backend", "name": "ana", "protect": true}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let key = text(&v["key"]);
    let r = common::http()
        .post(format!("{base}/leases"))
        .header("X-Cipc-Peer-Key", &key)
        .json(&json!({"paths": ["locked.txt"], "repo": "project", "reason": "rewriting the copy"}))
        .send()
        .await
        .expect("lease");
    assert_eq!(r.status(), 201);

    let (l, f) = (
        locked.to_string_lossy().into_owned(),
        free.to_string_lossy().into_owned(),
    );
    let script = vec![
        fixed(Turn::tool(
            "Write",
            json!({"file_path": l, "content": "mine\n"}),
        )),
        fixed(Turn::tool(
            "Write",
            json!({"file_path": f, "content": "free\n"}),
        )),
        fixed(Turn::text("Done.")),
    ];
    let run = Run::start_allowing(
        "leases at the edit",
        &bin,
        "frontend",
        sandbox,
        broker,
        script,
        &Input::Prompt("Write the two files."),
        "Write,mcp__cipc__*",
    )
    .await;
    // Read while the session runs: a -p session may end right after.
    let peer = run.hook_peer().await;
    let ended = run.turns_done(1).await;
    let writes: Vec<_> = run
        .model
        .tool_results()
        .into_iter()
        .filter(|r| r.name == "Write")
        .collect();
    let briefs: Vec<String> = writes.iter().map(fake_model::ToolResult::brief).collect();
    run.check(
        writes.len() == 2
            && writes[0].is_error
            && writes[0].text().contains("backend (ana)")
            && writes[0].text().contains("rewriting the copy"),
        format!("the Write to locked.txt was not refused naming its holder: {briefs:?}"),
    );
    run.check(
        std::fs::read_to_string(&locked).ok().as_deref() == Some("original\n"),
        "locked.txt changed",
    );
    run.check(
        writes.len() == 2
            && !writes[1].is_error
            && std::fs::read_to_string(&free).ok().as_deref() == Some("free\n"),
        format!("the Write to a free file did not go through: {briefs:?}"),
    );
    run.finish(ended, &peer, End::Natural).await;
}

// ---- scenario 8: a Claude Code session gives a Codex session an order ----

#[tokio::test(flavor = "multi_thread")]
async fn a_claude_code_session_gets_the_result_of_an_order_a_codex_session_did() {
    let Some(bin) = claude_or_skip("Claude Code to Codex") else {
        return;
    };
    let Some(codex_bin) = common::codex::codex_or_skip("Claude Code to Codex") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();
    let sandbox = Sandbox::new();
    sandbox.setup("lead", &base).await;
    let script = vec![
        fixed(Turn::tool(
            "ToolSearch",
            json!({"query": "select:mcp__cipc__send_command", "max_results": 5}),
        )),
        fixed(Turn::tool(
            "mcp__cipc__send_command",
            json!({"target": "codexer", "action": "build-page", "params": {"page": "home"},
                   "wait": true, "timeout_seconds": 60}),
        )),
        step(|t: &Transcript| {
            let sent = t
                .last_of("mcp__cipc__send_command")
                .ok_or("no send_command result")?;
            Ok(Turn::text(&format!(
                "The codexer answered: {}",
                sent.text()
            )))
        }),
    ];
    let run = Run::start_allowing(
        "Claude Code to Codex",
        &bin,
        "lead",
        sandbox,
        broker,
        script,
        &Input::Prompt("Have the codexer build the home page and tell me how it went."),
        "mcp__cipc__*",
    )
    .await;
    // Claude Code's send_command is waiting: the order is queued for a role
    // nobody holds yet.
    run.until("send_command sent", LIMIT, || async {
        run.model.served_at(1)?;
        let (_, status) = common::get(&format!("{base}/status")).await;
        (status["waiters"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;
    let peer = run.hook_peer().await;

    // A Codex session of role codexer starts, is handed the order by its
    // SessionStart hook, and acks it through its cipc MCP tool (no key).
    let codex_model = fake_responses::FakeResponses::start(vec![
        fake_responses::step(|t| {
            let id = t
                .developer_texts()
                .iter()
                .find_map(|text| {
                    let rest = text.split("[cipc] New order ").nth(1)?;
                    Some(rest.split_whitespace().next()?.to_string())
                })
                .ok_or("no order in the Codex session's first request")?;
            Ok(fake_responses::Turn::call(fake_responses::Call::cipc(
                "ack_command",
                json!({"command_id": id, "result": {"built": "home", "by": "codex"}}),
            )))
        }),
        fake_responses::step(|_| Ok(fake_responses::Turn::text("Built the home page."))),
    ])
    .await;
    let mut codex = common::codex::Codex::new(&codex_bin, &codex_model.base_url());
    codex.cipc_setup("codexer", &base).await;
    let outcome = codex
        .exec("Do what cipc asks of you.", Duration::from_secs(90))
        .await;
    run.check(
        outcome.success() && codex_model.failures().is_empty(),
        format!(
            "the Codex session failed: {}\n---- {}",
            outcome.report(),
            codex_model.summary()
        ),
    );

    let ended = run.turns_done(1).await;
    let answered = run
        .model
        .result_of("mcp__cipc__send_command")
        .unwrap_or_else(|| run.fail("no send_command result"));
    run.check(
        !answered.is_error && answered.text().contains("\"by\": \"codex\""),
        format!(
            "Claude Code did not get the Codex session's result: {}",
            answered.brief()
        ),
    );
    run.finish(ended, &peer, End::Natural).await;
}
