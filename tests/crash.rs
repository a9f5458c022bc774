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
