//! The JSON wire types of the HTTP API (`shared/API.md`), and the limits
//! both REST and MCP apply. (A long file of one concern, on purpose: the
//! whole wire contract in one place.)
//!
//! The server, the typed client, the CLI and the MCP tools all use these types,
//! so the four doors into the broker cannot drift apart. Keys are camelCase;
//! optional fields are omitted rather than sent as `null`.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

mod leases;
pub use leases::*;

/// Whether a peer has been heard from recently.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum PeerStatus {
    /// Heard from within the stale limit (default 90 s), or holding an open wait.
    Online,
    /// Silent past the stale limit but not yet past the offline limit.
    Stale,
    /// Disconnected, or silent past the offline limit (default 15 min).
    Offline,
}

impl PeerStatus {
    /// The wire word (`"online"`, `"stale"`, `"offline"`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How a peer talks to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// REST calls (curl, the `cipc` CLI, scripts).
    #[default]
    Http,
    /// An MCP session (Claude Code).
    Mcp,
    /// Claude Code hooks (`cipc claude setup`), which reach a session even
    /// when it is idle.
    Hook,
}

/// A session registered with the broker under a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Stable identity; reconnecting with it keeps it.
    pub id: Uuid,
    /// What the peer does ("backend", "linux-client"); commands can target it.
    pub role: String,
    /// Free-form capability tags the peer advertised.
    pub capabilities: Vec<String>,
    /// A human-friendly name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Liveness derived from `lastSeen` (and explicit disconnects).
    pub status: PeerStatus,
    /// When the peer (re)connected.
    pub connected_at: Timestamp,
    /// The last time the broker heard from the peer.
    pub last_seen: Timestamp,
    /// How the peer is connected.
    #[serde(default)]
    pub via: Via,
    /// The commands delivered to this peer that it has not acked yet (ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub working_on: Vec<Uuid>,
    /// Registered with `"protect": true`: nothing is done in its name
    /// without its key (`X-Cipc-Peer-Key`).
    #[serde(default)]
    pub protected: bool,
    /// Why a person is needed now ("waiting for permission: Bash(rm -rf
    /// build)"); set by the peer, absent when nothing is asked of anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// Which coding agent the session is (`claude-code`, `codex`), set by
    /// its hooks; absent for scripts and people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// The lifecycle of a command.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum CommandStatus {
    /// Waiting for a peer to take it.
    Pending,
    /// Taken by a peer that has not acked yet.
    Delivered,
    /// Done, with a result.
    Acked,
    /// Done, with an error.
    Failed,
    /// Cancelled by someone before it finished.
    Cancelled,
    /// Its `ttl` ran out before a peer took it.
    Expired,
}

impl CommandStatus {
    /// Every status, in lifecycle order (for counts and help texts).
    pub const ALL: [CommandStatus; 6] = [
        CommandStatus::Pending,
        CommandStatus::Delivered,
        CommandStatus::Acked,
        CommandStatus::Failed,
        CommandStatus::Cancelled,
        CommandStatus::Expired,
    ];

    /// A finished command never changes again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, CommandStatus::Pending | CommandStatus::Delivered)
    }

    /// The wire name ("pending", ...).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::str::FromStr for CommandStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommandStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownStatus::of::<CommandStatus>("command", s))
    }
}

/// A status word that is none of an enum's wire names: says which are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status={given:?} is not a {of} status; use one of {}", valid.join(", "))]
pub struct UnknownStatus {
    /// What was given.
    given: String,
    /// Whose status ("command", "question").
    of: &'static str,
    /// The wire names there are.
    valid: &'static [&'static str],
}

impl UnknownStatus {
    fn of<T: strum::VariantNames>(of: &'static str, given: &str) -> UnknownStatus {
        UnknownStatus {
            given: given.to_string(),
            of,
            valid: T::VARIANTS,
        }
    }
}

