//! Leases enforced where the edit happens: the `pre-tool-use` hook of
//! Claude Code's file-editing tools, run directly as Claude Code runs it
//! (the built binary, the hook's JSON on stdin) in a real git checkout
//! against a real broker. Another session's lease refuses the edit, naming
//! the holder; claiming on edit leases what a session edits; the cipc lease
//! tools get the checkout's repo and repo-relative paths filled in.

mod common;

use common::hook::Session;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Makes `dir` a git checkout whose origin is `url`.
fn git_checkout(dir: &Path, url: &str) {
    for args in [&["init", "-q"][..], &["remote", "add", "origin", url][..]] {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .expect("run git")
            .success();
        assert!(ok, "git {args:?}");
    }
}

/// Registers a protected peer of `role` over REST; answers its id and key.
async fn holder(u: &str, role: &str, name: &str) -> (String, String) {
    let (st, v) = post(
        &format!("{u}/peers/connect"),
        json!({"role": role, "name": name, "protect": true}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    (
        v["peer"]["id"].as_str().expect("id").to_string(),
        v["key"].as_str().expect("key").to_string(),
    )
}

async fn lease(u: &str, key: &str, body: Value) -> Value {
    let r = http()
        .post(format!("{u}/leases"))
        .header("X-Cipc-Peer-Key", key)
        .json(&body)
        .send()
        .await
        .expect("lease");
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "{v}");
    v["lease"].clone()
}

fn edit(s: &Session, tool: &str, input: Value) -> Value {
    s.input(
        "PreToolUse",
        json!({"tool_name": tool, "tool_input": input}),
    )
}

#[tokio::test]
async fn an_edit_of_a_file_another_session_leases_is_refused_naming_the_holder() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    git_checkout(s.project.path(), "git@github.com:Acme/Shop.git");
    let (start, _) = s.start("frontend");
    assert!(
        start.context().contains("repo \"github.com/Acme/Shop\""),
        "the model is told its repo: {start:?}"
    );
    s.prompt("frontend");
    let (_, key) = holder(&u, "backend", "ana").await;
    let held = lease(
        &u,
        &key,
        json!({"paths": ["locked.txt", "db/"], "repo": "github.com/Acme/Shop", "reason": "migrating users"}),
    )
    .await;

    let r = http()
        .get(format!("{u}/events"))
        .send()
        .await
        .expect("events");
    let mut events = r.bytes_stream();

    let top = s.project.path().canonicalize().expect("canonical");
    let locked = top.join("locked.txt").to_string_lossy().into_owned();
    for (tool, input) in [
        ("Write", json!({"file_path": locked, "content": "mine"})),
        (
            "Edit",
            json!({"file_path": locked, "old_string": "a", "new_string": "b"}),
        ),
        (
            "MultiEdit",
            json!({"file_path": locked, "edits": [
                {"old_string": "a", "new_string": "b"},
                {"old_string": "c", "new_string": "d", "replace_all": true}
            ]}),
        ),
        (
            "NotebookEdit",
            json!({"notebook_path": top.join("db/n.ipynb"), "new_source": "x"}),
        ),
    ] {
        let ran = s.run("pre-tool-use", "frontend", &edit(&s, tool, input));
        let out = &ran.json()["hookSpecificOutput"];
        assert_eq!(out["permissionDecision"], "deny", "{tool}: {ran:?}");
        let why = out["permissionDecisionReason"].as_str().expect("a reason");
        assert!(
            why.contains("backend (ana)")
                && why.contains("migrating users")
                && why.contains("send_command"),
            "{tool}: {why}"
        );
        assert!(why.contains(held["id"].as_str().expect("id")), "{why}");
    }
    // A free file, and a file in no checkout, pass untouched.
    let free = top.join("src/free.txt");
    let ran = s.run(
        "pre-tool-use",
        "frontend",
        &edit(&s, "Write", json!({"file_path": free, "content": "x"})),
    );
    assert_eq!(ran.json(), Value::Null, "{ran:?}");
    let loose = tempfile::tempdir().expect("tmp");
    let ran = s.run(
        "pre-tool-use",
        "frontend",
        &edit(
            &s,
            "Write",
            json!({"file_path": loose.path().join("x"), "content": "x"}),
        ),
    );
    assert_eq!(ran.json(), Value::Null, "{ran:?}");

    // The person sees the refusal in the event stream (the dashboard's feed).
    let mut buf = String::new();
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(i) = buf.find("event: edit_refused") {
                let rest = &buf[i..];
                if let Some(end) = rest.find("\n\n") {
                    let data = rest[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("data:"))
                        .unwrap_or_default();
                    return serde_json::from_str::<Value>(data.trim()).expect("JSON");
                }
            }
            let chunk = events.next().await.expect("open").expect("chunk");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("an edit_refused event");
    assert_eq!(refused["peerRole"], "frontend", "{refused}");
    assert_eq!(refused["paths"], json!(["locked.txt"]), "{refused}");
    assert_eq!(refused["tool"], "Write", "{refused}");
    assert_eq!(refused["leases"][0]["holderName"], "ana", "{refused}");
}

