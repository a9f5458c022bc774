//! Leases over real HTTP (shared/API.md "Leases"): every route, every
//! refusal with its reason, the 409 body's `conflicts`, `lease` events on
//! `/events`, a holder that disconnects, and held leases surviving a restart
//! of the durable broker. (The conflict rule's table is a unit test in
//! `src/broker/lease_paths.rs`; ttl and liveness on a manual clock in
//! `src/broker/tests/leases.rs`; two PostgreSQL nodes racing in
//! `tests/nodes.rs`.)

mod common;

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

const REPO: &str = "github.com/acme/shop";

/// A protected peer: (id, key).
async fn peer(base: &str, role: &str) -> (String, String) {
    let (s, b) = post(
        &format!("{base}/peers/connect"),
        json!({"role": role, "name": format!("{role}-1"), "protect": true}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    (
        b["peer"]["id"].as_str().expect("id").to_string(),
        b["key"].as_str().expect("key").to_string(),
    )
}

/// A request as the peer with `key` (the key names its peer).
async fn send_as(key: Option<&str>, req: reqwest::RequestBuilder) -> (u16, Value) {
    let req = match key {
        Some(k) => req.header("X-Cipc-Peer-Key", k),
        None => req,
    };
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn acquire(base: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    send_as(key, http().post(format!("{base}/leases")).json(&body)).await
}

fn reason(v: &Value) -> &str {
    v["error"]["reason"].as_str().unwrap_or_default()
}

fn id(v: &Value) -> String {
    v["lease"]["id"].as_str().expect("lease id").to_string()
}

#[tokio::test]
async fn every_route_answers_as_the_contract_says() {
    let b = start().await;
    let u = b.url();
    let (ana, ana_key) = peer(&u, "backend").await;
    let (bob, bob_key) = peer(&u, "frontend").await;

    let (s, l) = acquire(
        &u,
        Some(&ana_key),
        json!({"paths": ["src/db/", "migrations/*.sql"], "repo": REPO, "reason": "orders index", "ttl": 600000}),
    )
    .await;
    assert_eq!(s, 201, "{l}");
    let lease = l["lease"].clone();
    assert_eq!(lease["holder"], ana.as_str());
    assert_eq!(lease["holderRole"], "backend");
    assert_eq!(lease["holderName"], "backend-1");
    assert_eq!(lease["repo"], REPO);
    assert_eq!(lease["paths"], json!(["src/db/", "migrations/*.sql"]));
    assert_eq!(lease["exclusive"], true);
    assert_eq!(lease["reason"], "orders index");
    assert_eq!(lease["status"], "held");
    assert!(lease.get("releasedAt").is_none());
    let lid = id(&l);

    // All or nothing: bob's docs/ is not taken because src/db/x.sql collides.
    let (s, e) = acquire(
        &u,
        Some(&bob_key),
        json!({"paths": ["docs/", "src/db/x.sql"], "repo": REPO}),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["code"], "conflict");
    assert_eq!(reason(&e), "lease_conflict");
    assert_eq!(e["conflicts"], json!([lease]));
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("src/db/x.sql") && msg.contains("backend"),
        "{msg}"
    );
    let (_, mine) = get(&format!("{u}/leases?holder={bob}")).await;
    assert_eq!(mine["leases"], json!([]));
    // Shared with shared is fine; ana's own never stand in her way.
    let (s, docs) = acquire(
        &u,
        Some(&bob_key),
        json!({"paths": ["docs/"], "repo": REPO, "exclusive": false}),
    )
    .await;
    assert_eq!(s, 201, "{docs}");
    let (s, more) = acquire(
        &u,
        Some(&ana_key),
        json!({"paths": ["src/db/x.sql", "docs/a.md"], "repo": REPO, "exclusive": false}),
    )
    .await;
    assert_eq!(s, 201, "{more}");

    // Lists: the held ones, oldest first, by repo and holder.
    let (s, all) = get(&format!("{u}/leases")).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = all["leases"]
        .as_array()
        .expect("list")
        .iter()
        .map(|l| l["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, [lid.as_str(), &id(&docs), &id(&more)]);
    let (_, theirs) = get(&format!("{u}/leases?repo={REPO}&holder={ana}")).await;
    assert_eq!(theirs["leases"].as_array().map(Vec::len), Some(2));
    let (_, none) = get(&format!("{u}/leases?repo=elsewhere")).await;
    assert_eq!(none["leases"], json!([]));
    let (s, e) = get(&format!("{u}/leases?holder=nobody")).await;
    assert_eq!((s, reason(&e)), (400, "invalid_query"), "{e}");

    // Check: repeated path; the caller's own leases do not count.
    let check = format!(
        "{u}/leases/check?repo={REPO}&path=src/db/schema.sql&path=README.md&path=docs/a.md"
    );
    let (s, c) = send_as(Some(&bob_key), http().get(&check)).await;
    assert_eq!(s, 200, "{c}");
    let seen: Vec<(&str, &str)> = c["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or_default(),
                c["lease"]["id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // bob shares docs/, so ana's shared lease on docs/a.md does not count
    // for him; only her exclusive one on src/db/ does.
    assert_eq!(seen, [("src/db/schema.sql", lid.as_str())]);
    let (_, c) = get(&check).await;
    assert_eq!(
        c["conflicts"].as_array().map(Vec::len),
        Some(3),
        "anyone: all count"
    );

    // GET one, renew (holder only), release (holder or a person).
    let (s, one) = get(&format!("{u}/leases/{lid}")).await;
    assert_eq!((s, &one["lease"]), (200, &lease));
    let renew = format!("{u}/leases/{lid}/renew");
    let (s, e) = send_as(Some(&bob_key), http().post(&renew).json(&json!({}))).await;
    assert_eq!((s, reason(&e)), (403, "not_lease_holder"), "{e}");
    let (s, e) = send_as(None, http().post(&renew).json(&json!({}))).await;
    assert_eq!((s, reason(&e)), (403, "not_lease_holder"), "{e}");
    let (s, r) = send_as(
        Some(&ana_key),
        http().post(&renew).json(&json!({"ttl": 7200000})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(r["lease"]["expiresAt"].as_str() > lease["expiresAt"].as_str());
    let (s, r) = send_as(Some(&ana_key), http().post(&renew)).await;
    assert_eq!(s, 200, "an empty body renews with the same ttl: {r}");
    let (s, e) = send_as(
        Some(&ana_key),
        http().post(&renew).json(&json!({"ttl": 10})),
    )
    .await;
    assert_eq!((s, reason(&e)), (400, "invalid_lease"), "{e}");

    let del = format!("{u}/leases/{lid}");
    let (s, e) = send_as(Some(&bob_key), http().delete(&del)).await;
    assert_eq!((s, reason(&e)), (403, "not_lease_holder"), "{e}");
    let (s, r) = delete(&del).await;
    assert_eq!(s, 200, "a person releases: {r}");
    assert_eq!(r["lease"]["status"], "released");
    assert!(r["lease"]["releasedAt"].is_string());
    let (s, e) = delete(&del).await;
    assert_eq!((s, reason(&e)), (409, "already_finished"), "{e}");
    let (s, e) = send_as(Some(&ana_key), http().post(&renew)).await;
    assert_eq!((s, reason(&e)), (409, "already_finished"), "{e}");
    let (s, r) = send_as(
        Some(&bob_key),
        http().delete(format!("{u}/leases/{}", id(&docs))),
    )
    .await;
    assert_eq!(s, 200, "the holder releases: {r}");

    // Now bob may take what ana held (but not what her shared lease holds).
    let (s, r) = acquire(
        &u,
        Some(&bob_key),
        json!({"paths": ["src/db/schema.sql"], "repo": REPO}),
    )
    .await;
    assert_eq!(s, 201, "{r}");

    for path in [
        format!("{u}/leases/{}", uuid::Uuid::now_v7()),
        format!("{u}/leases/not-an-id"),
    ] {
        let (s, e) = get(&path).await;
        assert_eq!((s, reason(&e)), (404, "unknown_lease"), "{path}: {e}");
        let (s, e) = delete(&path).await;
        assert_eq!((s, reason(&e)), (404, "unknown_lease"), "{path}: {e}");
        let (s, e) = post(&format!("{path}/renew"), json!({})).await;
        assert_eq!((s, reason(&e)), (404, "unknown_lease"), "{path}: {e}");
    }
}

#[tokio::test]
async fn bad_requests_are_refused_with_their_reason() {
    let b = start().await;
    let u = b.url();
    let (ana, key) = peer(&u, "backend").await;
    let ok = |paths: Value| json!({"paths": paths, "repo": REPO});
    let cases: Vec<(Value, &str)> = vec![
        (ok(json!([])), "1-100 paths"),
        (ok(json!(vec!["a"; 101])), "1-100 paths"),
        (ok(json!(["/etc/passwd"])), "absolute"),
        (ok(json!(["C:/x"])), "absolute"),
        (ok(json!(["src/../../x"])), ".."),
        (ok(json!(["src\\main.rs"])), "backslash"),
        (ok(json!(["src/\u{1}x"])), "control"),
        (ok(json!([""])), "empty"),
        (ok(json!(["src/[x"])), "glob"),
        (ok(json!(["a".repeat(1025)])), "at most 1024"),
        (json!({"paths": ["a"]}), "repo is missing"),
        (json!({"paths": ["a"], "repo": "  "}), "repo is missing"),
        (
            json!({"paths": ["a"], "repo": "r".repeat(513)}),
            "at most 512",
        ),
        (json!({"paths": ["a"], "repo": REPO, "ttl": 999}), "1 s"),
        (
            json!({"paths": ["a"], "repo": REPO, "ttl": 86_400_001u64}),
            "24 h",
        ),
        (
            json!({"paths": ["a"], "repo": REPO, "reason": "r".repeat(501)}),
            "at most 500",
        ),
    ];
    for (body, word) in cases {
        let (s, e) = acquire(&u, Some(&key), body.clone()).await;
        assert_eq!((s, reason(&e)), (400, "invalid_lease"), "{body}: {e}");
        let msg = e["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(word), "{body}: {msg}");
    }
    let (s, e) = acquire(&u, None, ok(json!(["a"]))).await;
    assert_eq!((s, reason(&e)), (400, "not_registered"), "{e}");
    let (s, e) = send_as(
        None,
        http()
            .post(format!("{u}/leases"))
            .header("X-Cipc-Peer", &ana)
            .json(&ok(json!(["a"]))),
    )
    .await;
    assert_eq!((s, reason(&e)), (403, "key_required"), "{e}");
    let (s, e) = send_as(
        None,
        http()
            .post(format!("{u}/leases"))
            .header("X-Cipc-Peer", uuid::Uuid::now_v7().to_string())
            .json(&ok(json!(["a"]))),
    )
    .await;
    assert_eq!((s, reason(&e)), (404, "unknown_peer"), "{e}");
    let (s, e) = send_as(
        Some(&key),
        http().post(format!("{u}/leases")).body("{\"paths\": "),
    )
    .await;
    assert_eq!((s, reason(&e)), (400, "invalid_json"), "{e}");
    let (s, e) = acquire(&u, Some(&key), json!({"paths": "src/"})).await;
    assert_eq!((s, reason(&e)), (400, "invalid_body"), "{e}");
    for q in ["path=a", "repo=r", "repo=r&path=/abs", "repo=r&path=.."] {
        let (s, e) = get(&format!("{u}/leases/check?{q}")).await;
        assert_eq!((s, reason(&e)), (400, "invalid_lease"), "{q}: {e}");
    }
    let (_, all) = get(&format!("{u}/leases")).await;
    assert_eq!(all["leases"], json!([]), "nothing was leased");
}

#[tokio::test]
async fn too_many_leases_is_a_429() {
    let b = start_with(
        cipc::broker::BrokerConfig {
            max_leases: 1,
            ..cipc::broker::BrokerConfig::default()
        },
        cipc::server::ServerConfig::default(),
        None,
    )
    .await;
    let u = b.url();
    let (_, key) = peer(&u, "backend").await;
    let (s, _) = acquire(&u, Some(&key), json!({"paths": ["a"], "repo": REPO})).await;
    assert_eq!(s, 201);
    let (s, e) = acquire(&u, Some(&key), json!({"paths": ["b"], "repo": REPO})).await;
    assert_eq!((s, reason(&e)), (429, "too_many_leases"), "{e}");
}

#[tokio::test]
async fn naming_another_peer_at_a_check_or_a_refusal_needs_its_key() {
    let b = start_with(
        cipc::broker::BrokerConfig::default(),
        cipc::server::ServerConfig::default(),
        None,
    )
    .await;
    let u = b.url();
    let (ana, ana_key) = peer(&u, "backend").await;
    let (bob, _) = peer(&u, "frontend").await;
    let (s, _) = acquire(&u, Some(&ana_key), json!({"paths": ["src/"], "repo": REPO})).await;
    assert_eq!(s, 201);
    let check = format!("{u}/leases/check?repo={REPO}&path=src/a.rs");

    // Posing as ana (her own leases would not count) without her key.
    let (s, e) = send_as(None, http().get(&check).header("X-Cipc-Peer", &ana)).await;
    assert_eq!((s, reason(&e)), (403, "key_required"), "{e}");
    // With it, her own lease does not count; for anyone else it does.
    let (s, c) = send_as(Some(&ana_key), http().get(&check)).await;
    assert_eq!((s, c["conflicts"].clone()), (200, json!([])), "{c}");
    let (s, c) = send_as(None, http().get(&check)).await;
    assert_eq!(s, 200);
    assert_eq!(c["conflicts"].as_array().map(Vec::len), Some(1), "{c}");

    // A refused edit reported in bob's name needs bob's key.
    let refusal = json!({"repo": REPO, "paths": ["src/a.rs"], "tool": "Edit", "leases": []});
    let (s, e) = send_as(
        None,
        http()
            .post(format!("{u}/leases/refusals"))
            .header("X-Cipc-Peer", &bob)
            .json(&refusal),
    )
    .await;
    assert_eq!((s, reason(&e)), (403, "key_required"), "{e}");
}

/// The next `lease` event's data on an `/events` stream.
async fn next_lease_event<S>(stream: &mut S, buf: &mut String) -> Value
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            if block.lines().any(|l| l.trim() == "event: lease") {
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data:"))
                    .unwrap_or_default();
                return serde_json::from_str(data.trim()).expect("lease JSON");
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("a lease event in time")
            .expect("stream open")
            .expect("chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn each_change_is_a_lease_event_and_a_holder_that_leaves_loses_its_leases() {
    let b = start().await;
    let u = b.url();
    let r = http()
        .get(format!("{u}/events"))
        .send()
        .await
        .expect("events");
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let (ana, key) = peer(&u, "backend").await;
    let (_, l) = acquire(&u, Some(&key), json!({"paths": ["src/a.rs"], "repo": REPO})).await;
    let lid = id(&l);
    let ev = next_lease_event(&mut stream, &mut buf).await;
    assert_eq!(
        (ev["id"].as_str(), ev["status"].as_str()),
        (Some(lid.as_str()), Some("held"))
    );
    let (s, _) = send_as(Some(&key), http().post(format!("{u}/leases/{lid}/renew"))).await;
    assert_eq!(s, 200);
    let ev = next_lease_event(&mut stream, &mut buf).await;
    assert_eq!(ev["status"], "held");

    // Disconnecting ends every lease the peer holds.
    let (s, _) = send_as(Some(&key), http().delete(format!("{u}/peers/{ana}"))).await;
    assert_eq!(s, 200);
    let ev = next_lease_event(&mut stream, &mut buf).await;
    assert_eq!(
        (ev["id"].as_str(), ev["status"].as_str()),
        (Some(lid.as_str()), Some("released"))
    );
    let (_, one) = get(&format!("{u}/leases/{lid}")).await;
    assert_eq!(one["lease"]["status"], "released");
    let (_, all) = get(&format!("{u}/leases")).await;
    assert_eq!(all["leases"], json!([]));
}

#[tokio::test]
async fn held_leases_survive_a_restart_of_the_durable_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BinaryBroker::durable(dir.path());
    let (_, ana_key) = peer(&b.url, "backend").await;
    let (_, l) = acquire(
        &b.url,
        Some(&ana_key),
        json!({"paths": ["src/db/"], "repo": REPO, "reason": "migrations"}),
    )
    .await;
    let lease = l["lease"].clone();
    let (_, gone) = acquire(
        &b.url,
        Some(&ana_key),
        json!({"paths": ["tmp/"], "repo": REPO}),
    )
    .await;
    let (s, _) = send_as(
        Some(&ana_key),
        http().delete(format!("{}/leases/{}", b.url, id(&gone))),
    )
    .await;
    assert_eq!(s, 200);
    b.kill9();

    let b = BinaryBroker::durable(dir.path());
    let (_, all) = get(&format!("{}/leases", b.url)).await;
    assert_eq!(
        all["leases"],
        json!([lease]),
        "held, unchanged; the released one is not listed"
    );
    let (_, ended) = get(&format!("{}/leases/{}", b.url, id(&gone))).await;
    assert_eq!(ended["lease"]["status"], "released");
    let (_, bob_key) = peer(&b.url, "frontend").await;
    let (s, e) = acquire(
        &b.url,
        Some(&bob_key),
        json!({"paths": ["src/db/x.sql"], "repo": REPO}),
    )
    .await;
    assert_eq!((s, reason(&e)), (409, "lease_conflict"), "{e}");
    let (s, r) = send_as(
        Some(&ana_key),
        http().post(format!(
            "{}/leases/{}/renew",
            b.url,
            lease["id"].as_str().unwrap_or_default()
        )),
    )
    .await;
    assert_eq!(s, 200, "the holder's key works after the restart: {r}");
}
