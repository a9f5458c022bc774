//! `cipc serve` options no other test reaches, on the built binary over
//! real HTTP: `--allowed-host`, a LAN bind with a token, the caps' 429s
//! (`--max-waiters`, `--max-peers`, `--max-channels`, `--max-signals`), and
//! two client commands, `cipc peers attention` and `cipc ack --attempt`.

mod common;

use common::*;
use serde_json::{json, Value};

/// `(status, body)` of a GET with extra headers.
async fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut r = http().get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn allowed_host_adds_a_host_name_and_others_stay_refused() {
    let b = BinaryBroker::start(&["--memory", "--allowed-host", "cipc.example.test"], &[]);
    let status = format!("{}/status", b.url);
    let (st, v) = get_with(&status, &[("host", "cipc.example.test")]).await;
    assert_eq!(st, 200, "the allowed name is served: {v}");
    let (st, v) = get_with(&status, &[("host", "other.example.test")]).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["reason"], "foreign_host", "{v}");
    let (st, _) = get(&status).await;
    assert_eq!(st, 200, "loopback names still work");

    // Without the flag that name is foreign.
    let plain = BinaryBroker::start(&["--memory"], &[]);
    let (st, v) = get_with(
        &format!("{}/status", plain.url),
        &[("host", "cipc.example.test")],
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["reason"], "foreign_host", "{v}");
}

#[tokio::test]
async fn a_lan_bind_with_a_token_refuses_requests_without_it() {
    const TOKEN: &str = "lan-bind-token-0123456789abcdefghij";
    let b = BinaryBroker::start(&["--memory", "--host", "0.0.0.0"], &[("CIPC_TOKEN", TOKEN)]);
    let port = b
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in {}", b.url));
    // Reached through 127.0.0.1, as another machine would reach the LAN
    // address.
    let status = format!("http://127.0.0.1:{port}/status");
    let (st, v) = get(&status).await;
    assert_eq!(st, 401, "no token: {v}");
    let (st, v) = get_with(&status, &[("authorization", "Bearer wrong-token")]).await;
    assert_eq!(st, 401, "a wrong token: {v}");
    let bearer = format!("Bearer {TOKEN}");
    let (st, v) = get_with(&status, &[("authorization", &bearer)]).await;
    assert_eq!(st, 200, "the token: {v}");
    assert!(v["peers"].is_array(), "{v}");
}

