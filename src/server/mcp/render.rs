//! How tool results read: every sentence the MCP tools say lives here.
//! (A long file of one concern, on purpose: the tools' words, kept together
//! so they read alike; the tools themselves are in `tools/`.)
//!
//! An answer is a sentence that tells the model what happened and what to do
//! next, then the JSON of the broker's answer. A refusal ([`Refusal`]) is a
//! tool result with `isError: true`: an actionable sentence, then the same
//! `{"error": {"code", "reason", "message"}}` a REST error answers, both as
//! text and as structured content, so clients branch on `reason` instead of
//! matching prose.
//!
//! This module knows the wire types and the error catalogue, not the tools:
//! the tools call it, never the other way round.

use crate::api::{
    Command, CommandStatus, DiscoverResponse, ErrorBody, ErrorResponse, Lease, LeaseConflict,
    LeaseRefusal, Peer, Question, QuestionStatus, Via,
};
use crate::broker::BrokerError;
use crate::error_code::ErrorCode;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// What a tool body answers: its result, or why it refused. rmcp turns the
/// `Err` side into an `isError: true` result through [`Refusal`]'s
/// [`IntoCallToolResult`], so a tool body uses `?` instead of early returns.
pub(super) type Answer = Result<CallToolResult, Refusal>;

/// A refusal: the catalogue reason (as on REST) and a sentence the model can
/// act on.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    /// Why: `error.reason`, whose class is `error.code`.
    pub code: ErrorCode,
    /// One sentence that says what was wrong and what to do.
    pub message: String,
    /// For `lease_conflict`: the leases in the way, beside `error` as on
    /// REST's 409.
    pub conflicts: Vec<Lease>,
}

impl Refusal {
    /// A refusal with its reason and sentence.
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            conflicts: Vec::new(),
        }
    }

    /// The tool result: the sentence, then the REST error body as text and
    /// as structured content.
    pub(super) fn into_result(self) -> CallToolResult {
        let error = ErrorBody {
            code: self.code.class().as_str().to_string(),
            reason: Some(self.code.as_str().to_string()),
            message: self.message.clone(),
        };
        let value = if self.conflicts.is_empty() {
            serde_json::to_value(ErrorResponse { error })
        } else {
            serde_json::to_value(LeaseRefusal {
                error,
                conflicts: self.conflicts,
            })
        }
        .unwrap_or_default();
        let json = serde_json::to_string_pretty(&value).unwrap_or_else(|_| "null".into());
        let mut r = CallToolResult::error(vec![
            ContentBlock::text(self.message),
            ContentBlock::text(json),
        ]);
        r.structured_content = Some(value);
        r
    }
}

impl From<BrokerError> for Refusal {
    fn from(e: BrokerError) -> Self {
        Refusal {
            conflicts: e.conflicts,
            ..Refusal::new(e.code, e.message)
        }
    }
}

impl IntoCallToolResult for Refusal {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(self.into_result().into())
    }
}

/// A successful result: a sentence, then the JSON.
pub(super) fn done(summary: impl Into<String>, data: impl Serialize) -> CallToolResult {
    let json = serde_json::to_string_pretty(&data).unwrap_or_else(|_| "null".into());
    CallToolResult::success(vec![ContentBlock::text(summary), ContentBlock::text(json)])
}

// ---- refusals every tool may give ----

/// A wait the client cancelled (or whose answer can no longer be written).
pub(super) fn cancelled() -> Refusal {
    wait_cancelled(
        "the wait was cancelled before anything arrived; call the tool again to keep waiting",
    )
}

/// A cancelled wait with its own sentence (what is kept, how to resume).
pub(super) fn wait_cancelled(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::WaitCancelled, message)
}

/// A call on a session that has ended.
pub(super) fn session_ended() -> Refusal {
    Refusal::new(
        ErrorCode::UnknownSession,
        "this MCP session has ended; reconnect to the broker",
    )
}

