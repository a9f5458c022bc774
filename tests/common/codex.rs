//! Finding and running the real OpenAI Codex CLI for the tests that drive it
//! (`tests/codex_*.rs`), headless, against the scripted fake Responses API
//! (`tests/fake_responses`).
//!
//! How Codex 0.171.0 is run (found by running it):
//! - `codex exec --skip-git-repo-check --color never -- PROMPT` in a project
//!   directory, stdin closed (exec reads a piped stdin as more prompt), with
//!   an empty environment but `PATH`, a temporary `HOME` and
//!   `CODEX_HOME=$HOME/.codex` (so nothing of the machine's Codex setup leaks
//!   in, and Codex's many state files land in the temporary directory).
//! - `$CODEX_HOME/config.toml` names a model provider at the fake (no key,
//!   no login: Codex then sends no `Authorization` at all) and the model
//!   `gpt-5.5`, a slug in Codex's bundled catalog (an unknown slug gets
//!   fallback metadata without the `apply_patch` tool). Analytics and
//!   plugins are off (without that Codex looks up `chatgpt.com`,
//!   `ab.chatgpt.com`, `github.com`, `api.github.com`), and connection
//!   retries are off so a dead fake fails the run at once instead of
//!   "Reconnecting... waiting for network" forever.
//! - exec forces the approval policy `never` and the sandbox `read-only`:
//!   an MCP server entry needs `default_tools_approval_mode = "approve"` (or
//!   a PermissionRequest hook that allows) for its tools to run, and
//!   `apply_patch` needs `-s workspace-write` to write.
//! - Hooks (`$CODEX_HOME/hooks.json`) run only once trusted: by a
//!   `[hooks.state."<key>"] trusted_hash` in `config.toml` (what `cipc codex
//!   setup` is to write; [`Codex::hooks_list`] asks Codex itself whether it
//!   trusts them), or for one run by `--dangerously-bypass-hook-trust`
//!   ([`Codex::bypass_hook_trust`]).
//! - stdout carries only the final message; everything else (the banner with
//!   `session id: <uuid>`, tool traces, `hook: <Event>` lines, warnings) goes
//!   to stderr.
//!
//! (A file of one concern: running the real Codex CLI for tests; long because
//! what Codex needs to run offline and headless is written down with it.)

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::claude::Scenario;

/// The version `.ci/install-codex` pins (for messages only: any `codex`
/// found is used).
pub const PINNED: &str = "0.171.0";

/// Where `.ci/install-codex` installs it, under `$HOME`.
pub const INSTALLED: &str = ".cache/cipc-ci/codex/node_modules/.bin/codex";

/// The model the tests name: in Codex's bundled model catalog, with the
/// freeform `apply_patch` tool and `exec_command` for shell commands.
pub const MODEL: &str = "gpt-5.5";

/// The name of the fake's model provider in `config.toml`.
pub const PROVIDER: &str = "cipc_fake";

/// The `codex` executable to run, if there is one: `CIPC_CODEX_BIN`, then
/// where `.ci/install-codex` puts it, then on `PATH`.
pub fn codex_binary() -> Option<PathBuf> {
    super::agent_binary("CIPC_CODEX_BIN", INSTALLED, "codex")
}

/// The binary, or `None` after printing why `scenario` is skipped. Under CI
/// ([`super::under_ci`]) a missing binary fails the test instead.
pub fn codex_or_skip(scenario: &str) -> Option<PathBuf> {
    let bin = codex_binary();
    if bin.is_none() {
        let why = format!(
            "the Codex CLI is not installed: run .ci/install-codex (it installs {PINNED} \
             into ~/{INSTALLED}), or set CIPC_CODEX_BIN"
        );
        super::skip(scenario, &why);
    }
    bin
}

/// The `config.toml` every run starts from: the fake as the only model
/// provider, and nothing that reaches beyond loopback. Top-level keys come
/// first, so later tables can be appended ([`Codex::append_config`]).
pub fn base_config(base_url: &str) -> String {
    format!(
        r#"# Written by the cipc tests (tests/common/codex.rs): the scripted fake
# Responses API as the only model provider, nothing beyond loopback.
model = "{MODEL}"
model_provider = "{PROVIDER}"
check_for_update_on_startup = false

[model_providers.{PROVIDER}]
name = "cipc test fake"
base_url = "{base_url}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
plugins = false
unbounded_connection_retries = false
"#
    )
}

