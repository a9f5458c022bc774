//! The `cipc` client subcommands, run as real processes (assert_cmd) against a
//! real broker started in-process on a free port.
//!
//! Waits in these tests use generous deadlines only as a safety net; nothing
//! asserts on timing.

mod common;

use assert_cmd::Command;
use cipc::server::RunningServer;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A safety net for any single process; tests never get near it.
const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// An in-process broker on its own runtime, so tests can block on processes.
struct Broker {
    rt: tokio::runtime::Runtime,
    server: Option<RunningServer>,
    url: String,
    /// Peer keys by peer id, of the peers `connect` registered.
    keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_inner(None)
    }

    fn start_with_token(token: &str) -> Broker {
        Broker::start_inner(Some(token))
    }

    /// A broker whose sweeper runs every few milliseconds, so deadlines
    /// and ttls are applied soon after they pass.
    fn start_fast_sweep() -> Broker {
        Broker::start_config(
            cipc::broker::BrokerConfig {
                sweep_interval: Duration::from_millis(20),
                ..cipc::broker::BrokerConfig::default()
            },
            None,
        )
    }

    fn start_inner(token: Option<&str>) -> Broker {
        Broker::start_config(cipc::broker::BrokerConfig::default(), token)
    }

    fn start_config(config: cipc::broker::BrokerConfig, token: Option<&str>) -> Broker {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(common::start_with(
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
    fn cipc(&self) -> Command {
        let mut c = cipc();
        c.env("CIPC_URL", &self.url);
        c
    }

    /// `cipc` as a plain std process (for children we read while they run).
    fn std_cipc(&self) -> std::process::Command {
        let mut c = std_cipc();
        c.env("CIPC_URL", &self.url);
        c
    }

    /// Registers a peer with `role` through the CLI and returns its id.
    fn connect(&self, role: &str) -> String {
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
    fn key(&self, id: &str) -> String {
        self.keys
            .lock()
            .expect("keys")
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no key for peer {id}"))
    }

    /// CIPC_PEER and CIPC_PEER_KEY for peer `id`, as an export would set them.
    fn identity(&self, id: &str) -> [(&'static str, String); 2] {
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
fn cipc() -> Command {
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

fn std_cipc() -> std::process::Command {
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
fn parse(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {text:?}"))
}

fn stdout_json(c: &mut Command) -> Value {
    let out = c.assert().success();
    parse(&out.get_output().stdout)
}

fn stdout_text(c: &mut Command) -> String {
    let out = c.assert().success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Reads lines of a child's stdout on a thread, so the test can wait with a deadline.
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
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
fn stderr_reader(child: &mut Child) -> mpsc::Receiver<String> {
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
fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------- peers

#[test]
fn peers_connect_list_show_heartbeat_disconnect() {
    let b = Broker::start();
    let v = stdout_json(b.cipc().args([
        "peers",
        "connect",
        "backend",
        "--cap",
        "tcp",
        "--cap",
        "server,gpu",
        "--name",
        "bob",
    ]));
    let id = v["peer"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["peer"]["role"], "backend");
    assert_eq!(v["peer"]["capabilities"], json!(["tcp", "server", "gpu"]));
    assert_eq!(v["peer"]["name"], "bob");

    // --export is for eval, whatever the output mode.
    let export = stdout_text(b.cipc().args(["peers", "connect", "worker", "--export"]));
    let (worker, worker_key) = export
        .trim()
        .strip_prefix("export CIPC_PEER=")
        .and_then(|rest| rest.split_once(" CIPC_PEER_KEY="))
        .map_or_else(
            || panic!("not an export line: {export:?}"),
            |(id, key)| (id.to_string(), key.to_string()),
        );
    assert!(uuid::Uuid::parse_str(&worker).is_ok(), "{worker}");
    assert!(worker_key.starts_with("pk_"), "{worker_key}");

    // `cipc peers` lists (JSON when piped); `peers list` is the same.
    let list = stdout_json(b.cipc().arg("peers"));
    assert_eq!(list["peers"].as_array().unwrap().len(), 2);
    let list2 = stdout_json(b.cipc().args(["peers", "list", "--json"]));
    assert_eq!(list2["peers"].as_array().unwrap().len(), 2);

    // The table form has headers and the rows.
    let table = stdout_text(b.cipc().args(["peers", "--table"]));
    assert!(
        table.contains("ROLE") && table.contains("STATUS"),
        "{table}"
    );
    assert!(table.contains("backend") && table.contains(&id), "{table}");
    assert!(!table.contains('\x1b'), "no colour in a pipe: {table:?}");

    let d = stdout_json(b.cipc().args(["peers", "discover"]));
    assert_eq!(d["count"], 2);
    let mut roles: Vec<String> = serde_json::from_value(d["roles"].clone()).unwrap();
    roles.sort();
    assert_eq!(roles, ["backend", "worker"]);
    let dt = stdout_text(b.cipc().args(["peers", "discover", "--table"]));
    assert!(dt.contains("roles: "), "{dt}");

    let s = stdout_json(b.cipc().args(["peers", "show", &id]));
    assert_eq!(s["peer"]["id"], id.as_str());
    let st = stdout_text(b.cipc().args(["peers", "show", &id, "--table"]));
    assert!(
        st.contains("capabilities") && st.contains("tcp, server, gpu"),
        "{st}"
    );

    // Without an id, show/heartbeat/disconnect use CIPC_PEER (and the key).
    let s = stdout_json(
        b.cipc()
            .env("CIPC_PEER", &worker)
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "show"]),
    );
    assert_eq!(s["peer"]["role"], "worker");
    assert_eq!(s["peer"]["protected"], true, "the CLI always protects");
    // Naming a protected peer without its key is refused on any request.
    let a = b
        .cipc()
        .env("CIPC_PEER", &worker)
        .args(["peers", "show"])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("forbidden"), "{}", stderr_of(&a));
    let h = stdout_json(
        b.cipc()
            .env("CIPC_PEER", &worker)
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "heartbeat"]),
    );
    assert_eq!(h["peer"]["status"], "online");
    // The key alone names the peer.
    let gone = stdout_json(
        b.cipc()
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "disconnect"]),
    );
    assert_eq!(gone["peer"]["status"], "offline");

    // Reconnecting with --id keeps the id and needs the key.
    let a = b
        .cipc()
        .args(["peers", "connect", "worker", "--id", &worker])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("forbidden"), "{}", stderr_of(&a));
    let again = stdout_json(
        b.cipc()
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "connect", "worker", "--id", &worker]),
    );
    assert_eq!(again["peer"]["id"], worker.as_str());
    assert_eq!(again["peer"]["status"], "online");
    assert_eq!(
        again["key"],
        worker_key.as_str(),
        "a proven reconnect keeps its key"
    );
}

#[test]
fn peers_errors_are_one_line_with_the_brokers_message() {
    let b = Broker::start();
    let a = b
        .cipc()
        .args(["peers", "show", "01000000-0000-7000-8000-000000000000"])
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.starts_with("cipc peers show: the broker said: "),
        "{err}"
    );
    assert!(err.contains("not_found"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(a.get_output().stdout.is_empty());

    // A bad role: the broker's own explanation reaches the user.
    let a = b
        .cipc()
        .args(["peers", "connect", "bad role!"])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("bad_request"), "{}", stderr_of(&a));

    // No peer to act on: a usage error naming the fix.
    let a = b.cipc().args(["peers", "heartbeat"]).assert().code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER"), "{}", stderr_of(&a));

    // A trailing slash on the URL is fine.
    cipc()
        .args(["peers", "--url", &format!("{}/", b.url)])
        .assert()
        .success();

    // A CIPC_PEER that is not an id is caught before any request.
    let a = b
        .cipc()
        .env("CIPC_PEER", "not-a-uuid")
        .arg("peers")
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER"), "{}", stderr_of(&a));
}

// ---------------------------------------------------------------- send / wait / ack