/// Arguments rmcp could not read into the tool's schema (`detail` is its
/// serde message).
pub(super) fn bad_arguments(tool: &str, detail: &str) -> Refusal {
    Refusal::new(
        ErrorCode::InvalidBody,
        format!("the arguments for {tool} do not fit its input schema ({detail}); fix them and call {tool} again"),
    )
}

/// A `peer_key` the broker refused.
pub(super) fn key_refused(e: BrokerError) -> Refusal {
    Refusal::new(e.code, format!(
        "{e}. If the broker was reset or this peer forgotten, call connect with your role again (without peer_key) and use the new peerKey"
    ))
}

/// A tool that needs a peer, called by nobody in particular.
pub(super) fn not_registered(tool: &str) -> Refusal {
    Refusal::new(ErrorCode::NotRegistered, format!(
        "the broker does not know which peer you are: pass peer_key (the peerKey that connect answered) to {tool}; if you never connected, call connect with a role first (e.g. {{\"role\": \"backend\"}})"
    ))
}

/// A tool that needs a peer, called by one the broker forgot.
pub(super) fn peer_gone(id: Uuid, tool: &str) -> Refusal {
    Refusal::new(ErrorCode::UnknownPeer, format!(
        "peer {id} no longer exists on the broker (was it reset?); call connect with your role again (without peer_key), then call {tool} with the new peerKey"
    ))
}

/// An id argument that is not a UUID (the reason is REST's for a bad id in
/// a path: nothing has that id).
pub(super) fn not_an_id(code: ErrorCode, kind: &str, raw: &str) -> Refusal {
    Refusal::new(
        code,
        format!(
        "{raw:?} is not a {kind} id; use the id (a UUID like 0190a8c2-...) from an earlier answer"
    ),
    )
}

// ---- peers ----

/// `connect` without a role: who is online and what to do next.
pub(super) fn online(online: DiscoverResponse, me: Option<Uuid>) -> CallToolResult {
    let who = if online.count == 0 {
        "Nobody is online on the broker yet.".to_string()
    } else {
        format!(
            "Online now: {} peer(s) with roles {:?}.",
            online.count, online.roles
        )
    };
    let next = match me {
        Some(id) => format!("You are peer {id}; call connect with a role (and your peer_key) to change its role."),
        None => "You are not registered. Ask the user which role this session should take (e.g. \"backend\", \"frontend\", \"linux-client\"), then call connect again with that role.".into(),
    };
    done(format!("{who} {next}"), online)
}

/// A connect refused because the peer is protected.
pub(super) fn protected_peer(e: BrokerError) -> Refusal {
    Refusal::new(e.code, format!(
        "{e}. To continue as that peer pass its peer_key; to start afresh call connect with only a role"
    ))
}

/// A peer registered: its key, what waits for it, who else is online.
pub(super) fn registered(
    peer: &Peer,
    key: &str,
    waiting: usize,
    online: DiscoverResponse,
) -> CallToolResult {
    let queue = match waiting {
        0 => "No command is waiting for this role yet".to_string(),
        1 => "1 command is waiting for this role: call wait_for_command to take it".into(),
        n => format!("{n} commands are waiting for this role: call wait_for_command to take them"),
    };
    done(
        format!(
            "Registered as role {:?} (peer id {}). Your peer key is {key}: pass \"peer_key\": \"{key}\" in EVERY later cipc tool call (whoami, wait_for_command, ack_command, send_command, ...), so the broker knows they come from this peer; keep it to yourself. {queue}. Others reach you with send_command target {:?}. Online now: {} peer(s), roles {:?}. If anything says this peer is unknown, call connect with role {:?} and the same peer_key to continue as the same peer.",
            peer.role, peer.id, peer.role, online.count, online.roles, peer.role
        ),
        serde_json::json!({"peer": peer, "peerKey": key, "pendingCommands": waiting, "online": online}),
    )
}

