//! Peer keys over REST: a protected peer accepts nothing done in its name
//! without its key, a wrong key never works, keys are never shown again, they
//! survive a restart, and the old curl flow (no `protect`) is unchanged.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// A request with optional `X-Cipc-Peer` and `X-Cipc-Peer-Key`; (status, body).
async fn call(
    method: Method,
    url: &str,
    peer: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http().request(method, url);
    if let Some(p) = peer {
        rb = rb.header("X-Cipc-Peer", p);
    }
    if let Some(k) = key {
        rb = rb.header("X-Cipc-Peer-Key", k);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Registers a peer; answers (id, key).
async fn register(base: &str, role: &str, protect: bool) -> (String, String) {
    let (st, v) = post(
        &format!("{base}/peers/connect"),
        json!({"role": role, "protect": protect}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["peer"]["protected"], protect, "{v}");
    let id = v["peer"]["id"].as_str().expect("id").to_string();
    let key = v["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("pk_") && key.len() > 60, "{key}");
    (id, key)
}

/// Sends a command to `target` and has `peer` (with `key`) take it.
async fn held_by(base: &str, target: &str, peer: &str, key: Option<&str>) -> String {
    let (_, sent) = post(
        &format!("{base}/commands/send"),
        json!({"target": target, "action": "build"}),
    )
    .await;
    let id = sent["command"]["id"].as_str().expect("id").to_string();
    let (st, w) = call(
        Method::GET,
        &format!("{base}/commands/{peer}/wait?timeout=2000"),
        None,
        key,
        None,
    )
    .await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["command"]["id"], json!(id));
    id
}

fn forbidden(st: u16, v: &Value, what: &str) {
    assert_eq!(st, 403, "{what}: {v}");
    assert_eq!(v["error"]["code"], "forbidden", "{what}: {v}");
}

#[tokio::test]
async fn a_protected_peer_refuses_everything_in_its_name_without_its_key() {
    let server = start().await;
    let base = server.url();
    let (id, key) = register(&base, "backend", true).await;
    let (other, other_key) = register(&base, "backend", true).await;
    let wrong = [
        None,
        Some(other_key.as_str()),
        Some("pk_not-a-key"),
        // The right shape and peer, a secret nobody was given.
        Some(&*format!(
            "{}{}",
            &key[..key.len() - 5],
            if key.ends_with("AAAAA") {
                "BBBBB"
            } else {
                "AAAAA"
            }
        )),
    ];
    for k in wrong {
        let what = format!("key {k:?}");
        let (st, v) = call(
            Method::GET,
            &format!("{base}/commands/{id}/wait?timeout=0"),
            None,
            k,
            None,
        )
        .await;
        forbidden(st, &v, &format!("wait, {what}"));
        let (st, v) = call(
            Method::POST,
            &format!("{base}/peers/{id}/heartbeat"),
            None,
            k,
            None,
        )
        .await;
        forbidden(st, &v, &format!("heartbeat, {what}"));
        let (st, v) = call(Method::DELETE, &format!("{base}/peers/{id}"), None, k, None).await;
        forbidden(st, &v, &format!("disconnect, {what}"));
        let (st, v) = call(
            Method::POST,
            &format!("{base}/peers/connect"),
            None,
            k,
            Some(json!({"role": "thief", "id": id})),
        )
        .await;
        forbidden(st, &v, &format!("reconnect by id, {what}"));
        // Naming the peer on any request needs its key.
        let (st, v) = call(Method::GET, &format!("{base}/status"), Some(&id), k, None).await;
        assert_eq!(st, 403, "X-Cipc-Peer, {what}: {v}");
    }

    // Its command, taken with its key: nobody else may ack or cancel it.
    let cmd = held_by(&base, &id, &id, Some(&key)).await;
    for (peer, k) in [
        (None, None),
        (Some(other.as_str()), Some(other_key.as_str())),
    ] {
        let (st, v) = call(
            Method::POST,
            &format!("{base}/commands/{cmd}/ack"),
            peer,
            k,
            Some(json!({"result": "forged"})),
        )
        .await;
        forbidden(st, &v, "ack by another");
    }
    let (st, v) = call(
        Method::DELETE,
        &format!("{base}/commands/{cmd}"),
        Some(&other),
        Some(&other_key),
        None,
    )
    .await;
    assert_eq!(
        st, 200,
        "an order of an unprotected sender can be withdrawn: {v}"
    );

    // With the key everything works, and nothing changed meanwhile.
    let (_, p) = get(&format!("{base}/peers/{id}")).await;
    assert_eq!(p["peer"]["role"], "backend", "the thief did not take it");
    let cmd = held_by(&base, &id, &id, Some(&key)).await;
    let (st, v) = call(
        Method::POST,
        &format!("{base}/commands/{cmd}/ack"),
        None,
        Some(&key),
        Some(json!({"result": "ok"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["command"]["result"], "ok");
    let (st, v) = call(
        Method::POST,
        &format!("{base}/peers/{id}/heartbeat"),
        Some(&id),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        Method::POST,
        &format!("{base}/peers/connect"),
        None,
        Some(&key),
        Some(json!({"role": "frontend", "id": id})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["key"], json!(key), "a proven reconnect keeps the key");
    assert_eq!(v["peer"]["role"], "frontend");
    let (st, v) = call(
        Method::DELETE,
        &format!("{base}/peers/{id}"),
        None,
        Some(&key),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["peer"]["status"], "offline");
}

#[tokio::test]
async fn a_sender_that_is_protected_can_take_back_its_order_and_others_cannot() {
    let server = start().await;
    let base = server.url();
    let (lead, lead_key) = register(&base, "lead", true).await;
    let (worker, worker_key) = register(&base, "worker", true).await;
    let (_, stranger_key) = register(&base, "stranger", true).await;
    let (st, sent) = call(
        Method::POST,
        &format!("{base}/commands/send"),
        Some(&lead),
        Some(&lead_key),
        Some(json!({"target": "worker", "action": "deploy"})),
    )
    .await;
    assert_eq!(st, 201, "{sent}");
    assert_eq!(sent["command"]["from"], "lead");
    let cmd = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, w) = call(
        Method::GET,
        &format!("{base}/commands/{worker}/wait?timeout=2000"),
        None,
        Some(&worker_key),
        None,
    )
    .await;
    assert_eq!(w["command"]["id"], json!(cmd));
    for k in [None, Some(stranger_key.as_str())] {
        let (st, v) = call(
            Method::DELETE,
            &format!("{base}/commands/{cmd}"),
            None,
            k,
            None,
        )
        .await;
        forbidden(st, &v, "cancel by a stranger");
    }
    let (st, v) = call(
        Method::DELETE,
        &format!("{base}/commands/{cmd}"),
        None,
        Some(&lead_key),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["command"]["status"], "cancelled");
}

#[tokio::test]
async fn the_compat_curl_flow_is_unchanged_but_a_wrong_key_never_works() {
    let server = start().await;
    let base = server.url();
    // The old broker's README: connect, wait, ack, all without keys.
    let (st, v) = post(&format!("{base}/peers/connect"), json!({"role": "backend"})).await;
    assert_eq!(st, 201);
    assert_eq!(v["peer"]["protected"], false);
    let id = v["peer"]["id"].as_str().expect("id").to_string();
    let cmd = held_by(&base, "backend", &id, None).await;
    let (st, v) = post(
        &format!("{base}/commands/{cmd}/ack"),
        json!({"result": {"ok": true}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(&format!("{base}/peers/{id}/heartbeat"), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        &format!("{base}/peers/connect"),
        json!({"role": "backend", "id": id}),
    )
    .await;
    assert_eq!(st, 201, "reconnect by id still works: {v}");

    // A key that is not this peer's is refused even here.
    let (_, other_key) = register(&base, "other", false).await;
    for k in [other_key.as_str(), "pk_garbage", "nonsense"] {
        let (st, v) = call(
            Method::GET,
            &format!("{base}/commands/{id}/wait?timeout=0"),
            None,
            Some(k),
            None,
        )
        .await;
        assert_eq!(st, 403, "key {k:?}: {v}");
        let (st, v) = call(
            Method::GET,
            &format!("{base}/peers"),
            Some(&id),
            Some(k),
            None,
        )
        .await;
        assert_eq!(st, 403, "key {k:?} with X-Cipc-Peer: {v}");
    }
}

#[tokio::test]
async fn keys_are_never_listed_or_announced() {
    let server = start().await;
    let base = server.url();
    // The dashboard's event stream, open before the peer connects.
    let r = http()
        .get(format!("{base}/events"))
        .send()
        .await
        .expect("events");
    let (id, key) = register(&base, "backend", true).await;
    // `pk_<32 hex id>_<43 base64url chars>`: the secret may itself hold `_`,
    // so it is cut by position, never by splitting on `_`.
    let secret = key
        .strip_prefix(&format!("pk_{}_", id.replace('-', "")))
        .expect("a key names its peer")
        .to_string();
    assert_eq!(secret.len(), 43, "{key}");
    for path in [
        "/peers".to_string(),
        format!("/peers/{id}"),
        "/peers/discover".into(),
        "/status".into(),
    ] {
        let (st, v) = call(
            Method::GET,
            &format!("{base}{path}"),
            None,
            Some(&key),
            None,
        )
        .await;
        assert_eq!(st, 200, "{path}: {v}");
        assert!(!v.to_string().contains(&secret), "{path} shows the key");
    }
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        use futures::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(seen.contains(&id), "the peer event is there: {seen}");
    assert!(!seen.contains(&secret), "/events shows the key");
}

#[tokio::test]
async fn keys_survive_a_restart_of_the_durable_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BinaryBroker::durable(dir.path());
    let base = b.url.clone();
    let (id, key) = register(&base, "backend", true).await;
    b.kill9();
    let b = BinaryBroker::durable(dir.path());
    let base = b.url.clone();
    let (st, v) = call(
        Method::GET,
        &format!("{base}/commands/{id}/wait?timeout=0"),
        None,
        None,
        None,
    )
    .await;
    forbidden(st, &v, "still protected after the restart");
    let (st, v) = call(
        Method::GET,
        &format!("{base}/commands/{id}/wait?timeout=0"),
        None,
        Some(&key),
        None,
    )
    .await;
    assert_eq!(st, 200, "the same key works after the restart: {v}");
    drop(b);
}

#[tokio::test]
async fn an_ack_for_an_earlier_delivery_is_refused_whoever_sends_it() {
    let server = start().await;
    let base = server.url();
    let a = connect(&base, "backend").await;
    let cmd = held_by(&base, "backend", &a, None).await;
    // A goes away; the command is given to W2 (delivery 2).
    let (st, _) = call(
        Method::DELETE,
        &format!("{base}/peers/{a}"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let w2 = connect(&base, "backend").await;
    let (_, w) = get(&format!("{base}/commands/{w2}/wait?timeout=2000")).await;
    assert_eq!(w["command"]["attempt"], 2);
    // A's late ack names its delivery: refused, though it sends no peer header.
    let (st, v) = post(
        &format!("{base}/commands/{cmd}/ack"),
        json!({"result": "stale", "attempt": 1}),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    let (st, v) = post(
        &format!("{base}/commands/{cmd}/ack"),
        json!({"result": "fresh", "attempt": 2}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["command"]["result"], "fresh");
}

#[tokio::test]
async fn attention_is_set_by_the_peer_shown_to_everyone_and_cleared() {
    let b = start().await;
    let u = b.url();
    let (_, r) = post(
        &format!("{u}/peers/connect"),
        json!({"role": "backend", "protect": true, "via": "hook"}),
    )
    .await;
    let id = r["peer"]["id"].as_str().unwrap_or_default().to_string();
    let key = r["key"].as_str().unwrap_or_default().to_string();
    assert_eq!(r["peer"]["via"], "hook");
    let put = |key: Option<String>, body: Value| {
        let (u, id) = (u.clone(), id.clone());
        async move {
            let mut rb = http().put(format!("{u}/peers/{id}/attention")).json(&body);
            if let Some(k) = key {
                rb = rb.header("X-Cipc-Peer-Key", k);
            }
            let resp = rb.send().await.expect("request");
            let st = resp.status().as_u16();
            (st, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Without its key nobody speaks for a protected peer.
    let (st, e) = put(None, json!({"attention": "x"})).await;
    assert_eq!(
        (st, e["error"]["reason"].clone()),
        (403, json!("key_required"))
    );
    let (st, p) = put(
        Some(key.clone()),
        json!({"attention": "Claude needs your permission to use Bash"}),
    )
    .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(
        p["peer"]["attention"],
        "Claude needs your permission to use Bash"
    );
    let (_, all) = get(&format!("{u}/peers")).await;
    assert_eq!(
        all["peers"][0]["attention"],
        "Claude needs your permission to use Bash"
    );
    let long = "x".repeat(501);
    let (st, e) = put(Some(key.clone()), json!({ "attention": long })).await;
    assert_eq!(st, 400, "{e}");
    let (st, p) = put(Some(key.clone()), json!({"attention": null})).await;
    assert_eq!(st, 200);
    assert!(p["peer"].get("attention").is_none(), "{p}");
}

#[tokio::test]
async fn anyone_with_the_token_may_list_a_protected_peers_queue_but_only_its_key_takes_from_it() {
    let server = start().await;
    let base = server.url();
    let (id, key) = register(&base, "backend", true).await;
    let (_other, other_key) = register(&base, "frontend", true).await;
    for target in [id.as_str(), "backend"] {
        let (st, v) = post(
            &format!("{base}/commands/send"),
            json!({"target": target, "action": "build"}),
        )
        .await;
        assert_eq!(st, 201, "{v}");
    }
    let seen = |v: &Value| {
        v["peer"]["lastSeen"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (_, before) = get(&format!("{base}/peers/{id}")).await;
    tokio::time::sleep(Duration::from_millis(30)).await;

    // A listing without the key (or with another peer's key) is a read: 200,
    // both commands, still pending, no key in the answer.
    for k in [None, Some(other_key.as_str())] {
        let (st, v) = call(Method::GET, &format!("{base}/commands/{id}"), None, k, None).await;
        assert_eq!(st, 200, "key {k:?}: {v}");
        let cmds = v["commands"].as_array().expect("commands");
        assert_eq!(cmds.len(), 2, "{v}");
        assert!(cmds.iter().all(|c| c["status"] == "pending"), "{v}");
        assert!(!v.to_string().contains(&key), "the key is never shown");
    }
    // Reading it is not contact from the peer: its lastSeen stays.
    let (_, after) = get(&format!("{base}/peers/{id}")).await;
    assert_eq!(
        seen(&before),
        seen(&after),
        "a stranger's read kept the peer alive"
    );

    // Naming the peer without its key, or taking its commands, acts as it: 403.
    let (st, v) = call(
        Method::GET,
        &format!("{base}/commands/{id}"),
        Some(&id),
        None,
        None,
    )
    .await;
    forbidden(st, &v, "listing as the peer without its key");
    let (st, v) = call(
        Method::GET,
        &format!("{base}/commands/{id}/wait?timeout=0"),
        None,
        None,
        None,
    )
    .await;
    forbidden(st, &v, "taking without the key");
    let (_, v) = get(&format!("{base}/commands/{id}")).await;
    assert!(
        v["commands"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["status"] == "pending")),
        "nothing was taken: {v}"
    );

    // With its key, the listing is the peer's own poll: it counts as contact.
    let (st, v) = call(
        Method::GET,
        &format!("{base}/commands/{id}"),
        None,
        Some(&key),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (_, after) = get(&format!("{base}/peers/{id}")).await;
    assert!(seen(&after) > seen(&before), "{before} -> {after}");
}
