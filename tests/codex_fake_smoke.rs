//! The real Codex CLI, headless, against a real broker, with the scripted
//! fake Responses API ([`fake_responses`]) so it never reaches OpenAI: proof
//! that the fake and the harness (`tests/common/codex.rs`) drive Codex.
//!
//! The broker runs in-process; `$CODEX_HOME/config.toml` gets a plain
//! `[mcp_servers.cipc]` entry for its `/mcp` endpoint (tools approved, as
//! exec requires). The scripted model calls cipc's `connect` through the
//! `mcp__cipc` namespace tool, reads the `peerKey` out of the answer, calls
//! `whoami` with it, and finishes. The test checks that both calls reached
//! the broker (the peer is registered over MCP) and that each answer came
//! back to the model in the next request, paired with its call.
//!
//! Codex is found in `CIPC_CODEX_BIN`, then where `.ci/install-codex` puts
//! it, then on `PATH`. Without it the test prints a note and passes, except
//! under `CI=true`, where it fails. With `CIPC_CODEX_TRACE` set, a passing
//! run prints the same report a failing one does.

mod common;
mod fake_responses;

use common::codex::{codex_or_skip, Codex};
use fake_responses::{step, Call, FakeResponses, Kind, Turn};
use serde_json::{json, Value};
use std::time::Duration;

/// A safety net on the run, so a broken run fails instead of hanging; never
/// a timing claim.
const LIMIT: Duration = Duration::from_secs(60);

/// The role the scripted model connects as.
const ROLE: &str = "codex-smoke";

/// The prompt Codex gets.
const PROMPT: &str = "Connect to the cipc broker as codex-smoke and check who you are.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_calls_cipc_tools_through_the_fake() {
    let Some(bin) = codex_or_skip("codex_calls_cipc_tools_through_the_fake") else {
        return;
    };
    let broker = common::start().await;
    let base = broker.url();

    let fake = FakeResponses::start(vec![
        step(|_| Ok(Turn::call(Call::cipc("connect", json!({"role": ROLE}))))),
        step(|t| {
            let connect = t
                .cipc("connect")
                .ok_or("no result of connect in the request")?;
            let key = connect
                .json()
                .and_then(|j| j["peerKey"].as_str().map(str::to_string))
                .ok_or_else(|| format!("connect answered no peerKey: {}", connect.brief()))?;
            Ok(Turn::call(Call::cipc("whoami", json!({"peer_key": key}))))
        }),
        step(|t| {
            let whoami = t
                .cipc("whoami")
                .ok_or("no result of whoami in the request")?;
            Ok(Turn::text(&format!("I am {}", whoami.text())))
        }),
    ])
    .await;

    let codex = Codex::new(&bin, &fake.base_url());
    codex.add_mcp_server("cipc", &format!("{base}/mcp"));
    let outcome = codex.exec(PROMPT, LIMIT).await;

    let peers = common::get(&format!("{base}/peers")).await.1;
    let report = || {
        format!(
            "{}\n---- {}\n---- GET /peers: {peers}",
            outcome.report(),
            fake.summary()
        )
    };
    let check = |ok: bool, what: &str| assert!(ok, "{what}\n\n---- {}", report());

    check(outcome.success(), "codex exec did not succeed");
    check(
        fake.failures().is_empty(),
        &format!("the script failed: {:?}", fake.failures()),
    );

    // The prompt reached the model, in the first request, with the session's id.
    let first = fake.first_main_request();
    check(
        first
            .as_ref()
            .is_some_and(|r| r.user_texts().iter().any(|t| t == PROMPT)),
        "the first model request does not carry the prompt as a user message",
    );
    let session = outcome.session_id();
    check(
        session.is_some() && first.as_ref().and_then(|r| r.session_id.clone()) == session,
        &format!("the request's session-id is not the banner's session id {session:?}"),
    );

    // connect registered the role over MCP, and its answer came back.
    let connect = fake.result_of("mcp__cipc__connect");
    let peer = connect
        .as_ref()
        .and_then(fake_responses::ToolResult::json)
        .unwrap_or(Value::Null);
    check(
        connect.as_ref().is_some_and(|r| !r.is_failure())
            && peer["peer"]["role"] == ROLE
            && peer["peerKey"].is_string(),
        "connect's answer did not come back with the peer and its key",
    );
    let id = peer["peer"]["id"].as_str().unwrap_or_default().to_string();
    let listed = peers["peers"].as_array().is_some_and(|ps| {
        ps.iter()
            .any(|p| p["id"] == id.as_str() && p["via"] == "mcp")
    });
    check(
        listed,
        &format!("the broker does not list peer {id} via mcp"),
    );

    // whoami reached cipc with the key, and its answer came back in the
    // next request (the one that played step 2), paired with its call.
    let whoami = fake.result_of("mcp__cipc__whoami");
    let me = whoami
        .as_ref()
        .and_then(fake_responses::ToolResult::json)
        .unwrap_or(Value::Null);
    check(
        me["registered"] == true && me["peer"]["id"] == id.as_str(),
        "whoami did not answer the connected peer",
    );
    let last = fake
        .requests()
        .into_iter()
        .find(|r| r.kind == Kind::Main(Some(2)));
    check(
        last.as_ref().is_some_and(|r| {
            r.input().iter().any(|i| {
                i["type"] == "function_call_output"
                    && i["call_id"] == whoami.as_ref().map_or("", |w| w.call_id.as_str())
            })
        }),
        "the request after whoami does not carry whoami's output",
    );
    check(
        outcome.final_message().starts_with("I am You are peer"),
        "the final message is not the scripted one",
    );

    if std::env::var_os("CIPC_CODEX_TRACE").is_some() {
        common::notice(&format!(
            "codex_fake_smoke: {:.2?}\n{}",
            outcome.elapsed,
            report()
        ));
    }
}

