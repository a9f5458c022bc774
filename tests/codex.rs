//! `cipc codex setup` end to end: the real Codex CLI (`codex exec`), in a
//! home that only `cipc codex setup --scope user` configured for cipc (the
//! MCP server, the hooks and their trust: no `--dangerously-bypass-hook-trust`),
//! against a real broker and the scripted fake Responses API
//! ([`fake_responses`]).
//!
//! - **queued before start, acked without a key**: an order sent before
//!   Codex starts is in the first model request (the `SessionStart` hook
//!   took it); the model acks it with the MCP tool `ack_command` without any
//!   key (the `PreToolUse` hook adds it), and the order ends acked by a
//!   protected peer of the role, `via: hook`, `agent: codex`; no `pk_`
//!   string reaches the model; when exec ends the peer is offline.
//! - **during the turn**: an order sent while the model answers reaches it
//!   at the end of the turn: the `Stop` hook hands it over and the turn goes
//!   on with it.
//! - **leases at the edit**: with another session holding `locked.txt`, an
//!   `apply_patch` of it is refused before it runs (the file unchanged, the
//!   refusal naming the holder and the reason) while a patch of a free file
//!   goes through.
//! - **permission prompts relayed**: two commands that need more than the
//!   sandbox (`--approve-for-me` gives exec an approval path) become two
//!   permission questions; the person allows one (it runs) and denies the
//!   other with a note (it does not run, and the model is shown the note).
//!
//! A Claude Code session sending an order to a Codex session is in
//! `tests/claude_hooks.rs`; waking an idle interactive Codex session needs
//! a terminal and is measured by hand (docs/codex.md). Codex is found as in
//! `tests/codex_fake_smoke.rs`; without it these tests print a note and
//! pass, except under `CI=true`.

mod common;
mod fake_responses;

use cipc::server::RunningServer;
use common::codex::{codex_or_skip, Codex, Outcome};
use fake_responses::{add_file_patch, step, Call, FakeResponses, Step, Turn};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// A safety net on each run, so a broken run fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(90);

/// A project set up for Codex by `cipc codex setup --scope user`.
struct Setup {
    codex: Codex,
    broker: RunningServer,
    fake: FakeResponses,
}

impl Setup {
    async fn new(bin: &Path, role: &str, script: Vec<Step>) -> Setup {
        let broker = common::start().await;
        let fake = FakeResponses::start(script).await;
        let mut codex = Codex::new(bin, &fake.base_url());
        codex.cipc_setup(role, &broker.url()).await;
        Setup {
            codex,
            broker,
            fake,
        }
    }

    fn base(&self) -> String {
        self.broker.url()
    }

    async fn exec(&mut self, prompt: &str) -> Outcome {
        self.codex.exec(prompt, LIMIT).await
    }

    /// Everything worth reading when a check fails.
    async fn report(&self, outcome: &Outcome) -> String {
        let (_, peers) = common::get(&format!("{}/peers", self.base())).await;
        format!(
            "{}\n---- {}\n---- GET /peers: {peers}",
            outcome.report(),
            self.fake.summary()
        )
    }

    async fn check(&self, ok: bool, what: &str, outcome: &Outcome) {
        if !ok {
            panic!("{what}\n\n{}", self.report(outcome).await);
        }
    }