/// `whoami` for a caller with no peer.
pub(super) fn anonymous() -> CallToolResult {
    done(
        "You are not registered (or did not pass your peer_key). Call connect with a role (e.g. {\"role\": \"backend\"}) to register, then pass its peerKey as peer_key.",
        serde_json::json!({"registered": false}),
    )
}

/// `whoami` for a registered peer.
pub(super) fn whoami(peer: &Peer) -> CallToolResult {
    done(
        format!(
            "You are peer {} with role {:?} ({}), connected {}; working on {} command(s).",
            peer.id,
            peer.role,
            peer.status.as_str(),
            match peer.via {
                Via::Hook =>
                    "through this session's hooks (they add your key to every cipc tool call)",
                Via::Mcp => "via MCP",
                Via::Http => "via HTTP",
            },
            peer.working_on.len()
        ),
        serde_json::json!({"registered": true, "peer": peer}),
    )
}

/// `whoami` for a peer the broker forgot.
pub(super) fn forgotten(id: Uuid) -> CallToolResult {
    done(
        format!("You were peer {id}, which the broker no longer knows (was it reset?). Call connect with your role (without peer_key) to register again."),
        serde_json::json!({"registered": false}),
    )
}

/// `list_peers` with `all`.
pub(super) fn all_peers(peers: Vec<Peer>, online: usize) -> CallToolResult {
    done(
        format!("{} known peer(s), {online} online.", peers.len()),
        serde_json::json!({"peers": peers}),
    )
}

/// `list_peers` without `all`.
pub(super) fn online_peers(d: DiscoverResponse) -> CallToolResult {
    done(
        format!("{} peer(s) online with roles {:?}.", d.count, d.roles),
        d,
    )
}

/// `status`.
pub(super) fn status(s: crate::api::StatusResponse, online: usize) -> CallToolResult {
    done(
        format!(
            "cipc {}: {online} peer(s) online, {} channel(s), {} signal(s); commands by status {:?}.",
            s.version,
            s.channels.len(),
            s.signals.len(),
            s.commands.counts
        ),
        s,
    )
}

/// `reset` without `confirm: true`.
pub(super) fn reset_unconfirmed() -> Refusal {
    Refusal::new(ErrorCode::ConfirmRequired, "reset erases every peer, command, channel and signal for everyone; call it with confirm: true only if the user asked for it")
}

/// `reset` done.
pub(super) fn reset_done() -> CallToolResult {
    done(
        "The broker is reset: no peers, commands, channels or signals remain. This session is no longer registered; call connect with a role to register again.",
        serde_json::json!({"ok": true}),
    )
}

// ---- commands ----

/// One line about a command: what, for whom, from whom, and how it stands.
pub(super) fn describe(c: &Command) -> String {
    let mut s = format!(
        "command {} ({:?} for {}, from {}) is {}",
        c.id,
        c.action,
        c.target,
        c.from,
        c.status.as_str()
    );
    match c.status {
        CommandStatus::Acked => {
            if let Some(r) = &c.result {
                s.push_str(&format!(" with result {r}"));
            }
        }
        CommandStatus::Failed | CommandStatus::Cancelled | CommandStatus::Expired => {
            if let Some(e) = &c.error {
                s.push_str(&format!(": {e}"));
            }
        }
        _ => {}
    }
    s
}

/// Where an unfinished command is, given the peer holding it (`holder`: its
/// role and status, when the broker still knows it).
pub(super) fn whereabouts(c: &Command, holder: Option<&Peer>) -> String {
    match (c.status, c.delivered_to) {
        (CommandStatus::Delivered, Some(p)) => match holder {
            Some(peer) => format!(
                "delivered to peer {p} (role {:?}, {}), which has not acked it",
                peer.role,
                peer.status.as_str()
            ),
            None => format!("delivered to peer {p}, which has not acked it"),
        },
        (CommandStatus::Pending, _) => {
            format!("pending for {:?} (nobody has taken it yet)", c.target)
        }
        (status, _) => status.as_str().to_string(),
    }
}