/// An order sent to a role, a peer, or everyone, and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    /// Unique id (UUID v7).
    pub id: Uuid,
    /// Who sent it (a name, a role or a peer id; "dashboard" for the web UI).
    pub from: String,
    /// A role, a peer id, or the peer id of one copy of a `"*"` fan-out.
    pub target: String,
    /// What to do, e.g. "start-server".
    pub action: String,
    /// Arguments of the action (any JSON).
    pub params: Value,
    /// Where it is in its lifecycle.
    pub status: CommandStatus,
    /// When it was sent.
    pub created_at: Timestamp,
    /// The peer that took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<Uuid>,
    /// When that peer took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// When it finished (acked, failed, cancelled or expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<Timestamp>,
    /// The result the peer acked with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error the peer acked with (status `failed`), or why it was cancelled/expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The sender's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
    /// When it expires if nobody takes it (from `ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// How many times it has been delivered (1 on first delivery).
    #[serde(default)]
    pub attempt: u32,
    /// True once it went back to pending because its peer left without
    /// acking, or was handed to its taker again after a crash that may have
    /// cut off the answer that first handed it out.
    #[serde(default)]
    pub redelivered: bool,
    /// Audit: the peer id or network address that created it (an
    /// [`Origin`], as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When it should be finished by (from `deadline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    /// Its deadline passed before it finished: a person should look at it.
    #[serde(default)]
    pub overdue: bool,
}

/// One message of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Position in the channel, from 1, only growing.
    pub seq: u64,
    /// The channel's name.
    pub channel: String,
    /// The message body (any JSON).
    pub data: Value,
    /// Who sent it, when known (`X-Cipc-Peer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When it was appended.
    pub sent_at: Timestamp,
}

/// A named latch with data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// Its name.
    pub name: String,
    /// Whether it is set (waiters return at once).
    pub emitted: bool,
    /// The data of the latest emission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// When it was last emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_at: Option<Timestamp>,
    /// Who emitted it last, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_by: Option<String>,
    /// How many times it has been emitted (clearing keeps the count).
    pub count: u64,
}

/// A summary of one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelInfo {
    /// Its name.
    pub name: String,
    /// How many messages it holds now (after retention).
    pub count: u64,
    /// The oldest seq still held (lastSeq + 1 when empty).
    pub first_seq: u64,
    /// The newest seq ever appended (0 when never written).
    pub last_seq: u64,
    /// When the newest message was appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<Timestamp>,
}

// ---- request bodies ----

/// Body of `POST /peers/connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    /// The role to take, 1-64 chars of `[A-Za-z0-9._-]`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub role: String,
    /// Capability tags: at most 64, each 1-64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = capability_tags)]
    pub capabilities: Option<Vec<String>>,
    /// A human-friendly name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The id of a known peer to reconnect as (a protected one needs its
    /// key in `X-Cipc-Peer-Key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")]
    pub id: Option<Uuid>,
    /// Refuse anything done in this peer's name without its key. The `cipc`
    /// CLI and MCP sessions always ask for it; the old curl flow does not,
    /// so it is off when left out ([`ConnectRequest::protects`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<bool>,
    /// How the peer is connected, for people reading the peer list: `http`
    /// (the default) or `hook`. MCP sessions are `mcp` by themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// Which coding agent the session is (`claude-code`, `codex`): 1-64
    /// chars of `[A-Za-z0-9._-]`, shown in the dashboard. Hooks set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub agent: Option<String>,
}

impl ConnectRequest {
    /// Whether the peer asks to be protected: `protect`, off when left out,
    /// so that the old broker's curl flow keeps working unchanged.
    pub fn protects(&self) -> bool {
        self.protect.unwrap_or(false)
    }
}

/// Body of `PUT /peers/{id}/attention`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AttentionRequest {
    /// Why a person is needed, at most 500 characters; `null`, absent or
    /// empty clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub attention: Option<String>,
}

/// The longest `attention` text a peer may set.
pub const MAX_ATTENTION_LEN: usize = 500;

