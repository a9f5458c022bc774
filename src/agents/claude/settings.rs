//! What `cipc claude setup` adds to Claude Code's settings and MCP
//! configuration, and how it is taken out again: pure functions on JSON, so
//! the merge rules (keep everything that is not ours, idempotent, remove
//! exactly what was added) are unit-tested without touching any file.

use crate::agents::{is_ours, HookCommand};
use serde_json::{json, Map, Value};

/// The MCP server name cipc registers under.
pub const SERVER_NAME: &str = "cipc";

/// One hook cipc installs: the agent's event, the `cipc hook` event word,
/// and how it runs. Claude Code's and Codex's hook files share this shape.
pub(crate) struct HookSpec {
    /// The agent's event name (`SessionStart`).
    pub event: &'static str,
    /// The `cipc hook` word that handles it.
    pub word: &'static str,
    /// Tool events take a matcher (a regular expression); `*` is every tool.
    pub matcher: Option<&'static str>,
    /// Seconds the agent gives it; `None`: the permission wait and a
    /// margin, so the hook always ends the wait itself.
    pub timeout_secs: Option<u64>,
    /// Runs in the background and may wake an idle session (exit 2;
    /// Claude Code only).
    pub rewake: bool,
}

/// The margin an agent's timeout leaves the permission hook beyond its
/// own wait, to withdraw its question before it is ended.
pub(crate) const PERMISSION_MARGIN_SECS: u64 = 30;

/// Every hook, in the order Claude Code meets them in a session.
const HOOKS: [HookSpec; 9] = [
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
        // cipc's own MCP tools: the session's identity is added to them.
        matcher: Some("mcp__cipc__.*"),
        timeout_secs: Some(10),
        rewake: false,
    },
    HookSpec {
        event: "PreToolUse",
        word: "pre-tool-use",
        // The file-editing tools: an edit of a path another session leases
        // is refused before it happens.
        matcher: Some("Edit|Write|MultiEdit|NotebookEdit"),
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
        event: "Notification",
        word: "notification",
        matcher: None,
        timeout_secs: Some(5),
        rewake: false,
    },
    HookSpec {
        event: "Stop",
        word: "stop",
        matcher: None,
        // The waiter lives as long as the session is idle; it re-polls the
        // broker on its own and ends when the session does.
        timeout_secs: Some(7 * 24 * 3600),
        rewake: true,
    },
    HookSpec {
        event: "SessionEnd",
        word: "session-end",
        matcher: None,
        timeout_secs: Some(5),
        rewake: false,
    },
];

/// Why a settings or MCP document cannot take cipc's entries: part of it
/// is not the JSON shape Claude Code documents. Nothing is written; the
/// user fixes the file by hand.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// A part that must be an object is something else (`what` names it).
    #[error("{0} is not a JSON object; fix it by hand, then run setup again")]
    NotObject(String),
    /// The settings file itself is not an object (removing hooks).
    #[error("the settings file is not a JSON object")]
    NotObjectFile,
    /// `"hooks"."<event>"` is not a list of hook groups.
    #[error("\"hooks\".\"{0}\" in the settings file is not a list; fix or remove it, then run setup again")]
    NotList(&'static str),
    /// A part on the way to the MCP entry is not an object.
    #[error("expected an object around \"{0}\"")]
    NotObjectAround(String),
}

/// Adds cipc's hooks to a settings document (replacing any cipc hooks
/// already there), keeping every other key and hook as it was.
pub fn add_hooks(settings: &mut Value, cmd: &HookCommand) -> Result<(), ShapeError> {
    add_hook_specs(settings, cmd, &HOOKS)
}

