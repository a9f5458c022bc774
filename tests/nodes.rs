//! Several `cipc serve` nodes on one PostgreSQL database act as one broker.
//!
//! Every test starts two real `cipc serve --store postgres://...` processes
//! (A and B) on a fresh database and talks real HTTP (REST, SSE, MCP) to
//! both: a command sent on A is taken on B and its ack on A is seen on B;
//! long-polls parked on B (results, signals, channels) are released by
//! changes made on A; competing consumers on both nodes take every command
//! exactly once; concurrent channel senders on both nodes get gapless,
//! unique sequence numbers; a node killed with SIGKILL mid-hold has its
//! peer's command redelivered on the other node; a peer in contact with A
//! stays online on B; B's `/events` shows A's changes; a dashboard login on
//! A works on B (and a logout on B ends it on A); a stateless MCP client is
//! the same peer on both nodes; and a PostgreSQL restart under load loses
//! no message that was answered with a 2xx; and a node frozen (SIGSTOP)
//! while it holds the write turn stalls the other's writes only briefly,
//! with a clear 503, and both recover by themselves.
//!
//! Needs the PostgreSQL server `.ci/start-postgres` starts
//! (`CIPC_TEST_POSTGRES`, and `CIPC_TEST_POSTGRES_BIN` for the restart test);
//! outside CI, without it, every test returns early. Time limits here are
//! safety nets so a broken test fails instead of hanging, never timing claims.

mod common;