/// Body of `POST /commands/send`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// Who sends it; defaults to the `X-Cipc-Peer` peer's role, else "anonymous".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub from: Option<String>,
    /// A role, a peer id, or `"*"` for every online peer.
    #[schema(pattern = "^([A-Za-z0-9._-]{1,64}|\\*)$")]
    pub target: String,
    /// What to do (1-256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub action: String,
    /// Arguments (any JSON; default `{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Idempotency key: a repeat answers the original command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub dedupe_key: Option<String>,
    /// Milliseconds the command may stay pending before it expires (at most 365 days).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(maximum = 31_536_000_000_u64)]
    pub ttl: Option<u64>,
    /// Milliseconds from now by which it should be finished (at most 365
    /// days); past it, an unfinished command is marked `overdue`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(maximum = 31_536_000_000_u64)]
    pub deadline: Option<u64>,
}

/// Which commands `GET /commands` lists (every field narrows it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandFilter {
    /// Only commands with this status.
    pub status: Option<CommandStatus>,
    /// Only commands for this target (a role or a peer id).
    pub target: Option<String>,
    /// Only overdue commands (`true`), or only the others (`false`).
    pub overdue: Option<bool>,
    /// Only commands created by this origin, e.g. `peer:<id>` for a peer's own.
    pub origin: Option<String>,
}

impl CommandFilter {
    /// Whether `c` passes the filter.
    pub fn admits(&self, c: &Command) -> bool {
        self.status.is_none_or(|s| c.status == s)
            && self.target.as_deref().is_none_or(|t| c.target == t)
            && self.overdue.is_none_or(|o| c.overdue == o)
            && self
                .origin
                .as_deref()
                .is_none_or(|o| c.origin.as_deref() == Some(o))
    }
}

/// Where a question is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum QuestionStatus {
    /// Waiting for an answer.
    Open,
    /// Answered.
    Answered,
    /// Withdrawn before anyone answered.
    Cancelled,
    /// Its ttl ran out unanswered.
    Expired,
}

impl QuestionStatus {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Reads a wire word back; the error lists the words there are.
    pub fn parse(s: &str) -> Result<QuestionStatus, UnknownStatus> {
        s.parse::<QuestionStatus>()
            .map_err(|_| UnknownStatus::of::<QuestionStatus>("question", s))
    }
}

/// What a question asks for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum QuestionKind {
    /// A decision in words or among the asker's choices.
    #[default]
    Question,
    /// A coding session asks to use a tool: the choices are `allow` and
    /// `deny`, the context `{tool, input, cwd, session}`.
    Permission,
}

/// The two answers of a permission question, in the order they are offered.
pub const PERMISSION_CHOICES: [&str; 2] = ["allow", "deny"];

/// An agent asking a person (or any peer) for a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    /// Unique id (UUID v7).
    pub id: Uuid,
    /// Who asks (its role or name).
    pub from: String,
    /// The question, as text.
    pub text: String,
    /// The only answers accepted, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    /// Anything that helps answer it (a diff summary, a command id), any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Where it is in its life.
    pub status: QuestionStatus,
    /// When it was asked.
    pub created_at: Timestamp,
    /// When it expires unanswered (from `ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Words that travel with the answer: for a permission, the reason the
    /// session is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// When it was answered, cancelled or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<Timestamp>,
    /// Audit: the peer id or network address that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `question`, or `permission` (a session asking to use a tool).
    #[serde(default)]
    pub kind: QuestionKind,
    /// The asking session's peer, when a peer asked (`X-Cipc-Peer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Uuid>,
}

/// Body of `POST /questions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AskRequest {
    /// The question, 1-2000 characters, not all blank.
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    pub text: String,
    /// The only answers accepted (1-20, each 1-200 characters and not
    /// blank, distinct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = question_choices)]
    pub choices: Option<Vec<String>>,
    /// Anything that helps answer it, any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Who asks; defaults to the `X-Cipc-Peer` peer's role, else "anonymous".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub from: Option<String>,
    /// Milliseconds it stays open unanswered before it expires (at most 365 days).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    #[schema(maximum = 31_536_000_000_u64)]
    pub ttl: Option<u64>,
    /// `permission` for a session asking to use a tool (its choices are then
    /// `allow` and `deny`, given or not); `question` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<QuestionKind>,
}

