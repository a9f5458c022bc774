//! The REST contract of shared/API.md, through real HTTP against a real broker.

mod common;

use cipc::broker::BrokerConfig;
use cipc::server::ServerConfig;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn peers_connect_reconnect_discover_heartbeat_disconnect() {
    let b = start().await;
    let u = b.url();
    let (st, body) = post(
        &format!("{u}/peers/connect"),
        json!({"role": "backend", "capabilities": ["tcp"], "name": "be-1"}),
    )
    .await;
    assert_eq!(st, 201);
    let p = &body["peer"];
    assert_eq!(p["role"], "backend");
    assert_eq!(p["status"], "online");
    assert_eq!(p["via"], "http");
    assert_eq!(p["capabilities"], json!(["tcp"]));
    let id = s(&p["id"]);

    // Reconnect by id keeps the id.
    let (st, body) = post(
        &format!("{u}/peers/connect"),
        json!({"role": "backend", "id": id}),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(s(&body["peer"]["id"]), id);
    let (_, all) = get(&format!("{u}/peers")).await;
    assert_eq!(all["peers"].as_array().unwrap().len(), 1);

    let (st, d) = get(&format!("{u}/peers/discover")).await;
    assert_eq!(st, 200);
    assert_eq!(d["count"], 1);
    assert_eq!(d["roles"], json!(["backend"]));

    let (st, one) = get(&format!("{u}/peers/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(s(&one["peer"]["id"]), id);

    let (st, hb) = post(&format!("{u}/peers/{id}/heartbeat"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(hb["peer"]["status"], "online");

    let (st, gone) = delete(&format!("{u}/peers/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(gone["peer"]["status"], "offline");
    let (_, d) = get(&format!("{u}/peers/discover")).await;
    assert_eq!(d["count"], 0);

    // Unknown and malformed ids.
    let (st, e) = get(&format!("{u}/peers/0193a1b2-0000-7000-8000-000000000000")).await;
    assert_eq!(st, 404);
    assert_eq!(e["error"]["code"], "not_found");
    assert_eq!(e["error"]["reason"], "unknown_peer");
    let (st, e) = get(&format!("{u}/peers/not-an-id")).await;
    assert_eq!(st, 404);
    assert_eq!(e["error"]["reason"], "unknown_peer");
    let (st, _) = delete(&format!("{u}/peers/0193a1b2-0000-7000-8000-000000000000")).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn bad_input_answers_the_json_error_shape() {
    let b = start_with(
        BrokerConfig::default(),
        ServerConfig {
            max_body: 1024,
            ..ServerConfig::default()
        },
        None,
    )
    .await;
    let u = b.url();
    let raw = |path: &str, body: &'static str| {
        let url = format!("{u}{path}");
        async move {
            let r = http().post(url).body(body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (st, e) = raw("/peers/connect", "{\"role\":").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("invalid_json"))
    );
    let (st, e) = raw("/peers/connect", "{}").await;
    assert_eq!(st, 400);
    assert_eq!(e["error"]["code"], "bad_request");
    assert!(s(&e["error"]["message"]).contains("role"), "{e}");
    let (st, e) = raw("/peers/connect", "{\"role\": 5}").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    for bad in ["", "a b", "x/y", &"r".repeat(65)] {
        let (st, e) = post(&format!("{u}/peers/connect"), json!({"role": bad})).await;
        assert_eq!(st, 400, "role {bad:?}: {e}");
    }
    let (st, e) = raw("/commands/send", "{\"target\":\"backend\"}").await;
    assert_eq!(st, 400);
    assert!(s(&e["error"]["message"]).contains("action"), "{e}");

    // Oversized bodies are 413 with the JSON shape, and nothing is written.
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(4096));
    let r = http()
        .post(format!("{u}/channels/big/send"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "payload_too_large");
    let (_, m) = get(&format!("{u}/channels/big/messages")).await;
    assert_eq!(m["messages"], json!([]));

    // Query parameters are validated, never clamped.
    let id = connect(&u, "backend").await;
    for q in ["timeout=-1", "timeout=abc", "timeout=3600001"] {
        let (st, e) = get(&format!("{u}/commands/{id}/wait?{q}")).await;
        assert_eq!(st, 400, "{q}: {e}");
        assert_eq!(e["error"]["code"], "bad_request");
    }
    for q in ["since=-3", "limit=0", "limit=x"] {
        let (st, _) = get(&format!("{u}/channels/c/messages?{q}")).await;
        assert_eq!(st, 400, "{q}");
    }
    let (st, _) = get(&format!("{u}/commands?status=nope")).await;
    assert_eq!(st, 400);
    let (st, e) = get(&format!("{u}/no/such/route")).await;
    assert_eq!((st, e["error"]["code"].clone()), (404, json!("not_found")));
    // A channel name that is not a name.
    let (st, _) = post(&format!("{u}/channels/bad%20name/send"), json!(1)).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn command_round_trip_with_result_long_poll() {
    let b = start().await;
    let u = b.url();
    let peer = connect(&u, "backend").await;
    let (st, sent) = post(&format!("{u}/commands/send"), json!({"from": "orchestrator", "target": "backend", "action": "build", "params": {"release": true}})).await;
    assert_eq!(st, 201);
    assert_eq!(sent["queued"], false);
    let cmd = &sent["command"];
    assert_eq!(cmd["status"], "pending");
    assert_eq!(cmd["from"], "orchestrator");
    let cid = s(&cmd["id"]);

    // The sender parks on the result before the peer has even taken it.
    let result_url = format!("{u}/commands/{cid}/result?timeout=20000");
    let waiter = tokio::spawn(async move { get(&result_url).await });

    let (st, w) = get(&format!("{u}/commands/{peer}/wait?timeout=5000")).await;
    assert_eq!(st, 200);
    assert_eq!(s(&w["command"]["id"]), cid);
    assert_eq!(w["command"]["status"], "delivered");
    assert_eq!(s(&w["command"]["deliveredTo"]), peer);
    assert_eq!(w["command"]["attempt"], 1);
    assert!(w.get("timedOut").is_none());

    let (_, listed) = get(&format!("{u}/commands/{peer}")).await;
    assert_eq!(listed["commands"].as_array().unwrap().len(), 1);

    let (st, acked) = post(
        &format!("{u}/commands/{cid}/ack"),
        json!({"result": {"artifact": "app.tar"}}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(acked["command"]["status"], "acked");

    let (st, r) = waiter.await.unwrap();
    assert_eq!(st, 200);
    assert_eq!(r["command"]["status"], "acked");
    assert_eq!(r["command"]["result"], json!({"artifact": "app.tar"}));
    assert!(r.get("timedOut").is_none());

    // A second ack is a conflict; unknown ids are 404.
    let (st, e) = post(&format!("{u}/commands/{cid}/ack"), json!({"result": 1})).await;
    assert_eq!((st, e["error"]["code"].clone()), (409, json!("conflict")));
    assert_eq!(e["error"]["reason"], "already_finished");
    let (st, e) = post(
        &format!("{u}/commands/0193a1b2-0000-7000-8000-000000000000/ack"),
        json!({}),
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(e["error"]["reason"], "unknown_command");

    // An error ack fails the command.
    post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "deploy"}),
    )
    .await;
    let (_, w) = get(&format!("{u}/commands/{peer}/wait?timeout=5000")).await;
    let id2 = s(&w["command"]["id"]);
    let (_, f) = post(
        &format!("{u}/commands/{id2}/ack"),
        json!({"error": "disk full"}),
    )
    .await;
    assert_eq!(f["command"]["status"], "failed");
    assert_eq!(f["command"]["error"], "disk full");

    // List, newest first, with filters.
    let (_, all) = get(&format!("{u}/commands")).await;
    let all = all["commands"].as_array().unwrap().clone();
    assert_eq!(all.len(), 2);
    assert_eq!(s(&all[0]["id"]), id2);
    let (_, failed) = get(&format!(
        "{u}/commands?status=failed&target=backend&limit=5"
    ))
    .await;
    assert_eq!(failed["commands"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn waits_wake_up_and_time_out() {
    let b = start().await;
    let u = b.url();
    let peer = connect(&u, "worker").await;
    let (st, w) = get(&format!("{u}/commands/{peer}/wait?timeout=50")).await;
    assert_eq!(st, 200);
    assert_eq!(w, json!({"command": null, "timedOut": true}));

    let url = format!("{u}/commands/{peer}/wait?timeout=30000");
    let parked = tokio::spawn(async move { get(&url).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 1
        })
        .await
    );
    post(
        &format!("{u}/commands/send"),
        json!({"target": "worker", "action": "go"}),
    )
    .await;
    let (_, w) = parked.await.unwrap();
    assert_eq!(w["command"]["action"], "go");

    // Unknown peer waiting: 404.
    let (st, _) = get(&format!(
        "{u}/commands/0193a1b2-0000-7000-8000-000000000000/wait?timeout=10"
    ))
    .await;
    assert_eq!(st, 404);

    // A result wait that runs out answers the command with timedOut.
    let (_, sent) = post(
        &format!("{u}/commands/send"),
        json!({"target": "worker", "action": "slow"}),
    )
    .await;
    let cid = s(&sent["command"]["id"]);
    let (st, r) = get(&format!("{u}/commands/{cid}/result?timeout=30")).await;
    assert_eq!(st, 200);
    assert_eq!(r["timedOut"], true);
    assert_eq!(r["command"]["status"], "pending");
}

#[tokio::test]
async fn competing_consumers_get_each_command_exactly_once_in_fifo_order() {
    let b = start().await;
    let u = b.url();
    let peers: Vec<String> = futures::future::join_all((0..4).map(|_| connect(&u, "pool"))).await;
    const N: usize = 40;
    let mut sent = Vec::new();
    for i in 0..N {
        let (_, r) = post(
            &format!("{u}/commands/send"),
            json!({"target": "pool", "action": format!("job-{i}")}),
        )
        .await;
        sent.push(s(&r["command"]["id"]));
    }
    let mut tasks = Vec::new();
    for p in peers {
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let (_, w) = get(&format!("{u}/commands/{p}/wait?timeout=300")).await;
                if w["command"].is_null() {
                    return got;
                }
                let id = s(&w["command"]["id"]);
                post(&format!("{u}/commands/{id}/ack"), json!({"result": p})).await;
                got.push(id);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        // Each consumer sees its share in FIFO order.
        let mut sorted = got.clone();
        sorted.sort_by_key(|id| sent.iter().position(|x| x == id));
        assert_eq!(got, sorted);
        all.extend(got);
    }
    assert_eq!(all.len(), N, "every command delivered");
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), N, "no command delivered twice");
}

#[tokio::test]
async fn queued_without_holder_fanout_dedupe_ttl_cancel() {
    let b = start().await;
    let u = b.url();
    // Nobody holds the role yet: queued, delivered once someone connects.
    let (st, q) = post(
        &format!("{u}/commands/send"),
        json!({"target": "later", "action": "hello"}),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(q["queued"], true);
    let late = connect(&u, "later").await;
    let (_, w) = get(&format!("{u}/commands/{late}/wait?timeout=1000")).await;
    assert_eq!(w["command"]["action"], "hello");

    // Direct to a peer id.
    let (_, d) = post(
        &format!("{u}/commands/send"),
        json!({"target": late, "action": "direct"}),
    )
    .await;
    assert_eq!(d["queued"], false);
    let (_, w) = get(&format!("{u}/commands/{late}/wait?timeout=1000")).await;
    assert_eq!(w["command"]["action"], "direct");

    // Fan-out: one copy per online peer.
    let other = connect(&u, "other").await;
    let (st, f) = post(
        &format!("{u}/commands/send"),
        json!({"target": "*", "action": "sync"}),
    )
    .await;
    assert_eq!(st, 201);
    let copies = f["commands"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    for p in [&late, &other] {
        let (_, w) = get(&format!("{u}/commands/{p}/wait?timeout=1000")).await;
        assert_eq!(w["command"]["action"], "sync");
        assert_eq!(s(&w["command"]["deliveredTo"]), *p);
    }

    // dedupeKey answers the original with 200.
    let (st, a) = post(
        &format!("{u}/commands/send"),
        json!({"target": "nobody", "action": "x", "dedupeKey": "k1"}),
    )
    .await;
    assert_eq!(st, 201);
    let (st, again) = post(
        &format!("{u}/commands/send"),
        json!({"target": "nobody", "action": "x", "dedupeKey": "k1"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(a["command"]["id"], again["command"]["id"]);

    // ttl: an expired command is never delivered and its result says expired.
    let (_, t) = post(
        &format!("{u}/commands/send"),
        json!({"target": "ttlrole", "action": "stale", "ttl": 1}),
    )
    .await;
    let tid = s(&t["command"]["id"]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let ttl_peer = connect(&u, "ttlrole").await;
    let (_, w) = get(&format!("{u}/commands/{ttl_peer}/wait?timeout=50")).await;
    assert!(w["command"].is_null(), "{w}");
    let (_, r) = get(&format!("{u}/commands/{tid}/result?timeout=1000")).await;
    assert_eq!(r["command"]["status"], "expired");

    // cancel a pending command; cancelling again is a conflict.
    let (_, c) = post(
        &format!("{u}/commands/send"),
        json!({"target": "nobody", "action": "cancel-me"}),
    )
    .await;
    let cid = s(&c["command"]["id"]);
    let (st, x) = delete(&format!("{u}/commands/{cid}")).await;
    assert_eq!(st, 200);
    assert_eq!(x["command"]["status"], "cancelled");
    let (st, _) = delete(&format!("{u}/commands/{cid}")).await;
    assert_eq!(st, 409);
}

#[tokio::test]
async fn disconnect_redelivers_and_stale_holder_cannot_ack() {
    let b = start().await;
    let u = b.url();
    let first = connect(&u, "backend").await;
    let (_, sent) = post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "migrate"}),
    )
    .await;
    let cid = s(&sent["command"]["id"]);
    let (_, w) = get(&format!("{u}/commands/{first}/wait?timeout=1000")).await;
    assert_eq!(s(&w["command"]["id"]), cid);

    // The holder leaves without acking: the command is pending again.
    delete(&format!("{u}/peers/{first}")).await;
    let (_, pending) = get(&format!("{u}/commands?status=pending")).await;
    assert_eq!(s(&pending["commands"][0]["id"]), cid);
    assert_eq!(pending["commands"][0]["redelivered"], true);

    let second = connect(&u, "backend").await;
    let (_, w) = get(&format!("{u}/commands/{second}/wait?timeout=1000")).await;
    assert_eq!(s(&w["command"]["id"]), cid);
    assert_eq!(w["command"]["attempt"], 2);
    assert_eq!(w["command"]["redelivered"], true);

    // The old holder's late ack is refused, the new holder's accepted.
    let r = http()
        .post(format!("{u}/commands/{cid}/ack"))
        .header("X-Cipc-Peer", &first)
        .json(&json!({"result": "old"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let r = http()
        .post(format!("{u}/commands/{cid}/ack"))
        .header("X-Cipc-Peer", &second)
        .json(&json!({"result": "new"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, done) = get(&format!("{u}/commands/{cid}/result")).await;
    assert_eq!(done["command"]["result"], "new");
}

/// A broker served over real HTTP whose clock moves only when the test says
/// so; its own sweeper runs every few milliseconds.
async fn start_on_manual_clock(
    cfg: BrokerConfig,
) -> (
    cipc::server::RunningServer,
    std::sync::Arc<cipc::broker::clock::ManualClock>,
) {
    use cipc::broker::{clock::ManualClock, Broker};
    use std::sync::Arc;
    let clock = Arc::new(ManualClock::new(cipc::time::Timestamp::now()));
    let store = test_store().await;
    let broker = Broker::open_with_clock(store, cfg, clock.clone()).expect("open");
    let server = cipc::server::RunningServer::start(broker, ServerConfig::default(), None)
        .await
        .expect("start broker");
    (server, clock)
}

#[tokio::test]
async fn silent_peers_go_stale_then_offline_and_their_work_is_requeued() {
    // The rule and its exact boundaries are unit tests on a manual clock
    // (src/broker/tests/liveness.rs). Here, over real HTTP on a manual clock
    // too, what is proven is the wiring: the server's own sweeper applies it
    // without anyone asking, the REST views show it, and X-Cipc-Peer on any
    // request is contact.
    let cfg = BrokerConfig {
        sweep_interval: Duration::from_millis(5),
        ..BrokerConfig::default()
    };
    let (b, clock) = start_on_manual_clock(cfg.clone()).await;
    let u = b.url();
    let p = connect(&u, "sleepy").await;
    post(
        &format!("{u}/commands/send"),
        json!({"target": "sleepy", "action": "a"}),
    )
    .await;
    let (_, w) = get(&format!("{u}/commands/{p}/wait?timeout=1000")).await;
    let cid = s(&w["command"]["id"]);
    let status = |u: String, p: String| async move {
        get(&format!("{u}/peers/{p}")).await.1["peer"]["status"].clone()
    };
    // Listed by target: a peer's own list (GET /commands/{peer}) would be
    // contact, and keep it alive.
    let first_command = |u: String| async move {
        get(&format!("{u}/commands?target=sleepy")).await.1["commands"][0].clone()
    };

    clock.advance(cfg.stale_after);
    assert_eq!(status(u.clone(), p.clone()).await, "stale");
    let c = first_command(u.clone()).await;
    assert_eq!(
        (s(&c["id"]), c["status"].clone()),
        (cid.clone(), json!("delivered"))
    );

    clock.advance(cfg.offline_after - cfg.stale_after);
    assert!(
        eventually(Duration::from_secs(5), || {
            let u = u.clone();
            async move { first_command(u).await["status"] == "pending" }
        })
        .await,
        "the sweeper requeued the offline peer's work"
    );
    assert_eq!(status(u.clone(), p.clone()).await, "offline");
    let c = first_command(u.clone()).await;
    assert_eq!(s(&c["id"]), cid);
    assert_eq!(c["redelivered"], true);
    // Contact (X-Cipc-Peer on any request) brings it back online.
    http()
        .get(format!("{u}/status"))
        .header("X-Cipc-Peer", &p)
        .send()
        .await
        .unwrap();
    assert_eq!(status(u.clone(), p.clone()).await, "online");
    // Its own list shows the requeued command, pending for it to take again.
    let (_, c) = get(&format!("{u}/commands/{p}")).await;
    assert_eq!(s(&c["commands"][0]["id"]), cid);
    assert_eq!(c["commands"][0]["status"], "pending");
}

#[tokio::test]
async fn a_waiter_that_goes_away_takes_nothing() {
    let b = start().await;
    let u = b.url();
    let p = connect(&u, "flaky").await;
    let waiter = {
        let url = format!("{u}/commands/{p}/wait?timeout=30000");
        tokio::spawn(async move { http().get(url).send().await })
    };
    assert!(
        eventually(PATIENCE, || async { b.broker.open_waiters() == 1 }).await,
        "the wait is parked at the broker"
    );
    // The client goes away while its wait is parked.
    waiter.abort();
    assert!(
        waiter.await.is_err_and(|e| e.is_cancelled()),
        "the client gave up first"
    );
    assert!(
        eventually(PATIENCE, || async { b.broker.open_waiters() == 0 }).await,
        "the server noticed"
    );
    post(
        &format!("{u}/commands/send"),
        json!({"target": "flaky", "action": "x"}),
    )
    .await;
    let (_, c) = get(&format!("{u}/commands?status=pending")).await;
    assert_eq!(
        c["commands"].as_array().unwrap().len(),
        1,
        "still pending: {c}"
    );
}

#[tokio::test]
async fn channels_sequence_since_limit_long_poll_and_retention() {
    let cfg = BrokerConfig {
        channel_retention: 5,
        ..BrokerConfig::default()
    };
    let b = start_with(cfg, ServerConfig::default(), None).await;
    let u = b.url();
    let (_, empty) = get(&format!("{u}/channels/news/messages")).await;
    assert_eq!(empty["messages"], json!([]));
    assert_eq!(empty["lastSeq"], 0);
    for i in 1..=3 {
        let (st, m) = post(&format!("{u}/channels/news/send"), json!({"n": i})).await;
        assert_eq!(st, 201);
        assert_eq!(m["message"]["seq"], i);
        assert_eq!(m["message"]["channel"], "news");
    }
    let (_, r) = get(&format!("{u}/channels/news/messages?since=1")).await;
    let seqs: Vec<u64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    let (_, r) = get(&format!("{u}/channels/news/messages?since=0&limit=1")).await;
    assert_eq!(r["messages"].as_array().unwrap().len(), 1);

    // Long-poll: times out empty, then wakes on a new message.
    let (_, r) = get(&format!("{u}/channels/news/messages?since=3&timeout=30")).await;
    assert_eq!(r["timedOut"], true);
    let url = format!("{u}/channels/news/messages?since=3&timeout=30000");
    let parked = tokio::spawn(async move { get(&url).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 1
        })
        .await
    );
    post(&format!("{u}/channels/news/send"), json!("four")).await;
    let (_, r) = parked.await.unwrap();
    assert_eq!(r["messages"][0]["data"], "four");

    // Retention keeps the newest 5 and says where the stream now starts.
    for i in 5..=8 {
        post(&format!("{u}/channels/news/send"), json!(i)).await;
    }
    let (_, r) = get(&format!("{u}/channels/news/messages")).await;
    assert_eq!(r["firstSeq"], 4);
    assert_eq!(r["lastSeq"], 8);
    assert_eq!(r["messages"].as_array().unwrap().len(), 5);
    let (_, list) = get(&format!("{u}/channels")).await;
    assert_eq!(list["channels"][0]["name"], "news");
    assert_eq!(list["channels"][0]["count"], 5);
    assert_eq!(list["channels"][0]["lastSeq"], 8);
}

/// Reads SSE events (id, event, data) from a streaming response.
async fn read_sse(resp: reqwest::Response, want: usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < want {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events in time")
            .expect("stream open")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let (mut id, mut ev, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().into();
                }
                if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().into();
                }
                if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim().into();
                }
            }
            if !ev.is_empty() {
                out.push((id, ev, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn channel_stream_resumes_with_last_event_id() {
    let b = start().await;
    let u = b.url();
    for i in 1..=3 {
        post(&format!("{u}/channels/log/send"), json!({"line": i})).await;
    }
    let r = http()
        .get(format!("{u}/channels/log/stream?since=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let evs = read_sse(r, 2).await;
    assert_eq!(
        evs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        vec!["2", "3"]
    );
    assert_eq!(evs[0].1, "message");
    let m: Value = serde_json::from_str(&evs[0].2).unwrap();
    assert_eq!(m["data"], json!({"line": 2}));

    // Resume after seq 3: only newer messages, including ones sent later.
    let r = http()
        .get(format!("{u}/channels/log/stream"))
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(read_sse(r, 1));
    post(&format!("{u}/channels/log/send"), json!({"line": 4})).await;
    let evs = reader.await.unwrap();
    assert_eq!(evs[0].0, "4");
}

#[tokio::test]
async fn events_stream_reports_changes_and_resumes() {
    let b = start().await;
    let u = b.url();
    let r = http().get(format!("{u}/events")).send().await.unwrap();
    let reader = tokio::spawn(read_sse(r, 3));
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 1
        })
        .await
    );
    connect(&u, "backend").await;
    post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "a"}),
    )
    .await;
    post(&format!("{u}/signals/go"), json!({})).await;
    let evs = reader.await.unwrap();
    let kinds: Vec<&str> = evs.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, vec!["peer", "command", "signal"]);
    let first_id: u64 = evs[0].0.parse().unwrap();

    // Resuming after the first event replays the other two.
    let r = http()
        .get(format!("{u}/events"))
        .header("Last-Event-ID", first_id.to_string())
        .send()
        .await
        .unwrap();
    let evs2 = read_sse(r, 2).await;
    assert_eq!(
        evs2.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        vec!["command", "signal"]
    );

    post(&format!("{u}/reset"), json!({})).await;
    let r = http()
        .get(format!("{u}/events"))
        .header("Last-Event-ID", evs2[1].0.clone())
        .send()
        .await
        .unwrap();
    let evs3 = read_sse(r, 1).await;
    assert_eq!(evs3[0].1, "reset");
}

#[tokio::test]
async fn signals_latch_after_clear_and_release_many_waiters() {
    let b = start().await;
    let u = b.url();
    let (st, g) = get(&format!("{u}/signals/ready")).await;
    assert_eq!(st, 200);
    assert_eq!(
        g["signal"],
        json!({"name": "ready", "emitted": false, "count": 0})
    );

    let mut waiters = Vec::new();
    for _ in 0..20 {
        let url = format!("{u}/signals/ready/wait?timeout=30000");
        waiters.push(tokio::spawn(async move { get(&url).await }));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 20
        })
        .await
    );
    let (st, e) = post(
        &format!("{u}/signals/ready"),
        json!({"data": {"port": 3000}}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(e["signal"]["count"], 1);
    for w in waiters {
        let (_, r) = w.await.unwrap();
        assert_eq!(r["signal"]["data"], json!({"port": 3000}));
        assert!(r.get("timedOut").is_none());
    }
    // A latch: later waiters return at once.
    let (_, r) = get(&format!("{u}/signals/ready/wait?timeout=10")).await;
    assert_eq!(r["signal"]["emitted"], true);
    // after=K waits for a newer emission.
    let (_, r) = get(&format!("{u}/signals/ready/wait?timeout=20&after=1")).await;
    assert_eq!(r["timedOut"], true);
    let url = format!("{u}/signals/ready/wait?timeout=30000&after=1");
    let next = tokio::spawn(async move { get(&url).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 1
        })
        .await
    );
    post(&format!("{u}/signals/ready"), json!({"data": "again"})).await;
    let (_, r) = next.await.unwrap();
    assert_eq!(r["signal"]["count"], 2);
    assert_eq!(r["signal"]["data"], "again");

    // Emitting with no body at all works (compat curl -X POST).
    let r = http()
        .post(format!("{u}/signals/bare"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let (st, c) = delete(&format!("{u}/signals/ready")).await;
    assert_eq!(st, 200);
    assert_eq!(c["signal"]["emitted"], false);
    let (_, r) = get(&format!("{u}/signals/ready/wait?timeout=10")).await;
    assert_eq!(r["timedOut"], true);
    let (_, list) = get(&format!("{u}/signals")).await;
    let names: Vec<String> = list["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["bare", "ready"]);
}

#[tokio::test]
async fn status_reset_healthz_openapi() {
    let b = start().await;
    let u = b.url();
    connect(&u, "backend").await;
    post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "a"}),
    )
    .await;
    post(&format!("{u}/channels/c/send"), json!(1)).await;
    post(&format!("{u}/signals/s"), json!({})).await;
    let (st, s) = get(&format!("{u}/status")).await;
    assert_eq!(st, 200);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptimeMs"].is_u64());
    assert_eq!(s["peers"].as_array().unwrap().len(), 1);
    assert_eq!(s["commands"]["counts"]["pending"], 1);
    assert_eq!(s["commands"]["recent"].as_array().unwrap().len(), 1);
    assert_eq!(s["channels"][0]["name"], "c");
    assert_eq!(s["signals"][0]["name"], "s");

    let (st, r) = post(&format!("{u}/reset"), json!({})).await;
    assert_eq!((st, r), (200, json!({"ok": true})));
    let (_, s) = get(&format!("{u}/status")).await;
    assert_eq!(s["peers"], json!([]));
    assert_eq!(s["channels"], json!([]));
    assert_eq!(s["commands"]["recent"], json!([]));

    let (st, h) = get(&format!("{u}/healthz")).await;
    assert_eq!((st, h), (200, json!({"ok": true})));

    let (st, doc) = get(&format!("{u}/openapi.json")).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/peers/connect",
        "/commands/send",
        "/commands/{peerId}/wait",
        "/commands/{commandId}/ack",
        "/channels/{name}/messages",
        "/signals/{name}/wait",
        "/status",
        "/reset",
        "/events",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("Command").is_some());
}

#[tokio::test]
async fn finished_commands_are_kept_up_to_the_retention_limit() {
    let cfg = BrokerConfig {
        command_retention: 3,
        ..BrokerConfig::default()
    };
    let b = start_with(cfg, ServerConfig::default(), None).await;
    let u = b.url();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, c) = post(
            &format!("{u}/commands/send"),
            json!({"target": "nobody", "action": format!("a{i}")}),
        )
        .await;
        let id = s(&c["command"]["id"]);
        let (st, _) = delete(&format!("{u}/commands/{id}")).await;
        assert_eq!(st, 200);
        ids.push(id);
    }
    // A pending one is never forgotten.
    let (_, p) = post(
        &format!("{u}/commands/send"),
        json!({"target": "nobody", "action": "keep"}),
    )
    .await;
    let (_, all) = get(&format!("{u}/commands")).await;
    let listed: Vec<String> = all["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| s(&c["id"]))
        .collect();
    assert_eq!(
        listed,
        vec![
            s(&p["command"]["id"]),
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone()
        ]
    );
    let (st, _) = get(&format!("{u}/commands/{}/result?timeout=0", ids[0])).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn an_event_id_from_before_a_restart_gets_a_resync() {
    let b = start().await;
    let u = b.url();
    let r = http()
        .get(format!("{u}/events"))
        .header("Last-Event-ID", "999999")
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(read_sse(r, 2));
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.broker.open_waiters() == 1
        })
        .await
    );
    connect(&u, "backend").await;
    let evs = reader.await.unwrap();
    assert_eq!(evs[0].1, "resync");
    assert_eq!(evs[1].1, "peer", "live events follow the resync");
}

#[tokio::test]
async fn only_a_delivered_command_can_be_acked_and_next_follows_its_holder() {
    let b = start().await;
    let u = b.url();
    // Nobody holds the role: the command was never delivered, so an ack
    // (by anyone with the token) is refused and the command still waits.
    let (_, sent) = post(
        &format!("{u}/commands/send"),
        json!({"target": "builder", "action": "build"}),
    )
    .await;
    let id = s(&sent["command"]["id"]);
    let (st, e) = post(
        &format!("{u}/commands/{id}/ack"),
        json!({"result": "forged"}),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].clone(), e["error"]["reason"].clone()),
        (409, json!("conflict"), json!("not_delivered")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cancel"),
        "says what to do instead: {e}"
    );
    let (_, still) = get(&format!("{u}/commands/{id}/result?timeout=0")).await;
    assert_eq!(
        (
            still["command"]["status"].clone(),
            still["command"]["attempt"].clone()
        ),
        (json!("pending"), json!(0))
    );

    // Once taken, an ack with ?next= and no X-Cipc-Peer takes the next
    // command of the peer that held it (what /openapi.json promises).
    let worker = connect(&u, "builder").await;
    let (_, took) = get(&format!("{u}/commands/{worker}/wait?timeout=5000")).await;
    assert_eq!(s(&took["command"]["id"]), id);
    let (_, second) = post(
        &format!("{u}/commands/send"),
        json!({"target": "builder", "action": "test"}),
    )
    .await;
    let (st, acked) = post(
        &format!("{u}/commands/{id}/ack?next=5000"),
        json!({"result": 1}),
    )
    .await;
    assert_eq!(st, 200, "{acked}");
    assert_eq!(acked["command"]["status"], "acked");
    assert_eq!(acked["next"]["id"], second["command"]["id"], "{acked}");
    assert_eq!(acked["next"]["deliveredTo"], json!(worker));
}

#[tokio::test]
async fn one_request_round_trips_send_wait_and_ack_next() {
    let b = start().await;
    let u = b.url();
    let worker = connect(&u, "echo").await;
    // The worker takes and acks with ?next=, which also takes the next order.
    let w = {
        let u = u.clone();
        let worker = worker.clone();
        tokio::spawn(async move {
            let (_, first) = get(&format!("{u}/commands/{worker}/wait?timeout=10000")).await;
            let id = s(&first["command"]["id"]);
            let r = http()
                .post(format!("{u}/commands/{id}/ack?next=10000"))
                .header("X-Cipc-Peer", &worker)
                .json(&json!({"result": {"n": 1}}))
                .send()
                .await
                .expect("ack");
            let v: Value = r.json().await.expect("json");
            let next = s(&v["next"]["id"]);
            assert_eq!(v["command"]["status"], "acked", "{v}");
            http()
                .post(format!("{u}/commands/{next}/ack?next=50"))
                .header("X-Cipc-Peer", &worker)
                .json(&json!({"result": {"n": 2}}))
                .send()
                .await
                .expect("ack")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    for n in [1, 2] {
        let (st, r) = post(
            &format!("{u}/commands/send?wait=10000"),
            json!({"target": "echo", "action": "count"}),
        )
        .await;
        assert_eq!(st, 201, "{r}");
        assert_eq!(r["command"]["status"], "acked", "{r}");
        assert_eq!(r["command"]["result"], json!({"n": n}));
        assert!(r.get("timedOut").is_none());
    }
    let last = w.await.expect("worker");
    assert_eq!(
        (last["next"].clone(), last["timedOut"].clone()),
        (Value::Null, json!(true))
    );

    // Nobody takes it: the wait ends with the command as it stands.
    let (st, r) = post(
        &format!("{u}/commands/send?wait=50"),
        json!({"target": "nobody", "action": "x"}),
    )
    .await;
    assert_eq!(
        (st, r["timedOut"].clone(), r["command"]["status"].clone()),
        (201, json!(true), json!("pending"))
    );
    // ?next= needs to know whose next command to take.
    let cid = s(&r["command"]["id"]);
    let (st, e) = post(&format!("{u}/commands/{cid}/ack?next=10"), json!({})).await;
    assert_eq!(
        (st, e["error"]["reason"].clone()),
        (400, json!("invalid_query"))
    );
    let (st, _) = post(
        &format!("{u}/commands/send?wait=3600001"),
        json!({"target": "x", "action": "y"}),
    )
    .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn commands_list_by_origin() {
    let b = start().await;
    let u = b.url();
    let me = connect(&u, "lead").await;
    let mine = http()
        .post(format!("{u}/commands/send"))
        .header("X-Cipc-Peer", &me)
        .json(&json!({"target": "w", "action": "mine"}))
        .send()
        .await
        .expect("send")
        .json::<Value>()
        .await
        .expect("json");
    post(
        &format!("{u}/commands/send"),
        json!({"target": "w", "action": "theirs"}),
    )
    .await;
    let (st, listed) = get(&format!("{u}/commands?origin=peer:{me}")).await;
    assert_eq!(st, 200);
    let ids: Vec<String> = listed["commands"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| s(&c["id"]))
        .collect();
    assert_eq!(ids, [s(&mine["command"]["id"])]);
}