#[tokio::test]
async fn max_waiters_answers_429_past_the_cap() {
    let b = BinaryBroker::start(&["--memory", "--max-waiters", "1"], &[]);
    let u = b.url.clone();
    let parked = {
        let url = format!("{u}/signals/never/wait?timeout=30000");
        tokio::spawn(async move { get(&url).await })
    };
    until_waiters(&u, 1).await;
    let (st, v) = get(&format!("{u}/channels/c/messages?since=0&timeout=30000")).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["reason"], "too_many_waiters", "{v}");
    // The parked one is unharmed, and once it is answered there is room.
    let (st, _) = post(&format!("{u}/signals/never"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(parked.await.expect("task").0, 200);
    assert!(
        eventually(PATIENCE, || async { waiters(&u).await == 0 }).await,
        "the answered wait let go of its place"
    );
    let (st, v) = get(&format!("{u}/channels/c/messages?since=0&timeout=0")).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn max_peers_answers_429_when_none_is_offline() {
    let b = BinaryBroker::start(&["--memory", "--max-peers", "2"], &[]);
    let u = b.url.clone();
    connect(&u, "a").await;
    connect(&u, "b").await;
    let (st, v) = post(&format!("{u}/peers/connect"), json!({"role": "c"})).await;
    assert_eq!(st, 429, "both peers are online: {v}");
    assert_eq!(v["error"]["reason"], "too_many_peers", "{v}");
    let (_, s) = get(&format!("{u}/status")).await;
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(2), "{s}");
}

#[tokio::test]
async fn max_leases_answers_429_until_one_is_released() {
    let b = BinaryBroker::start(&["--memory", "--max-leases", "1"], &[]);
    let u = b.url.clone();
    let (st, v) = post(
        &format!("{u}/peers/connect"),
        json!({"role": "a", "protect": true}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let key = v["key"].as_str().expect("key").to_string();
    let lease = |path: &'static str| {
        let (u, key) = (u.clone(), key.clone());
        async move {
            let r = http()
                .post(format!("{u}/leases"))
                .header("X-Cipc-Peer-Key", key)
                .json(&json!({"paths": [path], "repo": "r"}))
                .send()
                .await
                .expect("lease");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (st, first) = lease("a.rs").await;
    assert_eq!(st, 201, "{first}");
    let (st, v) = lease("b.rs").await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["reason"], "too_many_leases", "{v}");
    let id = first["lease"]["id"].as_str().expect("id");
    let (st, v) = delete(&format!("{u}/leases/{id}")).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = lease("b.rs").await;
    assert_eq!(st, 201, "room again: {v}");
}

#[tokio::test]
async fn max_channels_answers_429_when_every_channel_is_followed() {
    let b = BinaryBroker::start(&["--memory", "--max-channels", "1"], &[]);
    let u = b.url.clone();
    let (st, _) = post(&format!("{u}/channels/kept/send"), json!("one")).await;
    assert_eq!(st, 201);
    // Someone follows it, so it cannot be forgotten for a new one.
    let follower = {
        let url = format!("{u}/channels/kept/messages?since=1&timeout=30000");
        tokio::spawn(async move { get(&url).await })
    };
    until_waiters(&u, 1).await;
    let (st, v) = post(&format!("{u}/channels/new/send"), json!("two")).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["reason"], "too_many_channels", "{v}");
    // The followed channel still works.
    let (st, _) = post(&format!("{u}/channels/kept/send"), json!("three")).await;
    assert_eq!(st, 201);
    let (st, got) = follower.await.expect("task");
    assert_eq!(st, 200);
    assert_eq!(got["messages"][0]["data"], "three", "{got}");
}

#[tokio::test]
async fn max_signals_answers_429_when_every_signal_is_waited_for() {
    let b = BinaryBroker::start(&["--memory", "--max-signals", "1"], &[]);
    let u = b.url.clone();
    // The one signal there is: emitted, then cleared (kept, not emitted),
    // and waited for.
    let (st, _) = post(&format!("{u}/signals/awaited"), json!({})).await;
    assert_eq!(st, 200);
    let (st, v) = delete(&format!("{u}/signals/awaited")).await;
    assert_eq!(st, 200, "{v}");
    let waiting = {
        let url = format!("{u}/signals/awaited/wait?timeout=30000");
        tokio::spawn(async move { get(&url).await })
    };
    until_waiters(&u, 1).await;
    let (st, v) = post(&format!("{u}/signals/other"), json!({})).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["reason"], "too_many_signals", "{v}");
    let (st, _) = post(&format!("{u}/signals/awaited"), json!({})).await;
    assert_eq!(st, 200);
    let (st, r) = waiting.await.expect("task");
    assert_eq!(st, 200);
    assert_eq!(r["signal"]["emitted"], true, "{r}");
}

/// Runs the built `cipc` against `url` with `envs`; answers (exit code,
/// stdout, stderr).
fn cipc(url: &str, args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"));
    for var in ["CIPC_TOKEN", "CIPC_PEER", "CIPC_PEER_KEY"] {
        cmd.env_remove(var);
    }
    cmd.env("CIPC_URL", url).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run cipc");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Registers `role` through REST; answers (id, key).
async fn peer_with_key(u: &str, role: &str) -> (String, String) {
    let (st, v) = post(&format!("{u}/peers/connect"), json!({"role": role})).await;
    assert_eq!(st, 201, "{v}");
    (
        v["peer"]["id"].as_str().expect("id").to_string(),
        v["key"].as_str().expect("key").to_string(),
    )
}

#[tokio::test]
async fn peers_attention_sets_and_clears_the_peers_attention() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let (id, key) = peer_with_key(&u, "reviewer").await;
    let me = [("CIPC_PEER", id.as_str()), ("CIPC_PEER_KEY", key.as_str())];
    let (code, out, err) = cipc(
        &u,
        &["peers", "attention", "waiting for approval of the schema"],
        &me,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, p) = get(&format!("{u}/peers/{id}")).await;
    assert_eq!(p["peer"]["attention"], "waiting for approval of the schema");
    let (code, listed, err) = cipc(&u, &["peers", "--table"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(listed.contains("waiting for approval"), "{listed}");

    // Without TEXT it is cleared.
    let (code, out, err) = cipc(&u, &["peers", "attention"], &me);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, p) = get(&format!("{u}/peers/{id}")).await;
    assert!(p["peer"]["attention"].is_null(), "{p}");

    // Without a peer it says what is missing instead of guessing.
    let (code, _, err) = cipc(&u, &["peers", "attention", "hello"], &[]);
    assert_ne!(code, Some(0), "{err}");
}

#[tokio::test]
async fn ack_attempt_is_refused_for_another_delivery_and_accepted_for_its_own() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let (id, key) = peer_with_key(&u, "worker").await;
    let (st, sent) = post(
        &format!("{u}/commands/send"),
        json!({"target": "worker", "action": "build"}),
    )
    .await;
    assert_eq!(st, 201, "{sent}");
    let cmd = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, w) = get_with(
        &format!("{u}/commands/{id}/wait?timeout=20000"),
        &[("x-cipc-peer-key", &key)],
    )
    .await;
    assert_eq!(w["command"]["id"], json!(cmd), "{w}");
    assert_eq!(w["command"]["attempt"], 1, "{w}");
    let me = [("CIPC_PEER", id.as_str()), ("CIPC_PEER_KEY", key.as_str())];

    // An ack for a delivery that is not the current one is refused.
    let (code, out, err) = cipc(
        &u,
        &["ack", &cmd, "--attempt", "2", "--result", r#"{"ok": true}"#],
        &me,
    );
    assert_ne!(code, Some(0), "acked for attempt 2: {out}{err}");
    let (_, r) = get(&format!("{u}/commands/{cmd}/result?timeout=0")).await;
    assert_eq!(r["command"]["status"], "delivered", "still open: {r}");

    // Its own attempt is accepted.
    let (code, out, err) = cipc(
        &u,
        &["ack", &cmd, "--attempt", "1", "--result", r#"{"ok": true}"#],
        &me,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, r) = get(&format!("{u}/commands/{cmd}/result?timeout=0")).await;
    assert_eq!(r["command"]["status"], "acked", "{r}");
    assert_eq!(r["command"]["result"], json!({"ok": true}), "{r}");
}