/// Adds the hooks of `specs` to a hooks document (Claude Code's settings,
/// Codex's hooks.json), replacing any cipc hooks already there.
pub(crate) fn add_hook_specs(
    settings: &mut Value,
    cmd: &HookCommand,
    specs: &[HookSpec],
) -> Result<(), ShapeError> {
    remove_hooks(settings)?;
    let root = object(settings, "the settings file")?;
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()));
    let hooks = object(hooks, "\"hooks\" in the settings file")?;
    for spec in specs {
        let (line, timeout) = match spec.timeout_secs {
            Some(t) => (cmd.line(spec.word), t),
            None => {
                let Some(wait) = cmd.permission_wait else {
                    continue;
                };
                (
                    cmd.permission_line(wait),
                    wait.saturating_add(PERMISSION_MARGIN_SECS),
                )
            }
        };
        let mut hook = json!({
            "type": "command",
            "command": line,
            "timeout": timeout,
        });
        if spec.rewake {
            hook["async"] = json!(true);
            hook["asyncRewake"] = json!(true);
        }
        let mut group = json!({ "hooks": [hook] });
        if let Some(m) = spec.matcher {
            group["matcher"] = json!(m);
        }
        let list = hooks
            .entry(spec.event)
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = list else {
            return Err(ShapeError::NotList(spec.event));
        };
        list.push(group);
    }
    Ok(())
}

/// Takes every cipc hook out of a settings document; groups and events left
/// empty by that go too, and nothing else changes. Answers how many hooks
/// were removed.
pub fn remove_hooks(settings: &mut Value) -> Result<usize, ShapeError> {
    let Some(root) = settings.as_object_mut() else {
        return Err(ShapeError::NotObjectFile);
    };
    let Some(hooks) = root.get_mut("hooks").and_then(Value::as_object_mut) else {
        return Ok(0);
    };
    let mut removed = 0;
    for list in hooks.values_mut() {
        let Some(groups) = list.as_array_mut() else {
            continue;
        };
        for group in groups.iter_mut() {
            if let Some(inner) = group.get_mut("hooks").and_then(Value::as_array_mut) {
                let before = inner.len();
                inner.retain(|h| {
                    !h.get("command")
                        .and_then(Value::as_str)
                        .is_some_and(is_ours)
                });
                removed += before - inner.len();
            }
        }
        groups.retain(|g| {
            g.get("hooks")
                .and_then(Value::as_array)
                .is_none_or(|h| !h.is_empty())
        });
    }
    hooks.retain(|_, list| list.as_array().is_none_or(|l| !l.is_empty()));
    if hooks.is_empty() {
        root.remove("hooks");
    }
    Ok(removed)
}

/// Sets the `cipc` entry of an `mcpServers` map inside `parent` (created if
/// missing), keeping every other server.
pub fn add_mcp(parent: &mut Value, entry: Value) -> Result<(), ShapeError> {
    let root = object(parent, "the MCP configuration")?;
    let servers = root
        .entry("mcpServers")
        .or_insert_with(|| Value::Object(Map::new()));
    object(servers, "\"mcpServers\"")?.insert(SERVER_NAME.to_string(), entry);
    Ok(())
}

/// Takes the `cipc` entry out of `parent`'s `mcpServers` (and the map, if
/// that leaves it empty). Answers whether there was one.
pub fn remove_mcp(parent: &mut Value) -> bool {
    let Some(root) = parent.as_object_mut() else {
        return false;
    };
    let Some(servers) = root.get_mut("mcpServers").and_then(Value::as_object_mut) else {
        return false;
    };
    let had = servers.remove(SERVER_NAME).is_some();
    if had && servers.is_empty() {
        root.remove("mcpServers");
    }
    had
}

/// The `.mcp.json` entry for a broker at `base`: the streamable HTTP
/// transport at `/mcp` (or the SSE one at `/mcp/sse`), with the token
/// header when the broker has one.
pub fn mcp_entry(base: &str, sse: bool, token_header: Option<&str>) -> Value {
    let base = base.trim_end_matches('/');
    let mut entry = if sse {
        json!({"type": "sse", "url": format!("{base}/mcp/sse")})
    } else {
        json!({"type": "http", "url": format!("{base}/mcp")})
    };
    if let Some(t) = token_header {
        entry["headers"] = json!({ "X-Cipc-Token": t });
    }
    entry
}