/// A Codex setup for one test: a temporary `HOME` with `CODEX_HOME` in it
/// (`$HOME/.codex`, holding `config.toml` for the fake), a project directory,
/// and the arguments and variables `codex exec` gets. Removed on drop.
pub struct Codex {
    bin: PathBuf,
    dir: tempfile::TempDir,
    home: PathBuf,
    codex_home: PathBuf,
    project: PathBuf,
    set_codex_home: bool,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Codex {
    /// A fresh setup whose model provider is the fake at `base_url`
    /// (`FakeResponses::base_url` in `tests/fake_responses`); `config.toml` is
    /// written now, so a step under test (`cipc codex setup`) can edit it.
    pub fn new(bin: &Path, base_url: &str) -> Codex {
        let dir = tempfile::tempdir().expect("a temporary HOME for Codex");
        let home = dir.path().join("home");
        let codex_home = home.join(".codex");
        let project = dir.path().join("project");
        for d in [&codex_home, &project, &dir.path().join("tmp")] {
            std::fs::create_dir_all(d).expect("create Codex's directories");
        }
        std::fs::write(codex_home.join("config.toml"), base_config(base_url))
            .expect("write Codex's config.toml");
        Codex {
            bin: bin.to_path_buf(),
            dir,
            home,
            codex_home,
            project,
            set_codex_home: true,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The `codex` executable.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The temporary `HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `CODEX_HOME` (`$HOME/.codex`).
    pub fn codex_home(&self) -> &Path {
        &self.codex_home
    }

    /// The project directory Codex runs in (not a git repository unless the
    /// test makes it one).
    pub fn project(&self) -> &Path {
        &self.project
    }

    /// `$CODEX_HOME/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.codex_home.join("config.toml")
    }

    /// `$CODEX_HOME/hooks.json`.
    pub fn hooks_path(&self) -> PathBuf {
        self.codex_home.join("hooks.json")
    }

    /// `config.toml` as it is now.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.config_path()).expect("read Codex's config.toml")
    }

    /// Appends `toml` to `config.toml`: tables only (top-level keys would
    /// land in the last table; set those with `-c key=value` through
    /// [`Codex::arg`]), and none the base already has (`[analytics]`,
    /// `[features]`, the provider).
    pub fn append_config(&self, toml: &str) -> &Self {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.config_path())
            .expect("open Codex's config.toml");
        writeln!(f, "\n{toml}").expect("append to Codex's config.toml");
        self
    }

    /// Appends an `[mcp_servers.<name>]` entry for the Streamable HTTP
    /// server at `url`, with its tools approved (exec refuses unapproved MCP
    /// calls).
    pub fn add_mcp_server(&self, name: &str, url: &str) -> &Self {
        self.append_config(&format!(
            "[mcp_servers.{name}]\nurl = {}\ndefault_tools_approval_mode = \"approve\"",
            Value::from(url)
        ))
    }

    /// Writes `$CODEX_HOME/hooks.json` (`{"hooks": {...}}`).
    pub fn write_hooks(&self, hooks: &Value) -> &Self {
        std::fs::write(
            self.hooks_path(),
            serde_json::to_string_pretty(hooks).expect("hooks JSON"),
        )
        .expect("write Codex's hooks.json");
        self
    }

    /// Adds an argument to `codex exec` (before the prompt).
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Sets a variable for every command this setup runs.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Runs hooks without persisted trust (`--dangerously-bypass-hook-trust`),
    /// for tests of hooks rather than of their trust.
    pub fn bypass_hook_trust(&mut self) -> &mut Self {
        self.arg("--dangerously-bypass-hook-trust")
    }

    /// Leaves `CODEX_HOME` unset, so Codex (and anything run with
    /// [`Codex::apply_env`]) finds its home as `$HOME/.codex` by default.
    pub fn without_codex_home_var(&mut self) -> &mut Self {
        self.set_codex_home = false;
        self
    }

    /// Gives `cmd` this setup's environment (nothing but `PATH`, `HOME`,
    /// `TMPDIR`, `CODEX_HOME` and the added variables), the project as its
    /// directory, stdin closed, killed on drop: for `codex` itself, or for
    /// a program that configures it (`cipc codex setup`).
    pub fn apply_env(&self, cmd: &mut tokio::process::Command) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("TMPDIR", self.dir.path().join("tmp"))
            .current_dir(&self.project)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if self.set_codex_home {
            cmd.env("CODEX_HOME", &self.codex_home);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    /// A `codex ARGS` command with this setup's environment (for `codex
    /// queue`, `codex mcp list`, ...).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        self.apply_env(&mut cmd);
        cmd.args(args);
        cmd
    }

