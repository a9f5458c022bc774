//! The hooks `cipc codex setup` writes into a Codex `hooks.json`, and the
//! trust Codex requires before it runs them.
//!
//! Codex's hooks file has Claude Code's shape (`{"hooks": {"Event":
//! [{"matcher": ..., "hooks": [{"type": "command", ...}]}]}}`), so the merge
//! rules are Claude's ([`crate::agents::claude::settings`]); the table of
//! hooks is Codex's own. Codex 0.171 runs a hook from a user's file only
//! once it is trusted, silently skipping it otherwise: the trust is an entry
//! `[hooks.state."<file>:<event>:<group>:<handler>"] trusted_hash = "sha256:..."`
//! in the user's `config.toml`, where the hash covers the handler exactly
//! as written (a changed command is not trusted). Setup is the person's
//! review of cipc's hooks, so it writes those entries for cipc's hooks and
//! for nothing else.

use crate::agents::claude::settings::{self, HookSpec, ShapeError};
use crate::agents::{is_ours, HookCommand};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Every hook, in the order Codex meets them in a session.
const HOOKS: [HookSpec; 7] = [
    HookSpec {
        event: "SessionStart",
        word: "session-start",
        matcher: None,
        timeout_secs: Some(10),
        rewake: false,
    },
    HookSpec {
        event: "UserPromptSubmit",
        word: "prompt",
        matcher: None,
        timeout_secs: Some(5),
        rewake: false,
    },
    HookSpec {
        event: "PreToolUse",
        word: "pre-tool-use",
        // cipc's own MCP tools (the session's identity is added to them)
        // and apply_patch (an edit of a leased path is refused).
        matcher: Some(PRE_TOOL_MATCHER),
        timeout_secs: Some(10),
        rewake: false,
    },
    HookSpec {
        event: "PermissionRequest",
        word: "permission",
        matcher: Some("*"),
        timeout_secs: None,
        rewake: false,
    },
    HookSpec {
        event: "PostToolUse",
        word: "post-tool-use",
        matcher: Some("*"),
        timeout_secs: Some(5),
        rewake: false,
    },
    HookSpec {
        event: "Stop",
        word: "stop",
        matcher: None,
        // Runs in the turn: it only looks, it does not wait.
        timeout_secs: Some(10),
        rewake: false,
    },
    HookSpec {
        event: "SessionEnd",
        word: "session-end",
        matcher: None,
        // Codex gives SessionEnd one second unless told otherwise, and at
        // most three (a longer one is clamped, and then no longer matches
        // its trust).
        timeout_secs: Some(3),
        rewake: false,
    },
];

/// Which tool calls the `PreToolUse` hook sees: cipc's MCP tools (Codex
/// names them `mcp__<server>__<tool>` to hooks) and `apply_patch`.
pub const PRE_TOOL_MATCHER: &str = "mcp__cipc__.*|apply_patch";

/// Adds cipc's hooks to a Codex hooks document, replacing any cipc hooks
/// already there and keeping everything else.
pub fn add_hooks(doc: &mut Value, cmd: &HookCommand) -> Result<(), ShapeError> {
    settings::add_hook_specs(doc, cmd, &HOOKS)
}

/// Takes cipc's hooks out of a Codex hooks document.
pub fn remove_hooks(doc: &mut Value) -> Result<usize, ShapeError> {
    settings::remove_hooks(doc)
}

/// One cipc hook as Codex keys its trust: `<file>:<event>:<group>:<handler>`
/// and the hash of the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// The `hooks.state` key.
    pub key: String,
    /// `sha256:<hex>` of the handler's identity.
    pub hash: String,
}