/// What a command that missed its deadline is told to its sender: the
/// deadline passed, where the command is (`whereabouts`, e.g. "delivered to
/// peer ... (role \"backend\")") and how to keep waiting.
pub(super) fn overdue(c: &Command, whereabouts: &str) -> String {
    let at = c.deadline.map(|d| format!(" (at {d})")).unwrap_or_default();
    format!(
        "The deadline of command {} ({:?} for {}) passed{at}: it is not finished, it is still {whereabouts}. The person watching the dashboard is alerted. Call get_command_result with command_id {:?} to keep waiting for its result, or tell the user it is late.",
        c.id,
        c.action,
        c.target,
        c.id.to_string()
    )
}

/// Whether a command missed its deadline and is still unfinished.
pub(super) fn is_overdue(c: &Command) -> bool {
    c.overdue && !c.status.is_terminal()
}

/// How a wait for one command's result ends: finished, overdue (the
/// deadline passed during the wait, or had passed when it timed out), or
/// timed out (`no_result` and `again` say so and how to keep waiting).
/// `whereabouts` is where an overdue command is; `data` is the JSON.
pub(super) fn result_outcome(
    c: &Command,
    whereabouts: &str,
    (timed_out, timeout): (bool, Duration),
    mut data: serde_json::Value,
    no_result: String,
    again: String,
) -> CallToolResult {
    if is_overdue(c) {
        data["overdue"] = true.into();
        let late = overdue(c, whereabouts);
        if timed_out {
            data["timedOut"] = true.into();
            let waited = timeout.as_secs();
            return done(format!("No result within {waited}s. {late}"), data);
        }
        return done(late, data);
    }
    if timed_out {
        data["timedOut"] = true.into();
        return done(format!("{no_result} {again}"), data);
    }
    done(format!("Done: {}.", describe(c)), data)
}

/// A command sent without a wait.
pub(super) fn sent(command: &Command, queued: bool) -> CallToolResult {
    let id = command.id;
    let q = if queued {
        " Nobody holding that target is online yet, so it is queued until one connects."
    } else {
        ""
    };
    let by = command
        .deadline
        .map(|d| format!(" It should be finished by {d}; past that it is marked overdue."))
        .unwrap_or_default();
    done(
        format!("Sent command {id} ({:?} to {}).{q}{by} Call get_command_result with command_id {:?} to wait for its result.", command.action, command.target, id.to_string()),
        serde_json::json!({"command": command, "queued": queued}),
    )
}

/// A sent command whose wait ran out: (`no_result`, `again`) for
/// [`result_outcome`].
pub(super) fn sent_no_result(c: &Command, timeout: Duration) -> (String, String) {
    (
        format!(
            "Sent command {}, but no result arrived within {}s (it is {}).",
            c.id,
            timeout.as_secs(),
            c.status.as_str()
        ),
        format!(
            "Call get_command_result with command_id {:?} to keep waiting.",
            c.id.to_string()
        ),
    )
}

/// A cancelled wait for the result of commands that were sent.
pub(super) fn sent_wait_cancelled(ids: &[Uuid]) -> Refusal {
    let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    match list.as_slice() {
        [one] => wait_cancelled(format!(
            "the wait was cancelled, but command {one} was sent; call get_command_result with command_id {one:?} to wait for its result"
        )),
        _ => wait_cancelled(format!(
            "the wait was cancelled, but the {} copies were sent; call get_command_result with each command_id ({}) to wait for their results",
            list.len(),
            list.join(", ")
        )),
    }
}

