//! The `cipc` client subcommands, run as real processes (assert_cmd) against a
//! real broker started in-process on a free port.
//!
//! Waits in these tests use generous deadlines only as a safety net; nothing
//! asserts on timing.
//!
//! The `cipc chan` and `cipc signal` subcommands.

mod common;

use common::cli::*;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- channels

#[test]
fn chan_send_read_list() {
    let b = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let m = stdout_json(b.cipc().args(["chan", "send", "log", r#"{"n":1}"#]));
    assert_eq!(m["message"]["seq"], 1);
    let file = dir.path().join("m.json");
    std::fs::write(&file, r#""from a file""#).unwrap();
    let m = stdout_json(
        b.cipc()
            .args(["chan", "send", "log", &format!("@{}", file.display())]),
    );
    assert_eq!(m["message"]["data"], "from a file");
    let m = stdout_json(
        b.cipc()
            .args(["chan", "send", "log", "-"])
            .write_stdin("[true]"),
    );
    assert_eq!(m["message"]["seq"], 3);
    let line = stdout_text(b.cipc().args(["chan", "send", "log", "4", "--table"]));
    assert_eq!(line.trim(), "sent #4 to log");

    let r = stdout_json(
        b.cipc()
            .args(["chan", "read", "log", "--since", "1", "--limit", "2"]),
    );
    let seqs: Vec<u64> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(r["lastSeq"], 4);

    let t = stdout_text(b.cipc().args(["chan", "read", "log", "--table"]));
    assert!(t.contains("SEQ") && t.contains("from a file"), "{t}");

    let l = stdout_json(b.cipc().args(["chan", "list"]));
    assert_eq!(l["channels"][0]["name"], "log");
    assert_eq!(l["channels"][0]["count"], 4);
    let lt = stdout_text(b.cipc().args(["chan", "list", "--table"]));
    assert!(lt.contains("CHANNEL") && lt.contains("log"), "{lt}");

    // Text that is not JSON is a usage error with a hint.
    let a = b
        .cipc()
        .args(["chan", "send", "log", "hello"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("quote text as JSON"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn chan_follow_prints_messages_sent_after_it_started() {
    let b = Broker::start();
    b.cipc()
        .args(["chan", "send", "feed", r#""old""#])
        .assert()
        .success();
    let mut child = b
        .std_cipc()
        .args(["chan", "follow", "feed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(&mut child);
    // Keep sending until the follower shows one (it may still be connecting).
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(Instant::now() < deadline, "chan follow printed nothing");
        b.cipc()
            .args(["chan", "send", "feed", r#"{"new":true}"#])
            .assert()
            .success();
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
    };
    let m: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        m["data"],
        json!({"new": true}),
        "only new messages: {first}"
    );
    assert!(m["seq"].as_u64().unwrap() >= 2);

    // Everything after it arrives in order, one JSON document per line.
    b.cipc()
        .args(["chan", "send", "feed", r#""last""#])
        .assert()
        .success();
    let mut last = m["seq"].as_u64().unwrap();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("chan follow stopped printing");
        let m: Value = serde_json::from_str(&line).unwrap();
        let seq = m["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "no gaps, no repeats");
        last = seq;
        if m["data"] == "last" {
            break;
        }
    }
    stop(child);
}

#[test]
fn chan_follow_since_replays_history() {
    let b = Broker::start();
    for i in 1..=3 {
        b.cipc()
            .args(["chan", "send", "h", &i.to_string()])
            .assert()
            .success();
    }
    let mut child = b
        .std_cipc()
        .args(["chan", "follow", "h", "--since", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(&mut child);
    let got: Vec<u64> = (0..2)
        .map(|_| {
            let l = lines.recv_timeout(Duration::from_secs(30)).expect("a line");
            serde_json::from_str::<Value>(&l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, [2, 3]);
    stop(child);
}

// ---------------------------------------------------------------- signals

#[test]
fn signal_emit_get_wait_clear_list() {
    let b = Broker::start();
    let g = stdout_json(b.cipc().args(["signal", "get", "ready"]));
    assert_eq!(g["signal"]["emitted"], false);

    let e = stdout_json(
        b.cipc()
            .args(["signal", "emit", "ready", "--data", r#"{"port":8080}"#]),
    );
    assert_eq!(e["signal"]["count"], 1);
    let w = stdout_json(
        b.cipc()
            .args(["signal", "wait", "ready", "--timeout", "20s"]),
    );
    assert_eq!(w["signal"]["data"], json!({"port": 8080}));
    assert!(w.get("timedOut").is_none());
    let line = stdout_text(b.cipc().args(["signal", "wait", "ready", "--table"]));
    assert!(line.starts_with("ready emitted (#1)"), "{line}");

    // --after waits for a newer emission: none comes, so 124.
    let a = b
        .cipc()
        .args([
            "signal",
            "wait",
            "ready",
            "--after",
            "1",
            "--timeout",
            "200ms",
        ])
        .assert()
        .code(124);
    assert_eq!(parse(&a.get_output().stdout)["timedOut"], true);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.json");
    std::fs::write(&file, "[1]").unwrap();
    let e = stdout_json(b.cipc().args([
        "signal",
        "emit",
        "ready",
        "--data",
        &format!("@{}", file.display()),
    ]));
    assert_eq!(e["signal"]["count"], 2);
    let w = stdout_json(b.cipc().args(["signal", "wait", "ready", "--after", "1"]));
    assert_eq!(w["signal"]["data"], json!([1]));

    let c = stdout_json(b.cipc().args(["signal", "clear", "ready"]));
    assert_eq!(c["signal"]["emitted"], false);
    b.cipc()
        .args(["signal", "wait", "ready", "--timeout", "100ms"])
        .assert()
        .code(124);

    let l = stdout_json(b.cipc().args(["signal", "list"]));
    assert_eq!(l["signals"][0]["name"], "ready");
    let t = stdout_text(b.cipc().args(["signal", "list", "--table"]));
    assert!(t.contains("SIGNAL") && t.contains("ready"), "{t}");
    let t = stdout_text(b.cipc().args(["signal", "get", "ready", "--table"]));
    assert!(t.contains("ready"), "{t}");
}

#[test]
fn signal_wait_is_released_by_an_emit_from_another_process() {
    let b = Broker::start();
    let child = b
        .std_cipc()
        .args(["signal", "wait", "go", "--timeout", "50s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    b.cipc()
        .args(["signal", "emit", "go", "--data", "7"])
        .assert()
        .success();
    let out = wait_child(child, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(parse(&out.stdout)["signal"]["data"], 7);
}

#[test]
fn chan_follow_says_it_started_on_a_terminal() {
    let b = Broker::start();
    let (master, slave) = pty();
    let mut cmd = b.std_cipc();
    cmd.args(["chan", "follow", "news"])
        .stdout(Stdio::piped())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let notes = pty_lines(master);
    let line = notes
        .recv_timeout(PROCESS_LIMIT)
        .expect("no notice on the terminal");
    assert!(
        line.starts_with("cipc chan follow: following news after #0") && line.contains("Ctrl-C"),
        "{line:?}"
    );
    // Stdout still carries the messages alone.
    let lines = line_reader(&mut child);
    b.cipc()
        .args(["chan", "send", "news", "1"])
        .assert()
        .success();
    let m: Value = serde_json::from_str(&lines.recv_timeout(PROCESS_LIMIT).unwrap()).unwrap();
    assert_eq!(m["seq"], 1);
    stop(child);

    // Into a pipe it says nothing.
    let mut child = b
        .std_cipc()
        .args(["chan", "follow", "news"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let errs = stderr_reader(&mut child);
    let lines = line_reader(&mut child);
    let deadline = Instant::now() + PROCESS_LIMIT;
    loop {
        assert!(Instant::now() < deadline, "chan follow printed nothing");
        b.cipc()
            .args(["chan", "send", "news", "2"])
            .assert()
            .success();
        if lines.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
    }
    stop(child);
    assert_eq!(errs.iter().count(), 0, "nothing on stderr in a pipe");
}
