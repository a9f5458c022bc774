//! The `cipc` client subcommands, run as real processes (assert_cmd) against a
//! real broker started in-process on a free port.
//!
//! Waits in these tests use generous deadlines only as a safety net; nothing
//! asserts on timing.
//!
//! The command subcommands: `cipc send`, `commands`, `result`, `cancel`, `wait` and `ack`.

mod common;

use common::cli::*;
use serde_json::json;
use std::process::Stdio;

// ---------------------------------------------------------------- send / wait / ack

#[test]
fn send_builds_params_from_flags_files_and_stdin() {
    let b = Broker::start();
    let dir = tempfile::tempdir().unwrap();

    // --param key=value (string) and key:=json, merged over --params.
    let v = stdout_json(b.cipc().args([
        "send",
        "nobody-yet",
        "build",
        "--params",
        r#"{"a":1}"#,
        "--param",
        "branch=main",
        "-p",
        "jobs:=4",
        "-p",
        "expr=a=b",
        "--from",
        "ci",
        "--ttl",
        "10m",
    ]));
    assert_eq!(v["queued"], true);
    let c = &v["command"];
    assert_eq!(
        c["params"],
        json!({"a":1,"branch":"main","jobs":4,"expr":"a=b"})
    );
    assert_eq!(c["from"], "ci");
    assert_eq!(c["target"], "nobody-yet");
    assert!(c["expiresAt"].is_string(), "--ttl sets expiresAt: {c}");

    // --params @file
    let file = dir.path().join("params.json");
    std::fs::write(&file, r#"{"from_file": [1, 2]}"#).unwrap();
    let v = stdout_json(b.cipc().args([
        "send",
        "r",
        "x",
        "--params",
        &format!("@{}", file.display()),
    ]));
    assert_eq!(v["command"]["params"], json!({"from_file":[1,2]}));

    // --params - (stdin)
    let v = stdout_json(
        b.cipc()
            .args(["send", "r", "x", "--params", "-"])
            .write_stdin(r#"{"from_stdin": true}"#),
    );
    assert_eq!(v["command"]["params"], json!({"from_stdin": true}));

    // A repeated dedupe key answers the original command.
    let one = stdout_json(b.cipc().args(["send", "r", "once", "--dedupe-key", "k1"]));
    let two = stdout_json(b.cipc().args(["send", "r", "once", "--dedupe-key", "k1"]));
    assert_eq!(one["command"]["id"], two["command"]["id"]);

    // Human form.
    let line = stdout_text(b.cipc().args(["send", "r", "hello", "--table"]));
    assert!(line.starts_with("sent hello to r: command "), "{line}");
    assert!(line.contains("queued"), "{line}");

    // Bad JSON and a missing file are usage errors (2).
    let a = b
        .cipc()
        .args(["send", "r", "x", "--params", "{nope"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("not valid JSON"),
        "{}",
        stderr_of(&a)
    );
    b.cipc()
        .args(["send", "r", "x", "--params", "@/definitely/not/here.json"])
        .assert()
        .code(2);
    b.cipc()
        .args(["send", "r", "x", "--param", "novalue"])
        .assert()
        .code(2);
    // --timeout without --wait is a clap usage error.
    b.cipc()
        .args(["send", "r", "x", "--timeout", "5s"])
        .assert()
        .code(2);
}

#[test]
fn send_to_everyone_fans_out() {
    let b = Broker::start();
    b.connect("a");
    b.connect("b");
    let v = stdout_json(b.cipc().args(["send", "*", "ping"]));
    assert_eq!(v["commands"].as_array().unwrap().len(), 2);
}

#[test]
fn send_wait_prints_the_result_another_process_acked() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(
        &b,
        &peer,
        vec!["--result".into(), r#"{"port":8080}"#.into()],
    );
    let v = stdout_json(b.cipc().args([
        "send",
        "backend",
        "start-server",
        "-p",
        "port:=8080",
        "--wait",
        "--timeout",
        "50s",
        "--json",
    ]));
    assert_eq!(v["command"]["status"], "acked");
    assert_eq!(v["command"]["result"], json!({"port": 8080}));
    assert!(v.get("timedOut").is_none(), "{v}");
    let got = t.join().unwrap();
    assert_eq!(got["command"]["action"], "start-server");
    assert_eq!(got["command"]["params"], json!({"port": 8080}));

    // The human form prints the result itself.
    let t = worker(&b, &peer, vec!["--result".into(), r#""done""#.into()]);
    let out = stdout_text(b.cipc().args(["send", &peer, "again", "--wait", "--table"]));
    assert_eq!(out.trim(), "done");
    t.join().unwrap();
}

#[test]
fn send_wait_exits_1_when_the_command_failed() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(&b, &peer, vec!["--error".into(), "disk full".into()]);
    let a = b
        .cipc()
        .args(["send", "backend", "deploy", "--wait", "--timeout", "50s"])
        .arg("--json")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["command"]["status"], "failed");
    assert_eq!(v["command"]["error"], "disk full");
    let err = stderr_of(&a);
    assert!(err.contains("failed: disk full"), "{err}");
    t.join().unwrap();
}

#[test]
fn send_wait_times_out_with_124() {
    let b = Broker::start();
    let a = b
        .cipc()
        .args(["send", "nobody", "x", "--wait", "--timeout", "200ms"])
        .arg("--json")
        .assert()
        .code(124);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["timedOut"], true);
    assert_eq!(v["command"]["status"], "pending");
    assert!(stderr_of(&a).contains("no result"), "{}", stderr_of(&a));
}

#[test]
fn commands_lists_newest_first_with_filters() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let first = send_id(&b, "backend", "build");
    let second = send_id(&b, "frontend", "lint");

    let all = stdout_json(b.cipc().arg("commands"));
    let ids: Vec<&str> = all["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [second.as_str(), first.as_str()],
        "newest first: {all}"
    );

    let v = stdout_json(b.cipc().args(["commands", "--target", "backend"]));
    assert_eq!(v["commands"].as_array().unwrap().len(), 1);
    assert_eq!(v["commands"][0]["action"], "build");
    let v = stdout_json(
        b.cipc()
            .args(["commands", "--status", "pending", "--limit", "1"]),
    );
    assert_eq!(v["commands"].as_array().unwrap().len(), 1);
    assert_eq!(v["commands"][0]["id"], second.as_str());
    let v = stdout_json(b.cipc().args(["commands", "--status", "acked"]));
    assert_eq!(v["commands"], json!([]));

    // The table: short ids, and who took a delivered command.
    let got = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["wait", "--timeout", "5s"]),
    );
    assert_eq!(got["command"]["id"], first.as_str());
    let t = stdout_text(b.cipc().env("NO_COLOR", "1").args(["commands", "--table"]));
    for want in [
        "COMMAND",
        "DELIVERED TO",
        "AGE",
        "build",
        "lint",
        "delivered",
        &first[first.len() - 8..],
        &peer[peer.len() - 8..],
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }
    assert!(!t.contains(&first), "ids are shortened:\n{t}");
    let t = stdout_text(b.cipc().args(["commands", "--status", "acked", "--table"]));
    assert_eq!(t.trim(), "no commands");

    b.cipc()
        .args(["commands", "--status", "done"])
        .assert()
        .code(2);
}