    /// `codex --version`; a version other than [`PINNED`] is noted where it
    /// is seen ([`super::notice`]), not failed.
    pub async fn version(&self) -> String {
        let out = self
            .command(&["--version"])
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", self.bin.display()));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !version.ends_with(PINNED) {
            super::notice(&format!(
                "note: running Codex {version:?} from {}, not the pinned {PINNED}",
                self.bin.display()
            ));
        }
        version
    }

    /// Runs `cipc codex setup --scope user --role ROLE` for this Codex
    /// home against the broker at `url` (the hooks run this build's
    /// `cipc`), and keeps the hooks' memory in the temporary home.
    pub async fn cipc_setup(&mut self, role: &str, url: &str) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cipc"));
        self.apply_env(&mut cmd);
        let out = cmd
            .args(["codex", "setup", "--role", role, "--scope", "user"])
            .args(["--url", url, "--cipc", env!("CARGO_BIN_EXE_cipc")])
            .output()
            .await
            .expect("run cipc codex setup");
        assert!(
            out.status.success(),
            "cipc codex setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let state = self.home().join("cipc-state");
        self.env("CIPC_STATE_DIR", state);
    }

    /// Starts `codex exec` on `prompt` in the project.
    pub async fn spawn(&self, prompt: &str) -> Running {
        let version = self.version().await;
        let mut cmd = tokio::process::Command::new(&self.bin);
        self.apply_env(&mut cmd);
        cmd.arg("exec")
            .arg("--skip-git-repo-check")
            .args(["--color", "never"])
            .args(&self.args)
            .arg("--")
            .arg(prompt)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            super::claude::capture(
                child.stdout.take().expect("piped stdout"),
                stdout.clone(),
                |l| l,
            ),
            super::claude::capture(
                child.stderr.take().expect("piped stderr"),
                stderr.clone(),
                |l| l,
            ),
        ];
        Running {
            child: Mutex::new(child),
            exit: Mutex::new(None),
            stdout,
            stderr,
            readers: Mutex::new(readers),
            started,
            version,
        }
    }

    /// Runs `codex exec` on `prompt` to its end, killing it after `limit`.
    pub async fn exec(&self, prompt: &str, limit: Duration) -> Outcome {
        self.spawn(prompt).await.finish(limit).await
    }

    /// What Codex itself says of the hooks it finds for the project: the
    /// `data[0].hooks` list of the app server's `hooks/list` (each with
    /// `key`, `eventName`, `command`, `matcher`, `currentHash`, `trustStatus`
    /// (`trusted`, `untrusted` or `modified`), `enabled`, `timeoutSec`,
    /// `sourcePath`).
    pub async fn hooks_list(&self) -> Vec<Value> {
        let answer = self
            .app_server_call(
                "hooks/list",
                json!({"cwds": [self.project.display().to_string()]}),
            )
            .await;
        answer["result"]["data"][0]["hooks"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("hooks/list answered {answer}"))
    }

    /// One request to `codex app-server` (stdio JSON-RPC, one message a
    /// line) after the `initialize` handshake; its whole answer.
    pub async fn app_server_call(&self, method: &str, params: Value) -> Value {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut cmd = self.command(&["app-server"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} app-server: {e}", self.bin.display()));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut lines =
            tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let talk = async {
            let messages = [
                json!({"id": 0, "method": "initialize",
                       "params": {"clientInfo": {"name": "cipc-tests", "version": "0"}}}),
                json!({"method": "initialized"}),
                json!({"id": 1, "method": method, "params": params}),
            ];
            for m in messages {
                stdin
                    .write_all(format!("{m}\n").as_bytes())
                    .await
                    .expect("write to codex app-server");
            }
            stdin.flush().await.expect("flush codex app-server's stdin");
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["id"] == 1 {
                        return v;
                    }
                }
            }
            panic!("codex app-server closed its output before answering {method}");
        };
        let answer = tokio::time::timeout(Duration::from_secs(30), talk)
            .await
            .unwrap_or_else(|_| panic!("codex app-server did not answer {method} within 30s"));
        let _ = child.kill().await;
        answer
    }
}

/// A running `codex exec`, its output captured line by line.
pub struct Running {
    child: Mutex<tokio::process::Child>,
    exit: Mutex<Option<ExitStatus>>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The tasks copying stdout and stderr, done once both pipes closed.
    readers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    started: Instant,
    version: String,
}