/// The trust entries of every cipc hook in `doc`, a hooks file at `file`
/// (an absolute path: Codex keys trust by it).
pub fn trust_entries(doc: &Value, file: &Path) -> Vec<Trust> {
    let mut out = Vec::new();
    let Some(hooks) = doc.get("hooks").and_then(Value::as_object) else {
        return out;
    };
    for (event, groups) in hooks {
        let Some(groups) = groups.as_array() else {
            continue;
        };
        let snake = snake_case(event);
        for (g, group) in groups.iter().enumerate() {
            let matcher = group.get("matcher").and_then(Value::as_str);
            let handlers = group.get("hooks").and_then(Value::as_array);
            for (h, handler) in handlers.into_iter().flatten().enumerate() {
                let ours = handler
                    .get("command")
                    .and_then(Value::as_str)
                    .is_some_and(is_ours);
                if !ours {
                    continue;
                }
                out.push(Trust {
                    key: format!("{}:{snake}:{g}:{h}", file.display()),
                    hash: identity_hash(event, matcher, handler),
                });
            }
        }
    }
    out
}

/// The hash Codex compares a hook's trust with: SHA-256 of the compact JSON,
/// keys sorted, of `{"event_name", "matcher" (events that take one),
/// "hooks": [the handler with its defaults filled in]}`.
fn identity_hash(event: &str, matcher: Option<&str>, handler: &Value) -> String {
    let mut h = handler.as_object().cloned().unwrap_or_default();
    let timeout = if event == "SessionEnd" { 1 } else { 600 };
    h.entry("timeout").or_insert(json!(timeout));
    h.entry("async").or_insert(json!(false));
    let mut identity = Map::new();
    identity.insert("event_name".into(), json!(snake_case(event)));
    if let Some(m) = matcher.filter(|_| !matches!(event, "UserPromptSubmit" | "Stop")) {
        identity.insert("matcher".into(), json!(m));
    }
    identity.insert("hooks".into(), json!([Value::Object(h)]));
    let text = canonical(&Value::Object(identity));
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Compact JSON with every object's keys sorted.
fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&o[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// `PreToolUse` -> `pre_tool_use`.
fn snake_case(event: &str) -> String {
    let mut out = String::new();
    for (i, c) in event.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_hash_is_the_one_codex_computes() {
        // Seen with Codex 0.171.0: `codex app-server`'s hooks/list gave this
        // hash for this handler, and a run with the entry ran the hook.
        let handler = json!({"type": "command", "command": "python3 /tmp/cx/hook.py /tmp/cx/runs/h2/hooklog"});
        assert_eq!(
            identity_hash("PreToolUse", Some("*"), &handler),
            "sha256:31c0868b8e65ec00d55339e3b5097301965cfff15737392b3a755c7d3984e7b9"
        );
    }

    #[test]
    fn only_cipc_hooks_are_trusted_and_each_is_keyed_by_its_place() {
        let mut doc = json!({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}});
        let cmd = HookCommand {
            program: "cipc".into(),
            args: "--agent codex --role backend".into(),
            permission_wait: Some(3600),
        };
        add_hooks(&mut doc, &cmd).expect("added");
        let trust = trust_entries(&doc, Path::new("/h/hooks.json"));
        let keys: Vec<&str> = trust.iter().map(|t| t.key.as_str()).collect();
        assert!(
            keys.contains(&"/h/hooks.json:session_start:0:0"),
            "{keys:?}"
        );
        assert!(keys.contains(&"/h/hooks.json:pre_tool_use:0:0"), "{keys:?}");
        // The person's own Stop hook keeps its place and gets no trust.
        assert!(keys.contains(&"/h/hooks.json:stop:1:0"), "{keys:?}");
        assert!(!keys.contains(&"/h/hooks.json:stop:0:0"), "{keys:?}");
        assert_eq!(trust.len(), HOOKS.len());
        assert!(trust
            .iter()
            .all(|t| t.hash.starts_with("sha256:") && t.hash.len() == 71));
    }

    #[test]
    fn event_names_become_snake_case() {
        assert_eq!(snake_case("UserPromptSubmit"), "user_prompt_submit");
        assert_eq!(snake_case("Stop"), "stop");
    }
}
