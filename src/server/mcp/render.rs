//! How tool results read: a sentence that tells the model what happened and
//! what to do next, then the JSON of the broker's answer; refusals are tool
//! results with `isError: true` and an actionable sentence.

use super::tools::MAX_WAIT_SECS;
use crate::api::{Command, CommandStatus, Question, QuestionStatus};
use crate::broker::BrokerError;
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// A successful result: a sentence, then the JSON.
pub(super) fn done(summary: impl Into<String>, data: impl Serialize) -> CallToolResult {
    let json = serde_json::to_string_pretty(&data).unwrap_or_else(|_| "null".into());
    CallToolResult::success(vec![ContentBlock::text(summary), ContentBlock::text(json)])
}

/// A refusal Claude can act on.
pub(super) fn refuse(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

pub(super) fn broker_refusal(e: BrokerError) -> CallToolResult {
    refuse(e.to_string())
}

pub(super) fn not_registered(tool: &str) -> CallToolResult {
    refuse(format!(
        "the broker does not know which peer you are: pass peer_key (the peerKey that connect answered) to {tool}; if you never connected, call connect with a role first (e.g. {{\"role\": \"backend\"}})"
    ))
}

/// A tool's early answer: a refusal, boxed because a `CallToolResult` is
/// large and the happy path should not carry its size.
pub(super) type Refusal = Box<CallToolResult>;

pub(super) fn parse_uuid(kind: &str, raw: &str) -> Result<Uuid, Refusal> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        Box::new(refuse(format!(
            "{raw:?} is not a {kind} id; use the id (a UUID like 0190a8c2-...) from an earlier answer"
        )))
    })
}

/// The wait a blocking tool asked for, capped at the longest long-poll.
pub(super) fn wait_for(timeout_seconds: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(timeout_seconds.unwrap_or(default).min(MAX_WAIT_SECS))
}

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
