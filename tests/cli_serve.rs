//! The `cipc` client subcommands, run as real processes (assert_cmd) against a
//! real broker started in-process on a free port.
//!
//! Waits in these tests use generous deadlines only as a safety net; nothing
//! asserts on timing.
//!
//! `cipc serve` as a process: its stores, logs, tokens and restarts under clients.

mod common;

use common::cli::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn waits_and_follows_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let served = Served::start(port, dir.path());

    let mut follow = std_cipc()
        .env("CIPC_URL", &url)
        .args(["chan", "follow", "news", "--since", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(&mut follow);
    cipc()
        .env("CIPC_URL", &url)
        .args(["chan", "send", "news", "1"])
        .assert()
        .success();
    let l = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("first message");
    assert_eq!(serde_json::from_str::<Value>(&l).unwrap()["seq"], 1);

    // The broker goes away; a wait started now keeps retrying (and says so).
    drop(served);
    let mut waiter = std_cipc()
        .env("CIPC_URL", &url)
        .args(["signal", "wait", "back", "--timeout", "50s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut note = String::new();
    BufReader::new(waiter.stderr.take().unwrap())
        .read_line(&mut note)
        .unwrap();
    assert!(note.contains("retrying"), "{note:?}");
    let _served = Served::start(port, dir.path());
    cipc()
        .env("CIPC_URL", &url)
        .args(["signal", "emit", "back"])
        .assert()
        .success();
    let out = wait_child(waiter, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(parse(&out.stdout)["signal"]["emitted"], true);

    // The follower reconnected (Last-Event-ID) and gets the next message once.
    cipc()
        .env("CIPC_URL", &url)
        .args(["chan", "send", "news", "2"])
        .assert()
        .success();
    let l = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("message after restart");
    let m: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(m["seq"], 2);
    assert_eq!(m["data"], 2);
    stop(follow);
}

#[test]
fn memory_wins_over_an_env_data_dir_and_an_empty_one_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("from-env");
    let env_dir = env_dir.to_str().unwrap();

    // CIPC_DATA_DIR in the environment: --memory wins, and says so once.
    let (child, line) = serve_child(&["--memory"], &[("CIPC_DATA_DIR", env_dir)]);
    assert!(line.contains("data: memory"), "{line}");
    let err = terminate(child);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("CIPC_DATA_DIR"))
        .collect();
    assert_eq!(said.len(), 1, "one line about it: {err}");
    assert!(
        said[0].contains("--memory") && said[0].contains(env_dir),
        "{err}"
    );
    assert!(!Path::new(env_dir).exists(), "nothing was written there");

    // Without --memory the variable is the data dir.
    let (child, line) = serve_child(&[], &[("CIPC_DATA_DIR", env_dir)]);
    assert!(line.contains(env_dir), "{line}");
    terminate(child);

    // An empty CIPC_DATA_DIR is unset: the default (under XDG_STATE_HOME).
    let state = dir.path().join("state");
    let (child, line) = serve_child(
        &[],
        &[
            ("CIPC_DATA_DIR", ""),
            ("XDG_STATE_HOME", state.to_str().unwrap()),
        ],
    );
    assert!(
        line.contains(&*state.join("cipc").to_string_lossy()),
        "{line}"
    );
    terminate(child);
    let (child, line) = serve_child(&["--memory"], &[("CIPC_DATA_DIR", "")]);
    assert!(line.contains("data: memory"), "{line}");
    assert!(!terminate(child).contains("CIPC_DATA_DIR"));

    // Both flags on the command line are still a usage error naming both.
    let a = cipc()
        .args(["serve", "--memory", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("--memory") && err.contains("--data-dir"),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_store_it_cannot_use_and_says_why() {
    // Not PostgreSQL at all: a usage error that shows the form to use.
    let a = cipc()
        .args(["serve", "--port", "0", "--store", "mysql://db/cipc"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
        "{err}"
    );
    // Nothing listens there: the error names the address, the reason and
    // what to check, and never the password.
    let port = common::free_port();
    let a = cipc()
        .args(["serve", "--port", "0", "--store"])
        .arg(format!("postgres://cipc:s3cret@127.0.0.1:{port}/cipc"))
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!("127.0.0.1:{port}/cipc")) && err.contains("refused"),
        "{err}"
    );
    assert!(err.contains("is PostgreSQL running there"), "{err}");
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
    // --store and --data-dir pick different stores.
    let a = cipc()
        .args([
            "serve",
            "--store",
            "postgres://x@h/db",
            "--data-dir",
            "/tmp",
        ])
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("--store"));
}

#[test]
fn serve_logs_only_warnings_unless_rust_log_says_otherwise() {
    let busy = |url: &str| {
        let peer = stdout_json(cipc().env("CIPC_URL", url).args(["peers", "connect", "w"]));
        assert!(peer["peer"]["id"].is_string());
        cipc()
            .env("CIPC_URL", url)
            .args(["send", "w", "build"])
            .assert()
            .success();
        mcp_initialize(url);
    };
    // By default: the start line on stdout, and nothing on stderr.
    let (child, line) = serve_child(&["--memory"], &[]);
    assert!(
        line.contains("dashboard") && line.contains("data: "),
        "{line}"
    );
    busy(&start_url(&line));
    let err = terminate(child);
    assert!(!err.contains("INFO"), "no INFO lines by default: {err}");
    // rmcp reports an MCP session still open at shutdown as an error (the
    // server's stop cancels it); anything else is noise.
    let rest: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("Failed to serve session: Cancelled"))
        .collect();
    assert!(rest.is_empty(), "a quiet broker says nothing: {err}");

    // RUST_LOG still turns them on.
    let (child, line) = serve_child(&["--memory"], &[("RUST_LOG", "info")]);
    busy(&start_url(&line));
    let err = terminate(child);
    assert!(
        err.contains("INFO") && err.contains("peer connected"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn generate_token_out_writes_a_private_file_and_short_tokens_are_judged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let a = cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(&file)
        .assert()
        .success();
    assert!(
        a.get_output().stdout.is_empty(),
        "the token is in the file only"
    );
    assert!(stderr_of(&a).contains("--token-file"), "{}", stderr_of(&a));
    assert_eq!(mode(&file), 0o600);
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(token.trim().len() >= 40, "{token:?}");

    // --token-file takes it as it is.
    let b = Broker::start_with_token(token.trim());
    b.cipc()
        .arg("status")
        .arg("--token-file")
        .arg(&file)
        .assert()
        .success();

    // An existing file is kept unless --force, which also makes it private.
    let a = cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(&file)
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("--force"), "{}", stderr_of(&a));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    cipc()
        .args(["serve", "--generate-token", "--force", "--out"])
        .arg(&file)
        .assert()
        .success();
    assert_eq!(mode(&file), 0o600);
    assert_ne!(std::fs::read_to_string(&file).unwrap(), token);
    cipc().args(["serve", "--out"]).arg(&file).assert().code(2);

    // `--generate-token > file` into a file others can read: told how to fix it.
    let exposed = dir.path().join("exposed");
    let f = std::fs::File::create(&exposed).unwrap();
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std_cipc()
        .args(["serve", "--generate-token"])
        .stdout(f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600") && err.contains("--out"), "{err}");

    // A world-readable token file: the refusal says how to fix the mode.
    let a = b
        .cipc()
        .arg("status")
        .arg("--token-file")
        .arg(&exposed)
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!("chmod 600 {}", exposed.display())),
        "{err}"
    );

    // Tokens: under 8 characters refused, under 16 warned about.
    let a = cipc()
        .args(["serve", "--memory", "--port", "0", "--token", "abc123"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("6 characters") && err.contains("--generate-token"),
        "{err}"
    );
    let (mut child, _) = serve_child(&["--memory", "--token", "0123456789"], &[]);
    let errs = stderr_reader(&mut child);
    let line = errs.recv_timeout(PROCESS_LIMIT).expect("a warning");
    assert!(
        line.contains("only 10 characters") && line.contains("16"),
        "{line}"
    );
    stop(child);
}

#[test]
fn send_wait_is_one_request_that_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let served = Served::start(port, dir.path());
    let sender = std_cipc()
        .env("CIPC_URL", &url)
        .args(["send", "backend", "build", "--wait", "--timeout", "50s"])
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let listed = || {
        let v = stdout_json(cipc().env("CIPC_URL", &url).arg("commands"));
        v["commands"].as_array().unwrap().clone()
    };
    let deadline = Instant::now() + PROCESS_LIMIT;
    while listed().is_empty() {
        assert!(Instant::now() < deadline, "the command was never sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The broker goes away mid-wait and comes back.
    drop(served);
    let _served = Served::start(port, dir.path());
    let peer = stdout_json(
        cipc()
            .env("CIPC_URL", &url)
            .args(["peers", "connect", "backend"]),
    );
    let id = peer["peer"]["id"].as_str().unwrap();
    let key = peer["key"].as_str().unwrap();
    let got = stdout_json(
        cipc()
            .env("CIPC_URL", &url)
            .env("CIPC_PEER", id)
            .env("CIPC_PEER_KEY", key)
            .args(["wait", "--timeout", "50s"]),
    );
    let cid = got["command"]["id"].as_str().unwrap().to_string();
    cipc()
        .env("CIPC_URL", &url)
        .env("CIPC_PEER_KEY", key)
        .args(["ack", &cid, "--result", r#""built""#])
        .assert()
        .success();
    let out = wait_child(sender, PROCESS_LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = parse(&out.stdout);
    assert_eq!(v["command"]["id"], cid.as_str());
    assert_eq!(v["command"]["result"], "built");
    assert_eq!(listed().len(), 1, "the repeated request sent nothing new");
    // A dedupe key given by the user is kept.
    let a = cipc()
        .env("CIPC_URL", &url)
        .args(["send", "backend", "again", "--dedupe-key", "mine"])
        .args(["--wait", "--timeout", "100ms", "--json"])
        .assert()
        .code(124);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["command"]["dedupeKey"], "mine");
    assert!(
        stderr_of(&a).contains("nobody took it"),
        "{}",
        stderr_of(&a)
    );
}

// ---------------------------------------------------------------- issue 20: a new user's first hour

#[test]
fn an_unreadable_row_stops_start_up_naming_the_row_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let (child, line) = serve_child(&["--data-dir", &data_arg], &[]);
    let url = start_url(&line);
    let v = stdout_json(
        cipc()
            .env("CIPC_URL", &url)
            .args(["send", "backend", "build"]),
    );
    let id = v["command"]["id"].as_str().unwrap().to_string();
    terminate(child);

    // Something other than cipc breaks one row.
    let db = data.join("cipc.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn
        .execute(
            "UPDATE commands SET body = '{\"id\": 5}' WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let serve = || {
        let mut c = cipc();
        c.args(["serve", "--port", "0", "--data-dir", &data_arg])
            .env_remove("CIPC_HOST")
            .env_remove("CIPC_PORT")
            .env_remove("CIPC_DATA_DIR")
            .timeout(PROCESS_LIMIT);
        c
    };
    let a = serve().assert().code(1);
    let err = stderr_of(&a);
    assert!(!err.contains("panicked"), "{err}");
    // Which row: the table and its id.
    assert!(
        err.contains(&format!(
            "the row id = '{id}' of table commands is unreadable"
        )),
        "{err}"
    );
    // The way out: the exact statement that removes it, and moving the data aside.
    let delete = format!("DELETE FROM commands WHERE id = '{id}'");
    // (SQLite names the file by its full path, which may differ from ours
    // by symbolic links, so only its end is compared.)
    assert!(
        err.contains("sqlite3 \"") && err.contains(&format!("/cipc.db\" \"{delete}\"")),
        "{err}"
    );
    assert!(
        err.contains("mv \"") && err.contains("/data\" \"") && err.contains("/data\".old"),
        "{err}"
    );
    assert!(err.contains("--check-store"), "{err}");

    // Following the advice works: the broker starts, without that command.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(&delete, [])
        .unwrap();
    let (child, line) = serve_child(&["--data-dir", &data_arg], &[]);
    let v = stdout_json(cipc().env("CIPC_URL", start_url(&line)).arg("commands"));
    assert_eq!(v["commands"], json!([]), "{v}");
    terminate(child);
}

#[test]
fn generate_token_out_creates_missing_folders_privately() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config").join("cipc").join("token");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(&file)
        .assert()
        .success();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir.path().join("config")), 0o700);
    assert_eq!(mode(&dir.path().join("config").join("cipc")), 0o700);
    assert!(std::fs::read_to_string(&file).unwrap().trim().len() >= 40);
    // A folder that cannot be made (a file is in the way): said, with the fix.
    let blocked = dir.path().join("plain-file");
    std::fs::write(&blocked, "x").unwrap();
    let a = cipc()
        .args(["serve", "--generate-token", "--out"])
        .arg(blocked.join("token"))
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("cannot create the folder") && err.contains("mkdir -p -m 700"),
        "{err}"
    );
}
