//! The `cipc` client subcommands, run as real processes (assert_cmd) against a
//! real broker started in-process on a free port.
//!
//! Waits in these tests use generous deadlines only as a safety net; nothing
//! asserts on timing.
//!
//! Status, reset, doctor, `cipc claude`, connection flags and environment, errors and usage lines, generated docs.

mod common;

use cipc::server::RunningServer;
use common::cli::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

// ---------------------------------------------------------------- status / reset

#[test]
fn status_json_and_table() {
    let b = Broker::start();
    b.connect("backend");
    b.cipc().args(["send", "backend", "x"]).assert().success();
    b.cipc().args(["chan", "send", "c", "1"]).assert().success();
    b.cipc().args(["signal", "emit", "s"]).assert().success();
    let s = stdout_json(b.cipc().arg("status"));
    assert!(s["version"].is_string());
    assert_eq!(s["peers"].as_array().unwrap().len(), 1);
    assert_eq!(s["commands"]["counts"]["pending"], 1);
    let t = stdout_text(b.cipc().args(["status", "--table"]));
    for want in [
        "Peers: 1 known, 1 online",
        "Commands: 1 pending",
        "Channels: 1",
        "Signals: 1",
        "backend",
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }
}

#[test]
fn reset_refuses_without_yes_when_stdin_is_not_a_terminal() {
    let b = Broker::start();
    b.connect("keep-me");
    let a = b.cipc().arg("reset").write_stdin("y\n").assert().code(2);
    assert!(stderr_of(&a).contains("--yes"), "{}", stderr_of(&a));
    let p = stdout_json(b.cipc().arg("peers"));
    assert_eq!(p["peers"].as_array().unwrap().len(), 1, "nothing was reset");

    let r = stdout_json(b.cipc().args(["reset", "--yes"]));
    assert_eq!(r, json!({"ok": true}));
    let p = stdout_json(b.cipc().arg("peers"));
    assert_eq!(p["peers"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------- connection, auth, env

#[test]
fn unreachable_broker_exits_3_naming_the_url() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let a = cipc().args(["status", "--url", &url]).assert().code(3);
    let err = stderr_of(&a);
    assert!(err.contains(&url) && err.contains("cipc serve"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // A wait retries until its own deadline, then says the same.
    let a = cipc()
        .env("CIPC_URL", &url)
        .args(["signal", "wait", "x", "--timeout", "300ms"])
        .assert()
        .code(3);
    assert!(stderr_of(&a).contains("cipc serve"), "{}", stderr_of(&a));
}

#[test]
fn https_and_bad_urls_are_usage_errors() {
    let a = cipc()
        .args(["status", "--url", "https://broker.example:9100"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(err.contains("TLS") && err.contains("http://"), "{err}");
    cipc().args(["status", "--url", "ftp://x"]).assert().code(2);
    cipc().args(["peers", "--no-such-flag"]).assert().code(2);
}

#[test]
fn token_from_env_flag_and_file() {
    let b = Broker::start_with_token("s3cret-token");
    let a = b.cipc().arg("status").assert().code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("unauthorized") && err.contains("CIPC_TOKEN"),
        "{err}"
    );

    b.cipc()
        .env("CIPC_TOKEN", "s3cret-token")
        .arg("status")
        .assert()
        .success();
    b.cipc()
        .args(["status", "--token", "s3cret-token"])
        .assert()
        .success();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret-token\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    b.cipc()
        .arg("status")
        .arg("--token-file")
        .arg(&file)
        .assert()
        .success();
}

#[test]
fn cipc_env_vars_are_used() {
    let b = Broker::start();
    let peer = b.connect("me");
    // CIPC_URL (set by b.cipc) and CIPC_PEER: `from` defaults to the peer's role.
    let v = stdout_json(b.cipc().envs(b.identity(&peer)).args(["send", "x", "y"]));
    assert_eq!(v["command"]["from"], "me");
    let m = stdout_json(
        b.cipc()
            .envs(b.identity(&peer))
            .args(["chan", "send", "c", "1"]),
    );
    assert_eq!(m["message"]["from"], peer.as_str());
    // NO_COLOR and --table: never escape codes in a pipe.
    let t = stdout_text(b.cipc().env("NO_COLOR", "1").args(["status", "--table"]));
    assert!(!t.contains('\x1b'));
}

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let mut stale = Vec::new();
    for (shell, file) in [
        ("bash", "cipc.bash"),
        ("zsh", "_cipc"),
        ("fish", "cipc.fish"),
        ("elvish", "cipc.elv"),
        ("powershell", "_cipc.ps1"),
    ] {
        let out = cipc().args(["completions", shell]).assert().success();
        let fresh = out.get_output().stdout.clone();
        assert!(!fresh.is_empty());
        check_generated(&repo().join("completions").join(file), &fresh, &mut stale);
    }

    // `cipc man` prints the main page; `--dir` writes every page.
    let main_page = cipc()
        .arg("man")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&main_page);
    assert!(
        text.contains(".TH cipc") && text.contains("124"),
        "exit codes in the man page"
    );

    let tmp = tempfile::tempdir().unwrap();
    cipc()
        .args(["man", "--dir"])
        .arg(tmp.path())
        .assert()
        .success();
    let mut fresh: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fresh.sort();
    assert!(
        fresh.contains(&"cipc.1".to_string()) && fresh.contains(&"cipc-chan-follow.1".to_string())
    );
    assert!(
        std::fs::read(tmp.path().join("cipc.1")).unwrap() == main_page,
        "`cipc man` and `cipc man --dir` disagree on cipc.1"
    );
    let man_dir = repo().join("man");
    if update_generated() {
        if let Ok(entries) = std::fs::read_dir(&man_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".1") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
    }
    for name in &fresh {
        let bytes = std::fs::read(tmp.path().join(name)).unwrap();
        check_generated(&man_dir.join(name), &bytes, &mut stale);
    }
    let checked_in: Vec<String> = std::fs::read_dir(&man_dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".1") && !fresh.contains(n))
                .collect()
        })
        .unwrap_or_default();
    stale.extend(
        checked_in
            .into_iter()
            .map(|n| format!("man/{n} (no longer generated)")),
    );

    assert!(
        stale.is_empty(),
        "generated files are stale: {stale:?}\nregenerate them with:\n  UPDATE_GENERATED=1 cargo test --test cli_system completions_and_man"
    );
}