/// Body of `POST /questions/{id}/answer`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AnswerRequest {
    /// The answer: one of the choices when the question has them; 1-10000
    /// characters, not all blank.
    #[schema(min_length = 1, max_length = 10000, pattern = "\\S")]
    pub answer: String,
    /// Who answers (default: the `X-Cipc-Peer` peer's role, else "someone").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 128)]
    pub by: Option<String>,
    /// Words that travel with the answer, at most 2000 characters: for a
    /// permission, the reason the session is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

/// `{"question": Question}`, with `timedOut` when a wait ran out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuestionResponse {
    /// The question as it stands.
    pub question: Question,
    /// Present and true when a wait ran out first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// `{"questions": [Question]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuestionsResponse {
    /// Open ones first (oldest first), then the rest, newest first.
    pub questions: Vec<Question>,
}

/// Body of `POST /commands/{id}/ack`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AckRequest {
    /// The outcome (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Present means the command failed, with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The delivery being acked (the `attempt` the wait answered). When
    /// given, an ack for an earlier delivery of a redelivered command is a
    /// 409, whoever sends it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_number"
    )]
    pub attempt: Option<u32>,
}

/// Body of `POST /signals/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmitRequest {
    /// Data carried by the signal (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

// ---- responses ----

/// What `POST /commands/send` answers: one command, or for `"*"` one per
/// online peer (documents the two shapes; the handler builds each directly).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SendAnswer {
    /// A single target: `{"command", "queued"}`.
    One(Box<SendResponse>),
    /// `"*"`: `{"commands": [...]}`.
    FanOut(CommandsResponse),
}

/// `{"peer": Peer}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeerResponse {
    /// The peer.
    pub peer: Peer,
}

/// `POST /peers/connect`: `{"peer": Peer, "key": "pk_..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectResponse {
    /// The peer.
    pub peer: Peer,
    /// The peer's secret key, shown only here: send it as `X-Cipc-Peer-Key`
    /// to act as this peer.
    pub key: String,
}

/// The OpenAPI schema of capability tags (what `connect` accepts; `null`
/// means none).
fn question_choices() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let choices = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(200))
                .pattern(Some("\\S")),
        )
        .min_items(Some(1))
        .max_items(Some(20))
        .unique_items(true);
    utoipa::openapi::schema::Schema::OneOf(
        OneOfBuilder::new()
            .item(choices)
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

fn capability_tags() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let tags = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64)),
        )
        .max_items(Some(64));
    utoipa::openapi::schema::Schema::OneOf(
        OneOfBuilder::new()
            .item(tags)
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// Reads an optional whole number that JSON may spell `5` or `5.0` (both
/// are integers to JSON Schema); a fraction or a value out of range is an
/// error naming the number.
fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole
        .and_then(|w| T::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number in range")))
}

/// The longest one long-poll may last (`timeout` in ms, one hour): longer
/// is a 400 on the wire, and clients that want to wait longer poll again.
pub const MAX_LONG_POLL_MS: u64 = 3_600_000;

/// How long a long-poll waits when it names no `timeout` (30 s, in ms).
pub const DEFAULT_LONG_POLL_MS: u64 = 30_000;

/// The most items one list or read answers (`limit`); more is a 400 on the
/// wire and is capped in MCP tools.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// How many commands `GET /commands` lists without a `limit`.
pub const DEFAULT_COMMAND_LIST: usize = 100;

/// How many messages a channel read answers without a `limit`.
pub const DEFAULT_MESSAGE_READ: usize = 1000;

/// The longest `ttl` a command may have (365 days, in ms); longer is a 400.
pub const MAX_TTL_MS: u64 = 365 * 24 * 3600 * 1000;

/// The header that proves a client is the peer a key was issued to.
pub const PEER_KEY_HEADER: &str = "x-cipc-peer-key";
/// The header a client names itself with (its peer id).
pub const PEER_HEADER: &str = "x-cipc-peer";

/// `{"peers": [Peer]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeersResponse {
    /// The peers.
    pub peers: Vec<Peer>,
}

/// Answer of `GET /peers/discover`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiscoverResponse {
    /// Online peers.
    pub peers: Vec<Peer>,
    /// Distinct roles of online peers.
    pub roles: Vec<String>,
    /// Number of online peers.
    pub count: usize,
}

