//! The arguments of each MCP tool, as rmcp reads them and as their JSON
//! schemas tell clients. Every struct passes [`portable_schema`], so strict
//! clients accept the schemas.

use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Blocking tools wait this long unless told otherwise.
pub const DEFAULT_WAIT_SECS: u64 = 60;
/// Blocking tools never wait longer than one REST long-poll may (one hour).
pub const MAX_WAIT_SECS: u64 = crate::api::MAX_LONG_POLL_MS / 1000;

/// The wait a blocking tool asked for (`timeout_seconds`, else `default`),
/// capped at the longest long-poll.
pub(super) fn wait_for(timeout_seconds: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(timeout_seconds.unwrap_or(default).min(MAX_WAIT_SECS))
}

/// Makes an argument schema portable across MCP clients: an optional
/// argument is simply left out, so it is typed as its value (`"integer"`, not
/// `["integer", "null"]`) with no `"default": null`, and an argument that
/// takes any JSON says so with one branch per JSON type instead of an empty
/// schema; strict validators reject the other forms.
/// What every tool's `peer_key` argument says to the model; written once and
/// put into each schema by [`portable_schema`].
pub const PEER_KEY_HELP: &str = "Your peer key: the \"peerKey\" that connect answered. Pass it on every call so the broker knows which peer you are (without it, a client that keeps no MCP session is anonymous).";

fn portable_schema(schema: &mut schemars::Schema) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, prop) in props.iter_mut() {
        let Some(prop) = prop.as_object_mut() else {
            continue;
        };
        if name == "peer_key" {
            prop.insert("description".into(), Value::from(PEER_KEY_HELP));
        }
        if prop.get("default") == Some(&Value::Null) {
            prop.remove("default");
        }
        let constrained = ["type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const"]
            .iter()
            .any(|k| prop.contains_key(*k));
        if !constrained {
            let any: Vec<Value> = ["object", "array", "string", "number", "boolean", "null"]
                .iter()
                .map(|t| json!({ "type": t }))
                .collect();
            prop.insert("anyOf".into(), Value::Array(any));
        }
        if let Some(Value::Array(types)) = prop.get("type") {
            let real: Vec<Value> = types
                .iter()
                .filter(|t| t.as_str() != Some("null"))
                .cloned()
                .collect();
            if let [only] = real.as_slice() {
                prop.insert("type".into(), only.clone());
            }
        }
    }
}