#[test]
fn send_builds_params_from_flags_files_and_stdin() {
    let b = Broker::start();
    let dir = tempfile::tempdir().unwrap();

    // --param key=value (string) and key:=json, merged over --params.
    let v = stdout_json(b.cipc().args([
        "send",
        "nobody-yet",
        "build",
        "--params",
        r#"{"a":1}"#,
        "--param",
        "branch=main",
        "-p",
        "jobs:=4",
        "-p",
        "expr=a=b",
        "--from",
        "ci",
        "--ttl",
        "10m",
    ]));
    assert_eq!(v["queued"], true);
    let c = &v["command"];
    assert_eq!(
        c["params"],
        json!({"a":1,"branch":"main","jobs":4,"expr":"a=b"})
    );
    assert_eq!(c["from"], "ci");
    assert_eq!(c["target"], "nobody-yet");
    assert!(c["expiresAt"].is_string(), "--ttl sets expiresAt: {c}");

    // --params @file
    let file = dir.path().join("params.json");
    std::fs::write(&file, r#"{"from_file": [1, 2]}"#).unwrap();
    let v = stdout_json(b.cipc().args([
        "send",
        "r",
        "x",
        "--params",
        &format!("@{}", file.display()),
    ]));
    assert_eq!(v["command"]["params"], json!({"from_file":[1,2]}));

    // --params - (stdin)
    let v = stdout_json(
        b.cipc()
            .args(["send", "r", "x", "--params", "-"])
            .write_stdin(r#"{"from_stdin": true}"#),
    );
    assert_eq!(v["command"]["params"], json!({"from_stdin": true}));

    // A repeated dedupe key answers the original command.
    let one = stdout_json(b.cipc().args(["send", "r", "once", "--dedupe-key", "k1"]));
    let two = stdout_json(b.cipc().args(["send", "r", "once", "--dedupe-key", "k1"]));
    assert_eq!(one["command"]["id"], two["command"]["id"]);

    // Human form.
    let line = stdout_text(b.cipc().args(["send", "r", "hello", "--table"]));
    assert!(line.starts_with("sent hello to r: command "), "{line}");
    assert!(line.contains("queued"), "{line}");

    // Bad JSON and a missing file are usage errors (2).
    let a = b
        .cipc()
        .args(["send", "r", "x", "--params", "{nope"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("not valid JSON"),
        "{}",
        stderr_of(&a)
    );
    b.cipc()
        .args(["send", "r", "x", "--params", "@/definitely/not/here.json"])
        .assert()
        .code(2);
    b.cipc()
        .args(["send", "r", "x", "--param", "novalue"])
        .assert()
        .code(2);
    // --timeout without --wait is a clap usage error.
    b.cipc()
        .args(["send", "r", "x", "--timeout", "5s"])
        .assert()
        .code(2);
}

#[test]
fn send_to_everyone_fans_out() {
    let b = Broker::start();
    b.connect("a");
    b.connect("b");
    let v = stdout_json(b.cipc().args(["send", "*", "ping"]));
    assert_eq!(v["commands"].as_array().unwrap().len(), 2);
}

/// Runs `cipc wait` for `peer` then acks what it got with `ack_args`, in
/// another thread, as a second terminal would.
fn worker(b: &Broker, peer: &str, ack_args: Vec<String>) -> std::thread::JoinHandle<Value> {
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

#[test]
fn send_wait_prints_the_result_another_process_acked() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(
        &b,
        &peer,
        vec!["--result".into(), r#"{"port":8080}"#.into()],
    );
    let v = stdout_json(b.cipc().args([
        "send",
        "backend",
        "start-server",
        "-p",
        "port:=8080",
        "--wait",
        "--timeout",
        "50s",
        "--json",
    ]));
    assert_eq!(v["command"]["status"], "acked");
    assert_eq!(v["command"]["result"], json!({"port": 8080}));
    assert!(v.get("timedOut").is_none(), "{v}");
    let got = t.join().unwrap();
    assert_eq!(got["command"]["action"], "start-server");
    assert_eq!(got["command"]["params"], json!({"port": 8080}));

    // The human form prints the result itself.
    let t = worker(&b, &peer, vec!["--result".into(), r#""done""#.into()]);
    let out = stdout_text(b.cipc().args(["send", &peer, "again", "--wait", "--table"]));
    assert_eq!(out.trim(), "done");
    t.join().unwrap();
}

#[test]
fn send_wait_exits_1_when_the_command_failed() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(&b, &peer, vec!["--error".into(), "disk full".into()]);
    let a = b
        .cipc()
        .args(["send", "backend", "deploy", "--wait", "--timeout", "50s"])
        .arg("--json")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["command"]["status"], "failed");
    assert_eq!(v["command"]["error"], "disk full");
    let err = stderr_of(&a);
    assert!(err.contains("failed: disk full"), "{err}");
    t.join().unwrap();
}

#[test]
fn send_wait_times_out_with_124() {
    let b = Broker::start();
    let a = b
        .cipc()
        .args(["send", "nobody", "x", "--wait", "--timeout", "200ms"])
        .arg("--json")
        .assert()
        .code(124);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["timedOut"], true);
    assert_eq!(v["command"]["status"], "pending");
    assert!(stderr_of(&a).contains("no result"), "{}", stderr_of(&a));
}

// ---------------------------------------------------------------- commands / result / cancel

/// Sends `action` to `target` without waiting; returns the command's id.
fn send_id(b: &Broker, target: &str, action: &str) -> String {
    let v = stdout_json(b.cipc().args(["send", target, action]));
    v["command"]["id"].as_str().expect("command id").to_string()
}

/// Runs `cipc result ID --timeout T`, expecting exit `code`; returns its
/// JSON document and stderr.
fn result_of(b: &Broker, id: &str, timeout: &str, code: i32) -> (Value, String) {
    let a = b
        .cipc()
        .args(["result", id, "--timeout", timeout, "--json"])
        .assert()
        .code(code);
    (parse(&a.get_output().stdout), stderr_of(&a))
}

#[test]
fn commands_lists_newest_first_with_filters() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let first = send_id(&b, "backend", "build");
    let second = send_id(&b, "frontend", "lint");

    let all = stdout_json(b.cipc().arg("commands"));
    let ids: Vec<&str> = all["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [second.as_str(), first.as_str()],
        "newest first: {all}"
    );

    let v = stdout_json(b.cipc().args(["commands", "--target", "backend"]));
    assert_eq!(v["commands"].as_array().unwrap().len(), 1);
    assert_eq!(v["commands"][0]["action"], "build");
    let v = stdout_json(
        b.cipc()
            .args(["commands", "--status", "pending", "--limit", "1"]),
    );
    assert_eq!(v["commands"].as_array().unwrap().len(), 1);
    assert_eq!(v["commands"][0]["id"], second.as_str());
    let v = stdout_json(b.cipc().args(["commands", "--status", "acked"]));
    assert_eq!(v["commands"], json!([]));

    // The table: short ids, and who took a delivered command.
    let got = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["wait", "--timeout", "5s"]),
    );
    assert_eq!(got["command"]["id"], first.as_str());
    let t = stdout_text(b.cipc().env("NO_COLOR", "1").args(["commands", "--table"]));
    for want in [
        "COMMAND",
        "DELIVERED TO",
        "AGE",
        "build",
        "lint",
        "delivered",
        &first[first.len() - 8..],
        &peer[peer.len() - 8..],
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }
    assert!(!t.contains(&first), "ids are shortened:\n{t}");
    let t = stdout_text(b.cipc().args(["commands", "--status", "acked", "--table"]));
    assert_eq!(t.trim(), "no commands");

    b.cipc()
        .args(["commands", "--status", "done"])
        .assert()
        .code(2);
}

#[test]
fn result_exits_0_with_the_result_another_process_acked() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let id = send_id(&b, "backend", "start-server");
    let t = worker(
        &b,
        &peer,
        vec!["--result".into(), r#"{"port":8080}"#.into()],
    );
    let v = stdout_json(b.cipc().args(["result", &id, "--timeout", "50s", "--json"]));
    assert_eq!(v["command"]["id"], id.as_str());
    assert_eq!(v["command"]["status"], "acked");
    assert_eq!(v["command"]["result"], json!({"port": 8080}));
    assert!(v.get("timedOut").is_none(), "{v}");
    t.join().unwrap();

    // Already finished: answers at once, and the human form prints the result.
    let out = stdout_text(b.cipc().args(["result", &id, "--forever", "--table"]));
    assert!(out.contains("\"port\": 8080"), "{out}");
}

#[test]
fn result_exits_1_when_the_command_failed() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let id = send_id(&b, "backend", "deploy");
    let t = worker(&b, &peer, vec!["--error".into(), "disk full".into()]);
    let (v, err) = result_of(&b, &id, "50s", 1);
    assert_eq!(v["command"]["status"], "failed");
    assert_eq!(v["command"]["error"], "disk full");
    assert!(
        err.starts_with("cipc result: ") && err.contains("failed: disk full"),
        "{err}"
    );
    t.join().unwrap();
}

#[test]
fn result_times_out_with_124() {
    let b = Broker::start();
    let id = send_id(&b, "nobody", "x");
    let (v, err) = result_of(&b, &id, "200ms", 124);
    assert_eq!(v["timedOut"], true);
    assert_eq!(v["command"]["status"], "pending");
    assert!(err.contains("no result"), "{err}");
}

#[test]
fn cancel_a_pending_command_then_its_result_exits_1() {
    let b = Broker::start();
    let id = send_id(&b, "nobody", "migrate");
    let v = stdout_json(b.cipc().args(["cancel", &id]));
    assert_eq!(v["command"]["id"], id.as_str());
    assert_eq!(v["command"]["status"], "cancelled");

    let (v, err) = result_of(&b, &id, "5s", 1);
    assert_eq!(v["command"]["status"], "cancelled");
    assert!(err.contains("cancelled"), "{err}");

    let v = stdout_json(b.cipc().args(["commands", "--status", "cancelled"]));
    assert_eq!(v["commands"][0]["id"], id.as_str());

    let id = send_id(&b, "nobody", "again");
    let out = stdout_text(b.cipc().args(["cancel", &id, "--table"]));
    assert_eq!(out.trim(), format!("cancelled {id} (again for nobody)"));
}

#[test]
fn unknown_command_ids_exit_1_with_one_line() {
    let b = Broker::start();
    let unknown = "0190f0c4-0000-7000-8000-000000000000";
    for args in [
        vec!["result", unknown, "--timeout", "5s"],
        vec!["cancel", unknown],
    ] {
        let a = b.cipc().args(&args).assert().code(1);
        assert!(a.get_output().stdout.is_empty(), "{args:?}");
        let err = stderr_of(&a);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("cipc {}: the broker said:", args[0])),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn wait_and_ack_round_trip_with_files_and_stdin() {
    let b = Broker::start();
    let peer = b.connect("w");
    let sent = stdout_json(b.cipc().args(["send", "w", "job", "-p", "n:=1"]));
    let id = sent["command"]["id"].as_str().unwrap().to_string();

    // --peer flag works as well as CIPC_PEER.
    let got = stdout_json(b.cipc().args([
        "wait",
        "--peer",
        &peer,
        "--peer-key",
        &b.key(&peer),
        "--timeout",
        "20s",
    ]));
    assert_eq!(got["command"]["id"], id.as_str());
    assert_eq!(got["command"]["status"], "delivered");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("result.json");
    std::fs::write(&file, r#"{"ok": true}"#).unwrap();
    let acked = stdout_json(b.cipc().envs(b.identity(&peer)).args([
        "ack",
        &id,
        "--result",
        &format!("@{}", file.display()),
    ]));
    assert_eq!(acked["command"]["status"], "acked");
    assert_eq!(acked["command"]["result"], json!({"ok": true}));

    // Acking twice is the broker's 409: exit 1 with its message.
    let a = b
        .cipc()
        .envs(b.identity(&peer))
        .args(["ack", &id])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("conflict"), "{}", stderr_of(&a));

    // --result - reads stdin; the human form of wait and ack.
    b.cipc().args(["send", "w", "job2"]).assert().success();
    let text =
        stdout_text(
            b.cipc()
                .envs(b.identity(&peer))
                .args(["wait", "--table", "--timeout", "20s"]),
        );
    assert!(text.starts_with("job2"), "{text}");
    assert!(text.contains("cipc ack "), "{text}");
    let id2 = text
        .split_whitespace()
        .skip_while(|w| *w != "command")
        .nth(1)
        .expect("id in the human form")
        .to_string();
    let acked = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["ack", &id2, "--result", "-"])
            .write_stdin("[1,2,3]"),
    );
    assert_eq!(acked["command"]["result"], json!([1, 2, 3]));

    // --error marks it failed.
    b.cipc().args(["send", "w", "job3"]).assert().success();
    let got = stdout_json(b.cipc().envs(b.identity(&peer)).arg("wait"));
    let id3 = got["command"]["id"].as_str().unwrap();
    let line = stdout_text(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["ack", id3, "--error", "nope", "--table"]),
    );
    assert!(line.contains("failed: nope"), "{line}");
}

#[test]
fn wait_times_out_with_124_and_needs_a_peer() {
    let b = Broker::start();
    let peer = b.connect("idle");
    let a = b
        .cipc()
        .envs(b.identity(&peer))
        .args(["wait", "--timeout", "200ms"])
        .assert()
        .code(124);
    assert_eq!(
        parse(&a.get_output().stdout),
        json!({"command": null, "timedOut": true})
    );
    assert!(stderr_of(&a).contains("no command"), "{}", stderr_of(&a));

    let a = b.cipc().arg("wait").assert().code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER"), "{}", stderr_of(&a));
    b.cipc()
        .args(["wait", "--peer", &peer, "--timeout", "soon"])
        .assert()
        .code(2);
}

