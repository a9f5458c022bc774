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
//! - **during the turn**: an order sent while the model works reaches it
//!   after its next tool call (the `PostToolUse` hook), and one sent as it
//!   finishes reaches it at the end of the turn (the `Stop` hook hands it
//!   over and the turn goes on with it).
//! - **leases at the edit**: with another session holding `locked.txt`, an
//!   `apply_patch` of it is refused before it runs (the file unchanged, the
//!   refusal naming the holder and the reason) while a patch of a free file
//!   goes through.
//! - **permission prompts relayed**: two commands that need more than the
//!   sandbox (`--approve-for-me` gives exec an approval path) become two
//!   permission questions; the person allows one (it runs) and denies the
//!   other with a note (it does not run, and the model is shown the note).
//!
//! - **idle wake**: an interactive `codex` (in a terminal util-linux
//!   `script` gives it, `--no-daemon`) answers one prompt and goes idle; an
//!   order sent then starts its next turn, with the order as the message
//!   (the Stop hook's waiter queued it with `codex queue`).
//!
//! A Claude Code session sending an order to a Codex session is in
//! `tests/claude_hooks.rs`. Codex is found as in
//! `tests/codex_fake_smoke.rs`; without it these tests print a note and
//! pass, except under `CI=true`.
//!
//! (A file of one concern: Codex set up by `cipc codex setup`, end to end;
//! long because each scenario drives a whole session.)

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
async fn orders_sent_during_the_turn_arrive_between_tool_calls_and_at_its_end() {
    let Some(bin) = codex_or_skip("codex: orders during the turn") else {
        return;
    };
    let base = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let (first, second) = (base.clone(), base.clone());
    let script = vec![
        step(move |_| {
            // While the model works, someone sends the session an order...
            send_blocking(&first.lock(), "reviewer", "review-pr-7")?;
            Ok(Turn::call(Call::cipc("whoami", json!({}))))
        }),
        step(move |t| {
            // ...which the PostToolUse hook of the next tool call hands over.
            let between = t.developer_texts().join("\n");
            if !between.contains("review-pr-7") {
                return Err(format!(
                    "the order did not arrive after the tool call: {between:?}"
                ));
            }
            // Another arrives as the model finishes its answer...
            send_blocking(&second.lock(), "reviewer", "review-pr-8")?;
            Ok(Turn::text("Reviewed PR 7."))
        }),
        step(|t| {
            // ...and the Stop hook hands it over: the turn goes on.
            let handed = t.user_texts().join("\n");
            if !handed.contains("review-pr-8") {
                return Err(format!("the turn went on without the order: {handed:?}"));
            }
            Ok(Turn::text("Reviewing PR 8 now."))
        }),
    ];
    let mut s = Setup::new(&bin, "reviewer", script).await;
    *base.lock() = s.base();
    let outcome = s.exec("Wait for work.").await;
    s.check(outcome.success(), "codex exec did not succeed", &outcome)
        .await;
    s.check(
        s.fake.failures().is_empty() && s.fake.main_requests().len() >= 3,
        &format!("the script failed: {:?}", s.fake.failures()),
        &outcome,
    )
    .await;
    s.check(
        outcome.final_message().contains("Reviewing PR 8"),
        "the turn did not go on with the second order",
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

/// What an interactive `codex` in a terminal (through util-linux `script`,
/// which gives it one) has shown so far, with the terminal's escape
/// sequences and all whitespace taken out, lowercased: enough to tell
/// which screen it is on.
fn screen_text(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI (ESC [ ... final) and OSC (ESC ] ... BEL or ST).
            match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            }
        } else if !c.is_whitespace() {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_wakes_an_idle_interactive_session() {
    let Some(bin) = codex_or_skip("codex: an idle interactive session woken") else {
        return;
    };
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip(
            "codex: an idle interactive session woken",
            "util-linux `script` (Debian's bsdutils) is not installed",
        );
        return;
    }
    let script = vec![
        step(|_| Ok(Turn::text("Hello; nothing to do."))),
        step(|t| {
            let woke = t.user_texts().join("\n");
            if !woke.contains("[cipc] New order") {
                return Err(format!("the session woke without the order: {woke:?}"));
            }
            Ok(Turn::text("On it."))
        }),
    ];
    let s = Setup::new(&bin, "idler", script).await;
    let project = std::fs::canonicalize(s.codex.project()).expect("the project");
    // A trusted project, and the notice about newer models already seen.
    s.codex.append_config(&format!(
        "[projects.\"{}\"]\ntrust_level = \"trusted\"\n\n[notice.model_migrations]\n\"{}\" = \"gpt-6-sol\"",
        project.display(),
        common::codex::MODEL
    ));
    // `--no-daemon`: the session runs in this process (with Codex's
    // background server it wakes sooner, but that server outlives the test).
    let line = format!(
        "stty rows 40 cols 120; exec '{}' --no-daemon",
        s.codex.bin().display()
    );
    let mut cmd = tokio::process::Command::new("script");
    s.codex.apply_env(&mut cmd);
    cmd.args(["-qfec", &line, "/dev/null"])
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut tui = cmd.spawn().expect("start codex in a terminal");
    let mut keys = tui.stdin.take().expect("stdin");
    let mut screen = tui.stdout.take().expect("stdout");
    let shown = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<u8>::new()));
    let (answers_tx, mut answers_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let reader = {
        let shown = shown.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 8192];
            while let Ok(n) = screen.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                // The terminal answers Codex's cursor-position questions.
                if buf[..n].windows(4).any(|w| w == b"\x1b[6n") {
                    let _ = answers_tx.send(());
                }
                shown.lock().extend_from_slice(&buf[..n]);
            }
        })
    };
    use tokio::io::AsyncWriteExt;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut stage = 0;
    let base = s.base();
    let mut order = String::new();
    let (mut last_len, mut quiet_since) = (0, tokio::time::Instant::now());
    let failed = loop {
        while answers_rx.try_recv().is_ok() {
            let _ = keys.write_all(b"\x1b[1;1R").await;
        }
        let len = shown.lock().len();
        if len != last_len {
            (last_len, quiet_since) = (len, tokio::time::Instant::now());
        }
        // The screen has settled: Codex waits for a key.
        let settled = quiet_since.elapsed() > Duration::from_millis(1500);
        let text = screen_text(&shown.lock());
        let (_, status) = common::get(&format!("{base}/status")).await;
        let waiters = status["waiters"].as_u64().unwrap_or(0);
        match stage {
            // A notice about newer models: keep the configured one.
            0 if settled && text.contains("trynewmodel") => {
                let _ = keys.write_all(b"2").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = keys.write_all(b"\r").await;
                stage = 1;
            }
            // The prompt box: one prompt, one turn.
            0 | 1 if settled && text.contains("askcodextodoanything") => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = keys.write_all(b"say hello").await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = keys.write_all(b"\r").await;
                stage = 2;
            }
            // The turn ended and the idle waiter is parked on the broker.
            2 if !s.fake.main_requests().is_empty() && waiters >= 1 => {
                let (st, body) = common::post(
                    &format!("{base}/commands/send"),
                    json!({"target": "idler", "action": "wake-and-build"}),
                )
                .await;
                assert_eq!(st, 201, "{body}");
                order = body["command"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                stage = 3;
            }
            3 if s.fake.main_requests().iter().any(|r| r.mentions(&order)) => break None,
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            break Some(format!("stuck at stage {stage}; the screen: {text}"));
        }
        if let Ok(Some(status)) = tui.try_wait() {
            break Some(format!(
                "codex exited ({status}) at stage {stage}; the screen: {text}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Ctrl-C twice quits Codex; the waiter ends with it.
    let _ = keys.write_all(b"\x03").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = keys.write_all(b"\x03").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), tui.wait()).await;
    let _ = tui.kill().await;
    reader.abort();
    if let Some(why) = failed {
        panic!("{why}\n---- {}", s.fake.summary());
    }
    assert!(s.fake.failures().is_empty(), "{}", s.fake.summary());
}
