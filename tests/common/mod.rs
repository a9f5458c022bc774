//! Shared helpers for the integration tests: start a real broker (in-process on
//! a free port, or the built binary) and talk real HTTP to it.
#![allow(dead_code)]

pub mod claude;
pub mod cli;
pub mod codex;
pub mod hook;
pub mod mcp;
pub mod postgres;

use cipc::broker::{Broker, BrokerConfig};
use cipc::server::{RunningServer, ServerConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An in-process broker with the memory store.
pub async fn start() -> RunningServer {
    start_with(BrokerConfig::default(), ServerConfig::default(), None).await
}

/// An in-process broker with the memory store and a token.
pub async fn start_with_token(token: &str) -> RunningServer {
    start_with(
        BrokerConfig::default(),
        ServerConfig::default(),
        Some(token.to_string()),
    )
    .await
}

/// An in-process broker with explicit settings.
pub async fn start_with(
    broker: BrokerConfig,
    server: ServerConfig,
    token: Option<String>,
) -> RunningServer {
    let broker = if engine_is_postgres() {
        postgres_broker(broker).await
    } else {
        Broker::in_memory(broker)
    };
    RunningServer::start(broker, server, token)
        .await
        .expect("start broker")
}

/// Whether this test binary's in-process brokers keep their state in
/// PostgreSQL: `tests/on_postgres.rs` runs the API suites again that way;
/// every other binary uses the memory store.
pub fn engine_is_postgres() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.starts_with("on_postgres"))
}

/// A broker on a fresh PostgreSQL database. Without a test server (outside
/// CI; under CI that fails) the PostgreSQL run is skipped, saying so once
/// through [`skip`], and the broker keeps its state in memory instead: the
/// test still runs, as it does in its own binary, and claims nothing about
/// PostgreSQL.
pub async fn postgres_broker(config: BrokerConfig) -> Broker {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    if postgres::server_url_quiet().is_none() {
        SKIPPED.call_once(|| {
            skip(
                "the PostgreSQL run of this binary",
                "no PostgreSQL (run: eval \"$(bash .ci/start-postgres)\" first; needs apt-get install postgresql), so its brokers keep their state in memory",
            );
        });
        return Broker::in_memory(config);
    }
    let Some(url) = postgres::fresh_database().await else {
        unreachable!("CIPC_TEST_POSTGRES is set");
    };
    let store = cipc::store::PgStore::connect(&url)
        .await
        .expect("connect to the test database");
    Broker::open(std::sync::Arc::new(store), config).expect("open broker")
}

/// The store for a test that builds its own broker (on a manual clock, say):
/// PostgreSQL in `tests/on_postgres.rs` (a fresh database), else memory,
/// as [`start_with`] picks.
pub async fn test_store() -> std::sync::Arc<dyn cipc::store::Store> {
    if engine_is_postgres() && postgres::server_url_quiet().is_some() {
        let url = postgres::fresh_database()
            .await
            .expect("CIPC_TEST_POSTGRES is set");
        let store = cipc::store::PgStore::connect(&url)
            .await
            .expect("connect to the test database");
        return std::sync::Arc::new(store);
    }
    std::sync::Arc::new(cipc::store::MemoryStore::default())
}

/// A reqwest client without proxies or pooling surprises.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// POSTs JSON and returns (status, body).
pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = http().post(url).json(&body).send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GETs and returns (status, body).
pub async fn get(url: &str) -> (u16, Value) {
    let r = http().get(url).send().await.expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// DELETEs and returns (status, body).
pub async fn delete(url: &str) -> (u16, Value) {
    let r = http().delete(url).send().await.expect("delete");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Registers a peer with `role` and returns its id.
pub async fn connect(base: &str, role: &str) -> String {
    let (s, b) = post(
        &format!("{base}/peers/connect"),
        serde_json::json!({"role": role}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["peer"]["id"].as_str().expect("id").to_string()
}

/// The built `cipc` binary, run as a real process.
pub struct BinaryBroker {
    /// The child process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl BinaryBroker {
    /// Starts `cipc serve --port 0` with extra args and waits for its start line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> BinaryBroker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cipc"));
        cmd.arg("serve")
            .arg("--port")
            .arg("0")
            .args(args)
            .env_remove("CIPC_TOKEN")
            .env_remove("CIPC_HOST")
            .env_remove("CIPC_PORT")
            .env_remove("CIPC_DATA_DIR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cipc serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read start line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in start line {line:?}"))
            .to_string();
        BinaryBroker { child, url }
    }

    /// Starts a durable broker on `dir`.
    pub fn durable(dir: &Path) -> BinaryBroker {
        BinaryBroker::start(&["--data-dir", dir.to_str().expect("utf-8 path")], &[])
    }

    /// SIGTERM and wait (a clean stop).
    #[allow(unsafe_code)] // kill(2) on our own child
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait")
    }

    /// SIGKILL and wait (a crash).
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BinaryBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true or `limit` passes (for state that settles
/// asynchronously, never for timing claims).
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long a test waits for something that must happen before it counts
/// as lost: many times any setting a test uses, so a loaded machine is slow,
/// not wrong.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The number of long-polls and streams open at `base` now (`GET /status`
/// `waiters`).
pub async fn waiters(base: &str) -> u64 {
    let (st, v) = get(&format!("{base}/status")).await;
    assert_eq!(st, 200, "GET /status: {v}");
    v["waiters"].as_u64().expect("status.waiters")
}

/// Waits until at least `n` long-polls or streams are parked at `base` (for
/// a test that must act while a waiter is parked, instead of sleeping and
/// hoping it got there). Fails the test after [`PATIENCE`].
pub async fn until_waiters(base: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = waiters(base).await;
        if now >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} waiters parked at {base} after {PATIENCE:?}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A loopback port nothing listens on now (for a server to start on, or to
/// find nothing at).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Skips `test` because of `why`: under CI ([`under_ci`]) that is a failure
/// (it panics); otherwise it writes a `SKIPPED` notice where it is seen even
/// when the test harness captures output, and returns (the caller then
/// returns, or leaves the skipped check out). Every skip goes through here.
#[track_caller]
pub fn skip(test: &str, why: &str) {
    if under_ci() {
        panic!("{test}: {why}; CI is set, so this is a failure, not a skip");
    }
    notice(&format!("SKIPPED {test}: {why}"));
}

/// Writes `line` straight to the process's stderr. `eprintln!` goes through
/// the harness's capture (shown only for failing tests, or with
/// `-- --nocapture`); a write to the stderr handle itself does not, so the
/// line shows on a pass too (and still goes wherever stderr is redirected).
pub fn notice(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether this is a CI run: `CI=true` or `CI=1`, as CI services set it.
/// `CI=false`, `CI=0` or an empty `CI` is a developer's machine. Under CI a
/// missing third-party client (browser, Claude Code, conformance suite,
/// schemathesis, jq) fails its test instead of skipping it.
pub fn under_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"))
}

/// An agent CLI's executable for the tests that drive it, if there is one:
/// `env_var`, then `installed` under `$HOME` (where a `.ci/install-*`
/// script puts it), then `name` on `PATH`.
pub fn agent_binary(env_var: &str, installed: &str, name: &str) -> Option<std::path::PathBuf> {
    use std::path::{Path, PathBuf};
    if let Some(bin) = std::env::var_os(env_var) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "{env_var} is {}, which is not a file",
            bin.display()
        );
        return Some(bin);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let bin = Path::new(&home).join(installed);
        if bin.is_file() {
            return Some(bin);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|bin| bin.is_file())
}