/// A hook's `additionalContext` as the fake sees it: a SessionStart hook in
/// `$CODEX_HOME/hooks.json` is untrusted until something trusts it (Codex's
/// own `hooks/list` says so), runs for a run with the bypass flag, and its
/// context is in the first model request, as a developer message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_start_context_reaches_the_first_request() {
    let Some(bin) = codex_or_skip("session_start_context_reaches_the_first_request") else {
        return;
    };
    const MARKER: &str = "cipc smoke: an order is waiting for this role";
    let fake = FakeResponses::start(vec![step(|t| {
        let seen = t.developer_texts().iter().any(|d| d == MARKER);
        Ok(Turn::text(if seen { "context seen" } else { "no context" }))
    })])
    .await;
    let mut codex = Codex::new(&bin, &fake.base_url());
    let output = json!({"hookSpecificOutput": {
        "hookEventName": "SessionStart", "additionalContext": MARKER}});
    let command = format!("printf '%s' '{output}'");
    codex.write_hooks(&json!({"hooks": {"SessionStart": [
        {"hooks": [{"type": "command", "command": command}]}
    ]}}));

    let listed = codex.hooks_list().await;
    assert!(
        listed.len() == 1
            && listed[0]["eventName"] == "sessionStart"
            && listed[0]["trustStatus"] == "untrusted",
        "Codex should list the one SessionStart hook as untrusted: {listed:?}"
    );

    codex.bypass_hook_trust();
    let outcome = codex.exec("Say whether you got the context.", LIMIT).await;
    let report = || format!("{}\n---- {}", outcome.report(), fake.summary());
    assert!(
        outcome.success(),
        "codex exec did not succeed\n\n---- {}",
        report()
    );
    assert!(
        outcome
            .hook_lines()
            .iter()
            .any(|l| l == "SessionStart Completed"),
        "the SessionStart hook did not run\n\n---- {}",
        report()
    );
    let first = fake.first_main_request().expect("a model request");
    assert!(
        first.developer_texts().iter().any(|d| d == MARKER),
        "the hook's context is not a developer message of the first request\n\n---- {}",
        report()
    );
    assert_eq!(outcome.final_message(), "context seen", "{}", report());
}