/// A `"*"` fan-out: how many copies, and (after a wait) how they ended.
pub(super) fn fanned_out(commands: &[Command], waited: Option<(bool, Duration)>) -> CallToolResult {
    let n = commands.len();
    let summary = match waited {
        None => format!("Sent {n} cop(ies) of the command, one per online peer. Call get_command_result with each id to wait for the results."),
        Some(_) if n == 0 => "Nobody is online, so no copy was sent.".to_string(),
        Some((timed_out, timeout)) => {
            let finished = commands.iter().filter(|c| c.status.is_terminal()).count();
            let lines: Vec<String> = commands.iter().map(describe).collect();
            let end = if timed_out {
                format!(" {finished} of {n} finished within {}s; call get_command_result with the id of each unfinished one to keep waiting.", timeout.as_secs())
            } else {
                format!(" All {n} finished (or turned overdue).")
            };
            format!(
                "Sent {n} cop(ies) of the command, one per online peer:{end} {}.",
                lines.join("; ")
            )
        }
    };
    let mut data = serde_json::json!({"commands": commands});
    if let Some((timed_out, _)) = waited {
        data["timedOut"] = timed_out.into();
    }
    done(summary, data)
}

/// `wait_for_command` with nothing arriving.
pub(super) fn no_command(timeout: Duration) -> CallToolResult {
    done(
        format!(
            "No command arrived within {}s. Call wait_for_command again to keep listening.",
            timeout.as_secs()
        ),
        serde_json::json!({"command": null, "timedOut": true}),
    )
}

/// `wait_for_command` took a command: what to do, then how to ack it.
pub(super) fn new_command(c: &Command) -> CallToolResult {
    let again = if c.redelivered {
        " It was delivered before to a peer that left without acking it; check whether part of it is already done."
    } else {
        ""
    };
    done(
        format!(
            "New command {} from {}: action {:?} with params {}.{again} Do it, then call ack_command with command_id {:?} and a result (or an error if it failed).",
            c.id, c.from, c.action, c.params, c.id.to_string()
        ),
        serde_json::json!({"command": c}),
    )
}

/// `ack_command` recorded.
pub(super) fn acked(c: &Command) -> CallToolResult {
    done(
        format!("Recorded: {}.", describe(c)),
        serde_json::json!({"command": c}),
    )
}

/// `get_command_result` timed out: (`no_result`, `again`).
pub(super) fn still_waiting(c: &Command, timeout: Duration) -> (String, String) {
    (
        format!(
            "No result yet after {}s: {}.",
            timeout.as_secs(),
            describe(c)
        ),
        "Call get_command_result again to keep waiting.".to_string(),
    )
}

// ---- channels and signals ----

/// `channel_send` done.
pub(super) fn channel_sent(m: &crate::api::Message) -> CallToolResult {
    done(
        format!("Sent message {} on channel {:?}.", m.seq, m.channel),
        serde_json::json!({"message": m}),
    )
}

/// `channel_read`: what was read and which `since` to pass next.
pub(super) fn channel_read(
    r: crate::api::MessagesResponse,
    since: u64,
    timeout: Duration,
) -> CallToolResult {
    let next = r.messages.last().map_or(since, |m| m.seq);
    let summary = if r.messages.is_empty() && r.timed_out {
        format!(
            "No new message on channel {:?} after seq {since} within {}s. Call channel_read again with since {next} to keep waiting.",
            r.channel,
            timeout.as_secs()
        )
    } else if r.messages.is_empty() {
        format!(
            "No message on channel {:?} after seq {since} (lastSeq {}).",
            r.channel, r.last_seq
        )
    } else {
        let more = if next < r.last_seq {
            " There are more: call channel_read again with that since."
        } else {
            ""
        };
        format!(
            "{} message(s) on channel {:?}; next time pass since {next}.{more}",
            r.messages.len(),
            r.channel
        )
    };
    done(summary, r)
}

