//! `cipc hook permission`: Claude Code's `PermissionRequest` hook. A
//! session that needs permission for a tool asks the person through the
//! broker (a question of kind `permission`, shown in the dashboard's "Needs
//! you" and by `cipc questions`) and waits for the answer.
//!
//! What Claude Code does with it (measured with 2.1.328 and 2.1.332 in a
//! terminal): the hook starts when the permission is needed and the
//! terminal's own dialog appears beside it, at once. Whichever answers
//! first wins: a decision from the hook after the dialog is shown runs (or
//! refuses) the tool and takes the dialog away; an answer in the terminal
//! goes on without the hook. So the hook may wait long (the setup flag
//! `--permission-wait`, default an hour) without ever locking out a person
//! at the terminal.
//!
//! The question never outlives the prompt: Claude Code ends the hook
//! (SIGTERM) when the person answers "no" or presses Esc in the terminal,
//! and the hook then withdraws its question; a "yes" in the terminal is
//! seen by the `post-tool-use` hook of that tool call, which withdraws it;
//! a new prompt, the end of the turn and the end of the session withdraw
//! whatever is left; and the broker cancels a peer's open permission
//! questions when the peer disconnects or goes offline.

use super::{Hook, Reply};
use crate::agents::host::{hook_host, process_alive};
use crate::agents::state::{OpenPermission, SessionState};
use crate::api::{AskRequest, Question, QuestionKind, QuestionStatus};
use crate::cli::backoff::Backoff;
use crate::cli::CliError;
use crate::client::Client;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long a relayed permission prompt waits for an answer by default:
/// an hour (the terminal's dialog stays usable all along).
pub const DEFAULT_WAIT_SECS: u64 = 3600;
/// One long-poll of the wait, so a broker restart is noticed.
const POLL_MS: u64 = 25_000;
/// A tool input larger than this is shortened for the question (each long
/// string keeps its first [`KEEP_CHARS`] characters).
const MAX_INPUT_BYTES: usize = 200_000;
/// What a shortened string keeps.
const KEEP_CHARS: usize = 20_000;
/// The longest question text the broker takes.
const MAX_TEXT_CHARS: usize = 2000;
/// Tools whose "permission" is really a conversation with the person at
/// the terminal (answering the model's questions, approving a plan): an
/// `allow` from elsewhere would skip the conversation, so they are never
/// relayed.
const TERMINAL_ONLY: [&str; 3] = ["AskUserQuestion", "ExitPlanMode", "EnterPlanMode"];

/// How the wait for an answer ended.
enum Outcome {
    /// The question was answered, cancelled or expired on the broker.
    Closed(Box<Question>),
    /// Claude Code ended the hook: the terminal's dialog was answered "no"
    /// or dismissed, or the call was abandoned.
    Abandoned,
    /// The wait ran out, or the broker went away for good.
    GaveUp,
}

impl Hook {
    /// Asks the person, waits, and answers Claude Code with `allow`, `deny`
    /// (the person's note as the reason the model is shown), or nothing
    /// (the terminal's dialog decides).
    pub(super) async fn permission(&self) -> Result<Reply, CliError> {
        let tool = self
            .input
            .get("tool_name")
            .and_then(Value::as_str)
            .unwrap_or("a tool")
            .to_string();
        if TERMINAL_ONLY.contains(&tool.as_str()) {
            return Ok(Reply::default());
        }
        let input = shown_input(self.input.get("tool_input"));
        let call = call_of(&self.input);
        let wait = Duration::from_secs(self.args.permission_wait);
        let req = AskRequest {
            text: question_text(&tool, &input),
            context: Some(json!({
                "tool": tool,
                "input": input,
                "cwd": self.input.get("cwd").cloned().unwrap_or(Value::Null),
                "session": self.session,
            })),
            kind: Some(QuestionKind::Permission),
            // A hook that dies without a word leaves nothing open for long.
            ttl: Some(
                self.args
                    .permission_wait
                    .saturating_add(5)
                    .saturating_mul(1000),
            ),
            ..AskRequest::default()
        };
        let mut asked: Option<(Uuid, String, Uuid)> = None;
        let reply = self
            .with_peer(false, |client, peer, key, mut st| {
                let asked = &mut asked;
                async move {
                    st.took_turn = true;
                    let q = client.ask(&req).await?.question;
                    st.permissions.push(OpenPermission {
                        question: q.id,
                        call,
                    });
                    *asked = Some((peer, key, q.id));
                    Ok((Reply::default(), st))
                }
            })
            .await?;
        let Some((peer, key, id)) = asked else {
            // Not relayed (the broker is down or refused): the terminal's
            // dialog decides, as without cipc.
            return Ok(reply);
        };
        // The quick client of a hook's other calls gives up within a
        // second; the wait long-polls for up to POLL_MS.
        let client = self.as_peer(peer, &key, false)?;
        let outcome = wait_for_answer(&client, id, wait, hook_host()).await;
        self.forget_question(id)?;
        Ok(match outcome {
            Outcome::Closed(q) => decision(&q),
            Outcome::Abandoned | Outcome::GaveUp => {
                // Nobody waits for it any more: no dashboard should show it.
                let _ = client.cancel_question(&id.to_string()).await;
                Reply::default()
            }
        })
    }

