//! The `cipc` client subcommands, run as real processes (assert_cmd) against a
//! real broker started in-process on a free port.
//!
//! Waits in these tests use generous deadlines only as a safety net; nothing
//! asserts on timing.
//!
//! The `cipc peers` subcommands and peer identity (ids, keys, reconnects).

mod common;

use common::cli::*;
use serde_json::json;

// ---------------------------------------------------------------- peers

#[test]
fn peers_connect_list_show_heartbeat_disconnect() {
    let b = Broker::start();
    let v = stdout_json(b.cipc().args([
        "peers",
        "connect",
        "backend",
        "--cap",
        "tcp",
        "--cap",
        "server,gpu",
        "--name",
        "bob",
    ]));
    let id = v["peer"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["peer"]["role"], "backend");
    assert_eq!(v["peer"]["capabilities"], json!(["tcp", "server", "gpu"]));
    assert_eq!(v["peer"]["name"], "bob");

    // --export is for eval, whatever the output mode.
    let export = stdout_text(b.cipc().args(["peers", "connect", "worker", "--export"]));
    let (worker, worker_key) = export
        .trim()
        .strip_prefix("export CIPC_PEER=")
        .and_then(|rest| rest.split_once(" CIPC_PEER_KEY="))
        .map_or_else(
            || panic!("not an export line: {export:?}"),
            |(id, key)| (id.to_string(), key.to_string()),
        );
    assert!(uuid::Uuid::parse_str(&worker).is_ok(), "{worker}");
    assert!(worker_key.starts_with("pk_"), "{worker_key}");

    // `cipc peers` lists (JSON when piped); `peers list` is the same.
    let list = stdout_json(b.cipc().arg("peers"));
    assert_eq!(list["peers"].as_array().unwrap().len(), 2);
    let list2 = stdout_json(b.cipc().args(["peers", "list", "--json"]));
    assert_eq!(list2["peers"].as_array().unwrap().len(), 2);

    // The table form has headers and the rows.
    let table = stdout_text(b.cipc().args(["peers", "--table"]));
    assert!(
        table.contains("ROLE") && table.contains("STATUS"),
        "{table}"
    );
    assert!(table.contains("backend") && table.contains(&id), "{table}");
    assert!(!table.contains('\x1b'), "no colour in a pipe: {table:?}");

    let d = stdout_json(b.cipc().args(["peers", "discover"]));
    assert_eq!(d["count"], 2);
    let mut roles: Vec<String> = serde_json::from_value(d["roles"].clone()).unwrap();
    roles.sort();
    assert_eq!(roles, ["backend", "worker"]);
    let dt = stdout_text(b.cipc().args(["peers", "discover", "--table"]));
    assert!(dt.contains("roles: "), "{dt}");

    let s = stdout_json(b.cipc().args(["peers", "show", &id]));
    assert_eq!(s["peer"]["id"], id.as_str());
    let st = stdout_text(b.cipc().args(["peers", "show", &id, "--table"]));
    assert!(
        st.contains("capabilities") && st.contains("tcp, server, gpu"),
        "{st}"
    );

    // Without an id, show/heartbeat/disconnect use CIPC_PEER (and the key).
    let s = stdout_json(
        b.cipc()
            .env("CIPC_PEER", &worker)
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "show"]),
    );
    assert_eq!(s["peer"]["role"], "worker");
    assert_eq!(s["peer"]["protected"], true, "the CLI always protects");
    // Naming a protected peer without its key is refused on any request.
    let a = b
        .cipc()
        .env("CIPC_PEER", &worker)
        .args(["peers", "show"])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("forbidden"), "{}", stderr_of(&a));
    let h = stdout_json(
        b.cipc()
            .env("CIPC_PEER", &worker)
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "heartbeat"]),
    );
    assert_eq!(h["peer"]["status"], "online");
    // The key alone names the peer.
    let gone = stdout_json(
        b.cipc()
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "disconnect"]),
    );
    assert_eq!(gone["peer"]["status"], "offline");

    // Reconnecting with --id keeps the id and needs the key.
    let a = b
        .cipc()
        .args(["peers", "connect", "worker", "--id", &worker])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("forbidden"), "{}", stderr_of(&a));
    let again = stdout_json(
        b.cipc()
            .env("CIPC_PEER_KEY", &worker_key)
            .args(["peers", "connect", "worker", "--id", &worker]),
    );
    assert_eq!(again["peer"]["id"], worker.as_str());
    assert_eq!(again["peer"]["status"], "online");
    assert_eq!(
        again["key"],
        worker_key.as_str(),
        "a proven reconnect keeps its key"
    );
}