use common::mcp::call;
use common::postgres::{create_database, fresh_database, PrivateCluster};
use common::{connect, eventually, get, http, post, until_waiters, BinaryBroker};
use futures::StreamExt;
use rmcp::model::ProtocolVersion;
use rmcp::service::{serve_client_with_lifecycle, ClientLifecycleMode, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::RoleClient;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A safety net so a broken test fails instead of hanging; never a timing claim.
const LIMIT: Duration = Duration::from_secs(20);

/// Two nodes on one fresh database, started with `args` and `envs`
/// (`None` outside CI without a PostgreSQL test server).
async fn two_nodes(args: &[&str], envs: &[(&str, &str)]) -> Option<(BinaryBroker, BinaryBroker)> {
    let url = fresh_database().await?;
    Some(nodes_on(&url, args, envs))
}

/// Two nodes on the database at `url`.
fn nodes_on(url: &str, args: &[&str], envs: &[(&str, &str)]) -> (BinaryBroker, BinaryBroker) {
    let mut all = vec!["--store", url];
    all.extend_from_slice(args);
    let a = BinaryBroker::start(&all, envs);
    let b = BinaryBroker::start(&all, envs);
    (a, b)
}

/// Polls `f` until it says done or `limit` passes, and answers whether it
/// did with the last thing it saw (for state that settles asynchronously,
/// never for timing claims).
async fn settle<T, F, Fut>(limit: Duration, mut f: F) -> (bool, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (done, seen) = f().await;
        if done || tokio::time::Instant::now() > deadline {
            return (done, seen);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `base` shows command `id` acked; answers it as last seen.
async fn acked_on(base: &str, id: &str) -> (bool, Value) {
    settle(LIMIT, || async {
        let c = command(base, id).await;
        (c["status"] == "acked", c)
    })
    .await
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// Sends a command on `base` and answers its id.
async fn send(base: &str, target: &str, action: &str, params: Value) -> String {
    let (s, b) = post(
        &format!("{base}/commands/send"),
        json!({"target": target, "action": action, "params": params}),
    )
    .await;
    assert_eq!(s, 201, "send on {base}: {b}");
    text(&b["command"]["id"])
}

/// A command as `base` sees it now (a result wait that does not wait).
async fn command(base: &str, id: &str) -> Value {
    let (s, b) = get(&format!("{base}/commands/{id}/result?timeout=0")).await;
    assert_eq!(s, 200, "command {id} on {base}: {b}");
    b["command"].clone()
}

/// A peer's status as `base` sees it.
async fn peer_status(base: &str, id: &str) -> String {
    let (s, b) = get(&format!("{base}/peers/{id}")).await;
    assert_eq!(s, 200, "peer {id} on {base}: {b}");
    text(&b["peer"]["status"])
}

/// Spawns a GET (a long-poll) and answers (status, body).
fn spawn_get(url: String) -> tokio::task::JoinHandle<(u16, Value)> {
    tokio::spawn(async move { get(&url).await })
}

/// Awaits a spawned request within the safety limit.
async fn landed<T>(what: &str, h: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(LIMIT, h)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {LIMIT:?}"))
        .unwrap_or_else(|e| panic!("{what}: task failed: {e}"))
}

/// A channel's whole content as `base` sees it.
async fn messages(base: &str, channel: &str) -> Vec<Value> {
    let (s, b) = get(&format!(
        "{base}/channels/{channel}/messages?since=0&limit=1000"
    ))
    .await;
    assert_eq!(s, 200, "read {channel} on {base}: {b}");
    b["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array: {b}"))
        .clone()
}

#[tokio::test]
async fn a_command_sent_on_one_node_is_taken_and_acked_across_nodes() {
    let Some((a, b)) = two_nodes(&[], &[]).await else {
        return;
    };
    let worker = connect(&b.url, "worker").await;
    let waiting = spawn_get(format!("{}/commands/{worker}/wait?timeout=30000", b.url));
    until_waiters(&b.url, 1).await;

    let id = send(&a.url, "worker", "build", json!({"n": 7})).await;
    let (s, got) = landed("the wait on B", waiting).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        got["command"]["id"],
        json!(id),
        "B's waiter got A's command: {got}"
    );
    assert_eq!(got["command"]["deliveredTo"], json!(worker));
    assert_eq!(got["command"]["params"], json!({"n": 7}));
    assert_eq!(got["command"]["status"], "delivered");

    let (s, acked) = post(
        &format!("{}/commands/{id}/ack", a.url),
        json!({"result": {"artifact": "app.tar"}}),
    )
    .await;
    assert_eq!(s, 200, "ack on A of a command taken on B: {acked}");
    assert_eq!(acked["command"]["status"], "acked");

    let (seen, last) = acked_on(&b.url, &id).await;
    assert!(seen, "B never saw the ack made on A: {last}");
    assert_eq!(last["result"], json!({"artifact": "app.tar"}));
    assert_eq!(last["deliveredTo"], json!(worker));
}

#[tokio::test]
async fn waits_parked_on_one_node_are_released_by_changes_on_the_other() {
    let Some((a, b)) = two_nodes(&[], &[]).await else {
        return;
    };

    // A result wait on B, released by an ack on A.
    let worker = connect(&a.url, "worker").await;
    let id = send(&a.url, "worker", "build", json!({})).await;
    let (s, took) = get(&format!("{}/commands/{worker}/wait?timeout=5000", a.url)).await;
    assert_eq!(s, 200);
    assert_eq!(took["command"]["id"], json!(id), "{took}");
    let result = spawn_get(format!("{}/commands/{id}/result?timeout=30000", b.url));
    until_waiters(&b.url, 1).await;
    assert!(!result.is_finished(), "the result wait is parked on B");
    let (s, _) = post(
        &format!("{}/commands/{id}/ack", a.url),
        json!({"result": "done"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, r) = landed("the result wait on B", result).await;
    assert_eq!(s, 200, "{r}");
    assert_ne!(r["timedOut"], true, "released, not timed out: {r}");
    assert_eq!(r["command"]["status"], "acked", "{r}");
    assert_eq!(r["command"]["result"], "done");

    // A signal wait on B, released by an emit on A.
    let signal = spawn_get(format!("{}/signals/deployed/wait?timeout=30000", b.url));
    until_waiters(&b.url, 1).await;
    assert!(!signal.is_finished(), "the signal wait is parked on B");
    let (s, e) = post(
        &format!("{}/signals/deployed", a.url),
        json!({"data": {"version": 3}}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    let (s, r) = landed("the signal wait on B", signal).await;
    assert_eq!(s, 200, "{r}");
    assert_ne!(r["timedOut"], true, "released, not timed out: {r}");
    assert_eq!(r["signal"]["emitted"], true, "{r}");
    assert_eq!(r["signal"]["data"], json!({"version": 3}));

    // A channel wait on B, released by a send on A.
    let channel = spawn_get(format!(
        "{}/channels/news/messages?since=0&timeout=30000",
        b.url
    ));
    until_waiters(&b.url, 1).await;
    assert!(!channel.is_finished(), "the channel wait is parked on B");
    let (s, m) = post(
        &format!("{}/channels/news/send", a.url),
        json!({"headline": "hi"}),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let (s, r) = landed("the channel wait on B", channel).await;
    assert_eq!(s, 200, "{r}");
    assert_ne!(r["timedOut"], true, "released, not timed out: {r}");
    let got = r["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(got.len(), 1, "{r}");
    assert_eq!(got[0]["seq"], 1);
    assert_eq!(got[0]["data"], json!({"headline": "hi"}));
}

/// One delivery a worker saw: (command id, attempt, redelivered).
type Delivery = (String, u64, bool);

#[tokio::test]
async fn competing_consumers_on_both_nodes_take_every_command_exactly_once() {
    const COMMANDS: usize = 150;
    let Some((a, b)) = two_nodes(&[], &[]).await else {
        return;
    };
    let acked = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let mut workers = Vec::new();
    for i in 0..6 {
        let base = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let me = connect(&base, "pool").await;
        let (acked, seen) = (acked.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked.load(Ordering::SeqCst) < COMMANDS {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "worker {i} gave up: only {} of {COMMANDS} acked",
                    acked.load(Ordering::SeqCst)
                );
                let (s, got) = get(&format!("{base}/commands/{me}/wait?timeout=500")).await;
                assert_eq!(s, 200, "worker {i} wait on {base}: {got}");
                let c = &got["command"];
                if c.is_null() {
                    continue;
                }
                let id = text(&c["id"]);
                seen.lock().expect("lock").push((
                    id.clone(),
                    c["attempt"].as_u64().unwrap_or(0),
                    c["redelivered"].as_bool().unwrap_or(true),
                ));
                let (s, r) = post(
                    &format!("{base}/commands/{id}/ack"),
                    json!({"result": {"by": i}}),
                )
                .await;
                assert_eq!(s, 200, "worker {i} ack of {id} on {base}: {r}");
                acked.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Two senders, one per node, at the same time.
    let mut senders = Vec::new();
    for base in [a.url.clone(), b.url.clone()] {
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..COMMANDS / 2 {
                ids.push(send(&base, "pool", "job", json!({"n": n})).await);
            }
            ids
        }));
    }
    let mut sent = HashSet::new();
    for s in senders {
        for id in landed("a sender", s).await {
            assert!(sent.insert(id.clone()), "two sends answered one id {id}");
        }
    }
    assert_eq!(sent.len(), COMMANDS);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(70), w)
            .await
            .expect("workers finish")
            .expect("a worker failed");
    }

    let seen = seen.lock().expect("lock").clone();
    let mut taken: HashMap<&str, usize> = HashMap::new();
    for (id, _, _) in &seen {
        *taken.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = taken.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let got: HashSet<String> = taken.keys().map(|k| (*k).to_string()).collect();
    assert_eq!(got, sent, "every command sent, and only those, was taken");
    let again: Vec<_> = seen.iter().filter(|(_, at, re)| *at != 1 || *re).collect();
    assert!(again.is_empty(), "first deliveries only: {again:?}");
    for base in [&a.url, &b.url] {
        for id in &sent {
            let (ok, last) = acked_on(base, id).await;
            assert!(ok, "{id} is not acked on {base}: {last}");
            assert_eq!(last["attempt"], 1, "{last}");
        }
    }
}

#[tokio::test]
async fn concurrent_channel_senders_on_both_nodes_get_gapless_unique_seqs() {
    const PER_SENDER: u64 = 50;
    let Some((a, b)) = two_nodes(&[], &[]).await else {
        return;
    };
    let mut senders = Vec::new();
    for sender in 0..4u64 {
        let base = if sender % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        senders.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..PER_SENDER {
                let (s, m) = post(
                    &format!("{base}/channels/race/send"),
                    json!({"sender": sender, "n": n}),
                )
                .await;
                assert_eq!(s, 201, "send {sender}/{n} on {base}: {m}");
                assert_eq!(m["message"]["data"], json!({"sender": sender, "n": n}));
                let seq = m["message"]["seq"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no seq: {m}"));
                seqs.push((seq, json!({"sender": sender, "n": n})));
            }
            seqs
        }));
    }
    // What each send was answered: seq -> data.
    let mut answered = BTreeMap::new();
    for s in senders {
        for (seq, data) in landed("a sender", s).await {
            if let Some(old) = answered.insert(seq, data.clone()) {
                panic!("seq {seq} answered twice: {old} and {data}");
            }
        }
    }
    let total = 4 * PER_SENDER;
    assert_eq!(
        answered.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "the sends were answered seqs 1..={total}"
    );

    for base in [&a.url, &b.url] {
        let (complete, read) = settle(LIMIT, || async {
            let read = messages(base, "race").await;
            (read.len() as u64 >= total, read)
        })
        .await;
        assert!(complete, "{base} shows {} of {total} messages", read.len());
        let seqs: Vec<u64> = read.iter().filter_map(|m| m["seq"].as_u64()).collect();
        assert_eq!(
            seqs,
            (1..=total).collect::<Vec<_>>(),
            "{base} reads seqs 1..={total}, in order, once each"
        );
        for m in &read {
            let seq = m["seq"].as_u64().expect("seq");
            assert_eq!(
                m["data"], answered[&seq],
                "{base}: message {seq} is what its send was answered"
            );
        }
    }
    // Each node counts the commits it made: together they hold every send
    // (and the writes of their start-up), in at most one commit per send.
    let mut commits = 0;
    let mut writes = 0;
    for base in [&a.url, &b.url] {
        let (_, status) = get(&format!("{base}/status")).await;
        commits += status["store"]["commits"]
            .as_u64()
            .unwrap_or_else(|| panic!("{base} reports its commits: {status}"));
        writes += status["store"]["writes"].as_u64().unwrap_or(0);
    }
    assert!(writes >= total, "{writes} writes hold the {total} sends");
    assert!(
        commits >= 1 && commits <= writes,
        "{commits} commits for {writes} writes"
    );
}

#[tokio::test]
async fn a_command_held_on_a_killed_node_is_redelivered_on_the_other() {
    let Some((a, b)) = two_nodes(&["--stale-after", "1s", "--offline-after", "2s"], &[]).await
    else {
        return;
    };
    let w1 = connect(&a.url, "worker").await;
    let w2 = connect(&b.url, "worker").await;

    // W1 takes the command through A and keeps in touch with A (a second
    // long-poll), without acking.
    let taking = spawn_get(format!("{}/commands/{w1}/wait?timeout=30000", a.url));
    until_waiters(&a.url, 1).await;
    let id = send(&b.url, "worker", "migrate", json!({"db": "main"})).await;
    let (s, took) = landed("W1's wait on A", taking).await;
    assert_eq!(s, 200, "{took}");
    assert_eq!(took["command"]["id"], json!(id), "{took}");
    assert_eq!(took["command"]["attempt"], 1);
    // (This request dies with A: its error is expected, so it is ignored.)
    let contact = http()
        .get(format!("{}/commands/{w1}/wait?timeout=30000", a.url))
        .send();
    let _w1_contact = tokio::spawn(async move { drop(contact.await) });

    // W2 waits on B for the same role, in a loop of long-polls.
    let w2_url = format!("{}/commands/{w2}/wait?timeout=5000", b.url);
    let w2_wait = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (s, got) = get(&w2_url).await;
            assert_eq!(s, 200, "W2's wait on B: {got}");
            if !got["command"].is_null() {
                return got["command"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "W2 got nothing in 30 s"
            );
        }
    });

    // While A lives and W1 keeps in touch with it, B leaves W1 its command,
    // for longer than --offline-after.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = command(&b.url, &id).await;
        assert_eq!(c["status"], "delivered", "still W1's: {c}");
        assert_eq!(c["deliveredTo"], json!(w1), "{c}");
    }
    assert!(!w2_wait.is_finished(), "W2 took nothing while W1 held it");

    a.kill9();
    let got = landed("W2's wait on B after A died", w2_wait).await;
    assert_eq!(got["id"], json!(id), "W2 got W1's command: {got}");
    assert_eq!(got["redelivered"], true, "{got}");
    assert_eq!(got["attempt"], 2, "{got}");
    assert_eq!(got["deliveredTo"], json!(w2), "{got}");
    assert_eq!(peer_status(&b.url, &w1).await, "offline");
    let (s, r) = post(
        &format!("{}/commands/{id}/ack", b.url),
        json!({"result": "migrated"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["command"]["status"], "acked");
}

#[tokio::test]
async fn a_peer_in_touch_with_one_node_is_online_on_the_other() {
    let Some((a, b)) = two_nodes(&["--stale-after", "1s", "--offline-after", "2s"], &[]).await
    else {
        return;
    };
    let p = connect(&a.url, "watcher").await;
    // The long-poll outlasts the checks several times over, however slowly
    // they run: it is what keeps the peer online.
    let waiting = spawn_get(format!("{}/commands/{p}/wait?timeout=12000", a.url));
    until_waiters(&a.url, 1).await;
    // For longer than --stale-after (and --offline-after), B sees it online.
    let started = tokio::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(3000) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        i += 1;
        assert_eq!(
            peer_status(&b.url, &p).await,
            "online",
            "check {i}: a peer long-polling A is online on B"
        );
        assert_eq!(peer_status(&a.url, &p).await, "online", "check {i} on A");
    }
    let (s, r) = landed("the long-poll on A", waiting).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["timedOut"], true, "{r}");
    // Once it is silent, B says so too (the check above was not vacuous).
    let silent = eventually(LIMIT, || {
        let (base, p) = (b.url.clone(), p.clone());
        async move { peer_status(&base, &p).await != "online" }
    })
    .await;
    assert!(silent, "a silent peer stays online on B forever");
}

/// Reads SSE blocks from `stream` until one is an `event` whose data contains
/// `needle`; answers that block's data.
async fn find_event<S>(stream: &mut S, buf: &mut String, event: &str, needle: &str) -> Value
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let (mut ev, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().into();
                }
                if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if ev == event && data.contains(needle) {
                return serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {event} event with {needle} within {LIMIT:?}"))
            .unwrap_or_else(|| {
                panic!("the event stream ended before a {event} event with {needle}")
            })
            .expect("read the event stream");
        buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
    }
}

