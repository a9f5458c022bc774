//! `cipc codex setup | remove` on real files: what lands in Codex's
//! `config.toml` and `hooks.json`, that the person's own settings stay as
//! they were, and that remove takes out exactly what setup added. (Codex
//! itself reading them is `tests/codex.rs`.)

mod common;

use common::cli::cipc;
use serde_json::Value;
use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const MINE: &str =
    "# my Codex settings\nmodel = \"gpt-5.5\"\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\n";

#[test]
fn user_scope_setup_merges_trusts_only_its_hooks_and_remove_restores_the_files() {
    let home = tempfile::tempdir().expect("home");
    let codex_home = home.path().join("codex");
    std::fs::create_dir_all(&codex_home).expect("mkdir");
    let config = codex_home.join("config.toml");
    let hooks = codex_home.join("hooks.json");
    std::fs::write(&config, MINE).expect("write");
    let theirs =
        r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}"#;
    std::fs::write(&hooks, theirs).expect("write");
    let setup = || {
        cipc()
            .env("HOME", home.path())
            .env("CODEX_HOME", &codex_home)
            .args(["codex", "setup", "--role", "frontend", "--scope", "user"])
            .args(["--url", "http://127.0.0.1:9911", "--cipc", "/opt/cipc"])
            .args(["--token", "s3cret"])
            .assert()
            .success()
    };
    let a = setup();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(
        out.contains("Codex sessions started anywhere are now peers of role \"frontend\""),
        "{out}"
    );
    assert!(out.contains("trusted cipc's 7 hooks"), "{out}");

    let text = read(&config);
    assert!(
        text.starts_with(MINE),
        "the person's settings come first, untouched:\n{text}"
    );
    assert!(
        text.contains("[mcp_servers.cipc]\nurl = \"http://127.0.0.1:9911/mcp\""),
        "{text}"
    );
    assert!(
        text.contains("default_tools_approval_mode = \"approve\""),
        "{text}"
    );
    assert!(text.contains("Authorization = \"Bearer s3cret\""), "{text}");
    let canonical = std::fs::canonicalize(&hooks).expect("canonical");
    let key = format!("[hooks.state.\"{}:pre_tool_use:0:0\"]", canonical.display());
    assert!(text.contains(&key), "{key} in\n{text}");
    // The person's own Stop hook (group 0) is not trusted by cipc; cipc's is group 1.
    assert!(
        !text.contains(&format!("{}:stop:0:0", canonical.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:stop:1:0", canonical.display())),
        "{text}"
    );

    let doc: Value = serde_json::from_str(&read(&hooks)).expect("json");
    assert_eq!(
        doc["hooks"]["Stop"][0]["hooks"][0]["command"],
        "notify-send done"
    );
    assert_eq!(
        doc["hooks"]["SessionStart"][0]["hooks"][0]["command"],
        "/opt/cipc hook session-start --agent codex --role frontend --url http://127.0.0.1:9911"
    );
    assert_eq!(
        doc["hooks"]["PreToolUse"][0]["matcher"],
        "mcp__cipc__.*|apply_patch"
    );
    let permission = &doc["hooks"]["PermissionRequest"][0]["hooks"][0];
    assert_eq!(
        permission["command"],
        "/opt/cipc hook permission --agent codex --role frontend --url http://127.0.0.1:9911 --permission-wait 120"
    );
    assert_eq!(permission["timeout"], 150);

    // Twice is once.
    let (config_1, hooks_1) = (read(&config), read(&hooks));
    let a = setup();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!((read(&config), read(&hooks)), (config_1, hooks_1));

    let a = cipc()
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .args(["codex", "remove", "--scope", "user"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert_eq!(read(&config), MINE, "{out}");
    let doc: Value = serde_json::from_str(&read(&hooks)).expect("json");
    let theirs: Value = serde_json::from_str(theirs).expect("json");
    assert_eq!(doc, theirs, "{out}");
}

#[test]
fn project_scope_keeps_the_secret_out_and_remove_leaves_no_empty_files() {
    let home = tempfile::tempdir().expect("home");
    let codex_home = home.path().join("codex");
    let project = tempfile::tempdir().expect("project");
    let dir = project.path().to_str().expect("utf-8");
    let a = cipc()
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .env("PATH", "/usr/bin:/bin")
        .args([
            "codex", "setup", "--role", "qa", "--dir", dir, "--token", "s3cret",
        ])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("`cipc` is not on PATH"), "{err}");
    assert!(out.contains("only once you trust the project"), "{out}");
    let config = read(&project.path().join(".codex/config.toml"));
    assert!(
        config.contains("bearer_token_env_var = \"CIPC_TOKEN\""),
        "{config}"
    );
    assert!(!config.contains("s3cret"), "{config}");
    let hooks: Value =
        serde_json::from_str(&read(&project.path().join(".codex/hooks.json"))).expect("json");
    assert_eq!(
        hooks["hooks"]["SessionStart"][0]["hooks"][0]["command"],
        "cipc hook session-start --agent codex --role qa",
        "no path of this machine in a file the team shares"
    );
    // The trust lives in the person's own configuration.
    let user = read(&codex_home.join("config.toml"));
    assert!(
        user.contains(".codex/hooks.json:session_start:0:0"),
        "{user}"
    );

    let a = cipc()
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .args(["codex", "remove", "--dir", dir])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(!project.path().join(".codex").exists(), "{out}");
    assert!(
        !read(&codex_home.join("config.toml")).contains("hooks.state"),
        "{out}"
    );
}

#[test]
fn a_config_that_is_not_toml_is_refused_and_left_alone() {
    let home = tempfile::tempdir().expect("home");
    let codex_home = home.path().join("codex");
    std::fs::create_dir_all(&codex_home).expect("mkdir");
    std::fs::write(codex_home.join("config.toml"), "model = \n").expect("write");
    let a = cipc()
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .args([
            "codex", "setup", "--role", "qa", "--scope", "user", "--cipc", "cipc",
        ])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("is not valid TOML"), "{err}");
    assert_eq!(read(&codex_home.join("config.toml")), "model = \n");
}

#[test]
fn a_dry_run_shows_what_would_be_added_and_writes_nothing() {
    let home = tempfile::tempdir().expect("home");
    let codex_home = home.path().join("codex");
    let project = tempfile::tempdir().expect("project");
    let dir = project.path().to_str().expect("utf-8");
    let a = cipc()
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .args(["codex", "setup", "--role", "qa", "--dir", dir, "--dry-run"])
        .args(["--cipc", "cipc"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(
        out.contains("would add to") && out.contains("[mcp_servers.cipc]"),
        "{out}"
    );
    assert!(
        out.contains("cipc hook session-start --agent codex --role qa"),
        "{out}"
    );
    assert!(out.contains("trusted_hash = \"sha256:"), "{out}");
    assert!(!out.contains("would remove"), "{out}");
    assert!(!project.path().join(".codex").exists(), "{out}");
    assert!(!codex_home.exists(), "{out}");
}