    /// Withdraws every permission question the session still has open (the
    /// turn ended); quick, and silent when the broker cannot be reached.
    pub(super) async fn withdraw_permissions(&self) -> Result<(), CliError> {
        let mut locked = self.lock()?;
        if locked.state.permissions.is_empty() {
            return Ok(());
        }
        let (Some(peer), Some(key)) = (locked.state.peer, locked.state.key.clone()) else {
            return Ok(());
        };
        let client = self.as_peer(peer, &key, true)?;
        close_where(&client, &mut locked.state, |_| true).await;
        locked.save()?;
        Ok(())
    }

    /// Takes a question this hook asked out of the session's open ones.
    fn forget_question(&self, id: Uuid) -> Result<(), CliError> {
        let mut locked = self.lock()?;
        let before = locked.state.permissions.len();
        locked.state.permissions.retain(|p| p.question != id);
        if locked.state.permissions.len() != before {
            locked.save()?;
        }
        Ok(())
    }
}

/// Waits for the question to close, up to `wait`, through broker restarts,
/// until Claude Code ends the hook or the agent process `host` is gone (a
/// session killed outright sends no signal to its hooks).
async fn wait_for_answer(client: &Client, id: Uuid, wait: Duration, host: u32) -> Outcome {
    let deadline = Instant::now() + wait;
    let ended = ended_by_claude_code(host);
    tokio::pin!(ended);
    let mut backoff = Backoff::new();
    let id_text = id.to_string();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::GaveUp;
        }
        let ms = u64::try_from(left.as_millis())
            .unwrap_or(u64::MAX)
            .min(POLL_MS);
        tokio::select! {
            () = &mut ended => return Outcome::Abandoned,
            polled = client.wait_question(&id_text, ms) => match polled {
                Ok(r) if r.question.status == QuestionStatus::Open => backoff.reset(),
                Ok(r) => return Outcome::Closed(Box::new(r.question)),
                Err(e) if e.is_retryable() => {
                    tokio::select! {
                        () = &mut ended => return Outcome::Abandoned,
                        () = backoff.wait(Some(deadline)) => {}
                    }
                }
                Err(_) => return Outcome::GaveUp,
            },
        }
    }
}

/// Completes when Claude Code ends the hook: SIGTERM (the terminal's
/// dialog was answered "no" or dismissed), SIGINT or SIGHUP; or when the
/// agent process `host` no longer runs.
async fn ended_by_claude_code(host: u32) {
    tokio::select! {
        () = signalled() => {}
        () = host_gone(host) => {}
    }
}

/// Completes once process `host` has ended (looked at every
/// [`HOST_CHECK`]).
async fn host_gone(host: u32) {
    loop {
        tokio::time::sleep(HOST_CHECK).await;
        if !process_alive(host) {
            return;
        }
    }
}

/// How often a waiting permission hook looks whether its session still runs.
const HOST_CHECK: Duration = Duration::from_secs(1);

/// Completes on SIGTERM, SIGINT or SIGHUP.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::hangup(),
        ];
        let mut streams: Vec<_> = kinds.into_iter().filter_map(|k| signal(k).ok()).collect();
        if streams.is_empty() {
            return std::future::pending().await;
        }
        let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
        futures::future::select_all(waits).await;
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What Claude Code is told once the question closed.
fn decision(q: &Question) -> Reply {
    let by = q.answered_by.as_deref().unwrap_or("someone");
    let behavior = match (q.status, q.answer.as_deref()) {
        (QuestionStatus::Answered, Some("allow")) => json!({"behavior": "allow"}),
        (QuestionStatus::Answered, Some("deny")) => {
            let message = match q.note.as_deref() {
                Some(note) => format!("{note} (denied by {by} through cipc)"),
                None => format!(
                    "Denied by {by} through cipc. Do not try this again; ask the person what to do instead."
                ),
            };
            json!({"behavior": "deny", "message": message})
        }
        // Cancelled or expired: the terminal's dialog decides.
        _ => return Reply::default(),
    };
    let mut decision = Map::new();
    decision.insert("decision".into(), behavior);
    Reply {
        decision: Some(decision),
        ..Reply::default()
    }
}

/// Withdraws the session's open permission questions that `which` picks
/// (best effort: one the broker already closed is simply dropped).
pub(super) async fn close_where(
    client: &Client,
    st: &mut SessionState,
    which: impl Fn(&OpenPermission) -> bool,
) {
    let (close, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.permissions)
        .into_iter()
        .partition(|p| which(p));
    st.permissions = keep;
    for p in close {
        let _ = client.cancel_question(&p.question.to_string()).await;
    }
}

