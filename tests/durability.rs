//! An answered write is durable: restart (clean or `kill -9`) the built binary
//! on the same data dir and everything is there.

mod common;

use common::*;
use serde_json::{json, Value};

struct Written {
    peer: String,
    acked: String,
    pending: String,
}

async fn write_everything(u: &str) -> Written {
    let peer = connect(u, "backend").await;
    let (_, a) = post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "build", "dedupeKey": "b1"}),
    )
    .await;
    let acked = a["command"]["id"].as_str().unwrap().to_string();
    let (_, w) = get(&format!("{u}/commands/{peer}/wait?timeout=20000")).await;
    assert_eq!(w["command"]["id"], a["command"]["id"]);
    let (st, _) = post(
        &format!("{u}/commands/{acked}/ack"),
        json!({"result": {"artifact": "x.tar"}}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, p) = post(
        &format!("{u}/commands/send"),
        json!({"target": "frontend", "action": "rebuild"}),
    )
    .await;
    let pending = p["command"]["id"].as_str().unwrap().to_string();
    for i in 1..=3 {
        let (st, _) = post(&format!("{u}/channels/log/send"), json!({"i": i})).await;
        assert_eq!(st, 201);
    }
    let (st, _) = post(
        &format!("{u}/signals/ready"),
        json!({"data": {"port": 8080}}),
    )
    .await;
    assert_eq!(st, 200);
    Written {
        peer,
        acked,
        pending,
    }
}

async fn check_everything(u: &str, w: &Written) {
    let (st, p) = get(&format!("{u}/peers/{}", w.peer)).await;
    assert_eq!(st, 200, "peer survived: {p}");
    assert_eq!(p["peer"]["role"], "backend");
    let (_, a) = get(&format!("{u}/commands/{}/result?timeout=0", w.acked)).await;
    assert_eq!(a["command"]["status"], "acked");
    assert_eq!(a["command"]["result"], json!({"artifact": "x.tar"}));
    let (_, p) = get(&format!("{u}/commands?status=pending")).await;
    assert_eq!(p["commands"][0]["id"].as_str(), Some(w.pending.as_str()));
    // The dedupe key still answers the original.
    let (st, d) = post(
        &format!("{u}/commands/send"),
        json!({"target": "backend", "action": "build", "dedupeKey": "b1"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(d["command"]["id"].as_str(), Some(w.acked.as_str()));
    let (_, m) = get(&format!("{u}/channels/log/messages")).await;
    let seqs: Vec<u64> = m["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(m["messages"][2]["data"], json!({"i": 3}));
    // The next seq continues.
    let (_, next) = post(&format!("{u}/channels/log/send"), json!("after restart")).await;
    assert_eq!(next["message"]["seq"], 4);
    let (_, s) = get(&format!("{u}/signals/ready")).await;
    assert_eq!(s["signal"]["emitted"], true);
    assert_eq!(s["signal"]["data"], json!({"port": 8080}));
    assert_eq!(s["signal"]["count"], 1);
    // The pending command is still deliverable.
    let fe = connect(u, "frontend").await;
    let (_, w2) = get(&format!("{u}/commands/{fe}/wait?timeout=20000")).await;
    assert_eq!(w2["command"]["id"].as_str(), Some(w.pending.as_str()));
}

#[tokio::test]
async fn kill_9_loses_nothing_that_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let b = BinaryBroker::durable(dir.path());
    let written = write_everything(&b.url).await;
    b.kill9();
    let b = BinaryBroker::durable(dir.path());
    check_everything(&b.url, &written).await;
}

#[tokio::test]
async fn clean_stop_answers_open_waits_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let b = BinaryBroker::durable(dir.path());
    let written = write_everything(&b.url).await;
    let idle = connect(&b.url, "idle").await;
    let url = format!("{}/commands/{idle}/wait?timeout=600000", b.url);
    let parked = tokio::spawn(async move { get(&url).await });
    let sig_url = format!("{}/signals/never/wait?timeout=600000", b.url);
    let parked_sig = tokio::spawn(async move { get(&sig_url).await });
    // Both waits are parked before the stop.
    until_waiters(&b.url, 2).await;
    let code = tokio::task::spawn_blocking(move || b.terminate())
        .await
        .unwrap();
    assert!(code.success(), "clean exit: {code:?}");
    let (st, w) = parked.await.unwrap();
    assert_eq!((st, w), (200, json!({"command": null, "timedOut": true})));
    let (st, s) = parked_sig.await.unwrap();
    assert_eq!(st, 200);
    assert_eq!(s["timedOut"], true);
    let b = BinaryBroker::durable(dir.path());
    check_everything(&b.url, &written).await;
}

#[tokio::test]
async fn memory_mode_keeps_nothing() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    connect(&b.url, "backend").await;
    b.kill9();
    let b = BinaryBroker::start(&["--memory"], &[]);
    let (_, p) = get(&format!("{}/peers", b.url)).await;
    assert_eq!(p["peers"], Value::Array(vec![]));
}

/// `GET /status` counts the store's commits: every answered write waited
/// for one, so sends made one after another each add a commit, and a
/// commit holds at least one write. `--memory` never commits and says so
/// by leaving the count out.
#[tokio::test]
async fn status_counts_the_commits_answers_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let b = BinaryBroker::durable(dir.path());
    let counts = |v: &Value| {
        let s = &v["store"];
        (s["commits"].as_u64(), s["writes"].as_u64())
    };
    let (_, before) = get(&format!("{}/status", b.url)).await;
    let (Some(c0), Some(w0)) = counts(&before) else {
        panic!("a durable broker reports its commits: {before}");
    };
    for i in 0..5 {
        let (st, _) = post(&format!("{}/channels/log/send", b.url), json!({"i": i})).await;
        assert_eq!(st, 201);
    }
    let (_, after) = get(&format!("{}/status", b.url)).await;
    let (Some(c1), Some(w1)) = counts(&after) else {
        panic!("still reported: {after}");
    };
    assert!(
        c1 >= c0 + 5,
        "one commit per answered send at least: {c0} -> {c1}"
    );
    assert!(
        w1 - w0 >= c1 - c0,
        "a commit holds a write: {w0} -> {w1}, {c0} -> {c1}"
    );

    let m = BinaryBroker::start(&["--memory"], &[]);
    let (_, status) = get(&format!("{}/status", m.url)).await;
    assert!(
        status.get("store").is_none(),
        "memory keeps nothing: {status}"
    );
}

