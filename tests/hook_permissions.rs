//! The hooks that keep a Claude Code session's identity out of the model's
//! hands and relay its permission prompts to a person, run directly as
//! Claude Code runs them (the built binary, the hook's JSON on stdin)
//! against a real broker; and the rough edges a new user met (a refused
//! token, sessions that never took a turn). `tests/claude_hooks.rs` drives
//! the same hooks through Claude Code itself.

mod common;

use common::hook::{finish, Session};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The open permission questions on the broker.
async fn open_permissions(u: &str) -> Vec<Value> {
    let (st, v) = get(&format!("{u}/questions?status=open")).await;
    assert_eq!(st, 200, "{v}");
    v["questions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|q| q["kind"] == "permission")
        .cloned()
        .collect()
}

/// Waits until exactly `n` permission questions are open; answers them.
async fn until_open(u: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = open_permissions(u).await;
        if open.len() == n {
            return open;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} open permission questions, have {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn question(u: &str, id: &str) -> Value {
    let (st, v) = get(&format!("{u}/questions/{id}")).await;
    assert_eq!(st, 200, "{v}");
    v["question"].clone()
}

/// The hook input of a tool call.
fn tool_call(s: &Session, event: &str, tool: &str, input: Value) -> Value {
    s.input(event, json!({"tool_name": tool, "tool_input": input}))
}

#[tokio::test]
async fn cipc_tool_calls_carry_the_sessions_key_and_the_model_never_sees_one() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    let (start, id) = s.start("backend");
    assert!(
        !start.stdout.contains("pk_"),
        "a key in the context: {start:?}"
    );
    assert!(start.context().contains("never pass peer_key"), "{start:?}");

    let ran = s.run(
        "pre-tool-use",
        "backend",
        &tool_call(
            &s,
            "PreToolUse",
            "mcp__cipc__ack_command",
            json!({"command_id": "c1"}),
        ),
    );
    let out = ran.json();
    assert_eq!(
        out["hookSpecificOutput"]["hookEventName"], "PreToolUse",
        "{ran:?}"
    );
    assert!(
        out["hookSpecificOutput"]
            .get("permissionDecision")
            .is_none(),
        "the user's permission rules still decide: {ran:?}"
    );
    let updated = &out["hookSpecificOutput"]["updatedInput"];
    assert_eq!(updated["command_id"], "c1", "{ran:?}");
    let key = updated["peer_key"].as_str().expect("a key").to_string();
    assert!(key.starts_with("pk_"), "{key}");

    // The key the hook added proves the session's peer.
    let r = reqwest::Client::new()
        .post(format!("{u}/peers/{id}/heartbeat"))
        .header("X-Cipc-Peer-Key", &key)
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(r.status(), 200);

    // Other tools pass untouched; connect would make a second identity.
    let bash = s.run(
        "pre-tool-use",
        "backend",
        &tool_call(&s, "PreToolUse", "Bash", json!({"command": "ls"})),
    );
    assert_eq!(bash.json(), Value::Null, "{bash:?}");
    let connect = s.run(
        "pre-tool-use",
        "backend",
        &tool_call(&s, "PreToolUse", "mcp__cipc__connect", json!({"role": "x"})),
    );
    let out = connect.json();
    assert_eq!(
        out["hookSpecificOutput"]["permissionDecision"], "deny",
        "{connect:?}"
    );
    let why = out["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .expect("a reason");
    assert!(why.contains(&id) && !why.contains("pk_"), "{why}");

    // register would answer the key (and change the role): refused too.
    let register = s.run(
        "pre-tool-use",
        "backend",
        &tool_call(
            &s,
            "PreToolUse",
            "mcp__cipc__register",
            json!({"role": "frontend"}),
        ),
    );
    let out = register.json();
    assert_eq!(
        out["hookSpecificOutput"]["permissionDecision"], "deny",
        "{register:?}"
    );
    assert!(out["hookSpecificOutput"].get("updatedInput").is_none());
    let (_, peer) = get(&format!("{u}/peers/{id}")).await;
    assert_eq!(peer["peer"]["role"], "backend", "{peer}");
}

#[tokio::test]
async fn a_permission_prompt_is_a_question_and_the_persons_answer_decides() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    let (_, id) = s.start("backend");
    s.prompt("backend");

    let input = tool_call(
        &s,
        "PermissionRequest",
        "Bash",
        json!({"command": "rm -rf build", "description": "clean"}),
    );
    let hook = s.spawn("permission", "backend", &input, &[]);
    let q = until_open(&u, 1).await.remove(0);
    assert_eq!(q["text"], "Bash: rm -rf build", "{q}");
    assert_eq!(q["peer"], json!(id), "{q}");
    assert_eq!(q["choices"], json!(["allow", "deny"]), "{q}");
    assert_eq!(q["context"]["tool"], "Bash", "{q}");
    assert_eq!(q["context"]["input"]["command"], "rm -rf build", "{q}");
    assert_eq!(q["context"]["session"], json!(s.id), "{q}");
    let qid = q["id"].as_str().expect("id");
    let (st, v) = post(
        &format!("{u}/questions/{qid}/answer"),
        json!({"answer": "allow", "by": "ana"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let ran = finish(hook);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let out = ran.json();
    assert_eq!(
        out["hookSpecificOutput"]["hookEventName"], "PermissionRequest",
        "{ran:?}"
    );
    assert_eq!(
        out["hookSpecificOutput"]["decision"],
        json!({"behavior": "allow"}),
        "{ran:?}"
    );

    // A question the model asks the person is theirs to answer in the
    // terminal: never relayed.
    let ask = s.run(
        "permission",
        "backend",
        &tool_call(
            &s,
            "PermissionRequest",
            "AskUserQuestion",
            json!({"questions": []}),
        ),
    );
    assert_eq!((ask.code, ask.json()), (Some(0), Value::Null), "{ask:?}");
    assert!(open_permissions(&u).await.is_empty());

    let input = tool_call(
        &s,
        "PermissionRequest",
        "Bash",
        json!({"command": "git push --force"}),
    );
    let hook = s.spawn("permission", "backend", &input, &[]);
    let q = until_open(&u, 1).await.remove(0);
    let qid = q["id"].as_str().expect("id");
    let (st, v) = post(
        &format!("{u}/questions/{qid}/answer"),
        json!({"answer": "deny", "by": "ana", "note": "never force-push main"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let ran = finish(hook);
    let decision = &ran.json()["hookSpecificOutput"]["decision"];
    assert_eq!(decision["behavior"], "deny", "{ran:?}");
    assert_eq!(
        decision["message"], "never force-push main (denied by ana through cipc)",
        "{ran:?}"
    );
    let answered = question(&u, qid).await;
    assert_eq!(
        (
            answered["answer"].clone(),
            answered["note"].clone(),
            answered["answeredBy"].clone()
        ),
        (json!("deny"), json!("never force-push main"), json!("ana")),
        "the decision is kept: {answered}"
    );
    assert!(open_permissions(&u).await.is_empty());

    // A session cannot answer a permission prompt, its own or another's:
    // only a person (a request that names no peer) does.
    let input = tool_call(
        &s,
        "PermissionRequest",
        "Bash",
        json!({"command": "make deploy"}),
    );
    let hook = s.spawn("permission", "backend", &input, &[]);
    let q = until_open(&u, 1).await.remove(0);
    let qid = q["id"].as_str().expect("id");
    let r = reqwest::Client::new()
        .post(format!("{u}/questions/{qid}/answer"))
        .header("X-Cipc-Peer-Key", s.key())
        .json(&json!({"answer": "allow"}))
        .send()
        .await
        .expect("answer as the session");
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["reason"], "person_only", "{v}");
    assert_eq!(question(&u, qid).await["status"], "open");
    let (st, v) = post(
        &format!("{u}/questions/{qid}/answer"),
        json!({"answer": "allow", "by": "ana"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        finish(hook).json()["hookSpecificOutput"]["decision"]["behavior"],
        "allow"
    );
}

/// `cmd` run under coreutils' `timeout`, a process of its own that stands
/// for the agent running the hook (it can be killed outright).
fn under_a_host(cmd: &std::process::Command) -> std::process::Command {
    let mut host = std::process::Command::new("timeout");
    host.arg("600").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => host.env(k, v),
            None => host.env_remove(k),
        };
    }
    host.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    host
}

#[tokio::test]
async fn a_waiting_prompt_holds_one_long_poll_and_is_withdrawn_when_its_session_is_killed() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    s.start("backend");
    s.prompt("backend");
    let input = tool_call(&s, "PermissionRequest", "Bash", json!({"command": "make"}));
    let mut host = Session::feed(
        under_a_host(&s.command("permission", "backend", &[])),
        &input,
    );
    let q = until_open(&u, 1).await.remove(0);
    let qid = q["id"].as_str().expect("id").to_string();

    // The wait is one long-poll, parked on the broker all along (not a
    // quick call that gives up and backs off: an answer is heard at once).
    for _ in 0..25 {
        let (_, status) = get(&format!("{u}/status")).await;
        assert_eq!(status["waiters"], 1, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The session is killed outright: no signal reaches its hook, which
    // notices its host is gone and withdraws the question.
    host.kill().expect("kill the host");
    let _ = host.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    while question(&u, &qid).await["status"] == "open" {
        assert!(
            Instant::now() < deadline,
            "still open after its session died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(question(&u, &qid).await["status"], "cancelled");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = get(&format!("{u}/status")).await;
        if status["waiters"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the hook still waits: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_prompt_answered_in_the_terminal_or_dismissed_leaves_nothing_open() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    s.start("backend");
    s.prompt("backend");

    // "Yes" in the terminal: the tool runs and its PostToolUse withdraws
    // the question; the hook, still waiting, ends without a decision.
    let call = json!({"command": "make deploy"});
    let hook = s.spawn(
        "permission",
        "backend",
        &tool_call(&s, "PermissionRequest", "Bash", call.clone()),
        &[],
    );
    let q = until_open(&u, 1).await.remove(0);
    // Another tool's PostToolUse leaves it be.
    s.run(
        "post-tool-use",
        "backend",
        &tool_call(&s, "PostToolUse", "Read", json!({"file_path": "x"})),
    );
    assert_eq!(open_permissions(&u).await.len(), 1);
    s.run(
        "post-tool-use",
        "backend",
        &tool_call(&s, "PostToolUse", "Bash", call),
    );
    let qid = q["id"].as_str().expect("id");
    assert_eq!(question(&u, qid).await["status"], "cancelled");
    let ran = finish(hook);
    assert_eq!((ran.code, ran.json()), (Some(0), Value::Null), "{ran:?}");

    // "No" or Esc in the terminal: Claude Code ends the hook (SIGTERM).
    let hook = s.spawn(
        "permission",
        "backend",
        &tool_call(
            &s,
            "PermissionRequest",
            "Bash",
            json!({"command": "rm -rf /"}),
        ),
        &[],
    );
    let q = until_open(&u, 1).await.remove(0);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &hook.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let ran = finish(hook);
    assert_eq!((ran.code, ran.json()), (Some(0), Value::Null), "{ran:?}");
    assert_eq!(
        question(&u, q["id"].as_str().expect("id")).await["status"],
        "cancelled"
    );

    // Nobody answers within the wait: withdrawn, and the terminal decides.
    let hook = s.spawn(
        "permission",
        "backend",
        &tool_call(
            &s,
            "PermissionRequest",
            "Bash",
            json!({"command": "sleep 1"}),
        ),
        &["--permission-wait", "1"],
    );
    let ran = finish(hook);
    assert_eq!((ran.code, ran.json()), (Some(0), Value::Null), "{ran:?}");
    assert!(open_permissions(&u).await.is_empty());

    // A session that ends with a prompt open leaves nothing open either.
    let hook = s.spawn(
        "permission",
        "backend",
        &tool_call(
            &s,
            "PermissionRequest",
            "Write",
            json!({"file_path": "a", "content": "b"}),
        ),
        &[],
    );
    until_open(&u, 1).await;
    let end = s.run(
        "session-end",
        "backend",
        &s.input("SessionEnd", json!({"reason": "other"})),
    );
    assert_eq!(end.code, Some(0), "{end:?}");
    until_open(&u, 0).await;
    // Its hook hears the question closed and leaves the terminal to decide.
    let ran = finish(hook);
    assert_eq!((ran.code, ran.json()), (Some(0), Value::Null), "{ran:?}");
}

#[tokio::test]
async fn a_session_that_never_takes_a_turn_leaves_no_peer_behind() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    // `claude mcp list` starts and ends a session without a turn.
    let s = Session::new(&u);
    let (_, id) = s.start("backend");
    let end = s.run(
        "session-end",
        "backend",
        &s.input("SessionEnd", json!({"reason": "other"})),
    );
    assert_eq!(end.code, Some(0), "{end:?}");
    let (st, v) = get(&format!("{u}/peers/{id}")).await;
    assert_eq!(st, 404, "forgotten, not an offline ghost: {v}");
}

#[tokio::test]
async fn a_refused_token_is_told_once_with_the_fix_and_never_retried() {
    let token = "a-long-enough-broker-token-0123456789";
    let b = BinaryBroker::start(&["--memory", "--token", token], &[]);
    let s = Session::new(&b.url);
    let first = s.prompt("dev");
    let said = first.json()["systemMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.contains("refused this session's hooks"), "{first:?}");
    assert!(said.contains("sent no token"), "{said}");
    assert!(said.contains("--token-file"), "names the fix: {said}");
    let second = s.prompt("dev");
    assert_eq!(second.json(), Value::Null, "said once: {second:?}");

    // A wrong token is named as such.
    let wrong = Session::new(&b.url);
    let mut cmd = wrong.command("prompt", "dev", &[]);
    cmd.env("CIPC_TOKEN", "not-the-token-not-the-token-000000");
    let mut child = cmd.spawn().expect("run");
    {
        use std::io::Write;
        let input = wrong.input("UserPromptSubmit", json!({"prompt": "hi"}));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.to_string().as_bytes())
            .expect("write");
    }
    let ran = finish(child);
    let said = ran.json()["systemMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.contains("the token in CIPC_TOKEN"), "{ran:?}");

    // A token file the hooks cannot read is told too, once, with the fix.
    let missing = s.project.path().join("no-such-token");
    let unreadable = Session::new(&b.url);
    let input = unreadable.input("UserPromptSubmit", json!({"prompt": "hi"}));
    let extra = ["--token-file", missing.to_str().expect("utf-8")];
    let ran = unreadable.run_with("prompt", "dev", &input, &extra);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let said = ran.json()["systemMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.contains("cannot use their token"), "{ran:?}");
    assert!(said.contains("no-such-token"), "names the file: {said}");
    assert!(said.contains("--token-file PATH"), "names the fix: {said}");
    let again = unreadable.run_with("prompt", "dev", &input, &extra);
    assert_eq!(again.json(), Value::Null, "said once: {again:?}");
    let started = Instant::now();
    let stop = unreadable.run_with(
        "stop",
        "dev",
        &unreadable.input("Stop", json!({"stop_hook_active": false})),
        &extra,
    );
    assert_eq!((stop.code, stop.json()), (Some(0), Value::Null), "{stop:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // The Stop hook's waiter does not retry a refused token for a week.
    let started = Instant::now();
    let stop = s.run(
        "stop",
        "dev",
        &s.input("Stop", json!({"stop_hook_active": false})),
    );
    assert_eq!(stop.code, Some(0), "{stop:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