#[tokio::test]
async fn the_event_stream_of_one_node_shows_changes_made_on_the_other() {
    let Some((a, b)) = two_nodes(&[], &[]).await else {
        return;
    };
    let r = http()
        .get(format!("{}/events", b.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /events on B");
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    // The subscription is registered before anything changes.
    until_waiters(&b.url, 1).await;

    let peer = connect(&a.url, "builder").await;
    let id = send(&a.url, "builder", "compile", json!({"crate": "cipc"})).await;
    let p = find_event(&mut stream, &mut buf, "peer", &peer).await;
    assert_eq!(p["id"], json!(peer), "{p}");
    assert_eq!(p["role"], "builder", "{p}");
    let c = find_event(&mut stream, &mut buf, "command", &id).await;
    assert_eq!(c["id"], json!(id), "{c}");
    assert_eq!(c["action"], "compile", "{c}");
    assert_eq!(c["status"], "pending", "{c}");
}

#[tokio::test]
async fn a_dashboard_login_on_one_node_opens_the_other_and_a_logout_closes_both() {
    const TOKEN: &str = "nodes-test-token-0123456789abcdef";
    let Some((a, b)) = two_nodes(&[], &[("CIPC_TOKEN", TOKEN)]).await else {
        return;
    };
    let client = http();
    let status = |base: String, cookie: Option<String>| {
        let client = client.clone();
        async move {
            let mut rb = client.get(format!("{base}/peers"));
            if let Some(c) = cookie {
                rb = rb.header("cookie", c);
            }
            rb.send().await.expect("GET /peers").status().as_u16()
        }
    };
    assert_eq!(
        status(b.url.clone(), None).await,
        401,
        "B is closed without a token"
    );

    let r = client
        .post(format!("{}/dashboard/login", a.url))
        .json(&json!({"token": TOKEN}))
        .send()
        .await
        .expect("login on A");
    assert_eq!(r.status(), 200);
    let set = r
        .headers()
        .get("set-cookie")
        .expect("the login sets a cookie")
        .to_str()
        .expect("ASCII cookie")
        .to_string();
    assert!(set.starts_with("cipc_session="), "{set}");
    let pair = set.split(';').next().expect("name=value").to_string();

    assert_eq!(
        status(a.url.clone(), Some(pair.clone())).await,
        200,
        "A takes its own cookie"
    );
    let (opens, last) = settle(LIMIT, || {
        let f = status(b.url.clone(), Some(pair.clone()));
        async move {
            let s = f.await;
            (s == 200, s)
        }
    })
    .await;
    assert!(opens, "A's session cookie does not open B: {last}");
    assert_eq!(
        status(b.url.clone(), Some("cipc_session=forged".into())).await,
        401,
        "a made-up session opens nothing"
    );

    let r = client
        .post(format!("{}/dashboard/logout", b.url))
        .header("cookie", &pair)
        .send()
        .await
        .expect("logout on B");
    assert_eq!(r.status(), 200);
    assert_eq!(
        status(b.url.clone(), Some(pair.clone())).await,
        401,
        "B forgot it"
    );
    let (closed, last) = settle(LIMIT, || {
        let f = status(a.url.clone(), Some(pair.clone()));
        async move {
            let s = f.await;
            (s == 401 || s == 403, s)
        }
    })
    .await;
    assert!(
        closed,
        "the cookie logged out on B still works on A: {last}"
    );
}

type Mcp = RunningService<RoleClient, ()>;

/// rmcp's client on `base`'s `/mcp`, speaking the stateless 2026-07-28 protocol.
async fn stateless_mcp(base: &str) -> Mcp {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")),
    );
    serve_client_with_lifecycle(
        (),
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("MCP start-up over /mcp")
}

#[tokio::test]
async fn a_stateless_mcp_peer_is_the_same_peer_on_both_nodes() {
    let Some((a, b)) = two_nodes(&[], &[]).await else {
        return;
    };
    let on_a = stateless_mcp(&a.url).await;
    let on_b = stateless_mcp(&b.url).await;
    assert_eq!(
        on_b.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    let (t, me, err) = call(&on_a, "connect", json!({"role": "reviewer"})).await;
    assert!(!err, "{t}");
    let id = text(&me["peer"]["id"]);
    let key = text(&me["peerKey"]);

    // Through B, with the key: the same peer.
    let (known, who) = settle(LIMIT, || async {
        let who = call(&on_b, "whoami", json!({"peer_key": key})).await.1;
        (who["registered"] == true, who)
    })
    .await;
    assert!(known, "B does not know the peer A registered: {who}");
    assert_eq!(who["peer"]["id"], json!(id));

    // It waits on B for a command sent on A.
    let on_b = Arc::new(on_b);
    let waiter = {
        let (on_b, key) = (on_b.clone(), key.clone());
        tokio::spawn(async move {
            call(
                &on_b,
                "wait_for_command",
                json!({"timeout_seconds": 30, "peer_key": key}),
            )
            .await
        })
    };
    until_waiters(&b.url, 1).await;
    let cmd = send(&a.url, "reviewer", "review", json!({"pr": 42})).await;
    let (t, got, err) = landed("wait_for_command on B", waiter).await;
    assert!(!err, "{t}");
    assert_eq!(got["command"]["id"], json!(cmd), "{t}");
    assert_eq!(got["command"]["deliveredTo"], json!(id), "{got}");

    // Acked through A with the key, seen on B.
    let (t, _, err) = call(
        &on_a,
        "ack_command",
        json!({"command_id": cmd, "result": {"approved": true}, "peer_key": key}),
    )
    .await;
    assert!(!err, "{t}");
    let (seen, last) = acked_on(&b.url, &cmd).await;
    assert!(seen, "B never saw the MCP ack made on A: {last}");
    assert_eq!(last["result"], json!({"approved": true}));

    // One peer on both nodes, online.
    for base in [&a.url, &b.url] {
        let (_, peers) = get(&format!("{base}/peers")).await;
        let ids: Vec<_> = peers["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!(id)], "{base}: {peers}");
        assert_eq!(peer_status(base, &id).await, "online");
    }
}

/// One send of the restart test: which node, what it sent, what came back.
#[derive(Debug)]
struct Sent {
    node: usize,
    i: u64,
    status: u16,
    body: Value,
}

#[tokio::test]
async fn a_postgres_restart_under_load_loses_nothing_that_was_answered() {
    let Some(cluster) = PrivateCluster::start() else {
        return;
    };
    let url = create_database(&cluster.url()).await;
    let (a, b) = nodes_on(&url, &[], &[]);
    let nodes = [a.url.clone(), b.url.clone()];
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let mut log: Vec<Sent> = Vec::new();
    let mut i = 0u64;
    let send_one = |i: u64| {
        let node = (i % 2) as usize;
        let (client, base) = (client.clone(), nodes[node].clone());
        async move {
            let r = client
                .post(format!("{base}/channels/load/send"))
                .json(&json!({"i": i}))
                .send()
                .await
                .unwrap_or_else(|e| panic!("send {i} to node {node}: no answer: {e}"));
            let status = r.status().as_u16();
            let body = r.json().await.unwrap_or(Value::Null);
            Sent {
                node,
                i,
                status,
                body,
            }
        }
    };

    for _ in 0..20 {
        let s = send_one(i).await;
        i += 1;
        assert_eq!(s.status, 201, "before the outage: {s:?}");
        log.push(s);
    }

    // Long-polls open during the outage (on a channel nobody writes to).
    let waits: Vec<_> = nodes
        .iter()
        .map(|base| {
            // Long enough to outlast the outage and the restart several
            // times over on a loaded machine.
            let url = format!("{base}/channels/quiet/messages?since=0&timeout=20000");
            tokio::spawn(async move {
                let (s, r) = get(&url).await;
                (s, r, tokio::time::Instant::now())
            })
        })
        .collect();
    for base in &nodes {
        until_waiters(base, 1).await;
    }

    cluster.stop();
    let down = tokio::time::Instant::now();
    while down.elapsed() < Duration::from_secs(1) {
        let s = send_one(i).await;
        i += 1;
        log.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed: Vec<&Sent> = log.iter().filter(|s| s.status >= 300).collect();
    assert!(
        !failed.is_empty(),
        "sends kept succeeding with PostgreSQL down"
    );
    for s in &failed {
        assert_eq!(s.status, 503, "an outage is a 503: {s:?}");
        assert_eq!(s.body["error"]["code"], "unavailable", "{s:?}");
    }
    assert!(
        failed
            .iter()
            .any(|s| s.body["error"]["reason"] == "store_unreachable"),
        "a write refused before it changed anything says store_unreachable: {failed:?}"
    );
    for node in [&a.url, &b.url] {
        let (status, body) = get(&format!("{node}/healthz")).await;
        assert_eq!(status, 503, "/healthz tells of the outage: {body}");
        assert_eq!(body["error"]["reason"], "store_unreachable", "{body}");
    }

    cluster.start_again();
    let up = tokio::time::Instant::now();
    let mut back = [false, false];
    while !(back[0] && back[1]) {
        assert!(
            up.elapsed() < LIMIT,
            "the nodes did not come back within {LIMIT:?} of PostgreSQL (back: {back:?}); last: {:?}",
            log.last()
        );
        let s = send_one(i).await;
        i += 1;
        if s.status == 201 {
            back[s.node] = true;
        } else {
            assert_eq!(s.status, 503, "while reconnecting: {s:?}");
            assert_eq!(s.body["error"]["code"], "unavailable", "{s:?}");
        }
        log.push(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "restart test: {} sends, {} refused while PostgreSQL was down or coming back; both nodes answered again {:?} after the restart",
        log.len(),
        log.iter().filter(|s| s.status != 201).count(),
        up.elapsed()
    );
    for _ in 0..10 {
        let s = send_one(i).await;
        i += 1;
        assert_eq!(s.status, 201, "after the nodes came back: {s:?}");
        log.push(s);
    }

    for (n, w) in waits.into_iter().enumerate() {
        let (s, r, ended) = landed("a long-poll open during the outage", w).await;
        assert_eq!(s, 200, "the long-poll on node {n} failed: {r}");
        assert_eq!(r["timedOut"], true, "{r}");
        assert!(
            ended > up,
            "the long-poll on node {n} ended before PostgreSQL came back: {r}"
        );
    }

    // Every answered message, by its seq and data, on both nodes.
    let mut answered: BTreeMap<u64, Value> = BTreeMap::new();
    for s in log.iter().filter(|s| s.status == 201) {
        let seq = s.body["message"]["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {s:?}"));
        assert_eq!(s.body["message"]["data"], json!({"i": s.i}), "{s:?}");
        if let Some(old) = answered.insert(seq, json!({"i": s.i})) {
            panic!("seq {seq} answered twice: {old} and {s:?}");
        }
    }
    for base in &nodes {
        let (all, read) = settle(LIMIT, || async {
            let read = messages(base, "load").await;
            let have: HashMap<u64, &Value> = read
                .iter()
                .filter_map(|m| Some((m["seq"].as_u64()?, &m["data"])))
                .collect();
            let all = answered.iter().all(|(seq, d)| have.get(seq) == Some(&d));
            (all, read)
        })
        .await;
        let have: HashMap<u64, Value> = read
            .iter()
            .filter_map(|m| Some((m["seq"].as_u64()?, m["data"].clone())))
            .collect();
        let missing: Vec<_> = answered
            .iter()
            .filter(|(seq, d)| have.get(seq) != Some(d))
            .collect();
        assert!(all, "{base} lost answered messages: {missing:?}");
        let seqs: Vec<u64> = read.iter().filter_map(|m| m["seq"].as_u64()).collect();
        let unique: HashSet<_> = seqs.iter().collect();
        assert_eq!(
            unique.len(),
            seqs.len(),
            "{base}: seqs are unique: {seqs:?}"
        );
    }
}

/// A channel's whole content as `base` sees it, however long (in pages).
async fn all_messages(base: &str, channel: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let since = all.last().and_then(|m| m["seq"].as_u64()).unwrap_or(0);
        let (s, b) = get(&format!(
            "{base}/channels/{channel}/messages?since={since}&limit=1000"
        ))
        .await;
        assert_eq!(s, 200, "read {channel} on {base}: {b}");
        let page = b["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("no messages array: {b}"))
            .clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The write turn's advisory lock as `pg_locks` shows it: a bigint key is
/// split into `classid` (high half) and `objid` (low half), `objsubid` 1.
const TURN_LOCK_CLASSID: u32 = 0x6369_7063;
const TURN_LOCK_OBJID: u32 = 1;

/// Sends `sig` to a node's process.
#[allow(unsafe_code)] // kill(2) on our own child
fn signal(node: &BinaryBroker, sig: libc::c_int) {
    let pid = i32::try_from(node.child.id()).expect("a pid fits in i32");
    let done = unsafe { libc::kill(pid, sig) };
    assert_eq!(done, 0, "kill({pid}, {sig})");
}

/// Whether a session of the node named `app` (its `application_name`)
/// holds the write turn now.
async fn holds_turn(pg: &tokio_postgres::Client, app: &str) -> bool {
    let row = pg
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1
               AND a.application_name = $3",
            &[
                &i64::from(TURN_LOCK_CLASSID),
                &i64::from(TURN_LOCK_OBJID),
                &app,
            ],
        )
        .await
        .expect("read pg_locks");
    row.get::<_, i64>(0) > 0
}

#[tokio::test]
async fn a_node_frozen_holding_the_write_turn_stalls_the_other_only_briefly() {
    // PostgreSQL ends a silent holder's turn after TURN; a write waits for
    // the turn at most TURN / 2, then answers 503 write_turn_stalled.
    const TURN: Duration = Duration::from_secs(6);
    let Some(url) = fresh_database().await else {
        return;
    };
    // A's sessions carry a name of their own, to tell its lock in pg_locks.
    let app_a = format!(
        "cipc-frozen-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url_a = format!("{url}?application_name={app_a}");
    let a = BinaryBroker::start(&["--store", &url_a, "--turn-timeout", "6s"], &[]);
    let b = BinaryBroker::start(&["--store", &url, "--turn-timeout", "6s"], &[]);
    let nodes = [a.url.clone(), b.url.clone()];
    let (pg, pg_conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(pg_conn);
    // Requests to A wait as long as it is frozen: no client timeout short of it.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let send_one = {
        let (client, nodes, counter, log) =
            (client.clone(), nodes.clone(), counter.clone(), log.clone());
        move |node: usize| {
            let (client, base, log) = (client.clone(), nodes[node].clone(), log.clone());
            let i = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let r = client
                    .post(format!("{base}/channels/frozen/send"))
                    .json(&json!({"i": i}))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("send {i} to node {node}: no answer: {e}"));
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let sent = Sent {
                    node,
                    i,
                    status,
                    body: body.clone(),
                };
                log.lock().expect("lock").push(sent);
                (status, body)
            }
        }
    };

    // Writers keep A taking write turns.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (stop, send_one) = (stop.clone(), send_one.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                send_one(0).await;
            }
        }));
    }
    // Freeze A at a moment when it holds the turn.
    let mut frozen = None;
    for attempt in 0..300u64 {
        signal(&a, libc::SIGSTOP);
        // What A sent before it stopped has reached PostgreSQL by now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if holds_turn(&pg, &app_a).await {
            frozen = Some(tokio::time::Instant::now());
            break;
        }
        signal(&a, libc::SIGCONT);
        tokio::time::sleep(Duration::from_millis(20 + attempt % 7 * 7)).await;
    }
    let frozen = frozen.expect("A never held the write turn when stopped");
    stop.store(true, Ordering::SeqCst);
    assert!(holds_turn(&pg, &app_a).await, "a stopped A keeps the turn");

    // B: writes are refused as stalled, within seconds, with the reason;
    // several at once are refused together (the wait queued on B counts),
    // not one wait after another.
    let asked = tokio::time::Instant::now();
    let burst: Vec<_> = (0..6).map(|_| tokio::spawn(send_one(1))).collect();
    let mut refused_after = Duration::ZERO;
    for write in burst {
        let (status, body) = landed("a write on B while A is frozen", write).await;
        refused_after = refused_after.max(asked.elapsed());
        assert_eq!(
            status, 503,
            "a write on B while frozen A holds the turn: {body}"
        );
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert_eq!(body["error"]["reason"], "write_turn_stalled", "{body}");
        let message = text(&body["error"]["message"]);
        assert!(
            message.contains("another node holds the write turn")
                && message.contains("nothing was changed")
                && message.contains("retry"),
            "the message says who stalls, that nothing changed, and that it recovers: {message}"
        );
    }
    // Each waits half of TURN at most; one after another would be 3 TURN.
    assert!(
        refused_after < TURN,
        "B answered the stalled writes only after {refused_after:?}"
    );
    let (status, health) = get(&format!("{}/healthz", b.url)).await;
    assert_eq!(status, 503, "/healthz on B tells of the stall: {health}");
    assert_eq!(health["error"]["reason"], "write_turn_stalled", "{health}");

    // B recovers by itself, with A still frozen: PostgreSQL ends A's turn.
    let mut recovered = None;
    while recovered.is_none() {
        assert!(
            frozen.elapsed() < TURN * 4,
            "B still cannot write {:?} after A froze",
            frozen.elapsed()
        );
        let (status, body) = send_one(1).await;
        if status == 201 {
            recovered = Some(frozen.elapsed());
        } else {
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["reason"], "write_turn_stalled", "{body}");
        }
    }
    let recovered = recovered.expect("set above");
    assert!(!holds_turn(&pg, &app_a).await, "PostgreSQL ended A's turn");
    let healthy = eventually(LIMIT, || {
        let base = b.url.clone();
        async move { get(&format!("{base}/healthz")).await.0 == 200 }
    })
    .await;
    assert!(healthy, "/healthz on B stays 503 after the turn moved on");
    for _ in 0..5 {
        let (status, body) = send_one(1).await;
        assert_eq!(status, 201, "B while A is still frozen: {body}");
    }

    // A resumes, finds its turn gone, and recovers by itself.
    signal(&a, libc::SIGCONT);
    let resumed = tokio::time::Instant::now();
    for w in writers {
        landed("a writer on A", w).await;
    }
    let mut back = false;
    while !back {
        assert!(
            resumed.elapsed() < LIMIT,
            "A did not write again within {LIMIT:?} of SIGCONT"
        );
        let (status, body) = send_one(0).await;
        back = status == 201;
        if !back {
            assert_eq!(status, 503, "A coming back: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let healthy = eventually(LIMIT, || {
        let base = a.url.clone();
        async move { get(&format!("{base}/healthz")).await.0 == 200 }
    })
    .await;
    assert!(healthy, "/healthz on A stays 503 after it resumed");
    for n in 0..10 {
        let (status, body) = send_one(n % 2).await;
        assert_eq!(status, 201, "after A came back, node {}: {body}", n % 2);
    }
    let log = std::mem::take(&mut *log.lock().expect("lock"));
    eprintln!(
        "frozen-turn test: B refused a write as stalled after {refused_after:?}, wrote again {recovered:?} after A froze (--turn-timeout {TURN:?}); A wrote again {:?} after SIGCONT; {} sends, {} refused",
        resumed.elapsed(),
        log.len(),
        log.iter().filter(|s| s.status != 201).count()
    );

    // Every write answered 2xx, on either node, is there on both, once.
    let mut answered: BTreeMap<u64, Value> = BTreeMap::new();
    for s in &log {
        if s.status != 201 {
            assert_eq!(s.status, 503, "{s:?}");
            continue;
        }
        let seq = s.body["message"]["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {s:?}"));
        if let Some(old) = answered.insert(seq, json!({"i": s.i})) {
            panic!("seq {seq} answered twice: {old} and {s:?}");
        }
    }
    for base in &nodes {
        let (all, read) = settle(LIMIT, || async {
            let read = all_messages(base, "frozen").await;
            let have: HashMap<u64, &Value> = read
                .iter()
                .filter_map(|m| Some((m["seq"].as_u64()?, &m["data"])))
                .collect();
            (
                answered.iter().all(|(seq, d)| have.get(seq) == Some(&d)),
                read,
            )
        })
        .await;
        assert!(all, "{base} lacks answered writes: {read:?}");
        let seqs: Vec<u64> = read.iter().filter_map(|m| m["seq"].as_u64()).collect();
        let unique: HashSet<_> = seqs.iter().collect();
        assert_eq!(
            unique.len(),
            seqs.len(),
            "{base}: seqs are unique: {seqs:?}"
        );
    }
}

