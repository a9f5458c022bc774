//! `cipc hook <event> --role R` run directly, as Claude Code runs it: the
//! built binary with the hook's JSON on stdin (the shapes Claude Code sends:
//! `session_id`, `transcript_path`, `cwd`, `hook_event_name` and the event's
//! own fields), against a real broker. Each test asserts on what the hook
//! prints (Claude Code's hook output) and on what the broker then shows.
//! `tests/claude_hooks.rs` drives the same hooks through Claude Code itself.

mod common;

use common::hook::{Ran, Session};
use common::*;
use serde_json::{json, Value};

/// Sends an order for `role`; answers its id.
async fn order(u: &str, role: &str, action: &str) -> String {
    let (st, v) = post(
        &format!("{u}/commands/send"),
        json!({"target": role, "action": action}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    v["command"]["id"].as_str().expect("id").to_string()
}

async fn peer(u: &str, id: &str) -> Value {
    let (st, v) = get(&format!("{u}/peers/{id}")).await;
    assert_eq!(st, 200, "{v}");
    v["peer"].clone()
}

async fn command(u: &str, id: &str) -> Value {
    let (st, v) = get(&format!("{u}/commands/{id}/result?timeout=0")).await;
    assert_eq!(st, 200, "{v}");
    v["command"].clone()
}

#[tokio::test]
async fn session_start_registers_a_protected_hook_peer_and_hands_it_the_queued_order() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let queued = order(&u, "qa", "run-suite").await;
    let s = Session::new(&u);
    let (ran, id) = s.start("qa");
    let out = ran.json();
    assert_eq!(
        out["hookSpecificOutput"]["hookEventName"], "SessionStart",
        "{ran:?}"
    );
    let ctx = ran.context();
    assert!(ctx.contains("role \"qa\""), "{ctx}");
    assert!(ctx.contains(&format!("New order {queued}")), "{ctx}");
    assert!(ctx.contains("run-suite"), "{ctx}");

    let p = peer(&u, &id).await;
    assert_eq!(p["role"], "qa", "{p}");
    assert_eq!(p["via"], "hook", "{p}");
    assert_eq!(p["protected"], true, "{p}");
    assert_eq!(p["status"], "online", "{p}");
    let c = command(&u, &queued).await;
    assert_eq!(c["status"], "delivered", "{c}");
    assert_eq!(c["deliveredTo"], json!(id), "{c}");

    // A second SessionStart (a resumed session) is the same peer.
    let (_, again) = s.start("qa");
    assert_eq!(again, id, "the session keeps its peer");
}

#[tokio::test]
async fn prompt_and_post_tool_use_show_each_new_order_exactly_once() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    let (ran, id) = s.start("dev");
    assert!(!ran.context().contains("pk_"), "no key in the context");
    let key = s.key();
    assert!(
        ran.context().contains("No order is waiting"),
        "{:?}",
        ran.context()
    );
    // Nothing new: the hooks print nothing.
    assert_eq!(s.prompt("dev").json(), Value::Null);
    assert_eq!(s.post_tool_use("dev").json(), Value::Null);

    let first = order(&u, "dev", "fix-bug").await;
    let mut runs = vec![s.prompt("dev")];
    assert_eq!(
        runs[0].json()["hookSpecificOutput"]["hookEventName"],
        "UserPromptSubmit",
        "{:?}",
        runs[0]
    );
    let second = order(&u, "dev", "write-docs").await;
    let tool = s.post_tool_use("dev");
    assert_eq!(
        tool.json()["hookSpecificOutput"]["hookEventName"],
        "PostToolUse",
        "{tool:?}"
    );
    runs.push(tool);
    runs.push(s.prompt("dev"));
    runs.push(s.post_tool_use("dev"));
    let all: String = runs.iter().map(Ran::context).collect();
    assert_eq!(
        all.matches(&format!("New order {first}")).count(),
        1,
        "the first order is shown exactly once: {all}"
    );
    assert_eq!(
        all.matches(&format!("New order {second}")).count(),
        1,
        "the second order is shown exactly once: {all}"
    );
    assert!(runs[0].context().contains(&first), "{:?}", runs[0]);
    assert!(runs[1].context().contains(&second), "{:?}", runs[1]);
    for c in [&first, &second] {
        let c = command(&u, c).await;
        assert_eq!(c["status"], "delivered", "{c}");
        assert_eq!(c["deliveredTo"], json!(id), "{c}");
    }

    // An answer to a command the session sent reaches it once as well.
    let (st, _) = http()
        .post(format!("{u}/commands/send"))
        .header("X-Cipc-Peer", &id)
        .header("X-Cipc-Peer-Key", &key)
        .json(&json!({"target": "ops", "action": "deploy"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("send as the session");
    assert_eq!(st, 201);
    let ops = connect(&u, "ops").await;
    let (_, w) = get(&format!("{u}/commands/{ops}/wait?timeout=20000")).await;
    let sent = w["command"]["id"].as_str().expect("taken").to_string();
    let (st, _) = post(
        &format!("{u}/commands/{sent}/ack"),
        json!({"result": {"ok": true}}),
    )
    .await;
    assert_eq!(st, 200);
    let after: String = [s.prompt("dev"), s.prompt("dev")]
        .iter()
        .map(Ran::context)
        .collect();
    assert_eq!(
        after.matches(&sent).count(),
        1,
        "the answer is reported exactly once: {after}"
    );
}

#[tokio::test]
async fn notification_sets_attention_and_the_next_prompt_clears_it() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    let (_, id) = s.start("reviewer");
    assert!(peer(&u, &id).await["attention"].is_null());

    let ran = s.run(
        "notification",
        "reviewer",
        &s.input(
            "Notification",
            json!({"message": "Claude needs your permission to use Bash"}),
        ),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.json(), Value::Null, "nothing for the model: {ran:?}");
    assert_eq!(
        peer(&u, &id).await["attention"],
        "Claude needs your permission to use Bash"
    );
    // `cipc peers` shows it too.
    let (_, all) = get(&format!("{u}/peers")).await;
    assert!(all.to_string().contains("needs your permission"), "{all}");

    // Work resumes: the attention is cleared.
    s.prompt("reviewer");
    let p = peer(&u, &id).await;
    assert!(p["attention"].is_null(), "the prompt cleared it: {p}");

    // A notification without a message still asks for the person.
    let ran = s.run(
        "notification",
        "reviewer",
        &s.input("Notification", json!({})),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        peer(&u, &id).await["attention"],
        "Claude Code is waiting for you"
    );
    s.post_tool_use("reviewer");
    let p = peer(&u, &id).await;
    assert!(p["attention"].is_null(), "the tool call cleared it: {p}");
}

#[tokio::test]
async fn session_end_takes_the_peer_offline_and_queues_what_it_held_again() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let held = order(&u, "builder", "build").await;
    let s = Session::new(&u);
    let (_, id) = s.start("builder");
    assert_eq!(command(&u, &held).await["status"], "delivered");
    s.prompt("builder");

    let ran = s.run(
        "session-end",
        "builder",
        &s.input("SessionEnd", json!({"reason": "prompt_input_exit"})),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(ran.json(), Value::Null, "{ran:?}");
    assert_eq!(peer(&u, &id).await["status"], "offline");
    let c = command(&u, &held).await;
    assert_eq!(c["status"], "pending", "queued again: {c}");
}

#[tokio::test]
async fn a_hook_never_fails_the_session_and_says_an_unreachable_broker_once() {
    // No broker listens here.
    let s = Session::new(&format!("http://127.0.0.1:{}", free_port()));
    let first = s.prompt("dev");
    let said = first.json()["systemMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.contains("cipc serve"), "{first:?}");
    let second = s.prompt("dev");
    assert_eq!(second.json(), Value::Null, "said once: {second:?}");

    // Input without a session_id is reported, not fatal.
    let ran = s.run("prompt", "dev", &json!({"prompt": "hi"}));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("session_id"), "{ran:?}");
}