#[test]
fn result_exits_0_with_the_result_another_process_acked() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let id = send_id(&b, "backend", "start-server");
    let t = worker(
        &b,
        &peer,
        vec!["--result".into(), r#"{"port":8080}"#.into()],
    );
    let v = stdout_json(b.cipc().args(["result", &id, "--timeout", "50s", "--json"]));
    assert_eq!(v["command"]["id"], id.as_str());
    assert_eq!(v["command"]["status"], "acked");
    assert_eq!(v["command"]["result"], json!({"port": 8080}));
    assert!(v.get("timedOut").is_none(), "{v}");
    t.join().unwrap();

    // Already finished: answers at once, and the human form prints the result.
    let out = stdout_text(b.cipc().args(["result", &id, "--forever", "--table"]));
    assert!(out.contains("\"port\": 8080"), "{out}");
}

#[test]
fn result_exits_1_when_the_command_failed() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let id = send_id(&b, "backend", "deploy");
    let t = worker(&b, &peer, vec!["--error".into(), "disk full".into()]);
    let (v, err) = result_of(&b, &id, "50s", 1);
    assert_eq!(v["command"]["status"], "failed");
    assert_eq!(v["command"]["error"], "disk full");
    assert!(
        err.starts_with("cipc result: ") && err.contains("failed: disk full"),
        "{err}"
    );
    t.join().unwrap();
}