#[tokio::test]
async fn a_hundred_racing_conflicting_lease_requests_on_two_nodes_grant_exactly_one() {
    let Some((a, b)) = two_nodes(&[], &[]).await else {
        return;
    };
    let nodes = [a.url.clone(), b.url.clone()];
    let mut peers = Vec::new();
    for i in 0..100 {
        peers.push((
            nodes[i % 2].clone(),
            connect(&nodes[i % 2], &format!("p{i}")).await,
        ));
    }
    // Every request overlaps every other (src/db/ holds src/db/schema.sql);
    // each comes from another peer, on either node, all at once.
    let racing = peers
        .into_iter()
        .enumerate()
        .map(|(i, (node, peer))| async move {
            let paths = if i % 3 == 0 {
                json!(["src/db/", format!("own/{i}.rs")])
            } else {
                json!(["src/db/schema.sql", format!("own/{i}.rs")])
            };
            let r = http()
                .post(format!("{node}/leases"))
                .header("X-Cipc-Peer", &peer)
                .json(&json!({"paths": paths, "repo": "github.com/acme/shop"}))
                .send()
                .await
                .expect("lease request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        });
    let answers = futures::future::join_all(racing).await;
    let granted: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| &b["lease"])
        .collect();
    assert_eq!(granted.len(), 1, "exactly one holder: {answers:?}");
    for (s, body) in &answers {
        if *s != 201 {
            assert_eq!(*s, 409, "{body}");
            assert_eq!(body["error"]["reason"], "lease_conflict", "{body}");
            assert_eq!(body["conflicts"][0]["id"], granted[0]["id"], "{body}");
        }
    }
    for node in &nodes {
        let (_, list) = get(&format!("{node}/leases")).await;
        assert_eq!(list["leases"], json!([granted[0]]), "on {node}");
    }
}

#[tokio::test]
async fn held_leases_survive_the_death_of_every_node() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let a = BinaryBroker::start(&["--store", &url], &[]);
    let ana = connect(&a.url, "backend").await;
    let lease_on = |base: &str, peer: &str, paths: Value| {
        http()
            .post(format!("{base}/leases"))
            .header("X-Cipc-Peer", peer)
            .json(&json!({"paths": paths, "repo": "github.com/acme/shop", "reason": "migrations"}))
            .send()
    };
    let r = lease_on(&a.url, &ana, json!(["src/db/"]))
        .await
        .expect("lease");
    assert_eq!(r.status(), 201);
    let held: Value = r.json().await.expect("json");
    a.kill9();

    // A new node on the same database: the lease is there, unchanged, and
    // still keeps others out.
    let b = BinaryBroker::start(&["--store", &url], &[]);
    let (_, all) = get(&format!("{}/leases", b.url)).await;
    assert_eq!(all["leases"], json!([held["lease"]]), "{all}");
    let bob = connect(&b.url, "frontend").await;
    let r = lease_on(&b.url, &bob, json!(["src/db/x.sql"]))
        .await
        .expect("lease");
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["reason"], "lease_conflict", "{e}");
}