#[test]
fn peers_errors_are_one_line_with_the_brokers_message() {
    let b = Broker::start();
    let a = b
        .cipc()
        .args(["peers", "show", "01000000-0000-7000-8000-000000000000"])
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.starts_with("cipc peers show: the broker said: "),
        "{err}"
    );
    assert!(err.contains("not_found"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(a.get_output().stdout.is_empty());

    // A bad role: the broker's own explanation reaches the user.
    let a = b
        .cipc()
        .args(["peers", "connect", "bad role!"])
        .assert()
        .code(1);
    assert!(stderr_of(&a).contains("bad_request"), "{}", stderr_of(&a));

    // No peer to act on: a usage error naming the fix.
    let a = b.cipc().args(["peers", "heartbeat"]).assert().code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER"), "{}", stderr_of(&a));

    // A trailing slash on the URL is fine.
    cipc()
        .args(["peers", "--url", &format!("{}/", b.url)])
        .assert()
        .success();

    // A CIPC_PEER that is not an id is caught before any request.
    let a = b
        .cipc()
        .env("CIPC_PEER", "not-a-uuid")
        .arg("peers")
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER"), "{}", stderr_of(&a));
}

#[test]
fn a_wrong_or_foreign_peer_key_never_works() {
    let b = Broker::start();
    let me = b.connect("backend");
    let other = b.connect("backend");
    // Another peer's key, a key with a changed secret, and no key at all.
    let mut forged = b.key(&me);
    // The last character carries only 4 bits of the secret; 'A' and 'Q'
    // differ in them.
    let last = forged.pop();
    forged.push(if last == Some('A') { 'Q' } else { 'A' });
    for (peer, key) in [
        (me.clone(), Some(b.key(&other))),
        (me.clone(), Some(forged)),
        (me.clone(), None),
    ] {
        let mut c = b.cipc();
        c.env("CIPC_PEER", &peer);
        if let Some(k) = &key {
            c.env("CIPC_PEER_KEY", k);
        }
        let a = c.args(["wait", "--timeout", "0s"]).assert();
        let out = a.get_output();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "key {key:?} worked: {err}");
        assert!(
            err.contains("forbidden") || err.contains("different peers"),
            "key {key:?}: {err}"
        );
    }
    // A malformed key is caught before any request.
    let a = b
        .cipc()
        .env("CIPC_PEER_KEY", "not-a-key")
        .args(["wait", "--timeout", "0s"])
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("CIPC_PEER_KEY"), "{}", stderr_of(&a));
    // The right key works.
    b.cipc()
        .envs(b.identity(&me))
        .args(["wait", "--timeout", "0s"])
        .assert()
        .code(124);
}

