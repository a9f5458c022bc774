//! `cipc lease` and `cipc guard`, run as real processes (assert_cmd) in
//! temporary git repositories, against a real broker started in-process.
//!
//! git runs with no global or system configuration (a developer's
//! `core.hooksPath` must not leak in), and the hook finds the `cipc` under
//! test first on PATH, as it would find an installed one.
//!
//! (A file of one concern, `cipc lease` and `cipc guard` as processes.)

mod common;

use common::cli::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

/// The repo every test checkout is a clone of, as cipc names it.
const REPO: &str = "github.com/Org/App";

/// A git checkout in a temp directory, with an `origin` remote.
struct Checkout {
    _tmp: tempfile::TempDir,
    top: PathBuf,
}

/// The environment every git (and every cipc that runs git) gets.
fn git_env(c: &mut StdCommand) {
    c.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com");
}

/// PATH with the `cipc` under test first.
fn path_with_cipc() -> std::ffi::OsString {
    let bin = Path::new(env!("CARGO_BIN_EXE_cipc"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let mut dirs = vec![bin];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("PATH")
}

impl Checkout {
    fn new() -> Checkout {
        let tmp = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(tmp.path()).unwrap().join("app");
        std::fs::create_dir_all(top.join("src/api")).unwrap();
        std::fs::create_dir_all(top.join("sub")).unwrap();
        let c = Checkout { _tmp: tmp, top };
        c.git(&["init", "-q", "-b", "main"]);
        c.git(&["remote", "add", "origin", "git@GitHub.com:Org/App.git"]);
        c
    }

    /// git in the checkout; panics unless it succeeds.
    fn git(&self, args: &[&str]) -> String {
        let out = self.git_cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn git_cmd(&self, args: &[&str]) -> StdCommand {
        let mut c = StdCommand::new("git");
        c.arg("-C").arg(&self.top).args(args);
        git_env(&mut c);
        c
    }

    /// `git commit` as a session whose environment is `envs` (the hook
    /// finds `cipc` on PATH and the broker in CIPC_URL).
    fn commit(&self, url: &str, envs: &[(&str, String)], message: &str) -> std::process::Output {
        let mut c = self.git_cmd(&["commit", "-q", "-m", message]);
        c.env("PATH", path_with_cipc()).env("CIPC_URL", url);
        for var in ["CIPC_PEER", "CIPC_PEER_KEY", "CIPC_TOKEN", "NO_COLOR"] {
            c.env_remove(var);
        }
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.top.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn commits(&self) -> usize {
        self.git(&["rev-list", "--count", "HEAD"])
            .trim()
            .parse()
            .unwrap()
    }

    fn hook(&self) -> PathBuf {
        self.top.join(".git/hooks/pre-commit")
    }
}

/// `cipc` for broker `b`, run in `dir`, with git's test environment.
fn cipc_in(b: &Broker, dir: &Path) -> assert_cmd::Command {
    let mut c = b.cipc();
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    c
}

/// `cipc` with no broker (the guard's install and remove need none).
fn cipc_here(dir: &Path) -> assert_cmd::Command {
    let mut c = cipc();
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("PATH", path_with_cipc());
    c
}

/// Registers a peer of `role` named `name`; returns its CIPC_PEER and CIPC_PEER_KEY.
fn peer(b: &Broker, role: &str, name: &str) -> [(&'static str, String); 2] {
    let v = stdout_json(b.cipc().args(["peers", "connect", role, "--name", name]));
    [
        ("CIPC_PEER", v["peer"]["id"].as_str().unwrap().to_string()),
        ("CIPC_PEER_KEY", v["key"].as_str().unwrap().to_string()),
    ]
}

fn lease_id(v: &Value) -> String {
    v["lease"]["id"].as_str().expect("lease id").to_string()
}

#[test]
fn acquire_conflict_check_list_renew_and_release() {
    let b = Broker::start();
    let repo = Checkout::new();
    let alice = peer(&b, "backend", "alice");
    let bob = peer(&b, "frontend", "bob");

    // From a subdirectory, `../src/api/` is the repo's `src/api/`.
    let v = stdout_json(
        cipc_in(&b, &repo.top.join("sub"))
            .envs(alice.clone())
            .args(["lease", "acquire", "../src/api/", "./../src/api/"])
            .args(["--reason", "refactoring users", "--ttl", "10m"]),
    );
    assert_eq!(v["lease"]["repo"], REPO);
    assert_eq!(v["lease"]["paths"], serde_json::json!(["src/api/"]));
    assert_eq!(v["lease"]["exclusive"], true);
    assert_eq!(v["lease"]["holderName"], "alice");
    let id = lease_id(&v);

    // Another session is refused, told who holds it, why, until when, and what to do.
    let a = cipc_in(&b, &repo.top)
        .envs(bob.clone())
        .args(["lease", "acquire", "src/api/users.rs", "src/free.rs"])
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.starts_with(
            "cipc lease acquire: nothing was taken: 1 lease of another session is in the way"
        ),
        "{err}"
    );
    for needle in [
        "backend (alice) holds src/api/ until",
        ": refactoring users",
        "ask backend (alice) with `cipc send ",
        "or wait until",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    // In JSON, the refusal document itself, conflicts and all.
    let refusal = parse(&a.get_output().stdout);
    assert_eq!(refusal["error"]["reason"], "lease_conflict");
    assert_eq!(refusal["conflicts"][0]["id"], id.as_str());
    // All or nothing: src/free.rs was not taken.
    let mine = stdout_json(
        cipc_in(&b, &repo.top)
            .envs(bob.clone())
            .args(["lease", "list", "--mine"]),
    );
    assert_eq!(mine["leases"], serde_json::json!([]));

    // check: exit 1 naming the holder for bob and for a person, 0 for alice.
    let a = cipc_in(&b, &repo.top)
        .envs(bob.clone())
        .args(["lease", "check", "src/api/users.rs", "src/free.rs"])
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    let conflicts = v["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{v}");
    assert_eq!(conflicts[0]["path"], "src/api/users.rs");
    assert_eq!(conflicts[0]["lease"]["holderRole"], "backend");
    let a = cipc_in(&b, &repo.top)
        .args(["lease", "check", "src/api/users.rs", "--table"])
        .assert()
        .code(1);
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(
        out.contains("src/api/users.rs")
            && out.contains("backend (alice)")
            && out.contains("refactoring users")
            && out.contains("UTC (in "),
        "{out}"
    );
    assert!(
        stderr_of(&a).contains("ask backend (alice)"),
        "{}",
        stderr_of(&a)
    );
    let free = stdout_text(
        cipc_in(&b, &repo.top.join("src"))
            .envs(alice.clone())
            .args(["lease", "check", "api/users.rs", "--table"]),
    );
    assert_eq!(free.trim(), "free: src/api/users.rs");

    // list: this repo's by default; --all every repo's; another repo's is empty.
    let table = stdout_text(cipc_in(&b, &repo.top).args(["lease", "list", "--table"]));
    assert!(
        table.contains("src/api/")
            && table.contains("backend (alice)")
            && table.contains("exclusive")
            && !table.contains("REPO"),
        "{table}"
    );
    let all = stdout_json(cipc_in(&b, &repo.top).args(["lease", "list", "--all"]));
    assert_eq!(all["leases"].as_array().unwrap().len(), 1);
    let other = stdout_json(cipc_in(&b, &repo.top).args(["lease", "list", "--repo", "elsewhere"]));
    assert_eq!(other["leases"], serde_json::json!([]));

    // renew, by the short id the table shows; only the holder may.
    let short = &id[id.len() - 8..];
    let before = all["leases"][0]["expiresAt"].as_str().unwrap().to_string();
    let v = stdout_json(
        cipc_in(&b, &repo.top)
            .envs(alice.clone())
            .args(["lease", "renew", short, "--ttl", "2h"]),
    );
    assert!(
        v["lease"]["expiresAt"].as_str().unwrap() > before.as_str(),
        "{v}"
    );
    cipc_in(&b, &repo.top)
        .envs(bob.clone())
        .args(["lease", "renew", short])
        .assert()
        .code(1);

    // release by path: bob holds nothing there; alice releases all of hers.
    let a = cipc_in(&b, &repo.top)
        .envs(bob.clone())
        .args(["lease", "release", "src/api"])
        .assert()
        .code(1);
    assert!(
        stderr_of(&a).contains("no lease of yours holds src/api/"),
        "{}",
        stderr_of(&a)
    );
    let v = stdout_json(
        cipc_in(&b, &repo.top)
            .envs(alice.clone())
            .args(["lease", "release"]),
    );
    assert_eq!(v["leases"][0]["id"], id.as_str());
    assert_eq!(v["leases"][0]["status"], "released");

    // Now bob gets it, shared; a person (no peer) releases it by its path.
    let v = stdout_json(cipc_in(&b, &repo.top).envs(bob.clone()).args([
        "lease",
        "acquire",
        "src/api/users.rs",
        "--shared",
    ]));
    assert_eq!(v["lease"]["exclusive"], false);
    let text = stdout_text(cipc_in(&b, &repo.top).args([
        "lease",
        "release",
        "src/api/users.rs",
        "--table",
    ]));
    assert!(
        text.contains("released lease") && text.contains("frontend (bob)"),
        "{text}"
    );
    let v = stdout_json(cipc_in(&b, &repo.top).args(["lease", "list"]));
    assert_eq!(v["leases"], serde_json::json!([]));
}

#[test]
fn bad_input_is_a_usage_error_that_says_what_to_do() {
    let b = Broker::start();
    let repo = Checkout::new();
    let alice = peer(&b, "backend", "alice");
    let outside = tempfile::tempdir().unwrap();
    let usage = |c: &mut assert_cmd::Command, needle: &str| {
        let a = c.assert().code(2);
        let err = stderr_of(&a);
        assert!(err.contains(needle), "{needle:?} in {err}");
    };
    // No checkout and no --repo.
    usage(
        cipc_in(&b, outside.path())
            .envs(alice.clone())
            .args(["lease", "acquire", "a.rs"]),
        "pass --repo NAME",
    );
    usage(cipc_in(&b, outside.path()).args(["lease", "list"]), "--all");
    // No peer to hold it.
    usage(
        cipc_in(&b, &repo.top).args(["lease", "acquire", "a.rs"]),
        "CIPC_PEER",
    );
    // Outside the checkout, absolute, climbing out, the whole checkout.
    usage(
        cipc_in(&b, &repo.top)
            .envs(alice.clone())
            .args(["lease", "acquire", "../elsewhere.rs"]),
        "outside the checkout",
    );
    usage(
        cipc_in(&b, &repo.top).envs(alice.clone()).args([
            "lease",
            "check",
            "/etc/passwd",
            "--repo",
            REPO,
        ]),
        "is absolute",
    );
    usage(
        cipc_in(&b, &repo.top).args(["lease", "check", "a/../../x", "--repo", REPO]),
        "climbs out",
    );
    usage(
        cipc_in(&b, &repo.top)
            .envs(alice.clone())
            .args(["lease", "acquire", "."]),
        "'**'",
    );
    // ttl bounds, from clap.
    usage(
        cipc_in(&b, &repo.top)
            .envs(alice.clone())
            .args(["lease", "acquire", "a.rs", "--ttl", "25h"]),
        "at most 24h",
    );
    // Release with nothing to name it, as a person.
    usage(
        cipc_in(&b, &repo.top).args(["lease", "release"]),
        "release what?",
    );
}

#[test]
fn the_guard_refuses_a_commit_of_paths_another_session_holds() {
    let b = Broker::start();
    let repo = Checkout::new();
    let alice = peer(&b, "backend", "alice");
    let bob = peer(&b, "frontend", "bob");
    let out = cipc_here(&repo.top)
        .args(["guard", "install"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("installed the cipc guard"),
        "{}",
        stdout_of(&out)
    );
    assert!(
        stderr_of(&out).is_empty(),
        "cipc is on PATH: {}",
        stderr_of(&out)
    );

    // The first commit (no HEAD yet) is checked and goes through.
    repo.write("locked.txt", "v1\n");
    repo.write("old.txt", "old\n");
    repo.write("free.txt", "free\n");
    repo.git(&["add", "."]);
    let o = repo.commit(&b.url, &bob, "first");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(repo.commits(), 1);

    stdout_json(
        cipc_in(&b, &repo.top)
            .envs(alice.clone())
            .args(["lease", "acquire", "locked.txt", "old.txt"])
            .args(["--reason", "rewriting the parser"]),
    );

    // bob stages the held file and a free one: refused, naming path, holder, reason, expiry.
    repo.write("locked.txt", "v2\n");
    repo.write("free.txt", "changed\n");
    repo.git(&["add", "locked.txt", "free.txt"]);
    let o = repo.commit(&b.url, &bob, "bob's change");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    for needle in [
        "cipc guard check: commit refused: another session holds 1 staged path in github.com/Org/App",
        "locked.txt is held by backend (alice) until",
        "UTC (in ",
        ": rewriting the parser",
        "ask backend (alice)",
        "--no-verify",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    assert!(!err.contains("free.txt"), "{err}");
    assert_eq!(repo.commits(), 1, "nothing was committed");

    // The holder's own lease passes.
    let o = repo.commit(&b.url, &alice, "alice's change");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(repo.commits(), 2);

    // A rename (old and new path) and a deletion are staged paths too.
    repo.git(&["mv", "old.txt", "new.txt"]);
    let o = repo.commit(&b.url, &bob, "rename");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("old.txt is held by backend (alice)"), "{err}");
    repo.git(&["reset", "-q"]);
    repo.git(&["checkout", "-q", "--", "old.txt"]);
    std::fs::remove_file(repo.top.join("new.txt")).unwrap();
    repo.git(&["rm", "-q", "locked.txt"]);
    let o = repo.commit(&b.url, &bob, "delete");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // `cipc guard check` by hand, in JSON.
    let a = cipc_in(&b, &repo.top)
        .envs(bob.clone())
        .args(["guard", "check", "--json"])
        .assert()
        .code(1);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["conflicts"][0]["path"], "locked.txt");

    // A staged file whose name holds glob characters is checked as that
    // file (sent as a glob, `{` would be refused and the commit let through).
    repo.git(&["reset", "-q"]);
    repo.git(&["checkout", "-q", "--", "locked.txt"]);
    stdout_json(
        cipc_in(&b, &repo.top)
            .envs(alice.clone())
            .args(["lease", "acquire", "app/"]),
    );
    repo.write("app/[id]/page{x.tsx", "x\n");
    repo.git(&["add", "app"]);
    let o = repo.commit(&b.url, &bob, "an odd name");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("app/[id]/page{x.tsx is held by backend (alice)"),
        "{err}"
    );
}

#[test]
fn the_guard_lets_commits_through_when_it_cannot_ask() {
    let repo = Checkout::new();
    cipc_here(&repo.top)
        .args(["guard", "install"])
        .assert()
        .success();
    repo.write("a.txt", "a\n");
    repo.git(&["add", "a.txt"]);
    // Nothing listens on the port of a broker that was just stopped.
    let url = {
        let b = Broker::start();
        b.url.clone()
    };
    let o = repo.commit(&url, &[], "while the broker is down");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("cannot reach the broker") && err.contains("NOT checked against leases"),
        "{err}"
    );
    assert_eq!(repo.commits(), 1);

    // Without cipc on PATH (a GUI's git), it warns and commits too.
    repo.write("b.txt", "b\n");
    repo.git(&["add", "b.txt"]);
    let mut c = repo.git_cmd(&["commit", "-q", "-m", "no cipc"]);
    c.env("PATH", "/usr/bin:/bin");
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(err.contains("cipc is not on PATH"), "{err}");
}

#[test]
fn install_is_idempotent_keeps_an_existing_hook_and_remove_restores_it() {
    let repo = Checkout::new();
    let hook = repo.hook();
    // An existing shell hook: it leaves a mark when it runs.
    let original = "#!/bin/sh\necho ran >> \"$(git rev-parse --git-dir)/user-hook-ran\"\n";
    std::fs::write(&hook, original).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o750)).unwrap();

    let out = cipc_here(&repo.top)
        .args(["guard", "install"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("added the cipc guard to the existing hook"),
        "{}",
        stdout_of(&out)
    );
    let merged = std::fs::read_to_string(&hook).unwrap();
    assert!(
        merged.contains("cipc guard check") && merged.contains("user-hook-ran"),
        "{merged}"
    );
    assert_eq!(mode(&hook), 0o750, "the hook's mode is kept");
    let out = cipc_here(&repo.top.join("sub"))
        .args(["guard", "install"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("nothing changed"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        merged,
        "idempotent"
    );

    // Both run on a commit (the broker is down: the guard lets it through).
    repo.write("a.txt", "a\n");
    repo.git(&["add", "a.txt"]);
    let o = repo.commit("http://127.0.0.1:9", &[], "both hooks");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        repo.top.join(".git/user-hook-ran").exists(),
        "the user's hook ran"
    );

    // remove gives back exactly the original.
    cipc_here(&repo.top)
        .args(["guard", "remove"])
        .assert()
        .success();
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), original);
    let out = cipc_here(&repo.top)
        .args(["guard", "remove"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("no cipc guard"),
        "{}",
        stdout_of(&out)
    );

    // A hook cipc made alone is deleted by remove.
    std::fs::remove_file(&hook).unwrap();
    cipc_here(&repo.top)
        .args(["guard", "install"])
        .assert()
        .success();
    assert_eq!(mode(&hook), 0o755);
    cipc_here(&repo.top)
        .args(["guard", "remove"])
        .assert()
        .success();
    assert!(!hook.exists());
}

#[test]
fn a_hook_that_is_not_a_shell_script_is_chained_and_restored() {
    let repo = Checkout::new();
    let hook = repo.hook();
    // A binary hook that refuses every commit: its verdict must survive.
    let binary = std::fs::read("/bin/false").unwrap();
    std::fs::write(&hook, &binary).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = cipc_here(&repo.top)
        .args(["guard", "install"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("pre-commit.cipc-chained"),
        "{}",
        stdout_of(&out)
    );
    let chained = hook.with_file_name("pre-commit.cipc-chained");
    assert_eq!(std::fs::read(&chained).unwrap(), binary);
    cipc_here(&repo.top)
        .args(["guard", "install"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(&chained).unwrap(),
        binary,
        "installing twice keeps it"
    );

    repo.write("a.txt", "a\n");
    repo.git(&["add", "a.txt"]);
    let o = repo.commit("http://127.0.0.1:9", &[], "refused by the chained hook");
    assert!(!o.status.success(), "the chained hook ran and said no");

    cipc_here(&repo.top)
        .args(["guard", "remove"])
        .assert()
        .success();
    assert_eq!(std::fs::read(&hook).unwrap(), binary);
    assert!(!chained.exists());
}

#[test]
fn install_follows_core_hooks_path_and_worktrees() {
    let repo = Checkout::new();
    repo.git(&["config", "core.hooksPath", "githooks"]);
    cipc_here(&repo.top.join("sub"))
        .args(["guard", "install"])
        .assert()
        .success();
    assert!(repo.top.join("githooks/pre-commit").exists());
    assert!(!repo.hook().exists());
    repo.git(&["config", "--unset", "core.hooksPath"]);

    // A worktree shares the repository's hooks.
    repo.write("a.txt", "a\n");
    repo.git(&["add", "a.txt"]);
    repo.git(&["commit", "-q", "--no-verify", "-m", "first"]);
    let wt = repo.top.with_file_name("wt");
    repo.git(&["worktree", "add", "-q", wt.to_str().unwrap()]);
    cipc_here(&wt)
        .args(["guard", "install", "--dir", "."])
        .assert()
        .success();
    assert!(repo.hook().exists(), "in the common hooks directory");
}

#[test]
fn install_refuses_a_hook_git_would_not_run() {
    let repo = Checkout::new();
    std::fs::write(repo.hook(), "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(repo.hook(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let a = cipc_here(&repo.top)
        .args(["guard", "install"])
        .assert()
        .code(1);
    assert!(
        stderr_of(&a).contains("not executable"),
        "{}",
        stderr_of(&a)
    );
    let outside = tempfile::tempdir().unwrap();
    let a = cipc_here(outside.path())
        .args(["guard", "install"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("not in a git repository"),
        "{}",
        stderr_of(&a)
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn stdout_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}
