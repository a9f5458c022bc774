//! `cipc work`: scripts as peers. A real broker runs in-process; the built
//! `cipc` binary runs as the worker, with `sh -c '...'` handlers.
//!
//! Deadlines here are safety nets only: every wait polls for a state (a file
//! a handler wrote, a line the worker printed, a command's status), and
//! nothing asserts on how long something took.

mod common;

use cipc::broker::{Broker, BrokerConfig};
use cipc::server::{RunningServer, ServerConfig};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// A safety net for any single wait; tests never get near it.
const LIMIT: Duration = Duration::from_secs(20);

/// A running `cipc work`, its output read line by line as it comes.
struct Worker {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The tasks reading stdout and stderr.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Reads `pipe` line by line into the answered list until it closes.
fn collect<R: AsyncRead + Unpin + Send + 'static>(
    pipe: R,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let task = tokio::spawn(async move {
        let mut reader = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().expect("lines").push(line);
        }
    });
    (lines, task)
}

impl Worker {
    /// `cipc work ARGS` against the broker at `url`, with `script` as its
    /// `sh -c` handler and `dir` in `$DIR`.
    fn start(url: &str, args: &[&str], script: &str, dir: &Path) -> Worker {
        Worker::start_as(url, args, script, dir, &[])
    }

    /// [`Worker::start`] with more environment (`CIPC_PEER`, ...).
    fn start_as(
        url: &str,
        args: &[&str],
        script: &str,
        dir: &Path,
        envs: &[(&str, &str)],
    ) -> Worker {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cipc"));
        cmd.arg("work")
            .args(args)
            .args(["--", "sh", "-c", script])
            .env("CIPC_URL", url)
            .env("DIR", dir)
            .env("CIPC_BIN", env!("CARGO_BIN_EXE_cipc"))
            .env_remove("CIPC_PEER")
            .env_remove("CIPC_PEER_KEY")
            .env_remove("CIPC_TOKEN")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cipc work");
        let (stdout, out_task) = collect(child.stdout.take().expect("stdout"));
        let (stderr, err_task) = collect(child.stderr.take().expect("stderr"));
        Worker {
            child,
            stdout,
            stderr,
            readers: vec![out_task, err_task],
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().expect("lines").join("\n")
    }

    /// Waits until a stderr line contains `needle`.
    async fn says(&self, needle: &str) {
        let ok = common::eventually(LIMIT, || async {
            self.stderr
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains(needle))
        })
        .await;
        assert!(
            ok,
            "the worker never said {needle:?}; it said:\n{}",
            self.stderr_text()
        );
    }

    /// The JSON lines printed so far.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .expect("lines")
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    #[allow(unsafe_code)] // kill(2) on our own child
    fn signal(&self, sig: i32) {
        let pid = self.child.id().expect("still running") as i32;
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Waits for the worker to exit and for the last of its output.
    async fn exit(&mut self) -> ExitStatus {
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the worker did not exit; it said:\n{}", self.stderr_text()))
            .expect("wait");
        for r in &mut self.readers {
            let _ = tokio::time::timeout(LIMIT, r).await;
        }
        status
    }

    /// SIGTERM with nothing running: exits 0, having said nothing about a
    /// failed ack (the one riding on the last take has landed).
    async fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.exit().await;
        assert_eq!(status.code(), Some(0), "{}", self.stderr_text());
        let text = self.stderr_text();
        assert!(text.contains("is offline"), "{text}");
        assert!(!text.contains("did not land"), "{text}");
        let lines = self.stdout.lock().expect("lines").clone();
        assert!(!lines.iter().any(|l| l.contains("ackError")), "{lines:?}");
    }
}

