//! Shared by the `cipc` client tests (`tests/cli_*.rs`): an in-process
//! broker for them, `cipc` as a real process, and what reads its output.

use assert_cmd::Command;
use cipc::server::RunningServer;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A safety net for any single process; tests never get near it.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// An in-process broker on its own runtime, so tests can block on processes.
pub struct Broker {
    pub rt: tokio::runtime::Runtime,
    pub server: Option<RunningServer>,
    pub url: String,
    /// Peer keys by peer id, of the peers `connect` registered.
    pub keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_inner(None)
    }

    pub fn start_with_token(token: &str) -> Broker {
        Broker::start_inner(Some(token))
    }

    /// A broker whose sweeper runs every few milliseconds, so deadlines
    /// and ttls are applied soon after they pass.
    pub fn start_fast_sweep() -> Broker {
        Broker::start_config(
            cipc::broker::BrokerConfig {
                sweep_interval: Duration::from_millis(20),
                ..cipc::broker::BrokerConfig::default()
            },
            None,
        )
    }

    pub fn start_inner(token: Option<&str>) -> Broker {
        Broker::start_config(cipc::broker::BrokerConfig::default(), token)
    }

    pub fn start_config(config: cipc::broker::BrokerConfig, token: Option<&str>) -> Broker {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(super::start_with(
            config,
            cipc::server::ServerConfig::default(),
            token.map(str::to_string),
        ));
        let url = server.url();
        Broker {
            rt,
            server: Some(server),
            url,
            keys: Default::default(),
        }
    }

    /// `cipc` with CIPC_URL pointing at this broker.
    pub fn cipc(&self) -> Command {
        let mut c = cipc();
        c.env("CIPC_URL", &self.url);
        c
    }

    /// `cipc` as a plain std process (for children we read while they run).
    pub fn std_cipc(&self) -> std::process::Command {
        let mut c = std_cipc();
        c.env("CIPC_URL", &self.url);
        c
    }

    /// Registers a peer with `role` through the CLI and returns its id.
    pub fn connect(&self, role: &str) -> String {
        let out = self
            .cipc()
            .args(["peers", "connect", role])
            .assert()
            .success();
        let v = parse(&out.get_output().stdout);
        let id = v["peer"]["id"].as_str().expect("peer id").to_string();
        let key = v["key"].as_str().expect("peer key").to_string();
        self.keys.lock().expect("keys").insert(id.clone(), key);
        id
    }

    /// The key `connect` answered for peer `id`.
    pub fn key(&self, id: &str) -> String {
        self.keys
            .lock()
            .expect("keys")
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no key for peer {id}"))
    }

    /// CIPC_PEER and CIPC_PEER_KEY for peer `id`, as an export would set them.
    pub fn identity(&self, id: &str) -> [(&'static str, String); 2] {
        [
            ("CIPC_PEER", id.to_string()),
            ("CIPC_PEER_KEY", self.key(id)),
        ]
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.stop());
        }
    }
}

/// `cipc` with a clean environment (no CIPC_* from the developer's shell).
pub fn cipc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cipc"));
    for var in [
        "CIPC_URL",
        "CIPC_TOKEN",
        "CIPC_PEER",
        "CIPC_PEER_KEY",
        "CIPC_HOST",
        "CIPC_PORT",
        "CIPC_DATA_DIR",
        "NO_COLOR",
    ] {
        c.env_remove(var);
    }
    c.timeout(PROCESS_LIMIT);
    c
}

pub fn std_cipc() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"));
    for var in [
        "CIPC_URL",
        "CIPC_TOKEN",
        "CIPC_PEER",
        "CIPC_PEER_KEY",
        "NO_COLOR",
    ] {
        c.env_remove(var);
    }
    c
}

/// Parses exactly one JSON document from a process's stdout.
pub fn parse(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {text:?}"))
}

pub fn stdout_json(c: &mut Command) -> Value {
    let out = c.assert().success();
    parse(&out.get_output().stdout)
}