// ---------------------------------------------------------------- channels

#[test]
fn chan_send_read_list() {
    let b = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let m = stdout_json(b.cipc().args(["chan", "send", "log", r#"{"n":1}"#]));
    assert_eq!(m["message"]["seq"], 1);
    let file = dir.path().join("m.json");
    std::fs::write(&file, r#""from a file""#).unwrap();
    let m = stdout_json(
        b.cipc()
            .args(["chan", "send", "log", &format!("@{}", file.display())]),
    );
    assert_eq!(m["message"]["data"], "from a file");
    let m = stdout_json(
        b.cipc()
            .args(["chan", "send", "log", "-"])
            .write_stdin("[true]"),
    );
    assert_eq!(m["message"]["seq"], 3);
    let line = stdout_text(b.cipc().args(["chan", "send", "log", "4", "--table"]));
    assert_eq!(line.trim(), "sent #4 to log");

    let r = stdout_json(
        b.cipc()
            .args(["chan", "read", "log", "--since", "1", "--limit", "2"]),
    );
    let seqs: Vec<u64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(r["lastSeq"], 4);

    let t = stdout_text(b.cipc().args(["chan", "read", "log", "--table"]));
    assert!(t.contains("SEQ") && t.contains("from a file"), "{t}");

    let l = stdout_json(b.cipc().args(["chan", "list"]));
    assert_eq!(l["channels"][0]["name"], "log");
    assert_eq!(l["channels"][0]["count"], 4);
    let lt = stdout_text(b.cipc().args(["chan", "list", "--table"]));
    assert!(lt.contains("CHANNEL") && lt.contains("log"), "{lt}");

    // Text that is not JSON is a usage error with a hint.
    let a = b
        .cipc()
        .args(["chan", "send", "log", "hello"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("quote text as JSON"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn chan_follow_prints_messages_sent_after_it_started() {
    let b = Broker::start();
    b.cipc()
        .args(["chan", "send", "feed", r#""old""#])
        .assert()
        .success();
    let mut child = b
        .std_cipc()
        .args(["chan", "follow", "feed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(&mut child);
    // Keep sending until the follower shows one (it may still be connecting).
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(Instant::now() < deadline, "chan follow printed nothing");
        b.cipc()
            .args(["chan", "send", "feed", r#"{"new":true}"#])
            .assert()
            .success();
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
    };
    let m: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        m["data"],
        json!({"new": true}),
        "only new messages: {first}"
    );
    assert!(m["seq"].as_u64().unwrap() >= 2);

    // Everything after it arrives in order, one JSON document per line.
    b.cipc()
        .args(["chan", "send", "feed", r#""last""#])
        .assert()
        .success();
    let mut last = m["seq"].as_u64().unwrap();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("chan follow stopped printing");
        let m: Value = serde_json::from_str(&line).unwrap();
        let seq = m["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "no gaps, no repeats");
        last = seq;
        if m["data"] == "last" {
            break;
        }
    }
    stop(child);
}

#[test]
fn chan_follow_since_replays_history() {
    let b = Broker::start();
    for i in 1..=3 {
        b.cipc()
            .args(["chan", "send", "h", &i.to_string()])
            .assert()
            .success();
    }
    let mut child = b
        .std_cipc()
        .args(["chan", "follow", "h", "--since", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(&mut child);
    let got: Vec<u64> = (0..2)
        .map(|_| {
            let l = lines.recv_timeout(Duration::from_secs(30)).expect("a line");
            serde_json::from_str::<Value>(&l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, [2, 3]);
    stop(child);
}

// ---------------------------------------------------------------- signals

#[test]
fn signal_emit_get_wait_clear_list() {
    let b = Broker::start();
    let g = stdout_json(b.cipc().args(["signal", "get", "ready"]));
    assert_eq!(g["signal"]["emitted"], false);

    let e = stdout_json(
        b.cipc()
            .args(["signal", "emit", "ready", "--data", r#"{"port":8080}"#]),
    );
    assert_eq!(e["signal"]["count"], 1);
    let w = stdout_json(
        b.cipc()
            .args(["signal", "wait", "ready", "--timeout", "20s"]),
    );
    assert_eq!(w["signal"]["data"], json!({"port": 8080}));
    assert!(w.get("timedOut").is_none());
    let line = stdout_text(b.cipc().args(["signal", "wait", "ready", "--table"]));
    assert!(line.starts_with("ready emitted (#1)"), "{line}");

    // --after waits for a newer emission: none comes, so 124.
    let a = b
        .cipc()
        .args([
            "signal",
            "wait",
            "ready",
            "--after",
            "1",
            "--timeout",
            "200ms",
        ])
        .assert()
        .code(124);
    assert_eq!(parse(&a.get_output().stdout)["timedOut"], true);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.json");
    std::fs::write(&file, "[1]").unwrap();
    let e = stdout_json(b.cipc().args([
        "signal",
        "emit",
        "ready",
        "--data",
        &format!("@{}", file.display()),
    ]));
    assert_eq!(e["signal"]["count"], 2);
    let w = stdout_json(b.cipc().args(["signal", "wait", "ready", "--after", "1"]));
    assert_eq!(w["signal"]["data"], json!([1]));

    let c = stdout_json(b.cipc().args(["signal", "clear", "ready"]));
    assert_eq!(c["signal"]["emitted"], false);
    b.cipc()
        .args(["signal", "wait", "ready", "--timeout", "100ms"])
        .assert()
        .code(124);

    let l = stdout_json(b.cipc().args(["signal", "list"]));
    assert_eq!(l["signals"][0]["name"], "ready");
    let t = stdout_text(b.cipc().args(["signal", "list", "--table"]));
    assert!(t.contains("SIGNAL") && t.contains("ready"), "{t}");
    let t = stdout_text(b.cipc().args(["signal", "get", "ready", "--table"]));
    assert!(t.contains("ready"), "{t}");
}

#[test]
fn signal_wait_is_released_by_an_emit_from_another_process() {
    let b = Broker::start();
    let child = b
        .std_cipc()
        .args(["signal", "wait", "go", "--timeout", "50s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    b.cipc()
        .args(["signal", "emit", "go", "--data", "7"])
        .assert()
        .success();
    let out = wait_child(child, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(parse(&out.stdout)["signal"]["data"], 7);
}

/// Waits for a child with a safety deadline (kills it past that).
#[allow(unsafe_code)] // kill(2) on our own child
fn wait_child(child: Child, limit: Duration) -> std::process::Output {
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
fn open_question(b: &Broker) -> Value {
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
fn asking(b: &Broker, args: &[&str]) -> Child {
    b.std_cipc()
        .arg("ask")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cipc ask")
}

#[test]
fn ask_prints_the_answer_another_process_gave() {
    let b = Broker::start();
    let asker = b.connect("backend");
    let child = b
        .std_cipc()
        .envs(b.identity(&asker))
        .args(["ask", "Deploy to production?", "--choice", "yes"])
        .args(["-c", "no", "--context", r#"{"diff":"+1 -0"}"#])
        // No --table: in a script (stdout a pipe) the answer comes alone.
        .args(["--timeout", "50s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let q = open_question(&b);
    assert_eq!(q["text"], "Deploy to production?");
    assert_eq!(q["choices"], json!(["yes", "no"]));
    assert_eq!(q["context"], json!({"diff": "+1 -0"}));
    assert_eq!(q["from"], "backend", "asked as CIPC_PEER's role");
    let id = q["id"].as_str().unwrap().to_string();

    // The list shows it, open, with its choices.
    let table = stdout_text(b.cipc().args(["questions", "--table"]));
    assert!(
        table.contains("Deploy to production?") && table.contains("yes | no"),
        "{table}"
    );

    // An answer that is not a choice is refused, naming the choices.
    let a = b.cipc().args(["answer", &id, "maybe"]).assert().code(1);
    assert!(a.get_output().stdout.is_empty());
    let err = stderr_of(&a);
    assert!(
        err.starts_with("cipc answer: ") && err.contains(r#""yes", "no""#) && err.contains("maybe"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // The short id from the table answers it too.
    let short = &id[id.len() - 8..];
    let v = stdout_json(b.cipc().args(["answer", short, "yes", "--by", "alice"]));
    assert_eq!(v["question"]["status"], "answered");
    assert_eq!(v["question"]["answeredBy"], "alice");

    let out = wait_child(child, PROCESS_LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "yes\n",
        "the answer alone"
    );

    // Answered: waiting again prints the same answer at once; --json the question.
    let again = stdout_text(b.cipc().args(["questions", "wait", &id]));
    assert_eq!(again, "yes\n");
    let v = stdout_json(b.cipc().args(["questions", "wait", &id, "--json"]));
    assert_eq!(v["question"]["answer"], "yes");
    assert!(v.get("timedOut").is_none(), "{v}");
    let shown = stdout_json(b.cipc().args(["questions", "show", &id]));
    assert_eq!(shown["question"]["status"], "answered");
    let table = stdout_text(b.cipc().args(["questions", "--table"]));
    assert!(
        table.contains("answered") && table.contains("yes (by alice)"),
        "{table}"
    );
    // A second answer is refused: it is already answered.
    let a = b.cipc().args(["answer", &id, "no"]).assert().code(1);
    assert!(
        stderr_of(&a).contains("already answered"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn ask_without_an_answer_times_out_with_124_and_leaves_it_open() {
    let b = Broker::start();
    let a = b
        .cipc()
        .args(["ask", "Anyone there?", "--timeout", "1s", "--json"])
        .assert()
        .code(124);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["timedOut"], true);
    assert_eq!(v["question"]["status"], "open");
    let id = v["question"]["id"].as_str().unwrap();
    let err = stderr_of(&a);
    assert!(
        err.contains("still open") && err.contains(&format!("cipc questions wait {id}")),
        "{err}"
    );
    // `--no-wait` prints the id alone; `questions wait` times out the same way.
    let printed = stdout_text(b.cipc().args(["ask", "Later?", "--no-wait", "--table"]));
    let later = printed.trim();
    assert!(uuid_like(later), "{printed:?}");
    let a = b
        .cipc()
        .args(["questions", "wait", later, "--timeout", "200ms"])
        .assert()
        .code(124);
    assert!(stderr_of(&a).starts_with("cipc questions wait: no answer"));
    let open = stdout_json(b.cipc().args(["questions", "--status", "open"]));
    assert_eq!(open["questions"].as_array().unwrap().len(), 2, "{open}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[test]
fn a_cancelled_question_ends_ask_with_exit_1() {
    let b = Broker::start();
    let child = asking(&b, &["Which port?", "--timeout", "50s", "--json"]);
    let q = open_question(&b);
    let id = q["id"].as_str().unwrap();
    let v = stdout_json(b.cipc().args(["questions", "cancel", id]));
    assert_eq!(v["question"]["status"], "cancelled");
    let out = wait_child(child, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(parse(&out.stdout)["question"]["status"], "cancelled");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("question {id} was cancelled")),
        "{err}"
    );
    let listed = stdout_json(b.cipc().args(["questions", "--status", "cancelled"]));
    assert_eq!(listed["questions"][0]["id"], id);
}

#[test]
fn an_expired_question_ends_ask_with_exit_1() {
    let b = Broker::start_fast_sweep();
    let a = b
        .cipc()
        .args([
            "ask",
            "Quick?",
            "--ttl",
            "100ms",
            "--timeout",
            "50s",
            "--json",
        ])
        .assert()
        .code(1);
    assert_eq!(
        parse(&a.get_output().stdout)["question"]["status"],
        "expired"
    );
    assert!(
        stderr_of(&a).contains("expired unanswered"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn bad_question_input_is_a_usage_error_naming_what_to_fix() {
    let b = Broker::start();
    for (args, says) in [
        (vec!["ask", "  "], "the question is empty"),
        (
            vec!["ask", "Deploy?", "-c", "yes", "-c", ""],
            "--choice number 2 is empty",
        ),
        (
            vec!["ask", "Deploy?", "-c", "yes", "-c", "yes"],
            "given twice",
        ),
        (vec!["ask", "Deploy?", "--ttl", "0s"], "longer than 0"),
        (
            vec!["ask", "Deploy?", "--ttl", "400days"],
            "at most 365 days",
        ),
        (vec!["ask", "Deploy?", "--context", "not json"], "--context"),
        (
            vec!["ask", "Deploy?", "--no-wait", "--timeout", "1s"],
            "cannot be used",
        ),
        (vec!["answer", "nope!", "yes"], "is not a question id"),
        (
            vec!["answer", "0190f0c4-0000-7000-8000-000000000000", " "],
            "the answer is empty",
        ),
        (
            vec!["questions", "--status", "open", "show", "abcd1234"],
            "--status only filters",
        ),
        (vec!["questions", "--status", "done"], "possible values"),
        (
            vec!["send", "x", "y", "--deadline", "soon"],
            "write a duration like",
        ),
    ] {
        let a = b.cipc().args(&args).assert().code(2);
        let err = stderr_of(&a);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // No question has that short id.
    let a = b
        .cipc()
        .args(["answer", "abcd1234", "yes"])
        .assert()
        .code(1);
    assert!(
        stderr_of(&a).contains("no question id starts or ends with abcd1234"),
        "{}",
        stderr_of(&a)
    );
}

// ---------------------------------------------------------------- deadlines

#[test]
fn send_wait_tells_once_that_a_command_is_overdue_and_keeps_waiting() {
    let b = Broker::start_fast_sweep();
    let peer = b.connect("worker");
    let mut sender = b
        .std_cipc()
        .args(["send", "worker", "build", "--deadline", "300ms"])
        .args(["--wait", "--timeout", "50s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let errs = stderr_reader(&mut sender);
    // The worker takes it and does not ack (yet).
    let got = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["wait", "--timeout", "50s"]),
    );
    let id = got["command"]["id"].as_str().unwrap().to_string();
    assert!(got["command"]["deadline"].is_string(), "{got}");
    b.cipc()
        .args(["send", "worker", "other"])
        .assert()
        .success();

    // The sender says so once, and goes on waiting.
    let line = errs
        .recv_timeout(PROCESS_LIMIT)
        .expect("send --wait said nothing on stderr");
    assert!(
        line.starts_with(&format!(
            "cipc send: command {id} is overdue (its deadline passed at "
        )) && line.ends_with("); still waiting"),
        "{line}"
    );

    // Only the overdue one is listed by --overdue, marked in the table.
    let v = stdout_json(b.cipc().args(["commands", "--overdue"]));
    let listed: Vec<&str> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()], "{v}");
    assert_eq!(v["commands"][0]["overdue"], true);
    let table = stdout_text(b.cipc().args(["commands", "--table"]));
    assert!(table.contains("delivered OVERDUE"), "{table}");
    // `cipc result` says so too, and times out as usual.
    let (r, err) = result_of(&b, &id, "200ms", 124);
    assert_eq!(r["command"]["overdue"], true);
    assert!(err.contains("overdue"), "{err}");

    // Once acked, the sender prints the result as always, exit 0.
    b.cipc()
        .envs(b.identity(&peer))
        .args(["ack", &id, "--result", r#""built""#])
        .assert()
        .success();
    let out = wait_child(sender, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(0));
    let v = parse(&out.stdout);
    assert_eq!(v["command"]["result"], "built");
    assert_eq!(v["command"]["overdue"], true);
    // Everything else it said (the reader ends with the process's stderr).
    let rest: Vec<String> = errs.iter().collect();
    assert!(
        rest.iter().all(|l| !l.contains("overdue")),
        "the overdue line is printed once: {rest:?}"
    );
    let table = stdout_text(b.cipc().args(["commands", "--overdue", "--table"]));
    assert!(table.contains("acked (late)"), "{table}");
}

// ---------------------------------------------------------------- status / reset

#[test]
fn status_json_and_table() {
    let b = Broker::start();
    b.connect("backend");
    b.cipc().args(["send", "backend", "x"]).assert().success();
    b.cipc().args(["chan", "send", "c", "1"]).assert().success();
    b.cipc().args(["signal", "emit", "s"]).assert().success();
    let s = stdout_json(b.cipc().arg("status"));
    assert!(s["version"].is_string());
    assert_eq!(s["peers"].as_array().unwrap().len(), 1);
    assert_eq!(s["commands"]["counts"]["pending"], 1);
    let t = stdout_text(b.cipc().args(["status", "--table"]));
    for want in [
        "Peers: 1 known, 1 online",
        "Commands: 1 pending",
        "Channels: 1",
        "Signals: 1",
        "backend",
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }
}

#[test]
fn reset_refuses_without_yes_when_stdin_is_not_a_terminal() {
    let b = Broker::start();
    b.connect("keep-me");
    let a = b.cipc().arg("reset").write_stdin("y\n").assert().code(2);
    assert!(stderr_of(&a).contains("--yes"), "{}", stderr_of(&a));
    let p = stdout_json(b.cipc().arg("peers"));
    assert_eq!(p["peers"].as_array().unwrap().len(), 1, "nothing was reset");

    let r = stdout_json(b.cipc().args(["reset", "--yes"]));
    assert_eq!(r, json!({"ok": true}));
    let p = stdout_json(b.cipc().arg("peers"));
    assert_eq!(p["peers"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------- connection, auth, env

#[test]
fn unreachable_broker_exits_3_naming_the_url() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let a = cipc().args(["status", "--url", &url]).assert().code(3);
    let err = stderr_of(&a);
    assert!(err.contains(&url) && err.contains("cipc serve"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // A wait retries until its own deadline, then says the same.
    let a = cipc()
        .env("CIPC_URL", &url)
        .args(["signal", "wait", "x", "--timeout", "300ms"])
        .assert()
        .code(3);
    assert!(stderr_of(&a).contains("cipc serve"), "{}", stderr_of(&a));
}

#[test]
fn https_and_bad_urls_are_usage_errors() {
    let a = cipc()
        .args(["status", "--url", "https://broker.example:9100"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(err.contains("TLS") && err.contains("http://"), "{err}");
    cipc().args(["status", "--url", "ftp://x"]).assert().code(2);
    cipc().args(["peers", "--no-such-flag"]).assert().code(2);
}

#[test]
fn token_from_env_flag_and_file() {
    let b = Broker::start_with_token("s3cret-token");
    let a = b.cipc().arg("status").assert().code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("unauthorized") && err.contains("CIPC_TOKEN"),
        "{err}"
    );

    b.cipc()
        .env("CIPC_TOKEN", "s3cret-token")
        .arg("status")
        .assert()
        .success();
    b.cipc()
        .args(["status", "--token", "s3cret-token"])
        .assert()
        .success();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret-token\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    b.cipc()
        .arg("status")
        .arg("--token-file")
        .arg(&file)
        .assert()
        .success();
}

#[test]
fn cipc_env_vars_are_used() {
    let b = Broker::start();
    let peer = b.connect("me");
    // CIPC_URL (set by b.cipc) and CIPC_PEER: `from` defaults to the peer's role.
    let v = stdout_json(b.cipc().envs(b.identity(&peer)).args(["send", "x", "y"]));
    assert_eq!(v["command"]["from"], "me");
    let m = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["chan", "send", "c", "1"]),
    );
    assert_eq!(m["message"]["from"], peer.as_str());
    // NO_COLOR and --table: never escape codes in a pipe.
    let t = stdout_text(b.cipc().env("NO_COLOR", "1").args(["status", "--table"]));
    assert!(!t.contains('\x1b'));
}

// ---------------------------------------------------------------- surviving restarts

/// A `cipc serve` process on a fixed port, so it can be restarted in place.
struct Served(Child);

impl Served {
    fn start(port: u16, data_dir: &Path) -> Served {
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

#[test]
fn waits_and_follows_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let served = Served::start(port, dir.path());

    let mut follow = std_cipc()
        .env("CIPC_URL", &url)
        .args(["chan", "follow", "news", "--since", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(&mut follow);
    cipc()
        .env("CIPC_URL", &url)
        .args(["chan", "send", "news", "1"])
        .assert()
        .success();
    let l = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("first message");
    assert_eq!(serde_json::from_str::<Value>(&l).unwrap()["seq"], 1);

    // The broker goes away; a wait started now keeps retrying (and says so).
    drop(served);
    let mut waiter = std_cipc()
        .env("CIPC_URL", &url)
        .args(["signal", "wait", "back", "--timeout", "50s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut note = String::new();
    BufReader::new(waiter.stderr.take().unwrap())
        .read_line(&mut note)
        .unwrap();
    assert!(note.contains("retrying"), "{note:?}");
    let _served = Served::start(port, dir.path());
    cipc()
        .env("CIPC_URL", &url)
        .args(["signal", "emit", "back"])
        .assert()
        .success();
    let out = wait_child(waiter, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(parse(&out.stdout)["signal"]["emitted"], true);

    // The follower reconnected (Last-Event-ID) and gets the next message once.
    cipc()
        .env("CIPC_URL", &url)
        .args(["chan", "send", "news", "2"])
        .assert()
        .success();
    let l = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("message after restart");
    let m: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(m["seq"], 2);
    assert_eq!(m["data"], 2);
    stop(follow);
}

// ---------------------------------------------------------------- generated files

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn update_generated() -> bool {
    std::env::var_os("UPDATE_GENERATED").is_some_and(|v| v == "1")
}

/// Compares (or, with UPDATE_GENERATED=1, rewrites) one checked-in file.
fn check_generated(path: &Path, fresh: &[u8], stale: &mut Vec<String>) {
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

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let mut stale = Vec::new();
    for (shell, file) in [
        ("bash", "cipc.bash"),
        ("zsh", "_cipc"),
        ("fish", "cipc.fish"),
        ("elvish", "cipc.elv"),
        ("powershell", "_cipc.ps1"),
    ] {
        let out = cipc().args(["completions", shell]).assert().success();
        let fresh = out.get_output().stdout.clone();
        assert!(!fresh.is_empty());
        check_generated(&repo().join("completions").join(file), &fresh, &mut stale);
    }

    // `cipc man` prints the main page; `--dir` writes every page.
    let main_page = cipc()
        .arg("man")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&main_page);
    assert!(
        text.contains(".TH cipc") && text.contains("124"),
        "exit codes in the man page"
    );

    let tmp = tempfile::tempdir().unwrap();
    cipc()
        .args(["man", "--dir"])
        .arg(tmp.path())
        .assert()
        .success();
    let mut fresh: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fresh.sort();
    assert!(
        fresh.contains(&"cipc.1".to_string()) && fresh.contains(&"cipc-chan-follow.1".to_string())
    );
    assert!(
        std::fs::read(tmp.path().join("cipc.1")).unwrap() == main_page,
        "`cipc man` and `cipc man --dir` disagree on cipc.1"
    );
    let man_dir = repo().join("man");
    if update_generated() {
        if let Ok(entries) = std::fs::read_dir(&man_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".1") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
    }
    for name in &fresh {
        let bytes = std::fs::read(tmp.path().join(name)).unwrap();
        check_generated(&man_dir.join(name), &bytes, &mut stale);
    }
    let checked_in: Vec<String> = std::fs::read_dir(&man_dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".1") && !fresh.contains(n))
                .collect()
        })
        .unwrap_or_default();
    stale.extend(
        checked_in
            .into_iter()
            .map(|n| format!("man/{n} (no longer generated)")),
    );

    assert!(
        stale.is_empty(),
        "generated files are stale: {stale:?}\nregenerate them with:\n  UPDATE_GENERATED=1 cargo test --test cli completions_and_man"
    );
}

// ---------------------------------------------------------------- the example

#[test]
fn example_script_runs_end_to_end() {
    if std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_err()
    {
        // CI installs jq (.ci/run); there a missing jq is a broken setup.
        common::skip(
            "example_script_runs_end_to_end",
            "jq is not installed; .ci/run installs it (apt-get install jq)",
        );
        return;
    }
    let b = Broker::start();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cipc"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let child = std::process::Command::new("bash")
        .arg(repo().join("examples/server-handshake.sh"))
        .env("PATH", path)
        .env("CIPC_URL", &b.url)
        .env_remove("CIPC_PEER")
        .env_remove("CIPC_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_child(child, PROCESS_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("server started on port 8080"), "{stdout}");
    assert!(
        stdout.contains(r#"deploy log: {"event":"listening","port":8080}"#),
        "{stdout}"
    );
    let _ = std::io::stdout().flush();
}

#[test]
fn client_flags_work_before_the_subcommand_too() {
    let b = Broker::start();
    let v = stdout_json(cipc().args(["--url", &b.url, "--json", "signal", "emit", "early"]));
    assert_eq!(v["signal"]["name"], "early");
    let url_eq = format!("--url={}", b.url);
    let v = stdout_json(cipc().args([url_eq.as_str(), "chan", "--json", "list"]));
    assert!(v["channels"].is_array());
    // serve keeps its own flags; a client-only flag there is still a usage error.
    cipc()
        .args(["--json", "serve", "--memory"])
        .assert()
        .code(2);
}

#[test]
fn a_wrong_or_foreign_peer_key_never_works() {
    let b = Broker::start();
    let me = b.connect("backend");
    let other = b.connect("backend");
    // Another peer's key, a key with a changed secret, and no key at all.
    let mut forged = b.key(&me);
    // The last character carries only 4 bits of the secret; 'A' and 'Q'
    // differ in them.
    let last = forged.pop();
    forged.push(if last == Some('A') { 'Q' } else { 'A' });
    for (peer, key) in [
        (me.clone(), Some(b.key(&other))),
        (me.clone(), Some(forged)),
        (me.clone(), None),
    ] {
        let mut c = b.cipc();
        c.env("CIPC_PEER", &peer);
        if let Some(k) = &key {
            c.env("CIPC_PEER_KEY", k);
        }
        let a = c.args(["wait", "--timeout", "0s"]).assert();
        let out = a.get_output();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "key {key:?} worked: {err}");
        assert!(
            err.contains("forbidden") || err.contains("different peers"),
            "key {key:?}: {err}"
        );
    }
    // A malformed key is caught before any request.
    let a = b
        .cipc()
        .env("CIPC_PEER_KEY", "not-a-key")
        .args(["wait", "--timeout", "0s"])
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER_KEY"), "{}", stderr_of(&a));
    // The right key works.
    b.cipc()
        .envs(b.identity(&me))
        .args(["wait", "--timeout", "0s"])
        .assert()
        .code(124);
}

// ---------------------------------------------------------------- a new user's rough edges

/// `cipc serve ARGS` on a free port with the given environment (no CIPC_*
/// or RUST_LOG from the developer's shell unless given); returns the child
/// and its start line.
fn serve_child(args: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
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
fn start_url(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string()
}

/// SIGTERM (a clean stop), then everything the child wrote on stderr.
#[allow(unsafe_code)] // kill(2) on our own child
fn terminate(mut child: Child) -> String {
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

#[test]
fn memory_wins_over_an_env_data_dir_and_an_empty_one_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("from-env");
    let env_dir = env_dir.to_str().unwrap();

    // CIPC_DATA_DIR in the environment: --memory wins, and says so once.
    let (child, line) = serve_child(&["--memory"], &[("CIPC_DATA_DIR", env_dir)]);
    assert!(line.contains("data: memory"), "{line}");
    let err = terminate(child);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("CIPC_DATA_DIR"))
        .collect();
    assert_eq!(said.len(), 1, "one line about it: {err}");
    assert!(
        said[0].contains("--memory") && said[0].contains(env_dir),
        "{err}"
    );
    assert!(!Path::new(env_dir).exists(), "nothing was written there");

    // Without --memory the variable is the data dir.
    let (child, line) = serve_child(&[], &[("CIPC_DATA_DIR", env_dir)]);
    assert!(line.contains(env_dir), "{line}");
    terminate(child);

    // An empty CIPC_DATA_DIR is unset: the default (under XDG_STATE_HOME).
    let state = dir.path().join("state");
    let (child, line) = serve_child(
        &[],
        &[
            ("CIPC_DATA_DIR", ""),
            ("XDG_STATE_HOME", state.to_str().unwrap()),
        ],
    );
    assert!(
        line.contains(&*state.join("cipc").to_string_lossy()),
        "{line}"
    );
    terminate(child);
    let (child, line) = serve_child(&["--memory"], &[("CIPC_DATA_DIR", "")]);
    assert!(line.contains("data: memory"), "{line}");
    assert!(!terminate(child).contains("CIPC_DATA_DIR"));

    // Both flags on the command line are still a usage error naming both.
    let a = cipc()
        .args(["serve", "--memory", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("--memory") && err.contains("--data-dir"),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_store_it_cannot_use_and_says_why() {
    // Not PostgreSQL at all: a usage error that shows the form to use.
    let a = cipc()
        .args(["serve", "--port", "0", "--store", "mysql://db/cipc"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        "{err}"
    );
    // Nothing listens there: the error names the address, the reason and
    // what to check, and never the password.
    let port = common::free_port();
    let a = cipc()
        .args(["serve", "--port", "0", "--store"])
        .arg(format!("postgres://cipc:s3cret@127.0.0.1:{port}/cipc"))
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!("127.0.0.1:{port}/cipc")) && err.contains("refused"),
        "{err}"
    );
    assert!(err.contains("is PostgreSQL running there"), "{err}");
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
    // --store and --data-dir pick different stores.
    let a = cipc()
        .args([
            "serve",
            "--store",
            "postgres://x@h/db",
            "--data-dir",
            "/tmp",
        ])
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("--store"));
}

/// An MCP `initialize` over plain TCP (rmcp logs each session).
fn mcp_initialize(url: &str) {
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

#[test]
fn serve_logs_only_warnings_unless_rust_log_says_otherwise() {
    let busy = |url: &str| {
        let peer = stdout_json(cipc().env("CIPC_URL", url).args(["peers", "connect", "w"]));
        assert!(peer["peer"]["id"].is_string());
        cipc()
            .env("CIPC_URL", url)
            .args(["send", "w", "build"])
            .assert()
            .success();
        mcp_initialize(url);
    };
    // By default: the start line on stdout, and nothing on stderr.
    let (child, line) = serve_child(&["--memory"], &[]);
    assert!(
        line.contains("dashboard") && line.contains("data: "),
        "{line}"
    );
    busy(&start_url(&line));
    let err = terminate(child);
    assert!(!err.contains("INFO"), "no INFO lines by default: {err}");
    // rmcp reports an MCP session still open at shutdown as an error (the
    // server's stop cancels it); anything else is noise.
    let rest: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("Failed to serve session: Cancelled"))
        .collect();
    assert!(rest.is_empty(), "a quiet broker says nothing: {err}");

    // RUST_LOG still turns them on.
    let (child, line) = serve_child(&["--memory"], &[("RUST_LOG", "info")]);
    busy(&start_url(&line));
    let err = terminate(child);
    assert!(
        err.contains("INFO") && err.contains("peer connected"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn generate_token_out_writes_a_private_file_and_short_tokens_are_judged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let a = cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(&file)
        .assert()
        .success();
    assert!(
        a.get_output().stdout.is_empty(),
        "the token is in the file only"
    );
    assert!(stderr_of(&a).contains("--token-file"), "{}", stderr_of(&a));
    assert_eq!(mode(&file), 0o600);
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(token.trim().len() >= 40, "{token:?}");

    // --token-file takes it as it is.
    let b = Broker::start_with_token(token.trim());
    b.cipc()
        .arg("status")
        .arg("--token-file")
        .arg(&file)
        .assert()
        .success();

    // An existing file is kept unless --force, which also makes it private.
    let a = cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(&file)
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("--force"), "{}", stderr_of(&a));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    cipc()
        .args(["serve", "--generate-token", "--force", "--out"])
        .arg(&file)
        .assert()
        .success();
    assert_eq!(mode(&file), 0o600);
    assert_ne!(std::fs::read_to_string(&file).unwrap(), token);
    cipc().args(["serve", "--out"]).arg(&file).assert().code(2);

    // `--generate-token > file` into a file others can read: told how to fix it.
    let exposed = dir.path().join("exposed");
    let f = std::fs::File::create(&exposed).unwrap();
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std_cipc()
        .args(["serve", "--generate-token"])
        .stdout(f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600") && err.contains("--out"), "{err}");

    // A world-readable token file: the refusal says how to fix the mode.
    let a = b
        .cipc()
        .arg("status")
        .arg("--token-file")
        .arg(&exposed)
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!("chmod 600 {}", exposed.display())),
        "{err}"
    );

    // Tokens: under 8 characters refused, under 16 warned about.
    let a = cipc()
        .args(["serve", "--memory", "--port", "0", "--token", "abc123"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("6 characters") && err.contains("--generate-token"),
        "{err}"
    );
    let (mut child, _) = serve_child(&["--memory", "--token", "0123456789"], &[]);
    let errs = stderr_reader(&mut child);
    let line = errs.recv_timeout(PROCESS_LIMIT).expect("a warning");
    assert!(
        line.contains("only 10 characters") && line.contains("16"),
        "{line}"
    );
    stop(child);
}

#[test]
fn send_help_lists_its_own_options_before_the_broker_options() {
    let help = stdout_text(cipc().args(["send", "--help"]));
    let broker = help
        .find("Broker and output options:")
        .unwrap_or_else(|| panic!("{help}"));
    for own in [
        "<TARGET>",
        "<ACTION>",
        "--param",
        "--wait",
        "--require-online",
        "--timeout",
    ] {
        let at = help
            .find(own)
            .unwrap_or_else(|| panic!("{own} missing: {help}"));
        assert!(
            at < broker,
            "{own} is filed under the broker options:\n{help}"
        );
    }
    for client in ["--url", "--token-file", "--peer-key", "--json"] {
        assert!(help[broker..].contains(client), "{client}:\n{help}");
    }
    // The same in the man page.
    let tmp = tempfile::tempdir().unwrap();
    cipc()
        .args(["man", "--dir"])
        .arg(tmp.path())
        .assert()
        .success();
    let page = std::fs::read_to_string(tmp.path().join("cipc-send.1")).unwrap();
    let options = page.find(".SH OPTIONS").expect("OPTIONS");
    let broker = page
        .find("BROKER AND OUTPUT OPTIONS")
        .expect("broker options");
    for own in [r"\-\-param", r"\-\-wait", "TARGET"] {
        let at = page[options..].find(own).map(|i| i + options);
        assert!(
            at.is_some_and(|i| i < broker),
            "{own} in the man page:\n{page}"
        );
    }
}

#[test]
fn ack_refuses_both_result_and_error() {
    let b = Broker::start();
    let peer = b.connect("w");
    let id = send_id(&b, "w", "job");
    stdout_json(b.cipc().envs(b.identity(&peer)).arg("wait"));
    let a = b
        .cipc()
        .envs(b.identity(&peer))
        .args(["ack", &id, "--result", "1", "--error", "nope"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("--error") && err.contains("--result") && err.contains("cannot be used with"),
        "{err}"
    );
    let v = stdout_json(b.cipc().args(["commands", "--status", "delivered"]));
    assert_eq!(v["commands"][0]["id"], id.as_str(), "nothing was acked");
}

#[test]
fn errors_start_with_the_whole_subcommand_once() {
    let b = Broker::start();
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    for (args, code, starts) in [
        (vec!["chan", "send", "log", "hello"], 2, "cipc chan send: "),
        (
            vec!["chan", "read", "bad name!"],
            1,
            "cipc chan read: the broker said: ",
        ),
        (vec!["signal", "get", "bad name!"], 1, "cipc signal get: "),
        (vec!["peers", "heartbeat"], 2, "cipc peers heartbeat: "),
        (
            vec!["questions", "show", "abcd1234"],
            1,
            "cipc questions show: ",
        ),
        (vec!["wait"], 2, "cipc wait: "),
        (vec!["status", "--url", closed.as_str()], 3, "cipc status: "),
    ] {
        let a = b.cipc().args(&args).assert().code(code);
        let err = stderr_of(&a);
        assert!(err.starts_with(starts), "{args:?}: {err}");
        let rest = &err[starts.len()..];
        assert!(
            !rest.starts_with("cipc ") && !rest.contains(starts.trim_end()),
            "the prefix is said once: {args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    // `cipc wait` has no peer argument, and does not say it has one.
    let a = b.cipc().arg("wait").assert().code(2);
    let err = stderr_of(&a);
    assert!(!err.contains("give it"), "{err}");
    assert!(
        err.contains("--peer ID") && err.contains("CIPC_PEER"),
        "{err}"
    );
    // `peers show` has one, and says so.
    let a = b.cipc().args(["peers", "show"]).assert().code(2);
    assert!(stderr_of(&a).contains("give its id"), "{}", stderr_of(&a));
}

#[test]
fn a_failed_send_wait_says_so_once_on_stderr() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(&b, &peer, vec!["--error".into(), "disk full".into()]);
    let a = b
        .cipc()
        .args([
            "send",
            "backend",
            "deploy",
            "--wait",
            "--timeout",
            "50s",
            "--table",
        ])
        .assert()
        .code(1);
    assert!(
        a.get_output().stdout.is_empty(),
        "stdout carries results only"
    );
    let err = stderr_of(&a);
    assert_eq!(err.matches("disk full").count(), 1, "{err}");
    assert!(
        err.starts_with("cipc send: command ") && err.contains("failed: disk full"),
        "{err}"
    );
    t.join().unwrap();

    // A timeout is said once too, on stderr.
    let a = b
        .cipc()
        .args([
            "send",
            "nobody",
            "x",
            "--wait",
            "--timeout",
            "200ms",
            "--table",
        ])
        .assert()
        .code(124);
    assert!(a.get_output().stdout.is_empty(), "{:?}", a.get_output());
}

/// A pseudo-terminal: its controlling side and the side a child uses.
#[allow(unsafe_code)] // openpty(3), and taking ownership of the fds it made
fn pty() -> (std::fs::File, std::fs::File) {
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
fn pty_lines(master: std::fs::File) -> mpsc::Receiver<String> {
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

#[test]
fn chan_follow_says_it_started_on_a_terminal() {
    let b = Broker::start();
    let (master, slave) = pty();
    let mut cmd = b.std_cipc();
    cmd.args(["chan", "follow", "news"])
        .stdout(Stdio::piped())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let notes = pty_lines(master);
    let line = notes
        .recv_timeout(PROCESS_LIMIT)
        .expect("no notice on the terminal");
    assert!(
        line.starts_with("cipc chan follow: following news after #0") && line.contains("Ctrl-C"),
        "{line:?}"
    );
    // Stdout still carries the messages alone.
    let lines = line_reader(&mut child);
    b.cipc()
        .args(["chan", "send", "news", "1"])
        .assert()
        .success();
    let m: Value = serde_json::from_str(&lines.recv_timeout(PROCESS_LIMIT).unwrap()).unwrap();
    assert_eq!(m["seq"], 1);
    stop(child);

    // Into a pipe it says nothing.
    let mut child = b
        .std_cipc()
        .args(["chan", "follow", "news"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let errs = stderr_reader(&mut child);
    let lines = line_reader(&mut child);
    let deadline = Instant::now() + PROCESS_LIMIT;
    loop {
        assert!(Instant::now() < deadline, "chan follow printed nothing");
        b.cipc()
            .args(["chan", "send", "news", "2"])
            .assert()
            .success();
        if lines.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
    }
    stop(child);
    assert_eq!(errs.iter().count(), 0, "nothing on stderr in a pipe");
}

#[test]
fn declining_the_reset_question_changes_nothing_and_is_not_an_error() {
    let b = Broker::start();
    b.connect("keep-me");
    let (mut master, slave) = pty();
    let mut cmd = b.std_cipc();
    cmd.arg("reset")
        .stdin(slave)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    master.write_all(b"n\n").unwrap();
    let out = wait_child(child, PROCESS_LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("[y/N]") && err.contains("cipc reset: nothing was reset"),
        "{err}"
    );
    let p = stdout_json(b.cipc().arg("peers"));
    assert_eq!(p["peers"].as_array().unwrap().len(), 1);
}

#[test]
fn usage_lines_do_not_show_flags_set_in_the_environment() {
    let b = Broker::start();
    let peer = b.connect("me");
    for args in [vec!["chan", "follow"], vec!["ack"], vec!["send", "x"]] {
        let a = b
            .cipc()
            .envs(b.identity(&peer))
            .env("CIPC_TOKEN", "a-token-of-some-length")
            .args(&args)
            .assert()
            .code(2);
        let err = stderr_of(&a);
        let usage = err
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("{args:?}: {err}"));
        for flag in ["--peer", "--url", "--token", "--peer-key"] {
            assert!(!usage.contains(flag), "{args:?}: {usage}");
        }
    }
    // The variables still work, and a flag wins over its variable.
    let s = stdout_json(b.cipc().envs(b.identity(&peer)).args(["peers", "show"]));
    assert_eq!(s["peer"]["id"], peer.as_str());
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    b.cipc()
        .env("CIPC_URL", &closed)
        .args(["status", "--url", &b.url])
        .assert()
        .success();
    // An empty variable is unset.
    b.cipc()
        .env("CIPC_PEER", "")
        .arg("status")
        .assert()
        .success();
    // The help still names them.
    let help = stdout_text(cipc().args(["wait", "--help"]));
    for var in ["CIPC_URL", "CIPC_TOKEN", "CIPC_PEER", "CIPC_PEER_KEY"] {
        assert!(help.contains(&format!("env: {var}")), "{var}: {help}");
    }
}

#[test]
fn a_command_for_a_role_nobody_holds_is_flagged() {
    let b = Broker::start();
    b.connect("frontend");
    b.connect("backend");

    // Queued: JSON on stdout as always, the why on stderr.
    let a = b
        .cipc()
        .args(["send", "frontned", "build"])
        .assert()
        .success();
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["queued"], true);
    let err = stderr_of(&a);
    assert!(
        err.starts_with("cipc send: no online peer holds role frontned")
            && err.contains("online roles: backend, frontend")
            && err.contains("did you mean frontend?")
            && err.contains("waits until one connects"),
        "{err}"
    );
    // A held role says nothing.
    let a = b
        .cipc()
        .args(["send", "frontend", "build"])
        .assert()
        .success();
    assert!(stderr_of(&a).is_empty(), "{}", stderr_of(&a));

    // --require-online: an error, and nothing is sent.
    let before = stdout_json(b.cipc().arg("commands"))["commands"]
        .as_array()
        .unwrap()
        .len();
    let a = b
        .cipc()
        .args(["send", "frontned", "build", "--require-online"])
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("nothing was sent") && err.contains("frontned"),
        "{err}"
    );
    assert!(a.get_output().stdout.is_empty());
    let after = stdout_json(b.cipc().arg("commands"))["commands"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing was sent");
    b.cipc()
        .args(["send", "backend", "ok", "--require-online"])
        .assert()
        .success();

    // --wait says so at once, and its timeout says nobody took it.
    let a = b
        .cipc()
        .args(["send", "frontned", "build", "--wait", "--timeout", "300ms"])
        .arg("--json")
        .assert()
        .code(124);
    let err = stderr_of(&a);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("no online peer holds role frontned"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("cipc send: no result for ")
            && lines[1].contains("nobody took it")
            && lines[1].contains("cipc cancel"),
        "{err}"
    );
    assert_eq!(parse(&a.get_output().stdout)["timedOut"], true);
}

#[test]
fn send_wait_is_one_request_that_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let served = Served::start(port, dir.path());
    let sender = std_cipc()
        .env("CIPC_URL", &url)
        .args(["send", "backend", "build", "--wait", "--timeout", "50s"])
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let listed = || {
        let v = stdout_json(cipc().env("CIPC_URL", &url).arg("commands"));
        v["commands"].as_array().unwrap().clone()
    };
    let deadline = Instant::now() + PROCESS_LIMIT;
    while listed().is_empty() {
        assert!(Instant::now() < deadline, "the command was never sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The broker goes away mid-wait and comes back.
    drop(served);
    let _served = Served::start(port, dir.path());
    let peer = stdout_json(
        cipc()
            .env("CIPC_URL", &url)
            .args(["peers", "connect", "backend"]),
    );
    let id = peer["peer"]["id"].as_str().unwrap();
    let key = peer["key"].as_str().unwrap();
    let got = stdout_json(
        cipc()
            .env("CIPC_URL", &url)
            .env("CIPC_PEER", id)
            .env("CIPC_PEER_KEY", key)
            .args(["wait", "--timeout", "50s"]),
    );
    let cid = got["command"]["id"].as_str().unwrap().to_string();
    cipc()
        .env("CIPC_URL", &url)
        .env("CIPC_PEER_KEY", key)
        .args(["ack", &cid, "--result", r#""built""#])
        .assert()
        .success();
    let out = wait_child(sender, PROCESS_LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = parse(&out.stdout);
    assert_eq!(v["command"]["id"], cid.as_str());
    assert_eq!(v["command"]["result"], "built");
    assert_eq!(listed().len(), 1, "the repeated request sent nothing new");
    // A dedupe key given by the user is kept.
    let a = cipc()
        .env("CIPC_URL", &url)
        .args(["send", "backend", "again", "--dedupe-key", "mine"])
        .args(["--wait", "--timeout", "100ms", "--json"])
        .assert()
        .code(124);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["command"]["dedupeKey"], "mine");
    assert!(
        stderr_of(&a).contains("nobody took it"),
        "{}",
        stderr_of(&a)
    );
}

/// A web server that is not a broker: answers every request with `status`
/// and `body` (as `content_type`), on a thread, until the test ends.
fn foreign_server(status: &'static str, content_type: &'static str, body: &'static str) -> String {
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

#[test]
fn another_web_server_is_named_not_dumped() {
    let page = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome</h1></body></html>";
    let url = foreign_server("404 Not Found", "text/html", page);
    for args in [
        vec!["status"],
        vec!["peers", "show", "0190f0c4-0000-7000-8000-000000000000"],
    ] {
        let a = cipc().env("CIPC_URL", &url).args(&args).assert().code(3);
        let err = stderr_of(&a);
        assert!(
            err.contains(&format!(
                "the server at {url} answered HTTP 404 with a non-cipc page"
            )) && err.contains("CIPC_URL"),
            "{err}"
        );
        assert!(
            !err.contains('<') && !err.contains("nginx") && !err.contains("the broker said"),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // A page answered with 200 is no broker either.
    let url = foreign_server("200 OK", "text/html", page);
    let a = cipc().env("CIPC_URL", &url).arg("status").assert().code(3);
    assert!(stderr_of(&a).contains("non-cipc page"), "{}", stderr_of(&a));
    // Short plain text is quoted.
    let url = foreign_server("502 Bad Gateway", "text/plain", "upstream went away");
    let a = cipc().env("CIPC_URL", &url).arg("status").assert().code(3);
    assert!(
        stderr_of(&a).contains("\"upstream went away\""),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn ids_can_be_given_as_tables_show_them_or_as_a_unique_part() {
    let b = Broker::start();
    let peer = b.connect("w");
    let one = send_id(&b, "w", "one");
    let two = send_id(&b, "nobody", "two");
    let tail = |id: &str| id[id.len() - 8..].to_string();

    // The short id of the commands table.
    let table = stdout_text(b.cipc().args(["commands", "--table"]));
    assert!(table.contains(&tail(&two)), "{table}");
    let (v, _) = result_of(&b, &tail(&two), "100ms", 124);
    assert_eq!(v["command"]["id"], two.as_str());
    // A unique start or end of at least 6 characters, with or without dashes.
    let v = stdout_json(b.cipc().args(["cancel", &two[two.len() - 6..]]));
    assert_eq!(v["command"]["status"], "cancelled");
    // An ambiguous part lists what it matches.
    let a = b.cipc().args(["result", &one[..6]]).assert().code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains(&one) && err.contains(&two) && err.contains("give more"),
        "{err}"
    );
    // Too short, not an id, or nothing like it.
    let a = b.cipc().args(["cancel", &tail(&one)[..5]]).assert().code(2);
    assert!(stderr_of(&a).contains("too short"), "{}", stderr_of(&a));
    let a = b.cipc().args(["cancel", "not-an-id"]).assert().code(2);
    assert!(
        stderr_of(&a).contains("is not a command id"),
        "{}",
        stderr_of(&a)
    );
    let a = b.cipc().args(["cancel", "abcdef987654"]).assert().code(1);
    assert!(
        stderr_of(&a).contains("no command id starts or ends with abcdef987654"),
        "{}",
        stderr_of(&a)
    );

    // ack, by its short id, as the peer that took it.
    stdout_json(b.cipc().envs(b.identity(&peer)).arg("wait"));
    let v =
        stdout_json(
            b.cipc()
                .envs(b.identity(&peer))
                .args(["ack", &tail(&one), "--result", "1"]),
        );
    assert_eq!(v["command"]["id"], one.as_str());
    assert_eq!(v["command"]["status"], "acked");

    // Peers: show and heartbeat by a part, and --peer too.
    let v = stdout_json(b.cipc().args(["peers", "show", &tail(&peer)]));
    assert_eq!(v["peer"]["id"], peer.as_str());
    let v = stdout_json(b.cipc().args(["peers", "show", &peer[..13]]));
    assert_eq!(v["peer"]["id"], peer.as_str());
    let v = stdout_json(b.cipc().env("CIPC_PEER_KEY", b.key(&peer)).args([
        "peers",
        "heartbeat",
        &tail(&peer),
    ]));
    assert_eq!(v["peer"]["status"], "online");
    b.cipc()
        .args(["wait", "--timeout", "0s", "--peer", &tail(&peer)])
        .env("CIPC_PEER_KEY", b.key(&peer))
        .assert()
        .code(124);
    let a = b
        .cipc()
        .args(["peers", "show", "abcdef12"])
        .assert()
        .code(1);
    assert!(
        stderr_of(&a).contains("no peer id starts or ends with"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn peers_connect_reconnects_this_shells_peer_of_the_same_role() {
    let b = Broker::start();
    let me = b.connect("backend");
    let count = || {
        stdout_json(b.cipc().arg("peers"))["peers"]
            .as_array()
            .unwrap()
            .len()
    };

    // Connecting as backend again, as CIPC_PEER: the same peer, the same key.
    let a = b
        .cipc()
        .envs(b.identity(&me))
        .args(["peers", "connect", "backend", "--export"])
        .assert()
        .success();
    let export = String::from_utf8_lossy(&a.get_output().stdout)
        .trim()
        .to_string();
    assert_eq!(
        export,
        format!("export CIPC_PEER={me} CIPC_PEER_KEY={}", b.key(&me))
    );
    assert!(
        stderr_of(&a).contains("reconnected peer"),
        "{}",
        stderr_of(&a)
    );
    assert_eq!(count(), 1, "no ghost peer");

    // Another role, or --new: a new peer.
    let v = stdout_json(
        b.cipc()
            .envs(b.identity(&me))
            .args(["peers", "connect", "frontend"]),
    );
    assert_ne!(v["peer"]["id"], me.as_str());
    let v = stdout_json(
        b.cipc()
            .envs(b.identity(&me))
            .args(["peers", "connect", "backend", "--new"]),
    );
    assert_ne!(v["peer"]["id"], me.as_str());
    assert_eq!(count(), 3);
    // Without the key there is nothing to reconnect with: a new peer.
    let v = stdout_json(
        b.cipc()
            .env("CIPC_PEER", &me)
            .args(["peers", "connect", "backend"]),
    );
    assert_ne!(v["peer"]["id"], me.as_str());
}

#[test]
fn doctor_checks_url_token_version_peer_and_key() {
    let b = Broker::start_with_token("doctor-token-0123456789");
    let peer = {
        let v = stdout_json(
            b.cipc()
                .env("CIPC_TOKEN", "doctor-token-0123456789")
                .args(["peers", "connect", "w"]),
        );
        b.keys.lock().unwrap().insert(
            v["peer"]["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        );
        v["peer"]["id"].as_str().unwrap().to_string()
    };
    let outcomes = |v: &Value| -> Vec<(String, String)> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pairs = |xs: &[(&str, &str)]| -> Vec<(String, String)> {
        xs.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };

    // All good.
    let v = stdout_json(
        b.cipc()
            .env("CIPC_TOKEN", "doctor-token-0123456789")
            .envs(b.identity(&peer))
            .arg("doctor"),
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        outcomes(&v),
        pairs(&[
            ("broker", "ok"),
            ("token", "ok"),
            ("version", "ok"),
            ("peer", "ok"),
            ("key", "ok")
        ])
    );
    let text = stdout_text(
        b.cipc()
            .env("CIPC_TOKEN", "doctor-token-0123456789")
            .envs(b.identity(&peer))
            .args(["doctor", "--table"]),
    );
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().all(|l| l.starts_with('✓')), "{text}");

    // No token: the fix names CIPC_TOKEN; what needs it is skipped.
    let a = b.cipc().args(["doctor", "--table"]).assert().code(1);
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let token = text.lines().find(|l| l.contains("token")).unwrap();
    assert!(
        token.starts_with('✗') && token.contains("fix: set CIPC_TOKEN"),
        "{text}"
    );
    assert!(
        text.lines().next().unwrap().starts_with('✓'),
        "the broker is there: {text}"
    );

    // A wrong key (this peer's, with a changed secret): only the key fails.
    let mut forged = b.key(&peer);
    let last = forged.pop();
    forged.push(if last == Some('A') { 'Q' } else { 'A' });
    let a = b
        .cipc()
        .env("CIPC_TOKEN", "doctor-token-0123456789")
        .env("CIPC_PEER", &peer)
        .env("CIPC_PEER_KEY", &forged)
        .args(["doctor", "--table"])
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let marks: Vec<char> = text.lines().map(|l| l.chars().next().unwrap()).collect();
    assert_eq!(marks, ['✓', '✓', '✓', '✓', '✗'], "{text}");
    // No key for a protected peer: the key check says to set it.
    let a = b
        .cipc()
        .env("CIPC_TOKEN", "doctor-token-0123456789")
        .env("CIPC_PEER", &peer)
        .arg("doctor")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(
        outcomes(&v),
        pairs(&[
            ("broker", "ok"),
            ("token", "ok"),
            ("version", "ok"),
            ("peer", "ok"),
            ("key", "fail")
        ])
    );
    assert!(
        v["checks"][4]["fix"]
            .as_str()
            .unwrap()
            .contains("CIPC_PEER_KEY"),
        "{v}"
    );

    // Nothing there, and something that is not a broker.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let a = cipc().args(["doctor", "--url", &closed]).assert().code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["checks"][0]["outcome"], "fail");
    assert!(
        v["checks"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("cipc serve"),
        "{v}"
    );
    assert_eq!(v["checks"][1]["outcome"], "skip");
    let foreign = foreign_server("200 OK", "application/json", r#"{"ok":true}"#);
    let a = cipc().args(["doctor", "--url", &foreign]).assert().code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["checks"][0]["outcome"], "fail", "{v}");
    assert!(
        v["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not a cipc broker"),
        "{v}"
    );
}

#[test]
fn claude_setup_dry_run_writes_nothing_and_remove_names_each_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = tempfile::tempdir().expect("home");
    let project = dir.path().to_str().expect("utf-8").to_string();
    let run = |args: &[&str]| {
        cipc()
            .env("HOME", home.path())
            .env_remove("CLAUDE_CONFIG_DIR")
            .args(["claude"])
            .args(args)
            .args(["--dir", &project])
            .assert()
            .success()
    };
    let a = run(&["setup", "--role", "qa", "--dry-run"]);
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(
        out.contains("would add to") && out.contains("\"cipc\""),
        "{out}"
    );
    assert!(out.contains("hook session-start --role qa"), "{out}");
    assert!(
        !dir.path().join(".mcp.json").exists(),
        "a dry run writes nothing"
    );
    assert!(!dir.path().join(".claude").exists());

    // Only the settings file exists: remove labels it as the hooks.
    std::fs::create_dir_all(dir.path().join(".claude")).expect("mkdir");
    std::fs::write(
        dir.path().join(".claude/settings.json"),
        r#"{"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "cipc hook stop --role qa"}]}]}}"#,
    )
    .expect("write");
    let a = run(&["remove", "--dry-run"]);
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert_eq!(
        out.trim(),
        format!(
            "would remove the cipc hooks from {}/.claude/settings.json, and nothing else",
            dir.path().canonicalize().expect("canonical").display()
        )
    );
    run(&["remove"]);
    let left: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".claude/settings.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(left, json!({"model": "opus"}));
}

// ---------------------------------------------------------------- issue 20: a new user's first hour

#[test]
fn an_unreadable_row_stops_start_up_naming_the_row_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let (child, line) = serve_child(&["--data-dir", &data_arg], &[]);
    let url = start_url(&line);
    let v = stdout_json(
        cipc()
            .env("CIPC_URL", &url)
            .args(["send", "backend", "build"]),
    );
    let id = v["command"]["id"].as_str().unwrap().to_string();
    terminate(child);

    // Something other than cipc breaks one row.
    let db = data.join("cipc.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn
        .execute(
            "UPDATE commands SET body = '{\"id\": 5}' WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let serve = || {
        let mut c = cipc();
        c.args(["serve", "--port", "0", "--data-dir", &data_arg])
            .env_remove("CIPC_HOST")
            .env_remove("CIPC_PORT")
            .env_remove("CIPC_DATA_DIR")
            .timeout(PROCESS_LIMIT);
        c
    };
    let a = serve().assert().code(1);
    let err = stderr_of(&a);
    assert!(!err.contains("panicked"), "{err}");
    // Which row: the table and its id.
    assert!(
        err.contains(&format!(
            "the row id = '{id}' of table commands is unreadable"
        )),
        "{err}"
    );
    // The way out: the exact statement that removes it, and moving the data aside.
    let delete = format!("DELETE FROM commands WHERE id = '{id}'");
    // (SQLite names the file by its full path, which may differ from ours
    // by symbolic links, so only its end is compared.)
    assert!(
        err.contains("sqlite3 \"") && err.contains(&format!("/cipc.db\" \"{delete}\"")),
        "{err}"
    );
    assert!(
        err.contains("mv \"") && err.contains("/data\" \"") && err.contains("/data\".old"),
        "{err}"
    );
    assert!(err.contains("--check-store"), "{err}");

    // Following the advice works: the broker starts, without that command.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(&delete, [])
        .unwrap();
    let (child, line) = serve_child(&["--data-dir", &data_arg], &[]);
    let v = stdout_json(cipc().env("CIPC_URL", start_url(&line)).arg("commands"));
    assert_eq!(v["commands"], json!([]), "{v}");
    terminate(child);
}

#[test]
fn doctor_prints_every_check_when_cipc_peer_is_not_the_keys_peer() {
    let b = Broker::start();
    let mine = b.connect("w");
    let other = b.connect("w");
    let a = b
        .cipc()
        .env("CIPC_PEER", &other)
        .env("CIPC_PEER_KEY", b.key(&mine))
        .args(["doctor", "--table"])
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let marks: Vec<char> = text.lines().map(|l| l.chars().next().unwrap()).collect();
    assert_eq!(marks, ['✓', '✓', '✓', '✗', '-'], "{text}");
    let peer = text.lines().nth(3).unwrap();
    assert!(
        peer.contains("name different peers") && peer.contains("fix: unset CIPC_PEER"),
        "{peer}"
    );
    // The same with nothing listening: the mismatch is still said.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let a = cipc()
        .env("CIPC_PEER", &other)
        .env("CIPC_PEER_KEY", b.key(&mine))
        .args(["doctor", "--url", &closed])
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    let outcomes: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["fail", "skip", "skip", "fail", "skip"], "{v}");
}

/// A memory store that keeps working but says it cannot save (a full disk,
/// a database gone): what `/healthz` answers 503 for.
struct SickStore(cipc::store::MemoryStore);

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
    fn health(&self) -> Result<(), String> {
        Err("no space left on device (test)".into())
    }
    fn progress(&self) -> std::sync::Arc<cipc::store::Progress> {
        self.0.progress()
    }
}

#[test]
fn doctor_knows_token_and_version_from_a_broker_whose_store_is_down() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let token = "doctor-token-0123456789";
    let server = rt.block_on(async {
        let broker = cipc::broker::Broker::open(
            std::sync::Arc::new(SickStore(cipc::store::MemoryStore::default())),
            cipc::broker::BrokerConfig::default(),
        )
        .unwrap();
        RunningServer::start(
            broker,
            cipc::server::ServerConfig::default(),
            Some(token.into()),
        )
        .await
        .unwrap()
    });
    let url = server.url();
    let a = cipc()
        .env("CIPC_URL", &url)
        .env("CIPC_TOKEN", token)
        .arg("doctor")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    let checks = v["checks"].as_array().unwrap();
    let outcome = |i: usize| checks[i]["outcome"].as_str().unwrap();
    assert_eq!(checks[0]["name"], "broker");
    assert_eq!(outcome(0), "fail", "{v}");
    assert!(
        checks[0]["detail"]
            .as_str()
            .unwrap()
            .contains("cannot save changes"),
        "{v}"
    );
    assert_eq!((outcome(1), outcome(2)), ("ok", "ok"), "{v}");
    assert!(checks[2]["detail"]
        .as_str()
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
    // A wrong token is still told apart.
    let a = cipc()
        .env("CIPC_URL", &url)
        .env("CIPC_TOKEN", "wrong-token-0123456789")
        .arg("doctor")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["checks"][1]["outcome"], "fail", "{v}");
    rt.block_on(server.stop());
}

#[test]
fn send_wait_into_a_pipe_prints_the_result_alone() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(
        &b,
        &peer,
        vec!["--result".into(), r#"{"port":8080}"#.into()],
    );
    // stdout is a pipe here: the result and nothing else.
    let out = stdout_text(b.cipc().args(["send", "backend", "start", "--wait"]));
    assert_eq!(parse(out.as_bytes()), json!({"port": 8080}), "{out}");
    t.join().unwrap();
    // A string result is printed as it is, for `x=$(cipc send ... --wait)`.
    let t = worker(&b, &peer, vec!["--result".into(), r#""done""#.into()]);
    let out = stdout_text(b.cipc().args(["send", "backend", "again", "--wait"]));
    assert_eq!(out, "done\n");
    t.join().unwrap();
    // `cipc result` too; --json keeps the whole document.
    let id = send_id(&b, "backend", "third");
    let t = worker(&b, &peer, vec!["--result".into(), "[1,2]".into()]);
    let out = stdout_text(b.cipc().args(["result", &id, "--timeout", "50s"]));
    assert_eq!(parse(out.as_bytes()), json!([1, 2]), "{out}");
    t.join().unwrap();
    let v = stdout_json(b.cipc().args(["result", &id, "--json"]));
    assert_eq!(v["command"]["id"], id.as_str());
    assert_eq!(v["command"]["result"], json!([1, 2]));
    // A timeout prints nothing on stdout; stderr names the command.
    let a = b
        .cipc()
        .args(["send", "nobody", "x", "--wait", "--timeout", "200ms"])
        .assert()
        .code(124);
    assert!(a.get_output().stdout.is_empty(), "{:?}", a.get_output());
    assert!(
        stderr_of(&a).contains("no result for "),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn generate_token_out_creates_missing_folders_privately() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config").join("cipc").join("token");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(&file)
        .assert()
        .success();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir.path().join("config")), 0o700);
    assert_eq!(mode(&dir.path().join("config").join("cipc")), 0o700);
    assert!(std::fs::read_to_string(&file).unwrap().trim().len() >= 40);
    // A folder that cannot be made (a file is in the way): said, with the fix.
    let blocked = dir.path().join("plain-file");
    std::fs::write(&blocked, "x").unwrap();
    let a = cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(blocked.join("token"))
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("cannot create the folder") && err.contains("mkdir -p -m 700"),
        "{err}"
    );
}