/// `emit_signal` done.
pub(super) fn emitted(s: &crate::api::Signal) -> CallToolResult {
    done(
        format!("Emitted signal {:?} (count {}).", s.name, s.count),
        serde_json::json!({"signal": s}),
    )
}

/// `wait_for_signal`: emitted, or not within the wait.
pub(super) fn signal_outcome(
    s: &crate::api::Signal,
    timed_out: bool,
    timeout: Duration,
) -> CallToolResult {
    if timed_out {
        return done(
            format!(
                "Signal {:?} was not emitted within {}s. Call wait_for_signal again to keep waiting.",
                s.name,
                timeout.as_secs()
            ),
            serde_json::json!({"signal": s, "timedOut": true}),
        );
    }
    done(
        format!(
            "Signal {:?} is emitted (count {}){}.",
            s.name,
            s.count,
            s.data
                .as_ref()
                .map(|d| format!(" with data {d}"))
                .unwrap_or_default()
        ),
        serde_json::json!({"signal": s}),
    )
}

// ---- questions ----

/// `ask_human`'s wait cancelled: the question stays.
pub(super) fn ask_cancelled(id: Uuid) -> Refusal {
    wait_cancelled(format!(
        "the wait was cancelled, but question {id} was asked and stays open (it is durable); call get_answer with question_id {:?} to wait for its answer",
        id.to_string()
    ))
}

/// `get_answer`'s wait cancelled.
pub(super) fn get_answer_cancelled(id: Uuid) -> Refusal {
    wait_cancelled(format!(
        "the wait was cancelled; question {id} is unchanged. Call get_answer with question_id {:?} again to keep waiting",
        id.to_string()
    ))
}

/// What a wait for a question's answer tells the model, by the question's
/// status; `waited` is how long the wait was allowed to take.
pub(super) fn question_outcome(q: &Question, waited: Duration) -> CallToolResult {
    let id = q.id;
    match q.status {
        QuestionStatus::Answered => {
            let answer = q.answer.as_deref().unwrap_or_default();
            let by = q.answered_by.as_deref().unwrap_or("someone");
            done(
                format!(
                    "The person answered: {answer}\n(Answered by {by}, to question {id}: {:?}.)",
                    q.text
                ),
                serde_json::json!({"question": q}),
            )
        }
        QuestionStatus::Open => {
            let so_far = if waited.is_zero() {
                "nobody has answered it yet".to_string()
            } else {
                format!("nobody answered within {}s", waited.as_secs())
            };
            done(
                format!(
                    "Question {id} is still open: {so_far}. Nothing is lost: it stays open and keeps an answer given meanwhile. Call get_answer with question_id {:?} to keep waiting for the answer.",
                    id.to_string()
                ),
                serde_json::json!({"question": q, "timedOut": true}),
            )
        }
        QuestionStatus::Cancelled => done(
            format!("Question {id} was cancelled before anyone answered it, so there is no answer. Decide without it, or ask again with ask_human if a person must decide."),
            serde_json::json!({"question": q}),
        ),
        QuestionStatus::Expired => done(
            format!("Question {id} expired unanswered (its ttl ran out), so there is no answer. Ask again with ask_human if a person must still decide."),
            serde_json::json!({"question": q}),
        ),
    }
}

/// `answer_question` recorded.
pub(super) fn answer_recorded(q: &Question) -> CallToolResult {
    done(
        format!(
            "Recorded the answer {:?} to question {} from {} ({:?}); its asker is told.",
            q.answer.as_deref().unwrap_or_default(),
            q.id,
            q.from,
            q.text
        ),
        serde_json::json!({"question": q}),
    )
}

/// `list_questions` with a status that is none.
pub(super) fn not_a_question_status(raw: &str) -> Refusal {
    Refusal::new(ErrorCode::InvalidQuery, format!(
        "{raw:?} is not a question status; use \"open\", \"answered\", \"cancelled\" or \"expired\", or leave status out for all"
    ))
}