pub fn stdout_text(c: &mut Command) -> String {
    let out = c.assert().success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

pub fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Reads lines of a child's stdout on a thread, so the test can wait with a deadline.
pub fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines of a child's stderr on a thread, like [`line_reader`].
pub fn stderr_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Kills a child we started, by its handle.
pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cipc wait` for `peer` then acks what it got with `ack_args`, in
/// another thread, as a second terminal would.
pub fn worker(b: &Broker, peer: &str, ack_args: Vec<String>) -> std::thread::JoinHandle<Value> {
    let mut wait = b.cipc();
    wait.envs(b.identity(peer))
        .args(["wait", "--timeout", "50s"]);
    let mut ack = b.cipc();
    ack.envs(b.identity(peer));
    std::thread::spawn(move || {
        let got = stdout_json(&mut wait);
        let id = got["command"]["id"]
            .as_str()
            .expect("command id")
            .to_string();
        ack.arg("ack").arg(&id).args(&ack_args);
        stdout_json(&mut ack);
        got
    })
}

// ---------------------------------------------------------------- commands / result / cancel

/// Sends `action` to `target` without waiting; returns the command's id.
pub fn send_id(b: &Broker, target: &str, action: &str) -> String {
    let v = stdout_json(b.cipc().args(["send", target, action]));
    v["command"]["id"].as_str().expect("command id").to_string()
}

/// Runs `cipc result ID --timeout T`, expecting exit `code`; returns its
/// JSON document and stderr.
pub fn result_of(b: &Broker, id: &str, timeout: &str, code: i32) -> (Value, String) {
    let a = b
        .cipc()
        .args(["result", id, "--timeout", timeout, "--json"])
        .assert()
        .code(code);
    (parse(&a.get_output().stdout), stderr_of(&a))
}

/// Waits for a child with a safety deadline (kills it past that).
#[allow(unsafe_code)] // kill(2) on our own child
pub fn wait_child(child: Child, limit: Duration) -> std::process::Output {
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("child output"),
        Err(_) => {
            unsafe {
                libc::kill(id as i32, libc::SIGKILL);
            }
            panic!("child {id} did not finish within {limit:?}");
        }
    }
}

// ---------------------------------------------------------------- questions

/// Polls `cipc questions --status open` until one question is open; returns it.
pub fn open_question(b: &Broker) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = stdout_json(b.cipc().args(["questions", "--status", "open"]));
        if let Some(q) = v["questions"].as_array().and_then(|qs| qs.first()) {
            return q.clone();
        }
        assert!(Instant::now() < deadline, "no question was opened: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cipc ask ARGS` as a child process that we read while it waits.
pub fn asking(b: &Broker, args: &[&str]) -> Child {
    b.std_cipc()
        .arg("ask")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cipc ask")
}

pub fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

// ---------------------------------------------------------------- surviving restarts

/// A `cipc serve` process on a fixed port, so it can be restarted in place.
pub struct Served(pub Child);

impl Served {
    pub fn start(port: u16, data_dir: &Path) -> Served {
        let mut child = std_cipc()
            .args(["serve", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .env_remove("CIPC_HOST")
            .env_remove("CIPC_PORT")
            .env_remove("CIPC_DATA_DIR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "serve did not start: {line:?}");
        Served(child)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- generated files

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn update_generated() -> bool {
    std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1")
}

/// Compares (or, with UPDATE_GENERATED=1, rewrites) one checked-in file.
pub fn check_generated(path: &Path, fresh: &[u8], stale: &mut Vec<String>) {
    if update_generated() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, fresh).unwrap();
        return;
    }
    match std::fs::read(path) {
        Ok(old) if old == fresh => {}
        _ => stale.push(path.display().to_string()),
    }
}

// ---------------------------------------------------------------- a new user's rough edges

/// `cipc serve ARGS` on a free port with the given environment (no CIPC_*
/// or RUST_LOG from the developer's shell unless given); returns the child
/// and its start line.
pub fn serve_child(args: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = std_cipc();
    cmd.arg("serve")
        .args(["--port", "0"])
        .args(args)
        .env_remove("CIPC_HOST")
        .env_remove("CIPC_PORT")
        .env_remove("CIPC_DATA_DIR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "serve did not start: {line:?}");
    (child, line)
}

/// The URL in a start line.
pub fn start_url(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string()
}

/// SIGTERM (a clean stop), then everything the child wrote on stderr.
#[allow(unsafe_code)] // kill(2) on our own child
pub fn terminate(mut child: Child) -> String {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = wait_child(
        {
            child.stdout.take();
            child
        },
        PROCESS_LIMIT,
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An MCP `initialize` over plain TCP (rmcp logs each session).
pub fn mcp_initialize(url: &str) {
    let addr = url.trim_start_matches("http://");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"cli-test","version":"1"}}}"#;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = String::new();
    BufReader::new(&s).read_line(&mut first).unwrap();
    assert!(first.contains("200"), "MCP initialize: {first}");
}

/// A pseudo-terminal: its controlling side and the side a child uses.
#[allow(unsafe_code)] // openpty(3), and taking ownership of the fds it made
pub fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

/// Lines a child writes to a terminal, read from its controlling side.
pub fn pty_lines(master: std::fs::File) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(master).lines() {
            // EIO once the child and every copy of its side are gone.
            let Ok(line) = line else { break };
            if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                break;
            }
        }
    });
    rx
}

/// A web server that is not a broker: answers every request with `status`
/// and `body` (as `content_type`), on a thread, until the test ends.
pub fn foreign_server(
    status: &'static str,
    content_type: &'static str,
    body: &'static str,
) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A memory store that keeps working but says it cannot save (a full disk,
/// a database gone): what `/healthz` answers 503 for.
pub struct SickStore(pub cipc::store::MemoryStore);

impl cipc::store::Store for SickStore {
    fn load(&self) -> Result<cipc::store::Snapshot, cipc::store::StoreError> {
        self.0.load()
    }
    fn apply(&self, m: cipc::store::Mutation) -> cipc::store::Commit {
        self.0.apply(m)
    }
    fn close(&self) {
        self.0.close();
    }
    fn describe(&self) -> String {
        "a sick store".into()
    }
    fn health(&self) -> Result<(), cipc::store::StoreError> {
        Err(cipc::store::StoreError::Write(
            "no space left on device (test)".into(),
        ))
    }
    fn progress(&self) -> std::sync::Arc<cipc::store::Progress> {
        self.0.progress()
    }
}