#[test]
fn ids_can_be_given_as_tables_show_them_or_as_a_unique_part() {
    let b = Broker::start();
    let peer = b.connect("w");
    let one = send_id(&b, "w", "one");
    let two = send_id(&b, "nobody", "two");
    let tail = |id: &str| id[id.len() - 8..].to_string();

    // The short id of the commands table.
    let table = stdout_text(b.cipc().args(["commands", "--table"]));
    assert!(table.contains(&tail(&two)), "{table}");
    let (v, _) = result_of(&b, &tail(&two), "100ms", 124);
    assert_eq!(v["command"]["id"], two.as_str());
    // A unique start or end of at least 6 characters, with or without dashes.
    let v = stdout_json(b.cipc().args(["cancel", &two[two.len() - 6..]]));
    assert_eq!(v["command"]["status"], "cancelled");
    // An ambiguous part lists what it matches.
    let a = b.cipc().args(["result", &one[..6]]).assert().code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains(&one) && err.contains(&two) && err.contains("give more"),
        "{err}"
    );
    // Too short, not an id, or nothing like it.
    let a = b.cipc().args(["cancel", &tail(&one)[..5]]).assert().code(2);
    assert!(stderr_of(&a).contains("too short"), "{}", stderr_of(&a));
    let a = b.cipc().args(["cancel", "not-an-id"]).assert().code(2);
    assert!(
        stderr_of(&a).contains("is not a command id"),
        "{}",
        stderr_of(&a)
    );
    let a = b.cipc().args(["cancel", "abcdef987654"]).assert().code(1);
    assert!(
        stderr_of(&a).contains("no command id starts or ends with abcdef987654"),
        "{}",
        stderr_of(&a)
    );

    // ack, by its short id, as the peer that took it.
    stdout_json(b.cipc().envs(b.identity(&peer)).arg("wait"));
    let v =
        stdout_json(
            b.cipc()
                .envs(b.identity(&peer))
                .args(["ack", &tail(&one), "--result", "1"]),
        );
    assert_eq!(v["command"]["id"], one.as_str());
    assert_eq!(v["command"]["status"], "acked");

    // Peers: show and heartbeat by a part, and --peer too.
    let v = stdout_json(b.cipc().args(["peers", "show", &tail(&peer)]));
    assert_eq!(v["peer"]["id"], peer.as_str());
    let v = stdout_json(b.cipc().args(["peers", "show", &peer[..13]]));
    assert_eq!(v["peer"]["id"], peer.as_str());
    let v = stdout_json(b.cipc().env("CIPC_PEER_KEY", b.key(&peer)).args([
        "peers",
        "heartbeat",
        &tail(&peer),
    ]));
    assert_eq!(v["peer"]["status"], "online");
    b.cipc()
        .args(["wait", "--timeout", "0s", "--peer", &tail(&peer)])
        .env("CIPC_PEER_KEY", b.key(&peer))
        .assert()
        .code(124);
    let a = b
        .cipc()
        .args(["peers", "show", "abcdef12"])
        .assert()
        .code(1);
    assert!(
        stderr_of(&a).contains("no peer id starts or ends with"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn peers_connect_reconnects_this_shells_peer_of_the_same_role() {
    let b = Broker::start();
    let me = b.connect("backend");
    let count = || {
        stdout_json(b.cipc().arg("peers"))["peers"]
            .as_array()
            .unwrap()
            .len()
    };

    // Connecting as backend again, as CIPC_PEER: the same peer, the same key.
    let a = b
        .cipc()
        .envs(b.identity(&me))
        .args(["peers", "connect", "backend", "--export"])
        .assert()
        .success();
    let export = String::from_utf8_lossy(&a.get_output().stdout)
        .trim()
        .to_string();
    assert_eq!(
        export,
        format!("export CIPC_PEER={me} CIPC_PEER_KEY={}", b.key(&me))
    );
    assert!(
        stderr_of(&a).contains("reconnected peer"),
        "{}",
        stderr_of(&a)
    );
    assert_eq!(count(), 1, "no ghost peer");

    // Another role, or --new: a new peer.
    let v = stdout_json(
        b.cipc()
            .envs(b.identity(&me))
            .args(["peers", "connect", "frontend"]),
    );
    assert_ne!(v["peer"]["id"], me.as_str());
    let v = stdout_json(
        b.cipc()
            .envs(b.identity(&me))
            .args(["peers", "connect", "backend", "--new"]),
    );
    assert_ne!(v["peer"]["id"], me.as_str());
    assert_eq!(count(), 3);
    // Without the key there is nothing to reconnect with: a new peer.
    let v = stdout_json(
        b.cipc()
            .env("CIPC_PEER", &me)
            .args(["peers", "connect", "backend"]),
    );
    assert_ne!(v["peer"]["id"], me.as_str());
}

#[test]
fn forget_and_prune_clear_away_offline_peers_only() {
    let b = Broker::start();
    let alive = b.connect("live");
    let gone = b.connect("ghost");
    let also_gone = b.connect("ghost");
    for id in [&gone, &also_gone] {
        b.cipc()
            .envs(b.identity(id))
            .args(["peers", "disconnect"])
            .assert()
            .success();
    }
    // A person without a key cannot forget an online protected peer.
    let a = b.cipc().args(["peers", "forget", &alive]).assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("key"), "{err}");

    let v = stdout_json(b.cipc().args(["peers", "prune", "--dry-run", "--json"]));
    assert_eq!(v["forgotten"].as_array().map(Vec::len), Some(2), "{v}");
    let v = stdout_json(b.cipc().args(["peers", "--json"]));
    assert_eq!(
        v["peers"].as_array().map(Vec::len),
        Some(3),
        "a dry run forgets nothing"
    );

    let a = b
        .cipc()
        .args(["peers", "forget", &gone[gone.len() - 8..], "--table"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.contains(&format!("forgot peer {gone}")), "{out}");
    let a = b
        .cipc()
        .args(["peers", "prune", "--table"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.contains("forgot 1 offline peer(s)"), "{out}");
    let v = stdout_json(b.cipc().args(["peers", "--json"]));
    let left: Vec<&str> = v["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(left, [alive.as_str()], "{v}");
}

#[test]
fn the_peers_table_says_which_agent_a_session_is() {
    let b = Broker::start();
    let id = b.rt.block_on(async {
        let (st, v) = common::post(
            &format!("{}/peers/connect", b.url),
            json!({"role": "backend", "via": "hook", "agent": "claude-code"}),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        v["peer"]["id"].as_str().expect("id").to_string()
    });
    let a = b.cipc().args(["peers", "--table"]).assert().success();
    let table = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(table.contains("hook · claude-code"), "{table}");
    let a = b
        .cipc()
        .args(["peers", "show", &id, "--table"])
        .assert()
        .success();
    let shown = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(
        shown.contains("agent") && shown.contains("claude-code"),
        "{shown}"
    );
}