#[tokio::test]
async fn a_file_named_with_glob_characters_is_checked_as_that_file() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    git_checkout(s.project.path(), "https://github.com/acme/web");
    s.start("frontend");
    s.prompt("frontend");
    let (_, key) = holder(&u, "backend", "ana").await;
    let held = lease(
        &u,
        &key,
        json!({"paths": ["app/"], "repo": "github.com/acme/web", "reason": "new routing"}),
    )
    .await;
    let top = s.project.path().canonicalize().expect("canonical");

    // Read as a glob, `{` is unclosed: the check would be a 400 and the
    // edit would go through.
    let page = top.join("app/[id]/page{x.tsx");
    let ran = s.run(
        "pre-tool-use",
        "frontend",
        &edit(
            &s,
            "Edit",
            json!({"file_path": page, "old_string": "a", "new_string": "b"}),
        ),
    );
    let out = &ran.json()["hookSpecificOutput"];
    assert_eq!(out["permissionDecision"], "deny", "{ran:?}");
    let why = out["permissionDecisionReason"].as_str().expect("a reason");
    assert!(
        why.contains("app/[id]/page{x.tsx") && why.contains(held["id"].as_str().expect("id")),
        "the file is named as it is: {why}"
    );
    // A file with glob characters outside the lease is free.
    let free = top.join("lib/[slug]*.ts");
    let ran = s.run(
        "pre-tool-use",
        "frontend",
        &edit(&s, "Write", json!({"file_path": free, "content": "x"})),
    );
    assert_eq!(ran.json(), Value::Null, "{ran:?}");
}

#[tokio::test]
async fn claiming_on_edit_leases_what_a_session_edits_until_it_ends() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let a = Session::new(&u);
    git_checkout(a.project.path(), "https://github.com/acme/shop");
    let (_, a_id) = a.start("backend");
    a.prompt("backend");
    let top = a.project.path().canonicalize().expect("canonical");
    let file = top.join("src/api.rs");
    let write = edit(
        &a,
        "Write",
        json!({"file_path": file, "content": "fn main() {}"}),
    );

    let ran = a.run_with("pre-tool-use", "backend", &write, &["--claim-on-edit"]);
    assert_eq!(
        ran.json(),
        Value::Null,
        "its own edit goes through: {ran:?}"
    );
    let (_, v) = get(&format!("{u}/leases?holder={a_id}")).await;
    let mine = v["leases"].as_array().expect("leases").clone();
    assert_eq!(mine.len(), 1, "{v}");
    assert_eq!(mine[0]["paths"], json!(["src/api.rs"]));
    assert_eq!(mine[0]["repo"], "github.com/acme/shop");
    let first_expiry = mine[0]["expiresAt"].as_str().expect("expiry").to_string();

    // Editing again renews the same lease rather than taking another.
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.run_with("pre-tool-use", "backend", &write, &["--claim-on-edit"]);
    let (_, v) = get(&format!("{u}/leases?holder={a_id}")).await;
    let again = v["leases"].as_array().expect("leases");
    assert_eq!(again.len(), 1, "{v}");
    assert!(
        again[0]["expiresAt"].as_str().expect("expiry") > first_expiry.as_str(),
        "{v}"
    );

    // Another session in another checkout of the same repo is refused.
    let other = Session::new(&u);
    git_checkout(other.project.path(), "git@github.com:acme/shop.git");
    other.start("frontend");
    other.prompt("frontend");
    let theirs = other
        .project
        .path()
        .canonicalize()
        .expect("canonical")
        .join("src/api.rs");
    let ran = other.run_with(
        "pre-tool-use",
        "frontend",
        &edit(
            &other,
            "Edit",
            json!({"file_path": theirs, "old_string": "a", "new_string": "b"}),
        ),
        &["--claim-on-edit"],
    );
    assert_eq!(
        ran.json()["hookSpecificOutput"]["permissionDecision"],
        "deny",
        "{ran:?}"
    );

    // The session ends: what it claimed is free again.
    a.run(
        "session-end",
        "backend",
        &a.input("SessionEnd", json!({"reason": "other"})),
    );
    let (_, v) = get(&format!("{u}/leases?repo=github.com/acme/shop")).await;
    assert_eq!(v["leases"], json!([]), "{v}");
}

#[tokio::test]
async fn cipc_lease_tools_get_the_checkouts_repo_and_relative_paths() {
    let b = BinaryBroker::start(&["--memory"], &[]);
    let u = b.url.clone();
    let s = Session::new(&u);
    git_checkout(s.project.path(), "ssh://git@GitHub.com/acme/shop.git");
    s.start("backend");
    let top = s.project.path().canonicalize().expect("canonical");
    let ran = s.run(
        "pre-tool-use",
        "backend",
        &edit(
            &s,
            "mcp__cipc__claim_paths",
            json!({"paths": [top.join("src/db/"), "docs/*.md"], "reason": "schema"}),
        ),
    );
    let input = &ran.json()["hookSpecificOutput"]["updatedInput"];
    assert_eq!(input["repo"], "github.com/acme/shop", "{ran:?}");
    assert_eq!(input["paths"], json!(["src/db/", "docs/*.md"]), "{ran:?}");
    assert_eq!(input["reason"], "schema");
    assert!(input["peer_key"]
        .as_str()
        .is_some_and(|k| k.starts_with("pk_")));
    // A repo the model named is kept.
    let ran = s.run(
        "pre-tool-use",
        "backend",
        &edit(
            &s,
            "mcp__cipc__check_paths",
            json!({"paths": ["a"], "repo": "other"}),
        ),
    );
    assert_eq!(
        ran.json()["hookSpecificOutput"]["updatedInput"]["repo"],
        "other"
    );
}

#[test]
fn the_edit_check_benchmark_times_real_hook_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_cipc"))
        .args(["bench", "--edit-hook", "3", "--json"])
        .env_remove("CIPC_URL")
        .env_remove("CIPC_TOKEN")
        .output()
        .expect("run cipc bench --edit-hook");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let text = v.to_string();
    for row in [
        "process start floor",
        "edit check, free file",
        "edit check, leased file",
    ] {
        assert!(text.contains(row), "no {row:?} in {v}");
    }
    assert_eq!(text.matches("\"runs\":3").count(), 3, "{v}");
}
