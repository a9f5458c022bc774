//! `cipc hook ... --agent codex` run directly, as Codex runs it: the end
//! of a turn hands over what waits (exit 2, which makes Codex's turn go on)
//! or leaves an idle waiter that queues the next order into the session's
//! thread with `codex queue`. Here `codex` is a stand-in script
//! (`CIPC_CODEX`) that records how it was called, so the waiter's rules
//! (queued once, given back when it cannot be) are checked without a
//! terminal; the real Codex woken that way is `tests/codex.rs`.

mod common;

use common::hook::Session;
use serde_json::json;
use std::time::{Duration, Instant};

/// A stand-in `codex` that appends its arguments (one per line, then a
/// blank line) to `log`.
fn fake_codex(dir: &std::path::Path, log: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("codex");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{}'; done\necho >> '{}'\n",
            log.display(),
            log.display()
        ),
    )
    .expect("write the stand-in");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    script
}

fn codex_start(s: &Session, role: &str) -> String {
    let ran = s.run_with(
        "session-start",
        role,
        &s.input(
            "SessionStart",
            json!({"source": "startup", "model": "gpt-5.5"}),
        ),
        &["--agent", "codex"],
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let ctx = ran.context();
    assert!(ctx.contains("This Codex session is cipc peer"), "{ctx}");
    ctx.split("cipc peer ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a peer id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_end_of_a_turn_hands_over_a_waiting_order_and_the_turn_goes_on() {
    let server = common::start().await;
    let s = Session::new(&server.url());
    codex_start(&s, "reviewer");
    let (st, body) = common::post(
        &format!("{}/commands/send", server.url()),
        json!({"target": "reviewer", "action": "review-pr-9"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let ran = s.run_with(
        "stop",
        "reviewer",
        &s.input(
            "Stop",
            json!({"stop_hook_active": false, "last_assistant_message": "done"}),
        ),
        &["--agent", "codex"],
    );
    assert_eq!(
        ran.code,
        Some(2),
        "Codex goes on with a Stop hook's exit 2: {ran:?}"
    );
    assert!(ran.stderr.contains("review-pr-9"), "{ran:?}");
    // Taken once: the next turn's end has nothing more.
    let again = s.run_with(
        "stop",
        "reviewer",
        &s.input("Stop", json!({"stop_hook_active": true})),
        &["--agent", "codex"],
    );
    assert_eq!(again.code, Some(0), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_gets_the_next_order_through_codex_queue() {
    let server = common::start().await;
    let s = Session::new(&server.url());
    let peer = codex_start(&s, "builder");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("queue.log");
    let codex = fake_codex(dir.path(), &log);

    // The turn ends with nothing waiting: the hook returns at once and
    // leaves a waiter behind.
    let started = Instant::now();
    let mut cmd = s.command("stop", "builder", &["--agent", "codex"]);
    cmd.env("CIPC_CODEX", &codex);
    let input = s.input("Stop", json!({"stop_hook_active": false}));
    let ran = common::hook::finish(Session::feed(cmd, &input));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the Stop hook waited"
    );

    // The waiter is parked on the broker as the session's peer.
    let status_url = format!("{}/status", server.url());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = common::get(&status_url).await;
        if status["waiters"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no waiter parked: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, body) = common::post(
        &format!("{}/commands/send", server.url()),
        json!({"target": "builder", "action": "build-it", "params": {"n": 3}}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let id = body["command"]["id"].as_str().expect("an id").to_string();

    let deadline = Instant::now() + Duration::from_secs(10);
    let queued = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.ends_with("\n\n") {
            break text;
        }
        assert!(Instant::now() < deadline, "codex queue was not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let args: Vec<&str> = queued.lines().collect();
    assert_eq!(
        &args[..4],
        ["queue", "--thread", s.id.as_str(), "--message"],
        "{queued}"
    );
    assert!(
        queued.contains(&id) && queued.contains("build-it"),
        "{queued}"
    );
    // It was handed to this session's peer, once.
    let (_, c) = common::get(&format!("{}/commands/{id}/result?timeout=0", server.url())).await;
    assert_eq!(c["command"]["deliveredTo"], peer.as_str(), "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_the_waiter_cannot_queue_is_given_back_to_the_role() {
    let server = common::start().await;
    let s = Session::new(&server.url());
    codex_start(&s, "builder");
    let mut cmd = s.command("stop", "builder", &["--agent", "codex"]);
    cmd.env("CIPC_CODEX", "/nonexistent/codex");
    let input = s.input("Stop", json!({"stop_hook_active": false}));
    assert_eq!(
        common::hook::finish(Session::feed(cmd, &input)).code,
        Some(0)
    );
    let status_url = format!("{}/status", server.url());
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::get(&status_url).await.1["waiters"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no waiter parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = common::post(
        &format!("{}/commands/send", server.url()),
        json!({"target": "builder", "action": "build-it"}),
    )
    .await;
    let id = body["command"]["id"].as_str().expect("an id").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, c) = common::get(&format!("{}/commands/{id}/result?timeout=0", server.url())).await;
        if c["command"]["status"] == "pending" && c["command"]["attempt"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order was not given back: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