#[test]
fn result_times_out_with_124() {
    let b = Broker::start();
    let id = send_id(&b, "nobody", "x");
    let (v, err) = result_of(&b, &id, "200ms", 124);
    assert_eq!(v["timedOut"], true);
    assert_eq!(v["command"]["status"], "pending");
    assert!(err.contains("no result"), "{err}");
}

#[test]
fn cancel_a_pending_command_then_its_result_exits_1() {
    let b = Broker::start();
    let id = send_id(&b, "nobody", "migrate");
    let v = stdout_json(b.cipc().args(["cancel", &id]));
    assert_eq!(v["command"]["id"], id.as_str());
    assert_eq!(v["command"]["status"], "cancelled");

    let (v, err) = result_of(&b, &id, "5s", 1);
    assert_eq!(v["command"]["status"], "cancelled");
    assert!(err.contains("cancelled"), "{err}");

    let v = stdout_json(b.cipc().args(["commands", "--status", "cancelled"]));
    assert_eq!(v["commands"][0]["id"], id.as_str());

    let id = send_id(&b, "nobody", "again");
    let out = stdout_text(b.cipc().args(["cancel", &id, "--table"]));
    assert_eq!(out.trim(), format!("cancelled {id} (again for nobody)"));
}

#[test]
fn unknown_command_ids_exit_1_with_one_line() {
    let b = Broker::start();
    let unknown = "0190f0c4-0000-7000-8000-000000000000";
    for args in [
        vec!["result", unknown, "--timeout", "5s"],
        vec!["cancel", unknown],
    ] {
        let a = b.cipc().args(&args).assert().code(1);
        assert!(a.get_output().stdout.is_empty(), "{args:?}");
        let err = stderr_of(&a);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("cipc {}: the broker said:", args[0])),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn wait_and_ack_round_trip_with_files_and_stdin() {
    let b = Broker::start();
    let peer = b.connect("w");
    let sent = stdout_json(b.cipc().args(["send", "w", "job", "-p", "n:=1"]));
    let id = sent["command"]["id"].as_str().unwrap().to_string();

    // --peer flag works as well as CIPC_PEER.
    let got = stdout_json(b.cipc().args([
        "wait",
        "--peer",
        &peer,
        "--peer-key",
        &b.key(&peer),
        "--timeout",
        "20s",
    ]));
    assert_eq!(got["command"]["id"], id.as_str());
    assert_eq!(got["command"]["status"], "delivered");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("result.json");
    std::fs::write(&file, r#"{"ok": true}"#).unwrap();
    let acked = stdout_json(b.cipc().envs(b.identity(&peer)).args([
        "ack",
        &id,
        "--result",
        &format!("@{}", file.display()),
    ]));
    assert_eq!(acked["command"]["status"], "acked");
    assert_eq!(acked["command"]["result"], json!({"ok": true}));

    // Acking twice is the broker's 409: exit 1 with its message.
    let a = b
        .cipc()
        .envs(b.identity(&peer))
        .args(["ack", &id])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("conflict"), "{}", stderr_of(&a));

    // --result - reads stdin; the human form of wait and ack.
    b.cipc().args(["send", "w", "job2"]).assert().success();
    let text =
        stdout_text(
            b.cipc()
                .envs(b.identity(&peer))
                .args(["wait", "--table", "--timeout", "20s"]),
        );
    assert!(text.starts_with("job2"), "{text}");
    assert!(text.contains("cipc ack "), "{text}");
    let id2 = text
        .split_whitespace()
        .skip_while(|w| *w != "command")
        .nth(1)
        .expect("id in the human form")
        .to_string();
    let acked = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["ack", &id2, "--result", "-"])
            .write_stdin("[1,2,3]"),
    );
    assert_eq!(acked["command"]["result"], json!([1, 2, 3]));

    // --error marks it failed.
    b.cipc().args(["send", "w", "job3"]).assert().success();
    let got = stdout_json(b.cipc().envs(b.identity(&peer)).arg("wait"));
    let id3 = got["command"]["id"].as_str().unwrap();
    let line = stdout_text(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["ack", id3, "--error", "nope", "--table"]),
    );
    assert!(line.contains("failed: nope"), "{line}");
}

