//! `cipc hook <event>` run directly, as Claude Code runs it: the built
//! binary with a hook's JSON on stdin, for `tests/hook.rs` and
//! `tests/hook_permissions.rs`.

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Child, Command, Stdio};

/// One Claude Code session's hooks: its id, its project and the hooks'
/// memory (`CIPC_STATE_DIR`).
pub struct Session {
    pub url: String,
    pub id: String,
    pub state: tempfile::TempDir,
    pub project: tempfile::TempDir,
}

/// What one hook run did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The hook's JSON output (`Value::Null` when it printed nothing).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("the hook printed no JSON ({e}): {self:?}"))
    }

    /// `hookSpecificOutput.additionalContext`, or "".
    pub fn context(&self) -> String {
        self.json()["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Session {
    pub fn new(url: &str) -> Session {
        Session {
            url: url.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            state: tempfile::tempdir().expect("state dir"),
            project: tempfile::tempdir().expect("project dir"),
        }
    }

    /// The input Claude Code gives every hook of `event`, plus `extra`.
    pub fn input(&self, event: &str, extra: Value) -> Value {
        let mut v = json!({
            "session_id": self.id,
            "transcript_path": self.project.path().join("transcript.jsonl"),
            "cwd": self.project.path(),
            "hook_event_name": event,
        });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    }

    /// `cipc hook <word> --role <role> --url <broker> EXTRA...`, with the
    /// session's state dir and none of the caller's cipc environment.
    pub fn command(&self, word: &str, role: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cipc"));
        for var in [
            "CIPC_URL",
            "CIPC_TOKEN",
            "CIPC_PEER",
            "CIPC_PEER_KEY",
            "CLAUDE_ENV_FILE",
            "XDG_STATE_HOME",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(["hook", word, "--role", role, "--url", &self.url])
            .args(extra)
            .env("CIPC_STATE_DIR", self.state.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts a hook with `input` on stdin (closed after it), without
    /// waiting for it.
    pub fn spawn(&self, word: &str, role: &str, input: &Value, extra: &[&str]) -> Child {
        Session::feed(self.command(word, role, extra), input)
    }

    /// Starts `cmd` (from [`Session::command`], perhaps with more set on
    /// it) with `input` on stdin (closed after it), without waiting for it.
    pub fn feed(mut cmd: Command, input: &Value) -> Child {
        let mut child = cmd.spawn().expect("run cipc hook");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.to_string().as_bytes())
            .expect("write the hook input");
        child
    }

    /// Runs `cipc hook <word> --role <role>` with `input` on stdin.
    pub fn run(&self, word: &str, role: &str, input: &Value) -> Ran {
        finish(self.spawn(word, role, input, &[]))
    }

    /// Like [`Session::run`], with more flags.
    pub fn run_with(&self, word: &str, role: &str, input: &Value, extra: &[&str]) -> Ran {
        finish(self.spawn(word, role, input, extra))
    }

    /// The session's peer key, as its hooks keep it (never shown to the
    /// model).
    pub fn key(&self) -> String {
        let file = self.state.path().join(format!("{}.json", self.id));
        let text = std::fs::read_to_string(&file).expect("the session's state");
        let v: Value = serde_json::from_str(&text).expect("state JSON");
        v["key"].as_str().expect("a key").to_string()
    }

    /// `SessionStart` (source `startup`); answers the peer id it registered.
    pub fn start(&self, role: &str) -> (Ran, String) {
        let ran = self.run(
            "session-start",
            role,
            &self.input("SessionStart", json!({"source": "startup"})),
        );
        assert_eq!(ran.code, Some(0), "{ran:?}");
        let ctx = ran.context();
        let id = ctx
            .split("cipc peer ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no peer id in the SessionStart context: {ran:?}"))
            .to_string();
        (ran, id)
    }

    /// `UserPromptSubmit`.
    pub fn prompt(&self, role: &str) -> Ran {
        let ran = self.run(
            "prompt",
            role,
            &self.input("UserPromptSubmit", json!({"prompt": "carry on"})),
        );
        assert_eq!(ran.code, Some(0), "{ran:?}");
        ran
    }

    /// `PostToolUse` of a Bash call.
    pub fn post_tool_use(&self, role: &str) -> Ran {
        let ran = self.run(
            "post-tool-use",
            role,
            &self.input(
                "PostToolUse",
                json!({"tool_name": "Bash", "tool_input": {"command": "ls"},
                       "tool_response": {"stdout": "", "stderr": ""}}),
            ),
        );
        assert_eq!(ran.code, Some(0), "{ran:?}");
        ran
    }
}

/// Waits for a hook started with [`Session::spawn`] and collects what it said.
pub fn finish(child: Child) -> Ran {
    let out = child.wait_with_output().expect("wait for cipc hook");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