/// Answer of `POST /commands/send` for a single target.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    /// The command (the original one when `dedupeKey` repeated).
    pub command: Command,
    /// True when no online peer holds the target yet.
    pub queued: bool,
    /// With `?wait=`: present and true when the wait ran out before the
    /// command finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// Answer of `POST /commands/{id}/ack?next=ms`: the acked command and the
/// holder's next one, taken like `wait` takes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AckNextResponse {
    /// The command just acked.
    pub command: Command,
    /// The next command now delivered to the same peer, or null.
    pub next: Option<Command>,
    /// Present and true when no next command came within `next` ms.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// `{"command": Command}` (with `timedOut` on a result wait that ran out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandResponse {
    /// The command.
    pub command: Command,
    /// Present and true when a wait ran out before the command finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// Answer of `GET /commands/{peerId}/wait`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitResponse {
    /// The command now delivered to the waiting peer, or null on timeout.
    pub command: Option<Command>,
    /// Present and true when nothing arrived in time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// `{"commands": [Command]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandsResponse {
    /// The commands.
    pub commands: Vec<Command>,
    /// With `?wait=` on a `"*"` send: present and true when the wait ran
    /// out before every copy finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// `{"message": Message}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    /// The appended message.
    pub message: Message,
}

/// Answer of `GET /channels/{name}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagesResponse {
    /// The channel's name.
    pub channel: String,
    /// Messages with seq > since, oldest first.
    pub messages: Vec<Message>,
    /// The oldest seq still held (earlier ones were trimmed by retention).
    pub first_seq: u64,
    /// The newest seq ever appended (0 if none).
    pub last_seq: u64,
    /// Present and true when a long-poll ran out with nothing new.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// `{"channels": [ChannelInfo]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelsResponse {
    /// The channels.
    pub channels: Vec<ChannelInfo>,
}

/// `{"signal": Signal}` (with `timedOut` on a wait that ran out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalResponse {
    /// The signal.
    pub signal: Signal,
    /// Present and true when a wait ran out before an emission.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

/// `{"signals": [Signal]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignalsResponse {
    /// The signals.
    pub signals: Vec<Signal>,
}

/// The `commands` part of `GET /status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommandSummary {
    /// How many commands are in each status.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The most recent commands, newest first.
    pub recent: Vec<Command>,
}

/// Answer of `GET /status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// The broker's version.
    pub version: String,
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Every known peer.
    pub peers: Vec<Peer>,
    /// Counts and recent commands.
    pub commands: CommandSummary,
    /// Every channel.
    pub channels: Vec<ChannelInfo>,
    /// Every signal.
    pub signals: Vec<Signal>,
    /// Long-polls and streams open now (at most `--max-waiters`): what a
    /// script or test waits on to know a waiter is parked, instead of
    /// sleeping.
    #[serde(default)]
    pub waiters: u64,
    /// MCP sessions the broker holds (Streamable HTTP sessions with an
    /// `Mcp-Session-Id` and legacy SSE streams; stateless requests hold
    /// none): at most `--max-mcp-sessions`, plus any that ended a moment ago
    /// and are not freed yet. Filled in by the HTTP server, which holds
    /// them; absent from brokers older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_sessions: Option<u64>,
    /// The store's commits since start, so an operator can see how many
    /// changes one sync covers; absent on `--memory`, which never commits,
    /// and from brokers older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreCommits>,
}

/// The store's commits since the broker started (`GET /status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCommits {
    /// Commits made: each ends in one sync (of SQLite's log, or a
    /// PostgreSQL transaction), which covers every change queued while the
    /// previous one ran.
    pub commits: u64,
    /// The changes those commits held: `writes / commits` is how many one
    /// sync covered.
    pub writes: u64,
}

/// `{"ok": true}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OkResponse {
    /// Always true.
    pub ok: bool,
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorBody,
}

