//! Finding the real Claude Code CLI for the tests that drive it
//! (`tests/claude_code.rs`, `tests/claude_hooks.rs`).

use std::path::{Path, PathBuf};

/// The version `.ci/install-claude-code` pins (for messages only: any
/// `claude` found is used).
pub const PINNED: &str = "2.1.328";

/// Where `.ci/install-claude-code` installs it, under `$HOME`.
pub const INSTALLED: &str = ".cache/cipc-ci/claude-code/node_modules/.bin/claude";

/// The `claude` executable to run, if there is one: `CIPC_CLAUDE_BIN`, then
/// where `.ci/install-claude-code` puts it, then on `PATH`.
pub fn claude_binary() -> Option<PathBuf> {
    super::agent_binary("CIPC_CLAUDE_BIN", INSTALLED, "claude")
}

/// The binary, or `None` after printing why `scenario` is skipped. Under CI
/// ([`super::under_ci`]) a missing binary fails the test instead.
pub fn claude_or_skip(scenario: &str) -> Option<PathBuf> {
    let bin = claude_binary();
    if bin.is_none() {
        let why = format!(
            "Claude Code is not installed: run .ci/install-claude-code (it installs {PINNED} \
             into ~/{INSTALLED}), or set CIPC_CLAUDE_BIN"
        );
        super::skip(scenario, &why);
    }
    bin
}

/// A running Claude Code scenario that can explain itself when it fails:
/// the failing, checking and polling every such test does the same way.
pub trait Scenario {
    /// Everything worth reading when the scenario fails.
    fn report(&self) -> String;

    /// Claude Code's exit status, once it has exited.
    fn exit_status(&self) -> Option<std::process::ExitStatus>;

    /// Waits (briefly) until Claude Code's output has been read.
    fn drained(&self) -> impl std::future::Future<Output = ()>;

    /// Fails the test with `what` and the whole report.
    #[track_caller]
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("{what}\n\n---- {} ----", self.report())
    }

    /// Asserts `ok`, or fails with `what` and the report.
    #[track_caller]
    fn check(&self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            self.fail(what);
        }
    }

    /// Polls `probe` until it answers, failing after `limit` or as soon as
    /// Claude Code has exited without it answering.
    async fn until<T, F, Fut>(&self, what: &str, limit: std::time::Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let exited = self.exit_status();
            if let Some(v) = probe().await {
                return v;
            }
            if let Some(status) = exited {
                self.drained().await;
                self.fail(format!("Claude Code exited ({status}) before {what}"));
            }
            if std::time::Instant::now() > deadline {
                self.fail(format!("no {what} within {limit:?}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Claude Code's environment in a test: nothing but `PATH`, a temporary
/// `HOME` and `TMPDIR`, the fake model API at `api`, and the switches that
/// keep it quiet; it runs in `project` with stdin closed and is killed when
/// dropped. Both Claude Code test files start it this way.
pub fn quiet_env(
    cmd: &mut tokio::process::Command,
    path: &std::ffi::OsStr,
    home: &Path,
    tmp: &Path,
    project: &Path,
    api: &str,
) {
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("TMPDIR", tmp)
        .env("ANTHROPIC_BASE_URL", api)
        .env("ANTHROPIC_API_KEY", "test-key")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .current_dir(project)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
}

/// `bin --version`, run with `env`; a version other than [`PINNED`] is
/// noted where it is seen ([`super::notice`]), not failed.
pub async fn version(bin: &Path, env: impl Fn(&mut tokio::process::Command)) -> String {
    let mut cmd = tokio::process::Command::new(bin);
    env(&mut cmd);
    let out = cmd
        .arg("--version")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", bin.display()));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !version.starts_with(PINNED) {
        super::notice(&format!(
            "note: running Claude Code {version:?} from {}, not the pinned {PINNED}",
            bin.display()
        ));
    }
    version
}

/// Copies a child's output lines into `into`, each as `line` makes it.
pub fn capture<T: Send + 'static>(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: std::sync::Arc<parking_lot::Mutex<Vec<T>>>,
    line: fn(String) -> T,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            into.lock().push(line(l));
        }
    })
}