#[test]
fn wait_times_out_with_124_and_needs_a_peer() {
    let b = Broker::start();
    let peer = b.connect("idle");
    let a = b
        .cipc()
        .envs(b.identity(&peer))
        .args(["wait", "--timeout", "200ms"])
        .assert()
        .code(124);
    assert_eq!(
        parse(&a.get_output().stdout),
        json!({"command": null, "timedOut": true})
    );
    assert!(stderr_of(&a).contains("no command"), "{}", stderr_of(&a));

    let a = b.cipc().arg("wait").assert().code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER"), "{}", stderr_of(&a));
    b.cipc()
        .args(["wait", "--peer", &peer, "--timeout", "soon"])
        .assert()
        .code(2);
}

// ---------------------------------------------------------------- deadlines

#[test]
fn send_wait_tells_once_that_a_command_is_overdue_and_keeps_waiting() {
    let b = Broker::start_fast_sweep();
    let peer = b.connect("worker");
    let mut sender = b
        .std_cipc()
        .args(["send", "worker", "build", "--deadline", "300ms"])
        .args(["--wait", "--timeout", "50s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let errs = stderr_reader(&mut sender);
    // The worker takes it and does not ack (yet).
    let got = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["wait", "--timeout", "50s"]),
    );
    let id = got["command"]["id"].as_str().unwrap().to_string();
    assert!(got["command"]["deadline"].is_string(), "{got}");
    b.cipc()
        .args(["send", "worker", "other"])
        .assert()
        .success();

    // The sender says so once, and goes on waiting.
    let line = errs
        .recv_timeout(PROCESS_LIMIT)
        .expect("send --wait said nothing on stderr");
    assert!(
        line.starts_with(&format!(
            "cipc send: command {id} is overdue (its deadline passed at "
        )) && line.ends_with("); still waiting"),
        "{line}"
    );

    // Only the overdue one is listed by --overdue, marked in the table.
    let v = stdout_json(b.cipc().args(["commands", "--overdue"]));
    let listed: Vec<&str> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()], "{v}");
    assert_eq!(v["commands"][0]["overdue"], true);
    let table = stdout_text(b.cipc().args(["commands", "--table"]));
    assert!(table.contains("delivered OVERDUE"), "{table}");
    // `cipc result` says so too, and times out as usual.
    let (r, err) = result_of(&b, &id, "200ms", 124);
    assert_eq!(r["command"]["overdue"], true);
    assert!(err.contains("overdue"), "{err}");

    // Once acked, the sender prints the result as always, exit 0.
    b.cipc()
        .envs(b.identity(&peer))
        .args(["ack", &id, "--result", r#""built""#])
        .assert()
        .success();
    let out = wait_child(sender, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(0));
    let v = parse(&out.stdout);
    assert_eq!(v["command"]["result"], "built");
    assert_eq!(v["command"]["overdue"], true);
    // Everything else it said (the reader ends with the process's stderr).
    let rest: Vec<String> = errs.iter().collect();
    assert!(
        rest.iter().all(|l| !l.contains("overdue")),
        "the overdue line is printed once: {rest:?}"
    );
    let table = stdout_text(b.cipc().args(["commands", "--overdue", "--table"]));
    assert!(table.contains("acked (late)"), "{table}");
}

#[test]
fn ack_refuses_both_result_and_error() {
    let b = Broker::start();
    let peer = b.connect("w");
    let id = send_id(&b, "w", "job");
    stdout_json(b.cipc().envs(b.identity(&peer)).arg("wait"));
    let a = b
        .cipc()
        .envs(b.identity(&peer))
        .args(["ack", &id, "--result", "1", "--error", "nope"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("--error") && err.contains("--result") && err.contains("cannot be used with"),
        "{err}"
    );
    let v = stdout_json(b.cipc().args(["commands", "--status", "delivered"]));
    assert_eq!(v["commands"][0]["id"], id.as_str(), "nothing was acked");
}

#[test]
fn a_failed_send_wait_says_so_once_on_stderr() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(&b, &peer, vec!["--error".into(), "disk full".into()]);
    let a = b
        .cipc()
        .args([
            "send",
            "backend",
            "deploy",
            "--wait",
            "--timeout",
            "50s",
            "--table",
        ])
        .assert()
        .code(1);
    assert!(
        a.get_output().stdout.is_empty(),
        "stdout carries results only"
    );
    let err = stderr_of(&a);
    assert_eq!(err.matches("disk full").count(), 1, "{err}");
    assert!(
        err.starts_with("cipc send: command ") && err.contains("failed: disk full"),
        "{err}"
    );
    t.join().unwrap();

    // A timeout is said once too, on stderr.
    let a = b
        .cipc()
        .args([
            "send",
            "nobody",
            "x",
            "--wait",
            "--timeout",
            "200ms",
            "--table",
        ])
        .assert()
        .code(124);
    assert!(a.get_output().stdout.is_empty(), "{:?}", a.get_output());
}

#[test]
fn a_command_for_a_role_nobody_holds_is_flagged() {
    let b = Broker::start();
    b.connect("frontend");
    b.connect("backend");

    // Queued: JSON on stdout as always, the why on stderr.
    let a = b
        .cipc()
        .args(["send", "frontned", "build"])
        .assert()
        .success();
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["queued"], true);
    let err = stderr_of(&a);
    assert!(
        err.starts_with("cipc send: no online peer holds role frontned")
            && err.contains("online roles: backend, frontend")
            && err.contains("did you mean frontend?")
            && err.contains("waits until one connects"),
        "{err}"
    );
    // A held role says nothing.
    let a = b
        .cipc()
        .args(["send", "frontend", "build"])
        .assert()
        .success();
    assert!(stderr_of(&a).is_empty(), "{}", stderr_of(&a));

    // --require-online: an error, and nothing is sent.
    let before = stdout_json(b.cipc().arg("commands"))["commands"]
        .as_array()
        .unwrap()
        .len();
    let a = b
        .cipc()
        .args(["send", "frontned", "build", "--require-online"])
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("nothing was sent") && err.contains("frontned"),
        "{err}"
    );
    assert!(a.get_output().stdout.is_empty());
    let after = stdout_json(b.cipc().arg("commands"))["commands"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing was sent");
    b.cipc()
        .args(["send", "backend", "ok", "--require-online"])
        .assert()
        .success();

    // --wait says so at once, and its timeout says nobody took it.
    let a = b
        .cipc()
        .args(["send", "frontned", "build", "--wait", "--timeout", "300ms"])
        .arg("--json")
        .assert()
        .code(124);
    let err = stderr_of(&a);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("no online peer holds role frontned"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("cipc send: no result for ")
            && lines[1].contains("nobody took it")
            && lines[1].contains("cipc cancel"),
        "{err}"
    );
    assert_eq!(parse(&a.get_output().stdout)["timedOut"], true);
}

