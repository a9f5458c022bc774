//! A loaded durable broker killed with `kill -9`, again and again: whatever a
//! client ever saw (a message and its seq, a command's result) is still there,
//! unchanged, after every restart, and no seq is ever handed out twice.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What clients saw, to hold the broker to after each crash.
#[derive(Default, Clone)]
struct Seen {
    /// seq -> data, as answered to writers or shown to the follower.
    messages: BTreeMap<u64, Value>,
    /// command id -> result, once a sender saw it acked.
    results: BTreeMap<String, Value>,
}

impl Seen {
    /// Records a message; panics if its seq was seen with other data.
    fn message(&mut self, seq: u64, data: Value, who: &str) {
        if let Some(old) = self.messages.insert(seq, data.clone()) {
            assert_eq!(old, data, "{who} saw seq {seq} reused for other data");
        }
    }
}

/// Writers, a follower and a command loop against `u` until `stop`.
async fn load(u: String, seen: Arc<Mutex<Seen>>, stop: tokio_util::sync::CancellationToken) {
    let mut tasks = Vec::new();
    for w in 0..3 {
        let (u, seen, stop) = (u.clone(), seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let data = json!({"w": w, "i": i});
                let Ok(r) = http()
                    .post(format!("{u}/channels/log/send"))
                    .json(&data)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status().as_u16() == 201 {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    if let Some(seq) = v["message"]["seq"].as_u64() {
                        seen.lock().expect("seen").message(seq, data, "a writer");
                    }
                }
            }
        }));
    }
    {
        // The follower: long-polls for what comes after the last seq it saw.
        let (u, seen, stop) = (u.clone(), seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut since = seen
                .lock()
                .expect("seen")
                .messages
                .keys()
                .last()
                .copied()
                .unwrap_or(0);
            while !stop.is_cancelled() {
                let url = format!("{u}/channels/log/messages?since={since}&timeout=500");
                let Ok(r) = http().get(url).send().await else {
                    return;
                };
                let v: Value = r.json().await.unwrap_or(Value::Null);
                for m in v["messages"].as_array().cloned().unwrap_or_default() {
                    let Some(seq) = m["seq"].as_u64() else {
                        continue;
                    };
                    seen.lock()
                        .expect("seen")
                        .message(seq, m["data"].clone(), "the follower");
                    since = since.max(seq);
                }
            }
        }));
    }
    {
        // Commands: sent, taken, acked; a sender that sees the result records it.
        let (u, seen, stop) = (u.clone(), seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (st, p) = post(
                &format!("{u}/peers/connect"),
                json!({"role": "crash-worker"}),
            )
            .await;
            if st != 201 {
                return;
            }
            let me = p["peer"]["id"].as_str().unwrap_or_default().to_string();
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let Ok(r) = http()
                    .post(format!("{u}/commands/send"))
                    .json(&json!({"target": "crash-worker", "action": "job"}))
                    .send()
                    .await
                else {
                    return;
                };
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let Some(id) = v["command"]["id"].as_str().map(str::to_string) else {
                    continue;
                };
                let Ok(r) = http()
                    .get(format!("{u}/commands/{me}/wait?timeout=2000"))
                    .send()
                    .await
                else {
                    return;
                };
                let w: Value = r.json().await.unwrap_or(Value::Null);
                let Some(taken) = w["command"]["id"].as_str() else {
                    continue;
                };
                let result = json!({"n": n});
                let Ok(r) = http()
                    .post(format!("{u}/commands/{taken}/ack"))
                    .json(&json!({"result": result}))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status().as_u16() == 200 && taken == id {
                    let (_, c) = get(&format!("{u}/commands/{id}/result?timeout=0")).await;
                    if c["command"]["status"] == "acked" {
                        seen.lock()
                            .expect("seen")
                            .results
                            .insert(id, c["command"]["result"].clone());
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Everything ever seen is still there, the same.
async fn check(u: &str, seen: &Seen) {
    let mut now: BTreeMap<u64, Value> = BTreeMap::new();
    let mut since = 0;
    loop {
        let (st, page) = get(&format!(
            "{u}/channels/log/messages?since={since}&limit=10000"
        ))
        .await;
        assert_eq!(st, 200, "{page}");
        let msgs = page["messages"].as_array().cloned().unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            if let Some(seq) = m["seq"].as_u64() {
                assert!(seq > since, "seqs only grow");
                now.insert(seq, m["data"].clone());
                since = seq;
            }
        }
    }
    for (seq, data) in &seen.messages {
        assert_eq!(
            now.get(seq),
            Some(data),
            "seq {seq} was seen, then undone or changed"
        );
    }
    for (id, result) in &seen.results {
        let (_, c) = get(&format!("{u}/commands/{id}/result?timeout=0")).await;
        assert_eq!(
            c["command"]["status"], "acked",
            "command {id} was seen acked"
        );
        assert_eq!(
            &c["command"]["result"], result,
            "command {id}'s result changed"
        );
    }
}

/// A durable broker that keeps every message (nothing is trimmed).
fn durable(dir: &std::path::Path) -> BinaryBroker {
    BinaryBroker::start(
        &[
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
            "--channel-retention",
            "1000000",
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_under_load_never_undoes_what_a_client_saw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Arc::new(Mutex::new(Seen::default()));
    for round in 0..5u64 {
        let b = durable(dir.path());
        let so_far = seen.lock().expect("seen").clone();
        check(&b.url, &so_far).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let loaded = tokio::spawn(load(b.url.clone(), seen.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        b.kill9(); // mid-load, whatever is in flight
        stop.cancel();
        let _ = loaded.await;
    }
    let b = durable(dir.path());
    let seen = seen.lock().expect("seen").clone();
    assert!(
        seen.messages.len() > 50,
        "the load ran: {} messages seen",
        seen.messages.len()
    );
    assert!(!seen.results.is_empty(), "commands were acked");
    check(&b.url, &seen).await;
}

/// Runs a second `cipc serve` on `dir`; its exit status and stderr (it must
/// end by itself: a broker that started would be killed after 20 s).
fn second_broker(dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir)
        .env_remove("CIPC_DATA_DIR")
        .env_remove("CIPC_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cipc serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_a_live_data_dir_refuses_to_start_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = BinaryBroker::durable(dir.path());
    let (st, _) = post(&format!("{}/channels/c/send", first.url), json!("one")).await;
    assert_eq!(st, 201);

    let (code, err) = second_broker(dir.path());
    assert_eq!(code, Some(1), "the second broker must stop at once: {err}");
    let pid = first.child.id();
    assert!(
        err.contains(&dir.path().display().to_string()),
        "names the dir: {err}"
    );
    assert!(
        err.contains(&format!("pid {pid}")),
        "names the holder: {err}"
    );
    assert!(err.contains("--data-dir"), "says what to do: {err}");

    // The first broker is untouched and keeps every write it answered.
    let (st, _) = post(&format!("{}/channels/c/send", first.url), json!("two")).await;
    assert_eq!(st, 201);
    let (_, page) = get(&format!("{}/channels/c/messages?since=0", first.url)).await;
    let data: Vec<Value> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(data, vec![json!("one"), json!("two")]);

    // kill -9 leaves no stale lock: the kernel freed it with the process.
    first.kill9();
    let next = BinaryBroker::durable(dir.path());
    let (_, page) = get(&format!("{}/channels/c/messages?since=0", next.url)).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2), "{page}");
}

/// The ids of the events the broker still keeps (`/events?since=0`), read
/// until `want` of them arrived.
async fn event_ids(u: &str, want: usize) -> Vec<u64> {
    use futures::StreamExt;
    let r = http()
        .get(format!("{u}/events?since=0"))
        .send()
        .await
        .expect("events");
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut ids = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while ids.len() < want {
            let Some(Ok(chunk)) = body.next().await else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk));
            ids = text
                .lines()
                .filter_map(|l| l.strip_prefix("id:"))
                .filter_map(|v| v.trim().parse().ok())
                .collect();
        }
    })
    .await;
    assert!(read.is_ok(), "only {} events arrived: {text}", ids.len());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_never_repeat_across_restarts_and_an_old_one_resyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = BinaryBroker::durable(dir.path());
    for role in ["a1", "a2"] {
        connect(&a.url, role).await;
    }
    let before = event_ids(&a.url, 2).await;
    a.kill9();

    let b = BinaryBroker::durable(dir.path());
    for role in ["b1", "b2", "b3"] {
        connect(&b.url, role).await;
    }
    let after = event_ids(&b.url, 3).await;
    let last_before = before.iter().max().copied().unwrap_or(0);
    assert!(
        after.iter().all(|id| *id > last_before),
        "ids after the restart {after:?} must all be new (before: {before:?})"
    );
    // A dashboard resuming with an id from before the restart is told to
    // refetch, rather than being handed new events under ids it has seen.
    let r = http()
        .get(format!("{}/events", b.url))
        .header("Last-Event-ID", last_before.to_string())
        .send()
        .await
        .expect("events");
    let mut body = r.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut body))
        .await
        .expect("an event in time")
        .expect("a chunk")
        .expect("bytes");
    let text = String::from_utf8_lossy(&first).to_string();
    assert!(text.contains("event: resync"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_a_crash_may_have_kept_from_its_taker_is_handed_to_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = BinaryBroker::durable(dir.path());
    let taker = connect(&a.url, "builder").await;
    let (_, sent) = post(
        &format!("{}/commands/send", a.url),
        json!({"target": "builder", "action": "build"}),
    )
    .await;
    let id = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, took) = get(&format!("{}/commands/{taker}/wait?timeout=5000", a.url)).await;
    assert_eq!(took["command"]["id"], json!(id));
    assert_eq!(took["command"]["attempt"], json!(1));
    // The broker dies; the taker cannot know whether its answer was the one
    // it got, so it waits again.
    a.kill9();

    let b = BinaryBroker::durable(dir.path());
    // Another peer of the role does not get it: it is still the taker's.
    let other = connect(&b.url, "builder").await;
    let (_, none) = get(&format!("{}/commands/{other}/wait?timeout=300", b.url)).await;
    assert_eq!(none["timedOut"], json!(true), "{none}");
    // The taker, waiting again, gets the same delivery at once.
    let (_, again) = get(&format!("{}/commands/{taker}/wait?timeout=5000", b.url)).await;
    assert_eq!(again["command"]["id"], json!(id), "{again}");
    assert_eq!(again["command"]["redelivered"], json!(true));
    assert_eq!(again["command"]["attempt"], json!(1), "the same delivery");
    // Once only: a further wait finds nothing.
    let (_, once) = get(&format!("{}/commands/{taker}/wait?timeout=300", b.url)).await;
    assert_eq!(once["timedOut"], json!(true), "{once}");
    let (st, acked) = http()
        .post(format!("{}/commands/{id}/ack", b.url))
        .header("X-Cipc-Peer", &taker)
        .json(&json!({"result": "built", "attempt": 1}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("ack");
    assert_eq!(st, 200, "{:?}", acked.text().await);

    // After a clean stop every answer was written: nothing is handed twice.
    let (_, sent) = post(
        &format!("{}/commands/send", b.url),
        json!({"target": "builder", "action": "test"}),
    )
    .await;
    let second = sent["command"]["id"].as_str().expect("id").to_string();
    let (_, took) = get(&format!("{}/commands/{taker}/wait?timeout=5000", b.url)).await;
    assert_eq!(took["command"]["id"], json!(second));
    assert!(b.terminate().success());
    let c = BinaryBroker::durable(dir.path());
    let (_, none) = get(&format!("{}/commands/{taker}/wait?timeout=300", c.url)).await;
    assert_eq!(none["timedOut"], json!(true), "{none}");
    let (_, held) = get(&format!("{}/commands/{second}/result?timeout=0", c.url)).await;
    assert_eq!(
        (
            held["command"]["status"].clone(),
            held["command"]["deliveredTo"].clone()
        ),
        (json!("delivered"), json!(taker))
    );
}