impl Running {
    /// How it exited, once it has.
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock();
        if exit.is_none() {
            *exit = self.child.lock().try_wait().ok().flatten();
        }
        *exit
    }

    /// The session (thread) id from the banner on stderr, once printed.
    pub fn session_id(&self) -> Option<String> {
        session_id(&self.stderr.lock())
    }

    /// Its stderr lines so far (banner, `mcp: cipc/<tool> started`, `hook:`
    /// lines), to follow a run while it goes.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().clone()
    }

    /// Waits for it to exit, at most `limit`, then kills it; reads all its
    /// output.
    pub async fn finish(self, limit: Duration) -> Outcome {
        let Running {
            child,
            stdout,
            stderr,
            readers,
            started,
            version,
            ..
        } = self;
        let mut child = child.into_inner();
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = child.kill().await;
                None
            }
        };
        let elapsed = started.elapsed();
        drain(readers.into_inner()).await;
        let stdout = stdout.lock().clone();
        let stderr = stderr.lock().clone();
        Outcome {
            status,
            timed_out: status.is_none(),
            stdout,
            stderr,
            elapsed,
            version,
        }
    }

    fn tail(&self) -> String {
        // One lock at a time: parking_lot's locks are not reentrant.
        let stdout = self.stdout.lock().clone();
        let stderr = self.stderr.lock().clone();
        report(&self.version, &stdout, &stderr)
    }
}

impl Scenario for Running {
    fn report(&self) -> String {
        self.tail()
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.exited()
    }

    async fn drained(&self) {
        let readers = std::mem::take(&mut *self.readers.lock());
        drain(readers).await;
    }
}

/// Waits (briefly) for the tasks copying a child's output.
async fn drain(readers: Vec<tokio::task::JoinHandle<()>>) {
    for reader in readers {
        // A grandchild (a hook, the shell) could hold a pipe open: do not
        // wait for it forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
}

/// How a `codex exec` run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its exit status (`None`: killed at the time limit).
    pub status: Option<ExitStatus>,
    /// Whether it was killed at the time limit.
    pub timed_out: bool,
    /// Its stdout lines (the final message).
    pub stdout: Vec<String>,
    /// Its stderr lines (banner, tool traces, hook lines, warnings).
    pub stderr: Vec<String>,
    /// From start to exit (or kill).
    pub elapsed: Duration,
    /// `codex --version`.
    pub version: String,
}

impl Outcome {
    /// Whether it exited 0 on its own.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The final message (stdout).
    pub fn final_message(&self) -> String {
        self.stdout.join("\n").trim().to_string()
    }

    /// The session (thread) id from the banner (`session id: <uuid>`).
    pub fn session_id(&self) -> Option<String> {
        session_id(&self.stderr)
    }

    /// The `hook: <Event> <Status>` lines exec printed (`SessionStart
    /// Completed`, `Stop Blocked`, ...), without the `hook: ` prefix.
    pub fn hook_lines(&self) -> Vec<String> {
        self.stderr
            .iter()
            .filter_map(|l| l.strip_prefix("hook: "))
            .map(str::to_string)
            .collect()
    }

    /// Its output and how it ended, for failure messages.
    pub fn report(&self) -> String {
        let how = match self.status {
            Some(s) => format!("exited {s} after {:.2?}", self.elapsed),
            None => format!("killed at the time limit, {:.2?}", self.elapsed),
        };
        format!(
            "{how}\n{}",
            report(&self.version, &self.stdout, &self.stderr)
        )
    }

    /// Panics with `what`, this outcome and `more` (say, the fake's
    /// summary) unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self, more: &str) {
        assert!(
            self.success(),
            "codex exec did not succeed\n\n---- {}\n---- {more}",
            self.report()
        );
    }
}

/// The id in a `session id: <uuid>` banner line.
fn session_id(stderr: &[String]) -> Option<String> {
    stderr
        .iter()
        .find_map(|l| l.strip_prefix("session id: "))
        .map(|id| id.trim().to_string())
}

/// The last lines of stdout and stderr, for failure messages.
fn report(version: &str, stdout: &[String], stderr: &[String]) -> String {
    fn last(lines: &[String], n: usize) -> String {
        let mut s = String::new();
        for line in &lines[lines.len().saturating_sub(n)..] {
            let mut cut = line.len().min(800);
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            let more = if cut < line.len() { "..." } else { "" };
            s.push_str("  ");
            s.push_str(&line[..cut]);
            s.push_str(more);
            s.push('\n');
        }
        s
    }
    format!(
        "Codex {version} stdout (last of {} lines):\n{}stderr (last of {} lines):\n{}",
        stdout.len(),
        last(stdout, 20),
        stderr.len(),
        last(stderr, 60),
    )
}