/// `{"code", "reason", "message"}` of an error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The status class, as shared/API.md lists them: bad_request,
    /// invalid_json, payload_too_large, unauthorized, forbidden, not_found,
    /// conflict, unavailable, too_many_requests (and request_timeout).
    #[schema(value_type = crate::error_code::ErrorClass)]
    pub code: String,
    /// Which refusal this is, from the catalogue in docs/api.md (an addition
    /// to the contract; absent only from brokers older than it).
    // A string, not the enum, so that a client still reads a newer broker's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::error_code::ErrorCode>)]
    pub reason: Option<String>,
    /// One sentence a human can act on.
    pub message: String,
}

/// Checks a role, channel or signal name: 1-64 chars of `[A-Za-z0-9._-]`.
pub fn validate_name(kind: &str, name: &str) -> Result<(), InvalidName> {
    if name.is_empty() || name.len() > 64 {
        return Err(InvalidName(format!(
            "{kind} must be 1-64 characters long (got {}); use letters, digits, '.', '_' or '-'",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(InvalidName(format!(
            "{kind} {name:?} contains {c:?}; use only letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(())
}

/// A role, channel or signal name that breaks the rule of
/// [`validate_name`]; the sentence says which rule and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(String);

/// Who made a command or asked a question: `origin` on the wire, kept for
/// audit and for one rule (a protected sender may cancel what it sent).
/// Written as `peer:<id>` for a peer, else the address or door it came
/// through (`127.0.0.1`, `dashboard`, `mcp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A peer that named itself (and proved it, when protected).
    Peer(Uuid),
    /// A network address or a door, for callers that are no peer.
    Address(String),
}

impl Origin {
    /// The prefix that marks a peer's origin on the wire.
    const PEER: &'static str = "peer:";

    /// The origin of a caller: its peer if it named one, else its address.
    pub fn of(peer: Option<Uuid>, address: Option<&str>) -> Option<Origin> {
        peer.map(Origin::Peer)
            .or_else(|| address.map(|a| Origin::Address(a.to_string())))
    }

    /// Reads an origin back from the wire.
    pub fn parse(text: &str) -> Origin {
        text.strip_prefix(Origin::PEER)
            .and_then(|id| Uuid::parse_str(id).ok())
            .map_or_else(|| Origin::Address(text.to_string()), Origin::Peer)
    }

    /// The peer, when a peer made it.
    pub fn peer(&self) -> Option<Uuid> {
        match self {
            Origin::Peer(id) => Some(*id),
            Origin::Address(_) => None,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Peer(id) => write!(f, "{}{id}", Origin::PEER),
            Origin::Address(a) => f.write_str(a),
        }
    }
}

#[cfg(test)]
mod origin_tests {
    use super::Origin;
    use uuid::Uuid;

    #[test]
    fn an_origin_reads_back_as_written() {
        let id = Uuid::now_v7();
        let peer = Origin::Peer(id);
        assert_eq!(peer.to_string(), format!("peer:{id}"));
        assert_eq!(Origin::parse(&peer.to_string()), peer);
        assert_eq!(Origin::parse("127.0.0.1").peer(), None);
        assert_eq!(
            Origin::parse("peer:not-an-id"),
            Origin::Address("peer:not-an-id".into())
        );
        assert_eq!(
            Origin::of(None, Some("dashboard")),
            Some(Origin::Address("dashboard".into()))
        );
        assert_eq!(Origin::of(Some(id), Some("mcp")), Some(peer));
    }

    #[test]
    fn a_status_word_reads_back_and_an_unknown_one_lists_the_words() {
        use super::{CommandStatus, QuestionStatus};
        for c in CommandStatus::ALL {
            assert_eq!(c.as_str().parse::<CommandStatus>(), Ok(c));
        }
        assert_eq!(QuestionStatus::parse("open"), Ok(QuestionStatus::Open));
        let e = "done".parse::<CommandStatus>().expect_err("not a status");
        assert_eq!(
            e.to_string(),
            "status=\"done\" is not a command status; use one of pending, delivered, acked, failed, cancelled, expired"
        );
        let e = QuestionStatus::parse("closed").expect_err("not a status");
        assert!(
            e.to_string().contains("open, answered, cancelled, expired"),
            "{e}"
        );
    }
}