    /// The peer the session's hooks registered.
    async fn hook_peer(&self) -> Value {
        let (_, peers) = common::get(&format!("{}/peers", self.base())).await;
        peers["peers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["via"] == "hook").cloned())
            .unwrap_or(Value::Null)
    }
}

/// The first `[cipc] New order <id>` the model was shown.
fn order_id(texts: &[String]) -> Option<String> {
    texts.iter().find_map(|t| {
        let rest = t.split("[cipc] New order ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    })
}

/// Sends an order over plain HTTP from inside a script step (which runs on
/// the fake's own runtime, so it must not wait on another async client).
fn send_blocking(base: &str, target: &str, action: &str) -> Result<(), String> {
    let url = format!("{base}/commands/send");
    let body = json!({"target": target, "action": action}).to_string();
    std::thread::spawn(move || {
        let addr = url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .ok_or("a plain http URL")?
            .to_string();
        let mut s = std::net::TcpStream::connect(&addr).map_err(|e| e.to_string())?;
        use std::io::{Read, Write};
        let req = format!(
            "POST /commands/send HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        if answer.starts_with("HTTP/1.1 201") {
            Ok(())
        } else {
            Err(format!("sending the order answered {answer}"))
        }
    })
    .join()
    .map_err(|_| "the sender panicked".to_string())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_queued_before_start_is_in_the_first_request_and_acked_without_a_key() {
    let Some(bin) = codex_or_skip("codex: queued before start, acked without a key") else {
        return;
    };
    let script = vec![
        step(|t| {
            let id = order_id(&t.developer_texts())
                .ok_or("no order in the first request's hook context")?;
            Ok(Turn::call(Call::cipc(
                "ack_command",
                json!({"command_id": id, "result": {"built": true}}),
            )))
        }),
        step(|t| {
            let ack = t.cipc("ack_command").ok_or("no ack_command result")?;
            Ok(Turn::text(&format!("Done: {}", ack.text())))
        }),
    ];
    let mut s = Setup::new(&bin, "builder", script).await;
    let (st, sent) = common::post(
        &format!("{}/commands/send", s.base()),
        json!({"target": "builder", "action": "build-page", "params": {"page": "home"}}),
    )
    .await;
    assert_eq!(st, 201, "{sent}");
    let id = sent["command"]["id"].as_str().expect("an id").to_string();

    let outcome = s.exec("Do what cipc asks of you.").await;
    s.check(outcome.success(), "codex exec did not succeed", &outcome)
        .await;
    s.check(
        s.fake.failures().is_empty(),
        &format!("the script failed: {:?}", s.fake.failures()),
        &outcome,
    )
    .await;
    let first = s.fake.first_main_request();
    s.check(
        first
            .as_ref()
            .is_some_and(|r| r.mentions(&id) && r.mentions("build-page")),
        "the order is not in the first model request",
        &outcome,
    )
    .await;
    let (_, c) = common::get(&format!("{}/commands/{id}/result?timeout=0", s.base())).await;
    let peer = s.hook_peer().await;
    s.check(
        c["command"]["status"] == "acked"
            && c["command"]["result"] == json!({"built": true})
            && c["command"]["deliveredTo"] == peer["id"],
        &format!("the order did not end acked by the session's peer: {c}"),
        &outcome,
    )
    .await;
    s.check(
        peer["agent"] == "codex" && peer["protected"] == true && peer["role"] == "builder",
        &format!("the session's peer is not a protected codex peer of the role: {peer}"),
        &outcome,
    )
    .await;
    // SessionEnd: the peer left with the run.
    s.check(
        peer["status"] == "offline",
        &format!(
            "the peer is still {} after codex exec ended",
            peer["status"]
        ),
        &outcome,
    )
    .await;
    let keys_shown = s
        .fake
        .requests()
        .iter()
        .any(|r| r.body.to_string().contains("pk_"));
    s.check(!keys_shown, "a peer key reached the model", &outcome)
        .await;
    // Codex itself says setup's hooks are trusted (nothing was bypassed).
    let hooks = s.codex.hooks_list().await;
    let untrusted: Vec<&Value> = hooks
        .iter()
        .filter(|h| h["command"].as_str().is_some_and(|c| c.contains(" hook ")))
        .filter(|h| h["trustStatus"] != "trusted")
        .collect();
    s.check(
        hooks.len() >= 7 && untrusted.is_empty(),
        &format!("Codex does not trust every cipc hook: {hooks:?}"),
        &outcome,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_sent_during_the_turn_keeps_the_turn_going() {
    let Some(bin) = codex_or_skip("codex: an order during the turn") else {
        return;
    };
    let base = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let sender = base.clone();
    let script = vec![
        step(move |_| {
            // While the model "answers", someone sends the session an order.
            send_blocking(&sender.lock(), "reviewer", "review-pr-7")?;
            Ok(Turn::text("Nothing to do yet."))
        }),
        step(|t| {
            let handed = t.user_texts().join("\n");
            if !handed.contains("review-pr-7") {
                return Err(format!("the turn went on without the order: {handed:?}"));
            }
            Ok(Turn::text("Reviewing PR 7 now."))
        }),
    ];
    let mut s = Setup::new(&bin, "reviewer", script).await;
    *base.lock() = s.base();
    let outcome = s.exec("Wait for work.").await;
    s.check(outcome.success(), "codex exec did not succeed", &outcome)
        .await;
    s.check(
        s.fake.failures().is_empty() && s.fake.main_requests().len() >= 2,
        &format!("the script failed: {:?}", s.fake.failures()),
        &outcome,
    )
    .await;
    s.check(
        outcome.final_message().contains("Reviewing PR 7"),
        "the turn did not go on with the order",
        &outcome,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_patch_of_a_leased_file_is_refused_before_it_runs() {
    let Some(bin) = codex_or_skip("codex: leases at the edit") else {
        return;
    };
    let script = vec![
        step(|_| {
            Ok(Turn::call(Call::apply_patch(
                "*** Begin Patch\n*** Update File: locked.txt\n@@\n-held\n+changed\n*** End Patch\n",
            )))
        }),
        step(|_| {
            Ok(Turn::call(Call::apply_patch(&add_file_patch(
                "free.txt",
                &["fine"],
            ))))
        }),
        step(|_| Ok(Turn::text("Done."))),
    ];
    let mut s = Setup::new(&bin, "editor", script).await;
    let project = s.codex.project().to_path_buf();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(&project)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "git {args:?} failed (git is needed for this test)");
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://example.com/acme/shop.git",
    ]);
    std::fs::write(project.join("locked.txt"), "held\n").expect("write");
    // Another session holds locked.txt.
    let (st, other) = common::post(
        &format!("{}/peers/connect", s.base()),
        json!({"role": "holder", "protect": true}),
    )
    .await;
    assert_eq!(st, 201, "{other}");
    let key = other["key"].as_str().expect("a key").to_string();
    let client = reqwest::Client::new();
    let lease = client
        .post(format!("{}/leases", s.base()))
        .header("X-Cipc-Peer-Key", &key)
        .json(&json!({"repo": "example.com/acme/shop", "paths": ["locked.txt"], "reason": "splitting it", "ttl": 600000}))
        .send()
        .await
        .expect("lease");
    let lease_status = lease.status();
    let lease_body: Value = lease.json().await.unwrap_or(Value::Null);
    assert!(lease_status.is_success(), "{lease_status} {lease_body}");

    s.codex.arg("-s").arg("workspace-write");
    let outcome = s.exec("Edit the files.").await;
    s.check(outcome.success(), "codex exec did not succeed", &outcome)
        .await;
    let refused = s
        .fake
        .tool_results()
        .first()
        .map(fake_responses::ToolResult::text)
        .unwrap_or_default();
    s.check(
        refused.contains("blocked by PreToolUse hook")
            && refused.contains("locked.txt is leased by another session")
            && refused.contains("splitting it"),
        &format!("the patch of the leased file was not refused as it should be: {refused}"),
        &outcome,
    )
    .await;
    let locked = std::fs::read_to_string(project.join("locked.txt")).unwrap_or_default();
    s.check(
        locked == "held\n",
        &format!("locked.txt changed: {locked:?}"),
        &outcome,
    )
    .await;
    let free = std::fs::read_to_string(project.join("free.txt")).unwrap_or_default();
    s.check(
        free.contains("fine"),
        "the free file was not written",
        &outcome,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_prompts_reach_the_person_and_their_answers_decide() {
    let Some(bin) = codex_or_skip("codex: permission prompts relayed") else {
        return;
    };
    // Two commands that need more than the read-only sandbox: Codex asks
    // permission for each (`--approve-for-me` gives exec an approval path).
    let escalated = |file: &str, why: &str| {
        Call::function(
            "exec_command",
            json!({"cmd": format!("touch {file}"), "sandbox_permissions": "require_escalated", "justification": why}),
        )
    };
    let script = vec![
        step(move |_| Ok(Turn::call(escalated("allowed.txt", "make the first file")))),
        step(move |_| Ok(Turn::call(escalated("denied.txt", "make the second file")))),
        step(|_| Ok(Turn::text("Done."))),
    ];
    let mut s = Setup::new(&bin, "guard", script).await;
    s.codex.arg("--approve-for-me");
    let base = s.base();
    // The person: allows the first question and denies the second with a
    // note, as the dashboard or `cipc answer` would.
    let person = tokio::spawn(async move {
        let mut answered: Vec<Value> = Vec::new();
        loop {
            let (_, open) = common::get(&format!("{base}/questions?status=open")).await;
            for q in open["questions"].as_array().into_iter().flatten() {
                let body = if answered.is_empty() {
                    json!({"answer": "allow", "by": "ana"})
                } else {
                    json!({"answer": "deny", "by": "ana", "note": "not in this project"})
                };
                let id = q["id"].as_str().unwrap_or_default();
                let (st, _) = common::post(&format!("{base}/questions/{id}/answer"), body).await;
                if st == 200 {
                    answered.push(q.clone());
                }
            }
            if answered.len() == 2 {
                return answered;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let outcome = s.exec("Make the two files.").await;
    s.check(outcome.success(), "codex exec did not succeed", &outcome)
        .await;
    let asked = tokio::time::timeout(Duration::from_secs(5), person)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    s.check(
        asked.len() == 2
            && asked.iter().all(|q| q["kind"] == "permission")
            && asked[0]["context"]["tool"] == "Bash"
            && asked[0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("allowed.txt")),
        &format!("expected two permission questions about the commands: {asked:?}"),
        &outcome,
    )
    .await;
    let project = s.codex.project().to_path_buf();
    s.check(
        project.join("allowed.txt").exists() && !project.join("denied.txt").exists(),
        "the answers did not decide which command ran",
        &outcome,
    )
    .await;
    let denied = s
        .fake
        .tool_results()
        .get(1)
        .map(fake_responses::ToolResult::text)
        .unwrap_or_default();
    s.check(
        denied.contains("not in this project"),
        &format!("the model was not told the person's note: {denied}"),
        &outcome,
    )
    .await;
    let (_, open) = common::get(&format!("{}/questions?status=open", s.base())).await;
    s.check(
        open["questions"].as_array().is_some_and(Vec::is_empty),
        &format!("a question stayed open: {open}"),
        &outcome,
    )
    .await;
}