/// `list_questions`: how many, how many open, and how to answer one.
pub(super) fn questions(
    questions: Vec<Question>,
    status: Option<QuestionStatus>,
) -> CallToolResult {
    let open = questions
        .iter()
        .filter(|q| q.status == QuestionStatus::Open)
        .count();
    let which = status
        .map(|s| format!(" {}", s.as_str()))
        .unwrap_or_default();
    let next = if open > 0 {
        " Answer one with answer_question (question_id and answer), if it is yours to decide."
    } else {
        ""
    };
    done(
        format!("{} question(s){which}, {open} open.{next}", questions.len()),
        serde_json::json!({"questions": questions}),
    )
}

// ---- leases ----

/// A lease tool called without `repo`.
pub(super) fn no_repo(tool: &str) -> Refusal {
    Refusal::new(ErrorCode::InvalidLease, format!(
        "{tool} needs repo: pass repo, the name your session was told at start (cipc's hooks fill it in; else the origin remote URL without scheme, user and .git, e.g. \"github.com/acme/shop\", or the repository's top-level directory name), so sessions in other checkouts of the same code base see the same leases"
    ))
}

/// `release_paths` with neither a lease id nor paths.
pub(super) fn release_what() -> Refusal {
    Refusal::new(ErrorCode::InvalidLease, "release_paths needs lease_id (as claim_paths answered it) or paths (as you claimed them); the held leases are listed by GET /leases (or `cipc lease list`)")
}

/// `ms` as people say it: "90s", "30 min", "2 h".
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// `claim_paths` granted.
pub(super) fn lease_granted(l: &Lease) -> CallToolResult {
    let kind = if l.exclusive {
        "Other sessions are refused edits of them"
    } else {
        "It is shared: other shared claims may hold them too, exclusive ones are refused"
    };
    done(
        format!(
            "You hold lease {} on {} in {} until {} ({} from now). {kind} until then. When you are done, call release_paths with lease_id {:?}; to keep them longer, call claim_paths again before it ends (your own leases never conflict with each other).",
            l.id,
            l.paths.join(", "),
            l.repo,
            l.expires_at,
            span(l.expires_at.millis() - l.created_at.millis()),
            l.id.to_string()
        ),
        serde_json::json!({"lease": l}),
    )
}

/// `release_paths` done.
pub(super) fn leases_released(leases: &[Lease]) -> CallToolResult {
    let list: Vec<String> = leases
        .iter()
        .map(|l| format!("{} ({})", l.id, l.paths.join(", ")))
        .collect();
    done(
        format!(
            "Released {} lease(s): {}. Other sessions may edit those paths now.",
            leases.len(),
            list.join("; ")
        ),
        serde_json::json!({"leases": leases}),
    )
}

/// `check_paths`: who holds which of the paths, until when, and what to do.
pub(super) fn paths_checked(
    repo: &str,
    paths: &[String],
    conflicts: Vec<LeaseConflict>,
) -> CallToolResult {
    if conflicts.is_empty() {
        return done(
            format!(
                "Nobody else holds {} in {repo}: you may edit them (claim_paths first if others might start on them too).",
                paths.join(", ")
            ),
            serde_json::json!({"conflicts": conflicts}),
        );
    }
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            let l = &c.lease;
            let name = l
                .holder_name
                .as_deref()
                .map(|n| format!(" {n:?}"))
                .unwrap_or_default();
            let why = l
                .reason
                .as_deref()
                .map(|r| format!(" for {r:?}"))
                .unwrap_or_default();
            format!(
                "{} is held by {}{name} (peer {}) until {}{why}",
                c.path, l.holder_role, l.holder, l.expires_at
            )
        })
        .collect();
    done(
        format!(
            "{}. Do not edit those paths: ask the holder to hand them over (send_command with target its peer id), or pick other work.",
            lines.join("; ")
        ),
        serde_json::json!({"conflicts": conflicts}),
    )
}