/// `POST /commands/send?wait=`: sends and answers the finished command.
async fn request(url: &str, role: &str, action: &str, params: Value) -> Value {
    let (status, body) = common::post(
        &format!("{url}/commands/send?wait={}", LIMIT.as_millis()),
        json!({"target": role, "action": action, "params": params}),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    assert_ne!(body["timedOut"], json!(true), "no answer in time: {body}");
    body["command"].clone()
}

/// `POST /commands/send` without waiting: the command's id.
async fn send(url: &str, role: &str, action: &str) -> String {
    let (status, body) = common::post(
        &format!("{url}/commands/send"),
        json!({"target": role, "action": action}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["command"]["id"].as_str().expect("id").to_string()
}

async fn result(url: &str, id: &str) -> Value {
    let (status, body) = common::get(&format!(
        "{url}/commands/{id}/result?timeout={}",
        LIMIT.as_millis()
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["timedOut"], json!(true), "no result in time: {body}");
    body["command"].clone()
}

async fn command(url: &str, id: &str) -> Value {
    let (_, body) = common::get(&format!("{url}/commands?limit=1000")).await;
    body["commands"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == json!(id)))
        .cloned()
        .unwrap_or_else(|| panic!("no command {id}"))
}

async fn file_appears(path: &Path) {
    let ok = common::eventually(LIMIT, || async { path.exists() }).await;
    assert!(ok, "{} never appeared", path.display());
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_stdout_is_the_result_and_params_arrive_on_stdin_and_in_the_environment() {
    let server = common::start().await;
    let url = server.url();
    let dir = tempdir();
    let script = r#"set -e
read -r line
"$CIPC_BIN" chan send from-handler "{\"id\": \"$CIPC_COMMAND_ID\"}" >/dev/null
keyed=false; [ -n "$CIPC_PEER_KEY" ] && keyed=true
printf '{"stdin": %s, "params": %s, "action": "%s", "id": "%s", "from": "%s", "attempt": %s, "peer": "%s", "keyed": %s}\n' \
  "$line" "$CIPC_PARAMS" "$CIPC_ACTION" "$CIPC_COMMAND_ID" "$CIPC_FROM" "$CIPC_ATTEMPT" "$CIPC_PEER" "$keyed"
"#;
    let worker = Worker::start(&url, &["build"], script, dir.path());
    let params = json!({"n": 1, "s": "a b \"quoted\"", "list": [1, 2]});

    // The CLI way: `cipc send ROLE ACTION --wait` prints the handler's JSON.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
        .args(["send", "build", "compile", "--params", &params.to_string()])
        .args(["--from", "ci", "--wait", "--timeout", "20s", "--json"])
        .env("CIPC_URL", &url)
        .env_remove("CIPC_PEER")
        .env_remove("CIPC_PEER_KEY")
        .output()
        .await
        .expect("cipc send");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let c = &sent["command"];
    assert_eq!(c["status"], "acked", "{c}");
    let r = &c["result"];
    assert_eq!(r["stdin"], params, "params on stdin: {r}");
    assert_eq!(r["params"], params, "CIPC_PARAMS: {r}");
    assert_eq!(r["action"], "compile");
    assert_eq!(r["id"], c["id"]);
    assert_eq!(r["from"], "ci");
    assert_eq!(r["attempt"], 1);
    assert_eq!(r["keyed"], true);

    // CIPC_PEER is this worker: a protected peer of the role.
    let peer = r["peer"].as_str().expect("peer");
    let (_, p) = common::get(&format!("{url}/peers/{peer}")).await;
    assert_eq!(p["peer"]["role"], "build", "{p}");
    assert_eq!(p["peer"]["protected"], true, "{p}");
    assert_eq!(p["peer"]["status"], "online", "{p}");

    // CIPC_URL let the handler use cipc itself.
    let (_, m) = common::get(&format!("{url}/channels/from-handler/messages")).await;
    assert_eq!(m["messages"][0]["data"]["id"], c["id"], "{m}");

    // REST request-reply in one request gets the same.
    let c2 = request(&url, "build", "again", json!({"k": "v"})).await;
    assert_eq!(c2["status"], "acked");
    assert_eq!(c2["result"]["stdin"], json!({"k": "v"}));

    // One JSON line per finished command on stdout (not a terminal).
    let ok = common::eventually(LIMIT, || async { worker.json_lines().len() >= 2 }).await;
    assert!(ok, "{:?}", worker.json_lines());
    let lines = worker.json_lines();
    assert_eq!(lines[0]["id"], c["id"]);
    assert_eq!(lines[0]["status"], "acked");
    assert_eq!(lines[0]["result"], *r);
    assert!(lines[0]["elapsedMs"].is_u64(), "{}", lines[0]);
    worker.stop().await;
    let (_, p) = common::get(&format!("{url}/peers/{peer}")).await;
    assert_eq!(p["peer"]["status"], "offline", "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_stdout_is_wrapped_and_a_failure_names_the_exit_code_and_the_stderr_tail() {
    let server = common::start().await;
    let url = server.url();
    let dir = tempdir();
    let script = r#"case "$CIPC_ACTION" in
  hello) echo "hello world" ;;
  fail)
    i=0
    while [ $i -lt 300 ]; do echo "noise line $i" >&2; i=$((i+1)); done
    echo "the real reason" >&2
    exit 3 ;;
esac"#;
    // --table: the human lines, on stderr, even into a pipe.
    let worker = Worker::start(&url, &["build", "--table"], script, dir.path());

    let c = request(&url, "build", "hello", json!({})).await;
    assert_eq!(c["status"], "acked", "{c}");
    assert_eq!(c["result"], json!({"stdout": "hello world"}));

    let c = request(&url, "build", "fail", json!({})).await;
    assert_eq!(c["status"], "failed", "{c}");
    let error = c["error"].as_str().expect("error");
    assert!(error.starts_with("exit 3: "), "{error}");
    assert!(error.ends_with("the real reason"), "{error}");
    assert!(error.contains("noise line 299"), "{error}");
    assert!(
        !error.contains("noise line 0\n"),
        "only the tail of stderr: {error}"
    );
    assert!(error.len() < 2300, "about 2 KB of stderr: {}", error.len());

    worker.says("✓ hello ").await;
    worker.says("✗ fail ").await;
    worker.says("exit 3: the real reason").await;
    assert!(worker.json_lines().is_empty(), "--table prints no JSON");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_a_handler_that_runs_too_long_and_the_worker_goes_on() {
    let server = common::start().await;
    let url = server.url();
    let dir = tempdir();
    let script = r#"case "$CIPC_ACTION" in
  slow) echo "going to sleep" >&2; exec sleep 60 ;;
  *) echo '{"ok": true}' ;;
esac"#;
    // 3 s, not less: the handler's shell must have printed its line before
    // the kill even on a loaded machine.
    let worker = Worker::start(&url, &["build", "--timeout", "3s"], script, dir.path());
    // The wait (20 s) is shorter than the sleep (60 s): only a kill answers it.
    let c = request(&url, "build", "slow", json!({})).await;
    assert_eq!(c["status"], "failed", "{c}");
    let error = c["error"].as_str().expect("error");
    assert!(error.contains("timed out after 3s"), "{error}");
    assert!(error.contains("SIGKILL"), "{error}");
    assert!(error.contains("going to sleep"), "stderr tail: {error}");

    let c = request(&url, "build", "quick", json!({})).await;
    assert_eq!(c["status"], "acked", "{c}");
    assert_eq!(c["result"], json!({"ok": true}));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_runs_handlers_side_by_side() {
    let server = common::start().await;
    let url = server.url();
    let dir = tempdir();
    // Each handler marks itself started, then waits until it sees the other
    // one started too: both finish only if both ran at the same time.
    let script = r#"touch "$DIR/$CIPC_COMMAND_ID"
i=0
while [ "$(ls "$DIR" | wc -l)" -lt 2 ]; do
  i=$((i+1)); [ $i -gt 500 ] && { echo "ran alone" >&2; exit 1; }
  sleep 0.02
done
echo '{"together": true}'"#;
    let worker = Worker::start(
        &url,
        &["build", "--concurrency", "2", "--table"],
        script,
        dir.path(),
    );
    let a = send(&url, "build", "job").await;
    let b = send(&url, "build", "job").await;
    for id in [&a, &b] {
        let c = result(&url, id).await;
        assert_eq!(c["status"], "acked", "{c}");
        assert_eq!(c["result"], json!({"together": true}));
        assert_eq!(c["attempt"], 1);
    }
    let ok = common::eventually(LIMIT, || async {
        worker
            .stderr
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.starts_with("✓ job "))
            .count()
            == 2
    })
    .await;
    assert!(ok, "{}", worker.stderr_text());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_handler_finish_and_ack_then_exits_0_offline() {
    let server = common::start().await;
    let url = server.url();
    let dir = tempdir();
    let script = r#"echo "$CIPC_PEER" > "$DIR/peer.tmp"; mv "$DIR/peer.tmp" "$DIR/peer"
touch "$DIR/started"
while [ ! -f "$DIR/go" ]; do sleep 0.02; done
echo '{"finished": true}'"#;
    let mut worker = Worker::start(&url, &["build"], script, dir.path());
    let first = send(&url, "build", "deploy").await;
    file_appears(&dir.path().join("started")).await;

    worker.signal(libc::SIGTERM);
    worker.says("stopping").await;
    // Stopped taking: this one stays queued.
    let second = send(&url, "build", "deploy").await;
    std::fs::write(dir.path().join("go"), "").expect("go");

    let status = worker.exit().await;
    assert_eq!(status.code(), Some(0), "{}", worker.stderr_text());
    let c = result(&url, &first).await;
    assert_eq!(c["status"], "acked", "{c}");
    assert_eq!(c["result"], json!({"finished": true}));
    assert_eq!(command(&url, &second).await["status"], "pending");
    let peer = std::fs::read_to_string(dir.path().join("peer")).expect("peer");
    let (_, p) = common::get(&format!("{url}/peers/{}", peer.trim())).await;
    assert_eq!(p["peer"]["status"], "offline", "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_kills_the_handlers_and_requeues_their_commands() {
    let server = common::start().await;
    let url = server.url();
    let dir = tempdir();
    let script = r#"echo "$CIPC_PEER" > "$DIR/peer.tmp"; mv "$DIR/peer.tmp" "$DIR/peer"
touch "$DIR/started"
exec sleep 60"#;
    let mut worker = Worker::start(&url, &["build"], script, dir.path());
    let id = send(&url, "build", "forever").await;
    file_appears(&dir.path().join("started")).await;

    worker.signal(libc::SIGINT);
    worker.says("stopping").await;
    worker.signal(libc::SIGINT);
    let status = worker.exit().await;
    assert_eq!(status.code(), Some(130), "{}", worker.stderr_text());

    let c = command(&url, &id).await;
    assert_eq!(c["status"], "pending", "given back to the queue: {c}");
    let peer = std::fs::read_to_string(dir.path().join("peer")).expect("peer");
    let (_, p) = common::get(&format!("{url}/peers/{}", peer.trim())).await;
    assert_eq!(p["peer"]["status"], "offline", "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_registering() {
    let server = common::start().await;
    let url = server.url();
    let run = |args: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
                .args(args)
                .env("CIPC_URL", &url)
                .output()
                .await
                .expect("cipc work");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, err) = run(&["work", "build", "--", "/no/such/program"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/no/such/program"), "{err}");
    let (code, err) = run(&["work", "build", "--", "no-such-program-anywhere"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not found on PATH"), "{err}");
    let (code, err) = run(&["work", "build"]).await;
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["work", "bad role", "--", "sh", "-c", "true"]).await;
    assert_eq!(code, Some(2), "{err}");
    let (_, peers) = common::get(&format!("{url}/peers")).await;
    assert_eq!(peers["peers"], json!([]), "nothing registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_survives_a_broker_restart_and_registers_again() {
    let server = common::start().await;
    let url = server.url();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().expect("address");
    let dir = tempdir();
    let script = r#"echo "{\"peer\": \"$CIPC_PEER\", \"action\": \"$CIPC_ACTION\"}""#;
    let worker = Worker::start(&url, &["build"], script, dir.path());
    let before = request(&url, "build", "one", json!({})).await;
    assert_eq!(before["status"], "acked", "{before}");

    // A memory broker restarted on the same port has forgotten everything.
    server.stop().await;
    worker.says("broker unavailable").await;
    let server = RunningServer::start_at(
        addr,
        Broker::in_memory(BrokerConfig::default()),
        ServerConfig::default(),
        None,
    )
    .await
    .expect("restart");
    let after = request(&url, "build", "two", json!({})).await;
    assert_eq!(after["status"], "acked", "{after}");
    assert_eq!(
        after["result"]["peer"], before["result"]["peer"],
        "registered again with the same id"
    );
    worker.says("registered it again").await;
    worker.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_serves_as_the_peer_it_was_given_and_takes_back_what_that_peer_held() {
    let server = common::start().await;
    let url = server.url();
    let dir = tempdir();
    let (status, p) = common::post(
        &format!("{url}/peers/connect"),
        json!({"role": "build", "protect": true}),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let (peer, key) = (
        p["peer"]["id"].as_str().expect("id").to_string(),
        p["key"].as_str().expect("key").to_string(),
    );
    // That peer took a command and died before acking it.
    let id = send(&url, "build", "left-over").await;
    let taken: Value = common::http()
        .get(format!("{url}/commands/{peer}/wait?timeout=5000"))
        .header("X-Cipc-Peer-Key", &key)
        .send()
        .await
        .expect("wait")
        .json()
        .await
        .expect("json");
    assert_eq!(taken["command"]["id"], json!(id), "{taken}");

    let script = r#"echo "{\"peer\": \"$CIPC_PEER\", \"attempt\": $CIPC_ATTEMPT}""#;
    let worker = Worker::start_as(
        &url,
        &["build"],
        script,
        dir.path(),
        &[("CIPC_PEER", &peer), ("CIPC_PEER_KEY", &key)],
    );
    let c = result(&url, &id).await;
    assert_eq!(c["status"], "acked", "{c}");
    assert_eq!(c["result"], json!({"peer": peer, "attempt": 2}));
    worker.says("giving them back to the queue").await;
    worker.stop().await;

    // A peer of another role is left alone: the worker registers its own.
    let worker = Worker::start_as(
        &url,
        &["deploy"],
        script,
        dir.path(),
        &[("CIPC_PEER", &peer), ("CIPC_PEER_KEY", &key)],
    );
    let c = request(&url, "deploy", "ship", json!({})).await;
    assert_eq!(c["status"], "acked", "{c}");
    assert_ne!(c["result"]["peer"], json!(peer), "{c}");
    worker.stop().await;
}