// ---------------------------------------------------------------- the example

#[test]
fn example_script_runs_end_to_end() {
    if std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_err()
    {
        // CI installs jq (.ci/run); there a missing jq is a broken setup.
        common::skip(
            "example_script_runs_end_to_end",
            "jq is not installed; .ci/run installs it (apt-get install jq)",
        );
        return;
    }
    let b = Broker::start();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_cipc"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let child = std::process::Command::new("bash")
        .arg(repo().join("examples/server-handshake.sh"))
        .env("PATH", path)
        .env("CIPC_URL", &b.url)
        .env_remove("CIPC_PEER")
        .env_remove("CIPC_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_child(child, PROCESS_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("server started on port 8080"), "{stdout}");
    assert!(
        stdout.contains(r#"deploy log: {"event":"listening","port":8080}"#),
        "{stdout}"
    );
    let _ = std::io::stdout().flush();
}

#[test]
fn client_flags_work_before_the_subcommand_too() {
    let b = Broker::start();
    let v = stdout_json(cipc().args(["--url", &b.url, "--json", "signal", "emit", "early"]));
    assert_eq!(v["signal"]["name"], "early");
    let url_eq = format!("--url={}", b.url);
    let v = stdout_json(cipc().args([url_eq.as_str(), "chan", "--json", "list"]));
    assert!(v["channels"].is_array());
    // serve keeps its own flags; a client-only flag there is still a usage error.
    cipc()
        .args(["--json", "serve", "--memory"])
        .assert()
        .code(2);
}

#[test]
fn send_help_lists_its_own_options_before_the_broker_options() {
    let help = stdout_text(cipc().args(["send", "--help"]));
    let broker = help
        .find("Broker and output options:")
        .unwrap_or_else(|| panic!("{help}"));
    for own in [
        "<TARGET>",
        "<ACTION>",
        "--param",
        "--wait",
        "--require-online",
        "--timeout",
    ] {
        let at = help
            .find(own)
            .unwrap_or_else(|| panic!("{own} missing: {help}"));
        assert!(
            at < broker,
            "{own} is filed under the broker options:\n{help}"
        );
    }
    for client in ["--url", "--token-file", "--peer-key", "--json"] {
        assert!(help[broker..].contains(client), "{client}:\n{help}");
    }
    // The same in the man page.
    let tmp = tempfile::tempdir().unwrap();
    cipc()
        .args(["man", "--dir"])
        .arg(tmp.path())
        .assert()
        .success();
    let page = std::fs::read_to_string(tmp.path().join("cipc-send.1")).unwrap();
    let options = page.find(".SH OPTIONS").expect("OPTIONS");
    let broker = page
        .find("BROKER AND OUTPUT OPTIONS")
        .expect("broker options");
    for own in [r"\-\-param", r"\-\-wait", "TARGET"] {
        let at = page[options..].find(own).map(|i| i + options);
        assert!(
            at.is_some_and(|i| i < broker),
            "{own} in the man page:\n{page}"
        );
    }
}

#[test]
fn errors_start_with_the_whole_subcommand_once() {
    let b = Broker::start();
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    for (args, code, starts) in [
        (vec!["chan", "send", "log", "hello"], 2, "cipc chan send: "),
        (
            vec!["chan", "read", "bad name!"],
            1,
            "cipc chan read: the broker said: ",
        ),
        (vec!["signal", "get", "bad name!"], 1, "cipc signal get: "),
        (vec!["peers", "heartbeat"], 2, "cipc peers heartbeat: "),
        (
            vec!["questions", "show", "abcd1234"],
            1,
            "cipc questions show: ",
        ),
        (vec!["wait"], 2, "cipc wait: "),
        (vec!["status", "--url", closed.as_str()], 3, "cipc status: "),
    ] {
        let a = b.cipc().args(&args).assert().code(code);
        let err = stderr_of(&a);
        assert!(err.starts_with(starts), "{args:?}: {err}");
        let rest = &err[starts.len()..];
        assert!(
            !rest.starts_with("cipc ") && !rest.contains(starts.trim_end()),
            "the prefix is said once: {args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    // `cipc wait` has no peer argument, and does not say it has one.
    let a = b.cipc().arg("wait").assert().code(2);
    let err = stderr_of(&a);
    assert!(!err.contains("give it"), "{err}");
    assert!(
        err.contains("--peer ID") && err.contains("CIPC_PEER"),
        "{err}"
    );
    // `peers show` has one, and says so.
    let a = b.cipc().args(["peers", "show"]).assert().code(2);
    assert!(stderr_of(&a).contains("give its id"), "{}", stderr_of(&a));
}

#[test]
fn declining_the_reset_question_changes_nothing_and_is_not_an_error() {
    let b = Broker::start();
    b.connect("keep-me");
    let (mut master, slave) = pty();
    let mut cmd = b.std_cipc();
    cmd.arg("reset")
        .stdin(slave)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    master.write_all(b"n\n").unwrap();
    let out = wait_child(child, PROCESS_LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("[y/N]") && err.contains("cipc reset: nothing was reset"),
        "{err}"
    );
    let p = stdout_json(b.cipc().arg("peers"));
    assert_eq!(p["peers"].as_array().unwrap().len(), 1);
}

#[test]
fn usage_lines_do_not_show_flags_set_in_the_environment() {
    let b = Broker::start();
    let peer = b.connect("me");
    for args in [vec!["chan", "follow"], vec!["ack"], vec!["send", "x"]] {
        let a = b
            .cipc()
            .envs(b.identity(&peer))
            .env("CIPC_TOKEN", "a-token-of-some-length")
            .args(&args)
            .assert()
            .code(2);
        let err = stderr_of(&a);
        let usage = err
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("{args:?}: {err}"));
        for flag in ["--peer", "--url", "--token", "--peer-key"] {
            assert!(!usage.contains(flag), "{args:?}: {usage}");
        }
    }
    // The variables still work, and a flag wins over its variable.
    let s = stdout_json(b.cipc().envs(b.identity(&peer)).args(["peers", "show"]));
    assert_eq!(s["peer"]["id"], peer.as_str());
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    b.cipc()
        .env("CIPC_URL", &closed)
        .args(["status", "--url", &b.url])
        .assert()
        .success();
    // An empty variable is unset.
    b.cipc()
        .env("CIPC_PEER", "")
        .arg("status")
        .assert()
        .success();
    // The help still names them.
    let help = stdout_text(cipc().args(["wait", "--help"]));
    for var in ["CIPC_URL", "CIPC_TOKEN", "CIPC_PEER", "CIPC_PEER_KEY"] {
        assert!(help.contains(&format!("env: {var}")), "{var}: {help}");
    }
}

#[test]
fn another_web_server_is_named_not_dumped() {
    let page = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome</h1></body></html>";
    let url = foreign_server("404 Not Found", "text/html", page);
    for args in [
        vec!["status"],
        vec!["peers", "show", "0190f0c4-0000-7000-8000-000000000000"],
    ] {
        let a = cipc().env("CIPC_URL", &url).args(&args).assert().code(3);
        let err = stderr_of(&a);
        assert!(
            err.contains(&format!(
                "the server at {url} answered HTTP 404 with a non-cipc page"
            )) && err.contains("CIPC_URL"),
            "{err}"
        );
        assert!(
            !err.contains('<') && !err.contains("nginx") && !err.contains("the broker said"),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // A page answered with 200 is no broker either.
    let url = foreign_server("200 OK", "text/html", page);
    let a = cipc().env("CIPC_URL", &url).arg("status").assert().code(3);
    assert!(stderr_of(&a).contains("non-cipc page"), "{}", stderr_of(&a));
    // Short plain text is quoted.
    let url = foreign_server("502 Bad Gateway", "text/plain", "upstream went away");
    let a = cipc().env("CIPC_URL", &url).arg("status").assert().code(3);
    assert!(
        stderr_of(&a).contains("\"upstream went away\""),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn doctor_checks_url_token_version_peer_and_key() {
    let b = Broker::start_with_token("doctor-token-0123456789");
    let peer = {
        let v = stdout_json(
            b.cipc()
                .env("CIPC_TOKEN", "doctor-token-0123456789")
                .args(["peers", "connect", "w"]),
        );
        b.keys.lock().unwrap().insert(
            v["peer"]["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        );
        v["peer"]["id"].as_str().unwrap().to_string()
    };
    let outcomes = |v: &Value| -> Vec<(String, String)> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pairs = |xs: &[(&str, &str)]| -> Vec<(String, String)> {
        xs.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };

    // All good.
    let v = stdout_json(
        b.cipc()
            .env("CIPC_TOKEN", "doctor-token-0123456789")
            .envs(b.identity(&peer))
            .arg("doctor"),
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        outcomes(&v),
        pairs(&[
            ("broker", "ok"),
            ("token", "ok"),
            ("version", "ok"),
            ("peer", "ok"),
            ("key", "ok")
        ])
    );
    let text = stdout_text(
        b.cipc()
            .env("CIPC_TOKEN", "doctor-token-0123456789")
            .envs(b.identity(&peer))
            .args(["doctor", "--table"]),
    );
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().all(|l| l.starts_with('✓')), "{text}");

    // No token: the fix names CIPC_TOKEN; what needs it is skipped.
    let a = b.cipc().args(["doctor", "--table"]).assert().code(1);
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let token = text.lines().find(|l| l.contains("token")).unwrap();
    assert!(
        token.starts_with('✗') && token.contains("fix: set CIPC_TOKEN"),
        "{text}"
    );
    assert!(
        text.lines().next().unwrap().starts_with('✓'),
        "the broker is there: {text}"
    );

    // A wrong key (this peer's, with a changed secret): only the key fails.
    let mut forged = b.key(&peer);
    let last = forged.pop();
    forged.push(if last == Some('A') { 'Q' } else { 'A' });
    let a = b
        .cipc()
        .env("CIPC_TOKEN", "doctor-token-0123456789")
        .env("CIPC_PEER", &peer)
        .env("CIPC_PEER_KEY", &forged)
        .args(["doctor", "--table"])
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let marks: Vec<char> = text.lines().map(|l| l.chars().next().unwrap()).collect();
    assert_eq!(marks, ['✓', '✓', '✓', '✓', '✗'], "{text}");
    // No key for a protected peer: the key check says to set it.
    let a = b
        .cipc()
        .env("CIPC_TOKEN", "doctor-token-0123456789")
        .env("CIPC_PEER", &peer)
        .arg("doctor")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(
        outcomes(&v),
        pairs(&[
            ("broker", "ok"),
            ("token", "ok"),
            ("version", "ok"),
            ("peer", "ok"),
            ("key", "fail")
        ])
    );
    assert!(
        v["checks"][4]["fix"]
            .as_str()
            .unwrap()
            .contains("CIPC_PEER_KEY"),
        "{v}"
    );

    // Nothing there, and something that is not a broker.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let a = cipc().args(["doctor", "--url", &closed]).assert().code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["checks"][0]["outcome"], "fail");
    assert!(
        v["checks"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("cipc serve"),
        "{v}"
    );
    assert_eq!(v["checks"][1]["outcome"], "skip");
    let foreign = foreign_server("200 OK", "application/json", r#"{"ok":true}"#);
    let a = cipc().args(["doctor", "--url", &foreign]).assert().code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["checks"][0]["outcome"], "fail", "{v}");
    assert!(
        v["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not a cipc broker"),
        "{v}"
    );
}

#[test]
fn claude_setup_dry_run_writes_nothing_and_remove_names_each_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = tempfile::tempdir().expect("home");
    let project = dir.path().to_str().expect("utf-8").to_string();
    let run = |args: &[&str]| {
        cipc()
            .env("HOME", home.path())
            .env_remove("CLAUDE_CONFIG_DIR")
            .args(["claude"])
            .args(args)
            .args(["--dir", &project])
            .assert()
            .success()
    };
    let a = run(&["setup", "--role", "qa", "--dry-run"]);
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert!(
        out.contains("would add to") && out.contains("\"cipc\""),
        "{out}"
    );
    assert!(out.contains("hook session-start --role qa"), "{out}");
    assert!(
        !dir.path().join(".mcp.json").exists(),
        "a dry run writes nothing"
    );
    assert!(!dir.path().join(".claude").exists());

    // Only the settings file exists: remove labels it as the hooks.
    std::fs::create_dir_all(dir.path().join(".claude")).expect("mkdir");
    std::fs::write(
        dir.path().join(".claude/settings.json"),
        r#"{"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "cipc hook stop --role qa"}]}]}}"#,
    )
    .expect("write");
    let a = run(&["remove", "--dry-run"]);
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    assert_eq!(
        out.trim(),
        format!(
            "would remove the cipc hooks from {}/.claude/settings.json, and nothing else",
            dir.path().canonicalize().expect("canonical").display()
        )
    );
    run(&["remove"]);
    let left: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".claude/settings.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(left, json!({"model": "opus"}));
}

#[test]
fn doctor_prints_every_check_when_cipc_peer_is_not_the_keys_peer() {
    let b = Broker::start();
    let mine = b.connect("w");
    let other = b.connect("w");
    let a = b
        .cipc()
        .env("CIPC_PEER", &other)
        .env("CIPC_PEER_KEY", b.key(&mine))
        .args(["doctor", "--table"])
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let marks: Vec<char> = text.lines().map(|l| l.chars().next().unwrap()).collect();
    assert_eq!(marks, ['✓', '✓', '✓', '✗', '-'], "{text}");
    let peer = text.lines().nth(3).unwrap();
    assert!(
        peer.contains("name different peers") && peer.contains("fix: unset CIPC_PEER"),
        "{peer}"
    );
    // The same with nothing listening: the mismatch is still said.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let a = cipc()
        .env("CIPC_PEER", &other)
        .env("CIPC_PEER_KEY", b.key(&mine))
        .args(["doctor", "--url", &closed])
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    let outcomes: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["fail", "skip", "skip", "fail", "skip"], "{v}");
}

#[test]
fn doctor_knows_token_and_version_from_a_broker_whose_store_is_down() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let token = "doctor-token-0123456789";
    let server = rt.block_on(async {
        let broker = cipc::broker::Broker::open(
            std::sync::Arc::new(SickStore(cipc::store::MemoryStore::default())),
            cipc::broker::BrokerConfig::default(),
        )
        .unwrap();
        RunningServer::start(
            broker,
            cipc::server::ServerConfig::default(),
            Some(token.into()),
        )
        .await
        .unwrap()
    });
    let url = server.url();
    let a = cipc()
        .env("CIPC_URL", &url)
        .env("CIPC_TOKEN", token)
        .arg("doctor")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    let checks = v["checks"].as_array().unwrap();
    let outcome = |i: usize| checks[i]["outcome"].as_str().unwrap();
    assert_eq!(checks[0]["name"], "broker");
    assert_eq!(outcome(0), "fail", "{v}");
    assert!(
        checks[0]["detail"]
            .as_str()
            .unwrap()
            .contains("cannot save changes"),
        "{v}"
    );
    assert_eq!((outcome(1), outcome(2)), ("ok", "ok"), "{v}");
    assert!(checks[2]["detail"]
        .as_str()
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
    // A wrong token is still told apart.
    let a = cipc()
        .env("CIPC_URL", &url)
        .env("CIPC_TOKEN", "wrong-token-0123456789")
        .arg("doctor")
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["checks"][1]["outcome"], "fail", "{v}");
    rt.block_on(server.stop());
}

#[test]
fn claude_setup_calls_cipc_by_name_in_shared_files_and_remove_leaves_no_empty_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = tempfile::tempdir().expect("home");
    let project = dir.path().to_str().expect("utf-8").to_string();
    // A PATH without cipc on it: setup warns that the hooks cannot run it.
    let a = cipc()
        .env("HOME", home.path())
        .env("PATH", "/usr/bin:/bin")
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(["claude", "setup", "--role", "qa", "--dir", &project])
        .args(["--permission-wait", "10m"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("`cipc` is not on PATH"), "{err}");
    assert!(out.contains("pending until you trust the folder"), "{out}");
    assert!(out.contains("for 10m"), "{out}");
    let settings: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".claude/settings.json")).expect("read"),
    )
    .expect("json");
    let start = settings["hooks"]["SessionStart"][0]["hooks"][0]["command"]
        .as_str()
        .expect("a command");
    assert_eq!(
        start, "cipc hook session-start --role qa",
        "no path of this machine"
    );
    let permission = &settings["hooks"]["PermissionRequest"][0]["hooks"][0];
    assert_eq!(
        permission["command"],
        "cipc hook permission --role qa --permission-wait 600"
    );
    assert_eq!(permission["timeout"], 630);

    // Setup created both files: remove deletes them (and the empty
    // .claude/) instead of leaving `{}` for Claude Code to complain about.
    let a = cipc()
        .env("HOME", home.path())
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(["claude", "remove", "--dir", &project])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.contains("deleted"), "{out}");
    assert!(!dir.path().join(".mcp.json").exists(), "{out}");
    assert!(!dir.path().join(".claude").exists(), "{out}");
}