pub(crate) fn object<'a>(
    v: &'a mut Value,
    what: &str,
) -> Result<&'a mut Map<String, Value>, ShapeError> {
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut()
        .ok_or_else(|| ShapeError::NotObject(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::shell_quote;

    fn cmd() -> HookCommand {
        HookCommand {
            program: "/usr/local/bin/cipc".into(),
            args: "--role backend".into(),
            permission_wait: Some(crate::agents::hook::DEFAULT_PERMISSION_WAIT_SECS),
        }
    }

    fn theirs() -> Value {
        json!({
            "model": "opus",
            "permissions": {"allow": ["Bash(ls:*)"]},
            "hooks": {
                "PostToolUse": [
                    {"matcher": "Edit", "hooks": [{"type": "command", "command": "prettier --write"}]}
                ],
                "Stop": [
                    {"hooks": [
                        {"type": "command", "command": "notify-send done"},
                        {"type": "command", "command": "/old/path/cipc hook stop --role x"}
                    ]}
                ]
            }
        })
    }

    #[test]
    fn setup_keeps_what_is_there_and_replaces_old_cipc_hooks() {
        let mut s = theirs();
        add_hooks(&mut s, &cmd()).expect("adds");
        assert_eq!(s["model"], "opus");
        assert_eq!(s["permissions"]["allow"][0], "Bash(ls:*)");
        let post = s["hooks"]["PostToolUse"].as_array().expect("list");
        assert_eq!(post[0]["hooks"][0]["command"], "prettier --write");
        assert_eq!(post[1]["matcher"], "*");
        assert_eq!(
            post[1]["hooks"][0]["command"],
            "/usr/local/bin/cipc hook post-tool-use --role backend"
        );
        let stop = s["hooks"]["Stop"].as_array().expect("list");
        let commands: Vec<&str> = stop
            .iter()
            .flat_map(|g| g["hooks"].as_array().expect("hooks").iter())
            .filter_map(|h| h["command"].as_str())
            .collect();
        assert_eq!(
            commands,
            [
                "notify-send done",
                "/usr/local/bin/cipc hook stop --role backend"
            ],
            "the old cipc hook is replaced, the user's stays"
        );
        let ours = &stop[1]["hooks"][0];
        assert_eq!(
            (ours["async"].clone(), ours["asyncRewake"].clone()),
            (json!(true), json!(true))
        );
        for event in [
            "SessionStart",
            "UserPromptSubmit",
            "Notification",
            "SessionEnd",
        ] {
            assert_eq!(
                s["hooks"][event].as_array().map(Vec::len),
                Some(1),
                "{event}"
            );
        }
    }

    #[test]
    fn the_permission_hook_waits_as_long_as_setup_says_or_is_left_out() {
        let mut s = json!({});
        add_hooks(&mut s, &cmd()).expect("adds");
        let hook = &s["hooks"]["PermissionRequest"][0]["hooks"][0];
        assert_eq!(
            hook["command"],
            "/usr/local/bin/cipc hook permission --role backend"
        );
        assert_eq!(hook["timeout"], 3600 + PERMISSION_MARGIN_SECS);
        assert_eq!(s["hooks"]["PreToolUse"][0]["matcher"], "mcp__cipc__.*");

        let mut short = cmd();
        short.permission_wait = Some(120);
        let mut s = json!({});
        add_hooks(&mut s, &short).expect("adds");
        let hook = &s["hooks"]["PermissionRequest"][0]["hooks"][0];
        assert_eq!(
            hook["command"],
            "/usr/local/bin/cipc hook permission --role backend --permission-wait 120"
        );
        assert_eq!(hook["timeout"], 150);

        let mut off = cmd();
        off.permission_wait = None;
        let mut s = json!({});
        add_hooks(&mut s, &off).expect("adds");
        assert!(s["hooks"].get("PermissionRequest").is_none());
    }

    #[test]
    fn setup_sends_every_file_editing_tool_to_the_edit_check() {
        let mut s = json!({});
        add_hooks(&mut s, &cmd()).expect("adds");
        let pre = s["hooks"]["PreToolUse"].as_array().expect("list");
        // The matcher is a regular expression; cipc's is a plain `A|B|C`.
        for tool in ["Edit", "Write", "MultiEdit", "NotebookEdit"] {
            let groups: Vec<&Value> = pre
                .iter()
                .filter(|g| {
                    g["matcher"]
                        .as_str()
                        .is_some_and(|m| m.split('|').any(|alt| alt == tool))
                })
                .collect();
            assert_eq!(groups.len(), 1, "{tool}: {pre:?}");
            assert_eq!(
                groups[0]["hooks"][0]["command"],
                "/usr/local/bin/cipc hook pre-tool-use --role backend",
                "{tool}"
            );
        }
    }

    #[test]
    fn setup_twice_changes_nothing() {
        let mut once = theirs();
        add_hooks(&mut once, &cmd()).expect("adds");
        let mut twice = once.clone();
        add_hooks(&mut twice, &cmd()).expect("adds again");
        assert_eq!(
            serde_json::to_string_pretty(&once).expect("json"),
            serde_json::to_string_pretty(&twice).expect("json")
        );
    }

    #[test]
    fn remove_takes_out_exactly_what_setup_added() {
        let before = json!({
            "model": "opus",
            "hooks": {"PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "prettier --write"}]}]}
        });
        let mut s = before.clone();
        add_hooks(&mut s, &cmd()).expect("adds");
        assert_eq!(remove_hooks(&mut s).expect("removes"), 9);
        assert_eq!(s, before);

        let mut empty = json!({});
        add_hooks(&mut empty, &cmd()).expect("adds");
        remove_hooks(&mut empty).expect("removes");
        assert_eq!(empty, json!({}), "no empty \"hooks\" left behind");
    }

    #[test]
    fn mcp_entries_are_merged_and_removed_by_name() {
        let mut cfg = json!({"mcpServers": {"github": {"type": "http", "url": "https://x"}}});
        add_mcp(
            &mut cfg,
            mcp_entry("http://127.0.0.1:9100/", false, Some("${CIPC_TOKEN}")),
        )
        .expect("adds");
        assert_eq!(cfg["mcpServers"]["github"]["url"], "https://x");
        assert_eq!(
            cfg["mcpServers"]["cipc"],
            json!({"type": "http", "url": "http://127.0.0.1:9100/mcp", "headers": {"X-Cipc-Token": "${CIPC_TOKEN}"}})
        );
        assert!(remove_mcp(&mut cfg));
        assert_eq!(
            cfg,
            json!({"mcpServers": {"github": {"type": "http", "url": "https://x"}}})
        );
        let mut only = json!({});
        add_mcp(&mut only, mcp_entry("http://h:1", true, None)).expect("adds");
        assert_eq!(only["mcpServers"]["cipc"]["url"], "http://h:1/mcp/sse");
        assert!(remove_mcp(&mut only));
        assert_eq!(only, json!({}));
    }

    #[test]
    fn ours_is_recognised_by_program_and_subcommand() {
        assert!(is_ours("cipc hook stop"));
        assert!(is_ours("'/home/a b/cipc' hook prompt --role x"));
        assert!(!is_ours("cipc wait"));
        assert!(!is_ours("notcipc hook stop"));
        assert!(!is_ours("echo cipc hook"));
    }

    #[test]
    fn a_settings_file_of_the_wrong_shape_is_refused_not_overwritten() {
        let mut s = json!({"hooks": {"Stop": "nope"}});
        assert!(add_hooks(&mut s, &cmd()).is_err());
        let mut s = json!([1, 2]);
        assert!(add_hooks(&mut s, &cmd()).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/cipc"), "/usr/bin/cipc");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
