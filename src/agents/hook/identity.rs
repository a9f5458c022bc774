//! `cipc hook pre-tool-use` for cipc's own MCP tools: every call of a
//! `mcp__cipc__*` tool acts as the session's peer without the model ever
//! holding its key. The hook adds `peer_key` to the call's input through
//! `updatedInput`, which both agents apply before the call leaves; the
//! model keeps seeing the call it made, without the key. Claude Code
//! (2.1.328 and 2.1.332, measured) applies it with or without a permission
//! decision, so none is given and the user's rules still apply. Codex
//! (0.171, measured) applies it only beside `permissionDecision: "allow"`,
//! which there does not skip its own approval of MCP calls.
//!
//! Why this and not a `headersHelper` on the MCP entry: a helper runs when
//! Claude Code connects the server, which is before (or beside) the
//! `SessionStart` hook that registers the peer, and it is not told which
//! session it serves; the tool-call hook runs after registration and knows
//! the session.

use super::{Hook, Reply};
use crate::agents::claude::settings::SERVER_NAME;
use crate::agents::Agent;
use crate::cli::repo::Checkout;
use crate::cli::CliError;
use serde_json::{json, Map, Value};

impl Hook {
    /// Adds the session's key to a cipc tool call; refuses `connect` and
    /// `register`, which would give the session a second identity (or
    /// another role) and show the model its key.
    pub(super) async fn pre_tool_use(&self) -> Result<Reply, CliError> {
        let tool = self
            .input
            .get("tool_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let prefix = format!("mcp__{SERVER_NAME}__");
        let Some(name) = tool.strip_prefix(&prefix).map(str::to_string) else {
            let input = self.input.get("tool_input").cloned().unwrap_or_default();
            let files = super::edits::edited_files(self.args.agent, &tool, &input);
            if files.is_empty() {
                return Ok(Reply::default());
            }
            return self.edit_check(&tool, &files).await;
        };
        let mut input = self
            .input
            .get("tool_input")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if LEASE_TOOLS.contains(&name.as_str()) {
            if let Some(checkout) = self.cwd.as_deref().and_then(|d| Checkout::discover(d).ok()) {
                in_checkout(&mut input, &checkout);
            }
        }
        let role = self.args.role.clone();
        let agent = self.args.agent;
        let program = agent.program();
        self.with_peer(false, |_client, peer, key, mut st| async move {
            st.took_turn = true;
            let mut out = Map::new();
            if IDENTITY_TOOLS.contains(&name.as_str()) {
                out.insert("permissionDecision".into(), json!("deny"));
                out.insert(
                    "permissionDecisionReason".into(),
                    json!(format!(
                        "This session already is cipc peer {peer} with role \"{role}\": its hooks add that identity to every \
                         cipc tool call, so {name} is not needed (and would make a second peer or change this one). Call the tool you need \
                         directly, without peer_key. To take another role, the person reruns `cipc {program} setup --role ROLE`."
                    )),
                );
            } else {
                if agent == Agent::Codex {
                    out.insert("permissionDecision".into(), json!("allow"));
                }
                out.insert("updatedInput".into(), with_key(input, &key));
            }
            Ok((
                Reply {
                    decision: Some(out),
                    ..Reply::default()
                },
                st,
            ))
        })
        .await
    }
}

/// cipc's tools that make a session a peer: a hooked session already is
/// one, and their answer shows the key.
const IDENTITY_TOOLS: [&str; 2] = ["connect", "register"];

/// cipc's lease tools, whose `repo` and `paths` the hook fills in.
const LEASE_TOOLS: [&str; 3] = ["claim_paths", "release_paths", "check_paths"];

/// A lease tool's input as every session names things: the checkout's
/// repo when the model gave none, and paths relative to the checkout's top
/// level. The tools tell the model to give paths from the top level, so a
/// relative path is taken from there whatever directory the session runs
/// in (unlike `cipc lease`, whose paths are the shell's); an absolute one
/// is made relative to it, and one that cannot be placed is left for the
/// broker to refuse.
fn in_checkout(input: &mut Value, checkout: &Checkout) {
    let Some(o) = input.as_object_mut() else {
        return;
    };
    let checkout = Checkout {
        base: checkout.top.clone(),
        ..checkout.clone()
    };
    if o.get("repo")
        .and_then(Value::as_str)
        .is_none_or(|r| r.trim().is_empty())
    {
        o.insert("repo".into(), json!(checkout.repo));
    }
    if let Some(Value::Array(paths)) = o.get_mut("paths") {
        for p in paths.iter_mut() {
            if let Some(rel) = p.as_str().and_then(|s| checkout.relative(s).ok()) {
                *p = json!(rel);
            }
        }
    }
}

/// The tool input with the session's key in `peer_key` (whatever the model
/// put there is replaced: the session's identity is the hooks').
fn with_key(input: Value, key: &str) -> Value {
    let mut o = match input {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    o.insert("peer_key".into(), json!(key));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_added_and_replaces_whatever_the_model_passed() {
        let v = with_key(
            json!({"command_id": "c1", "peer_key": "pk_made_up"}),
            "pk_real",
        );
        assert_eq!(v, json!({"command_id": "c1", "peer_key": "pk_real"}));
        assert_eq!(
            with_key(Value::Null, "pk_real"),
            json!({"peer_key": "pk_real"})
        );
    }

    #[test]
    fn lease_tool_paths_are_taken_from_the_top_level_wherever_the_session_runs() {
        let top = std::env::temp_dir().join("cipc-identity-top");
        let checkout = Checkout {
            repo: "github.com/acme/shop".into(),
            top: top.clone(),
            base: top.join("pkg").join("web"),
        };
        let mut input = json!({
            "paths": [
                "pkg/web/a.ts",
                top.join("docs").to_string_lossy() + "/",
                "src/**/*.rs",
                "../outside",
            ],
        });
        in_checkout(&mut input, &checkout);
        assert_eq!(
            input,
            json!({
                "repo": "github.com/acme/shop",
                "paths": ["pkg/web/a.ts", "docs/", "src/**/*.rs", "../outside"],
            })
        );
        let mut named = json!({"repo": "other", "paths": []});
        in_checkout(&mut named, &checkout);
        assert_eq!(named["repo"], "other", "a repo the model names is kept");
    }
}