#[test]
fn send_wait_into_a_pipe_prints_the_result_alone() {
    let b = Broker::start();
    let peer = b.connect("backend");
    let t = worker(
        &b,
        &peer,
        vec!["--result".into(), r#"{"port":8080}"#.into()],
    );
    // stdout is a pipe here: the result and nothing else.
    let out = stdout_text(b.cipc().args(["send", "backend", "start", "--wait"]));
    assert_eq!(parse(out.as_bytes()), json!({"port": 8080}), "{out}");
    t.join().unwrap();
    // A string result is printed as it is, for `x=$(cipc send ... --wait)`.
    let t = worker(&b, &peer, vec!["--result".into(), r#""done""#.into()]);
    let out = stdout_text(b.cipc().args(["send", "backend", "again", "--wait"]));
    assert_eq!(out, "done\n");
    t.join().unwrap();
    // `cipc result` too; --json keeps the whole document.
    let id = send_id(&b, "backend", "third");
    let t = worker(&b, &peer, vec!["--result".into(), "[1,2]".into()]);
    let out = stdout_text(b.cipc().args(["result", &id, "--timeout", "50s"]));
    assert_eq!(parse(out.as_bytes()), json!([1, 2]), "{out}");
    t.join().unwrap();
    let v = stdout_json(b.cipc().args(["result", &id, "--json"]));
    assert_eq!(v["command"]["id"], id.as_str());
    assert_eq!(v["command"]["result"], json!([1, 2]));
    // A timeout prints nothing on stdout; stderr names the command.
    let a = b
        .cipc()
        .args(["send", "nobody", "x", "--wait", "--timeout", "200ms"])
        .assert()
        .code(124);
    assert!(a.get_output().stdout.is_empty(), "{:?}", a.get_output());
    assert!(
        stderr_of(&a).contains("no result for "),
        "{}",
        stderr_of(&a)
    );
}
