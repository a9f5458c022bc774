//! Nothing is visible before it is durable (shared/DESIGN.md, principle 8):
//! while the store cannot commit, no answer, read, waiter or stream shows a
//! change that a crash would undo, and once it can, the broker starts over
//! from what the file holds, so no sequence number is ever shown twice.

mod common;

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// Takes SQLite's write lock from another connection, as a stalled disk would.
fn stall(dir: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(dir.join("cipc.db")).expect("open db");
    db.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    db
}

#[tokio::test]
async fn while_the_store_is_stalled_nobody_sees_what_is_not_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BinaryBroker::durable(dir.path());
    let u = b.url.clone();
    let worker = connect(&u, "backend").await;
    let (st, _) = post(&format!("{u}/channels/log/send"), json!("one")).await;
    assert_eq!(st, 201);

    // A follower of the channel's stream, from the start.
    let stream = http()
        .get(format!("{u}/channels/log/stream?since=0"))
        .send()
        .await
        .expect("stream");
    let stream = stream.bytes_stream();

    let db = stall(dir.path());
    let send = {
        let u = u.clone();
        tokio::spawn(async move {
            post(
                &format!("{u}/commands/send"),
                json!({"target": "backend", "action": "deploy", "dedupeKey": "d1"}),
            )
            .await
        })
    };
    let message = {
        let u = u.clone();
        tokio::spawn(async move { post(&format!("{u}/channels/log/send"), json!("two")).await })
    };
    // Readers and waiters that run while those are not saved.
    let take = {
        let u = u.clone();
        tokio::spawn(async move { get(&format!("{u}/commands/{worker}/wait?timeout=20000")).await })
    };
    // Time for those to reach the broker. Not a wait for a waiter that
    // `/status` could show instead: while a change is unsaved `/status`
    // itself answers 503, and the assertions below hold whichever of them
    // got there first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = get(&format!("{u}/channels/log/messages?since=1")).await;
    let retry = post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "deploy", "dedupeKey": "d1"}),
    )
    .await;

    let (send, message, take) = (
        send.await.expect("task"),
        message.await.expect("task"),
        take.await.expect("task"),
    );
    assert_eq!(send.0, 503, "the send is not answered as saved: {}", send.1);
    assert_eq!(message.0, 503, "{}", message.1);
    assert_ne!(
        retry.0 / 100,
        2,
        "a retry never confirms an unsaved command: {}",
        retry.1
    );
    assert_ne!(
        read.0 / 100,
        2,
        "a reader never sees seq 2 before it is saved: {}",
        read.1
    );
    assert!(
        take.0 != 200 || take.1["command"].is_null(),
        "no worker takes an unsaved command: {}",
        take.1
    );

    // The disk comes back: the broker starts over from the file.
    drop(db);
    let recovered = eventually(PATIENCE, || async {
        get(&format!("{u}/healthz")).await.0 == 200
    })
    .await;
    assert!(recovered);
    let (st, v) = get(&format!("{u}/commands?limit=10")).await;
    assert_eq!(st, 200);
    assert_eq!(v["commands"], json!([]), "the lost command left no trace");
    let (st, v) = post(&format!("{u}/channels/log/send"), json!("three")).await;
    assert_eq!(st, 201);
    assert_eq!(
        v["message"]["seq"], 2,
        "seq 2 was never shown, so it is used now"
    );

    // What the follower saw: seq 1, then (after the resync) seq 2 = "three".
    // A failed store may end its stream; a follower then reconnects after
    // the last id it saw, as any SSE client does.
    let mut seen = String::new();
    let mut stream = Some(stream);
    let _ = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut s = match stream.take() {
                Some(s) => s,
                None => {
                    let last = seen
                        .lines()
                        .filter_map(|l| l.strip_prefix("id: "))
                        .next_back()
                        .unwrap_or("0")
                        .trim()
                        .to_string();
                    http()
                        .get(format!("{u}/channels/log/stream"))
                        .header("Last-Event-ID", last)
                        .send()
                        .await
                        .expect("stream again")
                        .bytes_stream()
                }
            };
            while let Some(Ok(chunk)) = s.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("three") {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        !seen.contains("\"two\""),
        "the stream showed a lost message: {seen}"
    );
    // ... and it did see what it should: the saved message before the
    // stall and the one after, in that order.
    let (one, three) = (seen.find("\"one\""), seen.find("\"three\""));
    assert!(
        one.is_some() && three.is_some() && one < three,
        "the stream showed \"one\" then \"three\": {seen}"
    );

    // The retry, now that the store works, makes the command, and it lasts.
    let (st, v) = post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "deploy", "dedupeKey": "d1"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["command"]["id"].as_str().expect("id").to_string();
    b.kill9();
    let b = BinaryBroker::durable(dir.path());
    let (st, v): (u16, Value) = get(&format!("{}/commands/{id}/result?timeout=0", b.url)).await;
    assert_eq!(st, 200, "the answered command survived: {v}");
    let (_, m) = get(&format!("{}/channels/log/messages?since=0", b.url)).await;
    let seqs: Vec<Value> = m["messages"]
        .as_array()
        .map(|a| a.iter().map(|m| m["data"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(seqs, vec![json!("one"), json!("three")]);
}