/// Arguments of `connect`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ConnectArgs {
    /// The role this session takes, e.g. "backend" or "linux-client" (1-64 characters of letters, digits, '.', '_', '-'). Leave it out to just see who is online.
    #[serde(default)]
    pub role: Option<String>,
    /// Capability tags others can see, e.g. ["rust", "docker"].
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// A human-friendly name for this session.
    #[serde(default)]
    pub name: Option<String>,
    /// The peer id of an earlier session, to continue as that same peer.
    #[serde(default)]
    pub id: Option<String>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `register`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct RegisterArgs {
    /// The role this session takes, e.g. "backend" (1-64 characters of letters, digits, '.', '_', '-').
    pub role: String,
    /// Capability tags others can see, e.g. ["rust", "docker"].
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// A human-friendly name for this session.
    #[serde(default)]
    pub name: Option<String>,
    /// The peer id of an earlier session, to continue as that same peer.
    #[serde(default)]
    pub id: Option<String>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `list_peers`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ListPeersArgs {
    /// Also list stale and offline peers (default: online peers only).
    #[serde(default)]
    pub all: Option<bool>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `send_command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct SendCommandArgs {
    /// Who should do it: a role (the first free peer of that role takes it), a peer id, or "*" for a copy to every online peer.
    pub target: String,
    /// What to do, short and specific, e.g. "start-server" or "run-tests".
    pub action: String,
    /// Arguments of the action (any JSON), e.g. {"port": 8080}.
    #[serde(default)]
    pub params: Option<Value>,
    /// Wait for the result before answering (default false).
    #[serde(default)]
    pub wait: Option<bool>,
    /// With wait: how long to wait for the result, in seconds (default 60, at most 3600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// An idempotency key: sending the same key again answers the original command.
    #[serde(default)]
    pub dedupe_key: Option<String>,
    /// Seconds the command may stay untaken before it expires (default: never).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Seconds from now by which the command should be finished (default: no deadline). Past it, an unfinished command is marked overdue, the person watching is alerted, and a waiting send_command or get_command_result returns at once to say so.
    #[serde(default)]
    pub deadline_seconds: Option<u64>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of tools that only wait.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct WaitArgs {
    /// How long to wait, in seconds (default 60, at most 3600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `ack_command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct AckArgs {
    /// The id of the command you took with wait_for_command.
    pub command_id: String,
    /// The outcome (any JSON), e.g. {"ok": true, "url": "http://localhost:8080"}.
    #[serde(default)]
    pub result: Option<Value>,
    /// Set when the command failed: one sentence saying why. The command is then marked failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `get_command_result`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ResultArgs {
    /// The id send_command answered.
    pub command_id: String,
    /// How long to wait for the result, in seconds (default 60, at most 3600; 0 just looks).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `channel_send`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ChannelSendArgs {
    /// The channel's name, e.g. "build-log" (1-64 characters of letters, digits, '.', '_', '-').
    pub channel: String,
    /// The message (any JSON), e.g. {"text": "tests pass"}.
    pub data: Value,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `channel_read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ChannelReadArgs {
    /// The channel's name.
    pub channel: String,
    /// Answer messages with seq greater than this (default 0: from the start). Pass the lastSeq of your previous read.
    #[serde(default)]
    pub since: Option<u64>,
    /// At most this many messages (default 100, at most 10000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// When nothing is newer than since, wait up to this many seconds for a message (default 0: answer at once; at most 3600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `emit_signal`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct EmitArgs {
    /// The signal's name, e.g. "server-ready".
    pub name: String,
    /// Data carried by the signal (any JSON).
    #[serde(default)]
    pub data: Option<Value>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `wait_for_signal`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct WaitSignalArgs {
    /// The signal's name.
    pub name: String,
    /// Wait for an emission newer than this count (the count you saw last); default: any emission, including one that already happened.
    #[serde(default)]
    pub after: Option<u64>,
    /// How long to wait, in seconds (default 60, at most 3600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of tools that only need to know who calls.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct IdentityArgs {
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `reset`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ResetArgs {
    /// Must be true: reset erases every peer, command, channel and signal for everyone.
    pub confirm: bool,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `ask_human`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct AskHumanArgs {
    /// The question, one clear decision (1-2000 characters), e.g. "Deploy v2 to production now?".
    pub text: String,
    /// The only answers accepted (1-20 distinct short strings), e.g. ["yes", "no"]. Leave it out for a free-text answer.
    #[serde(default)]
    pub choices: Option<Vec<String>>,
    /// Anything that helps the person decide (any JSON), e.g. {"diff": "3 files", "command_id": "..."}.
    #[serde(default)]
    pub context: Option<Value>,
    /// How long to wait for the answer, in seconds (default 60, at most 3600; 0 asks without waiting). The question stays open after that.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Seconds the question stays open unanswered before it expires (default: never).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `get_answer`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct GetAnswerArgs {
    /// The id of the question, as ask_human answered it.
    pub question_id: String,
    /// How long to wait for the answer, in seconds (default 60, at most 3600; 0 just looks).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `answer_question`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct AnswerQuestionArgs {
    /// The id of the open question (from list_questions).
    pub question_id: String,
    /// The answer: exactly one of the question's choices when it has them, else free text (1-10000 characters).
    pub answer: String,
    /// Words that travel with the answer (at most 2000 characters), e.g. why.
    #[serde(default)]
    pub note: Option<String>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `list_questions`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ListQuestionsArgs {
    /// Only questions with this status (default: all, open ones first).
    #[serde(default)]
    #[schemars(extend("enum" = ["open", "answered", "cancelled", "expired"]))]
    pub status: Option<String>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `claim_paths`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ClaimPathsArgs {
    /// The paths to hold (1-100), relative to the repository's top level with / between directories: files ("src/api/users.rs"), directories ending in / ("src/db/"), or globs ("src/**/*.sql").
    pub paths: Vec<String>,
    /// The repository the paths are in: the name your session was told at start (cipc's hooks fill it in).
    #[serde(default)]
    pub repo: Option<String>,
    /// Seconds until the lease ends unless claimed again (default 1800 = 30 min, 1 to 86400).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// What you are doing with them, shown to whoever is refused (at most 500 characters), e.g. "migrating the orders table".
    #[serde(default)]
    pub reason: Option<String>,
    /// true to share the paths with other shared claims (e.g. reading while others read); default false: only you may edit them.
    #[serde(default)]
    pub shared: Option<bool>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `release_paths`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct ReleasePathsArgs {
    /// The id of the lease to release, as claim_paths answered it.
    #[serde(default)]
    pub lease_id: Option<String>,
    /// Or the paths you claimed (as you wrote them): every lease of yours that names one of them is released.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// With paths: only leases in this repository (default: any).
    #[serde(default)]
    pub repo: Option<String>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}

/// Arguments of `check_paths`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = portable_schema)]
pub struct CheckPathsArgs {
    /// The paths to check (1-100), relative to the repository's top level, e.g. ["src/db/schema.sql"].
    pub paths: Vec<String>,
    /// The repository the paths are in: the name your session was told at start (cipc's hooks fill it in).
    #[serde(default)]
    pub repo: Option<String>,
    /// Your peer key ([`PEER_KEY_HELP`] is what clients are told).
    #[serde(default)]
    pub peer_key: Option<String>,
}