fn serve_fails(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cipc"))
        .arg("serve")
        .arg("--port")
        .arg("0")
        .args(args)
        .env_remove("CIPC_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success(), "should refuse to start");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_corrupt_or_unusable_data_dir_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cipc.db"), vec![0x42u8; 8192]).unwrap();
    let err = serve_fails(&["--data-dir", dir.path().to_str().unwrap()]);
    assert!(
        err.contains(dir.path().join("cipc.db").to_str().unwrap()),
        "names the path: {err}"
    );

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = serve_fails(&["--data-dir", file.to_str().unwrap()]);
    assert!(
        err.contains(file.to_str().unwrap()),
        "names the path: {err}"
    );
}

#[tokio::test]
async fn history_older_than_memory_is_read_from_the_file_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BinaryBroker::durable(dir.path());
    // More than the broker keeps in memory per channel (256).
    for i in 1..=600 {
        let (st, _) = post(&format!("{}/channels/big/send", b.url), json!({"i": i})).await;
        assert_eq!(st, 201);
    }
    b.kill9();
    let b = BinaryBroker::durable(dir.path());
    let u = &b.url;
    let seqs = |v: &Value| -> Vec<u64> {
        v["messages"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["seq"].as_u64()).collect())
            .unwrap_or_default()
    };
    let (_, all) = get(&format!("{u}/channels/big/messages?since=0&limit=1000")).await;
    assert_eq!(
        seqs(&all),
        (1..=600).collect::<Vec<u64>>(),
        "contiguous, old and new"
    );
    assert_eq!(all["messages"][0]["data"], json!({"i": 1}));
    let (_, some) = get(&format!("{u}/channels/big/messages?since=100&limit=50")).await;
    assert_eq!(seqs(&some), (101..=150).collect::<Vec<u64>>());
    let (_, tail) = get(&format!("{u}/channels/big/messages?since=590")).await;
    assert_eq!(seqs(&tail), (591..=600).collect::<Vec<u64>>());
    let (_, list) = get(&format!("{u}/channels")).await;
    assert_eq!(list["channels"][0]["count"], 600);
    assert_eq!(list["channels"][0]["firstSeq"], 1);
    let (st, v) = post(&format!("{u}/channels/big/send"), json!({"i": 601})).await;
    assert_eq!(st, 201);
    assert_eq!(v["message"]["seq"], 601);
}