/// Names one tool call: its tool and a digest of its input (without a
/// `peer_key`), the same in the `permission` and `post-tool-use` hooks.
pub(super) fn call_of(input: &Value) -> String {
    let tool = input.get("tool_name").and_then(Value::as_str).unwrap_or("");
    let tool_input = without_key(input.get("tool_input"));
    let digest = Sha256::digest(tool_input.to_string().as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{tool}:{hex}")
}

/// The tool input as the person is shown it: without a peer key, and with
/// very long strings shortened so the question stays a reasonable size.
fn shown_input(input: Option<&Value>) -> Value {
    let mut v = without_key(input);
    if v.to_string().len() > MAX_INPUT_BYTES {
        shorten(&mut v);
    }
    v
}

/// A tool input without the `peer_key` the identity hook adds to cipc's
/// own tools (absent input: `{}`).
fn without_key(input: Option<&Value>) -> Value {
    let mut v = input.cloned().unwrap_or_else(|| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.remove("peer_key");
    }
    v
}

fn shorten(v: &mut Value) {
    match v {
        Value::String(s) if s.chars().count() > KEEP_CHARS => {
            let total = s.chars().count();
            let kept: String = s.chars().take(KEEP_CHARS).collect();
            *s = format!(
                "{kept}\n… ({} more characters not shown)",
                total - KEEP_CHARS
            );
        }
        Value::Array(items) => items.iter_mut().for_each(shorten),
        Value::Object(o) => o.values_mut().for_each(shorten),
        _ => {}
    }
}

/// One line a person reads first: the tool and what it will do.
fn question_text(tool: &str, input: &Value) -> String {
    let field = |k: &str| input.get(k).and_then(Value::as_str);
    let what = match tool {
        "Bash" => field("command").map(str::to_string),
        "Edit" | "MultiEdit" | "Write" | "Read" => field("file_path").map(str::to_string),
        "NotebookEdit" => field("notebook_path").map(str::to_string),
        "WebFetch" => field("url").map(str::to_string),
        "WebSearch" => field("query").map(str::to_string),
        _ => None,
    }
    .unwrap_or_else(|| input.to_string());
    let text = format!("{tool}: {what}");
    if text.chars().count() <= MAX_TEXT_CHARS {
        text
    } else {
        let mut cut: String = text.chars().take(MAX_TEXT_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_names_the_tool_and_what_it_will_do() {
        let bash = json!({"command": "rm -rf build", "description": "clean"});
        assert_eq!(question_text("Bash", &bash), "Bash: rm -rf build");
        let edit = json!({"file_path": "/p/src/a.rs", "old_string": "a", "new_string": "b"});
        assert_eq!(question_text("Edit", &edit), "Edit: /p/src/a.rs");
        let fetch = json!({"url": "https://example.com", "prompt": "read"});
        assert_eq!(
            question_text("WebFetch", &fetch),
            "WebFetch: https://example.com"
        );
        let other = json!({"x": 1});
        assert_eq!(
            question_text("mcp__db__query", &other),
            "mcp__db__query: {\"x\":1}"
        );
        let long = json!({"command": "x".repeat(5000)});
        assert_eq!(question_text("Bash", &long).chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn the_person_never_sees_a_peer_key_and_huge_inputs_are_shortened() {
        let shown = shown_input(Some(&json!({"question_id": "q", "peer_key": "pk_secret"})));
        assert_eq!(shown, json!({"question_id": "q"}));
        let big = shown_input(Some(
            &json!({"file_path": "f", "content": "y".repeat(300_000)}),
        ));
        let content = big["content"].as_str().expect("a string");
        assert!(content.len() < 30_000, "{}", content.len());
        assert!(
            content.ends_with("(280000 more characters not shown)"),
            "{content:.80}"
        );
        assert_eq!(big["file_path"], "f");
    }

    #[test]
    fn a_call_is_the_same_with_or_without_the_key_the_hooks_added() {
        let plain = json!({"tool_name": "Bash", "tool_input": {"command": "ls"}});
        let keyed =
            json!({"tool_name": "Bash", "tool_input": {"command": "ls", "peer_key": "pk_x"}});
        let other = json!({"tool_name": "Bash", "tool_input": {"command": "ls -l"}});
        assert_eq!(call_of(&plain), call_of(&keyed));
        assert_ne!(call_of(&plain), call_of(&other));
        assert!(call_of(&plain).starts_with("Bash:"));
    }

    #[test]
    fn allow_and_deny_become_claude_codes_decisions() {
        let mut q: Question = serde_json::from_value(json!({
            "id": Uuid::now_v7(), "from": "backend", "text": "Bash: ls", "status": "answered",
            "createdAt": "2026-12-02T00:00:00.000Z", "answer": "allow", "answeredBy": "ana",
            "kind": "permission"
        }))
        .expect("a question");
        let allow = decision(&q).decision.expect("decides");
        assert_eq!(allow["decision"], json!({"behavior": "allow"}));
        q.answer = Some("deny".into());
        q.note = Some("use the staging database".into());
        let deny = decision(&q).decision.expect("decides");
        assert_eq!(deny["decision"]["behavior"], "deny");
        assert_eq!(
            deny["decision"]["message"],
            "use the staging database (denied by ana through cipc)"
        );
        q.status = QuestionStatus::Cancelled;
        assert!(decision(&q).decision.is_none(), "the terminal decides");
    }
}
