//! `cipc hook EVENT`: what Claude Code and Codex run at each hook `cipc
//! claude setup` or `cipc codex setup` installed. Both send the same kind of
//! JSON on stdin (`session_id`, `cwd`, `tool_name`, `tool_input`, ...) and
//! read the same kind of answer (`hookSpecificOutput` with
//! `additionalContext` or a decision; exit 2 with a message on stderr), so
//! one engine serves both; `--agent` says which runs it, for the few
//! things that differ ([`Agent`]). Each run acts as the session's peer
//! (registered at `SessionStart`, remembered per `session_id` in
//! [`super::state`]).
//!
//! - `session-start`: registers (or re-registers) the peer and tells the model
//!   who it is and which orders wait for it.
//! - `prompt` and `post-tool-use`: new orders for the peer, and answers to
//!   the commands it sent, reach the model between turns and between tool
//!   calls, each once (an order is taken when it is shown).
//! - `stop`: Claude Code runs it in the background, and it long-polls for
//!   the next order while the session is idle, then exits 2 with it, which
//!   wakes the session (`waiter.rs`); Codex runs it in the turn, and it
//!   hands over what already waits, which makes the turn go on
//!   (`turn_end.rs`).
//! - `pre-tool-use`: adds the session's peer key to cipc's own MCP tools,
//!   so the model never carries it (`identity.rs`), and refuses an edit of
//!   a file another session leases (`edits.rs`).
//! - `permission`: relays a permission prompt to the person as a question
//!   of kind `permission` and waits for the answer (`permission.rs`).
//! - `notification` (Claude Code): the peer shows `attention` (a permission
//!   prompt, a question) until work resumes.
//! - `session-end`: the peer goes offline and what it held is queued again.
//! - `idle` (Codex; started by `stop`, not by Codex): waits for the next
//!   order while the session is idle and queues it into the session's
//!   thread, which wakes it (`codex_waiter.rs`).
//!
//! A hook never holds a session up: every request gives up within
//! a second, an unreachable broker is reported once per session, and the
//! session carries on.

mod codex_waiter;
mod edits;
mod identity;
mod orders;
mod permission;
mod turn_end;
mod waiter;

use super::claude::process::stop_process;
use super::state::{state_dir, Locked, SessionState};
use crate::agents::Agent;
use crate::api::{AttentionRequest, ConnectRequest, Via};
use crate::cli::{exit, CliError, Exit};
use crate::client::{Client, ClientError};
use orders::{answers, describe_order, take_orders};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

pub use permission::DEFAULT_WAIT_SECS as DEFAULT_PERMISSION_WAIT_SECS;

/// How long a hook waits for the broker before it gives up.
const QUICK: Duration = Duration::from_millis(900);

/// The `cipc hook` event words, one per moment of a session the hooks
/// handle (the CLI's value parser).
pub const EVENTS: [&str; 9] = [
    "session-start",
    "prompt",
    "pre-tool-use",
    "permission",
    "post-tool-use",
    "notification",
    "stop",
    "session-end",
    "idle",
];

/// What a `cipc hook` run is told by its command line.
#[derive(Debug, Clone)]
pub struct HookOptions {
    /// Which agent runs the hook.
    pub agent: Agent,
    /// The event word (one of [`EVENTS`]).
    pub event: String,
    /// The role the session takes.
    pub role: String,
    /// A name for the session's peer (default: the project directory's name).
    pub name: Option<String>,
    /// How long a relayed permission prompt waits for an answer (seconds).
    pub permission_wait: u64,
    /// Lease each file the session edits.
    pub claim_on_edit: bool,
    /// The broker's URL.
    pub url: String,
    /// The token given directly (CIPC_TOKEN, --token).
    pub token: Option<String>,
    /// The file the token is read from, which wins over `token`.
    pub token_file: Option<PathBuf>,
}

/// What one hook run says back to the agent.
#[derive(Debug, Default)]
struct Reply {
    /// Text for the model (`additionalContext`).
    context: Option<String>,
    /// A line for the person (`systemMessage`).
    system: Option<String>,
    /// Exit 2 with this text on stderr: it wakes an idle Claude Code
    /// session, and makes a Codex turn go on.
    wake: Option<String>,
    /// What the hook decides beside `additionalContext` in
    /// `hookSpecificOutput`: a permission decision, an updated tool input.
    decision: Option<serde_json::Map<String, Value>>,
}

/// Runs `cipc hook EVENT`; returns the exit code (0, or 2 to wake).
pub fn run(args: HookOptions) -> Exit {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cipc hook: cannot start the async runtime: {e}");
            return exit::OK;
        }
    };
    let event = args.event.clone();
    match rt.block_on(run_event(args)) {
        Ok(reply) => emit(&event, reply),
        Err(e) => {
            // Never fail the session: say what went wrong and carry on.
            if let Some(m) = e.message {
                eprintln!("cipc hook {event}: {m}");
            }
            exit::OK
        }
    }
}

fn emit(event: &str, reply: Reply) -> Exit {
    if let Some(text) = reply.wake {
        eprintln!("{text}");
        return exit::WAKE;
    }
    let mut out = serde_json::Map::new();
    if reply.context.is_some() || reply.decision.is_some() {
        let mut specific = reply.decision.unwrap_or_default();
        specific.insert("hookEventName".into(), json!(event_name(event)));
        if let Some(text) = reply.context {
            specific.insert("additionalContext".into(), json!(text));
        }
        out.insert("hookSpecificOutput".into(), Value::Object(specific));
    }
    if let Some(text) = reply.system {
        out.insert("systemMessage".into(), json!(text));
    }
    if !out.is_empty() {
        println!("{}", Value::Object(out));
    }
    exit::OK
}

/// Claude Code's name for the event a `cipc hook` word handles.
fn event_name(word: &str) -> &'static str {
    match word {
        "session-start" => "SessionStart",
        "prompt" => "UserPromptSubmit",
        "pre-tool-use" => "PreToolUse",
        "permission" => "PermissionRequest",
        "notification" => "Notification",
        "stop" => "Stop",
        "session-end" => "SessionEnd",
        _ => "PostToolUse",
    }
}

/// One hook run's context: the input, the broker, and where state lives.
struct Hook {
    args: HookOptions,
    session: String,
    cwd: Option<PathBuf>,
    input: Value,
    url: String,
    token: Option<String>,
    dir: PathBuf,
}

async fn run_event(args: HookOptions) -> Result<Reply, CliError> {
    let input = read_input()?;
    let session = input
        .get("session_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::usage("the hook input has no session_id; `cipc hook` is run by Claude Code or Codex (see `cipc claude setup`, `cipc codex setup`)"))?
        .to_string();
    let (token, unreadable) = match &args.token_file {
        Some(path) => match crate::cli::token::read_token_file(path) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (args.token.clone(), None),
    };
    let hook = Hook {
        cwd: input.get("cwd").and_then(Value::as_str).map(PathBuf::from),
        url: args.url.clone(),
        token,
        dir: state_dir()?,
        session,
        input,
        args,
    };
    if let Some(problem) = unreadable {
        return hook.token_file_unreadable(&problem);
    }
    match hook.args.event.as_str() {
        "session-start" => hook.session_start().await,
        "prompt" | "post-tool-use" => hook.between().await,
        "pre-tool-use" => hook.pre_tool_use().await,
        "permission" => hook.permission().await,
        "notification" => hook.notification().await,
        "stop" => match hook.args.agent {
            Agent::ClaudeCode => hook.stop().await,
            Agent::Codex => hook.turn_end().await,
        },
        "session-end" => hook.session_end().await,
        "idle" => hook.idle().await,
        other => Err(CliError::usage(format!("unknown hook event {other:?}"))),
    }
}

fn read_input() -> Result<Value, CliError> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| CliError::error(format!("cannot read the hook input: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("the hook input is not JSON ({e})")))
}

impl Hook {
    fn lock(&self) -> Result<Locked, CliError> {
        Ok(Locked::open(&self.dir, &self.session)?)
    }

    /// A client that speaks for nobody and gives up quickly.
    fn client(&self) -> Result<Client, CliError> {
        Ok(Client::new(&self.url, self.token.clone(), None)?.impatient(QUICK)?)
    }

    /// A client acting as the session's peer.
    fn as_peer(&self, peer: Uuid, key: &str, quick: bool) -> Result<Client, CliError> {
        let c =
            Client::new(&self.url, self.token.clone(), Some(peer))?.with_key(Some(key.to_string()));
        Ok(if quick { c.impatient(QUICK)? } else { c })
    }

    fn name(&self) -> Option<String> {
        self.args.name.clone().or_else(|| {
            let dir = self
                .cwd
                .as_ref()?
                .file_name()?
                .to_string_lossy()
                .to_string();
            let short: String = self.session.chars().take(8).collect();
            Some(format!("{dir} ({short})"))
        })
    }

    /// The session's peer: the remembered one, re-registered when `renew`
    /// (a new or resumed session) or when the broker no longer knows it.
    async fn peer(
        &self,
        st: &mut SessionState,
        renew: bool,
    ) -> Result<(Uuid, String), ClientError> {
        if st.url.as_deref() != Some(self.url.as_str()) {
            st.peer = None;
            st.key = None;
            st.answers_through = None;
            st.url = Some(self.url.clone());
        }
        if let (Some(peer), Some(key), false) = (st.peer, st.key.clone(), renew) {
            return Ok((peer, key));
        }
        let client = self
            .client()
            .map_err(|e| ClientError::Config(e.message.unwrap_or_default()))?;
        let mut req = ConnectRequest {
            role: self.args.role.clone(),
            name: self.name(),
            protect: Some(true),
            via: Some(Via::Hook),
            agent: Some(self.args.agent.id().to_string()),
            ..ConnectRequest::default()
        };
        if let (Some(peer), Some(key)) = (st.peer, st.key.clone()) {
            req.id = Some(peer);
            match client.clone().with_key(Some(key)).connect(&req).await {
                Ok(r) => {
                    st.key = Some(r.key.clone());
                    return Ok((r.peer.id, r.key));
                }
                Err(e) if e.refuses_peer() => req.id = None,
                Err(e) => return Err(e),
            }
        }
        let r = client.connect(&req).await?;
        st.renamed = st.peer.is_some() || !renew;
        st.peer = Some(r.peer.id);
        st.key = Some(r.key.clone());
        st.answers_through = None;
        Ok((r.peer.id, r.key))
    }

    /// Runs `f` as the session's peer under the state lock; an unreachable
    /// broker is said once per session, then the hook stays quiet.
    async fn with_peer<F, Fut>(&self, renew: bool, f: F) -> Result<Reply, CliError>
    where
        F: FnOnce(Client, Uuid, String, SessionState) -> Fut,
        Fut: std::future::Future<Output = Result<(Reply, SessionState), ClientError>>,
    {
        let mut locked = self.lock()?;
        let mut st = locked.state.clone();
        let outcome = match self.peer(&mut st, renew).await {
            Ok((peer, key)) => {
                let client = self.as_peer(peer, &key, true)?;
                f(client, peer, key, st.clone()).await
            }
            Err(e) => Err(e),
        };
        let reply = match outcome {
            Ok((reply, new)) => {
                st = new;
                st.said_down = false;
                st.said_token = false;
                reply
            }
            Err(e) => self.failed(&mut st, e, renew)?,
        };
        // Most runs change nothing (an edit check, a cipc tool call): the
        // file is written, and synced, only when something did.
        if st != locked.state {
            locked.state = st;
            locked.save()?;
        }
        Ok(reply)
    }

    /// What a hook says when the broker refused or could not be reached:
    /// each problem once per session, in a `systemMessage` that names the
    /// fix; the session carries on either way.
    fn failed(
        &self,
        st: &mut SessionState,
        e: ClientError,
        renew: bool,
    ) -> Result<Reply, CliError> {
        let say = |said: &mut bool, text: String| {
            let first = !std::mem::replace(said, true);
            Reply {
                system: first.then_some(text),
                ..Reply::default()
            }
        };
        Ok(match e {
            e if e.refuses_peer() && !renew => {
                // The broker forgot this peer (a reset, a new store) or
                // gave its key to another connect: the next hook registers
                // the session afresh.
                st.peer = None;
                st.key = None;
                st.answers_through = None;
                Reply::default()
            }
            e if e.refuses_token() => {
                let text = self.token_problem(&e);
                say(&mut st.said_token, text)
            }
            e @ ClientError::Unreachable { .. } => say(
                &mut st.said_down,
                format!(
                    "cipc: {e}; this session is not reachable as a cipc peer until the broker is back (start it with `cipc serve`)"
                ),
            ),
            e => return Err(CliError::from(e)),
        })
    }

    /// A token file the hooks cannot use (missing, empty, readable by
    /// others): no call would be let in, so none is made; the session is
    /// told once, with the fix, and every hook (the stop hook too) returns
    /// at once.
    fn token_file_unreadable(&self, problem: &str) -> Result<Reply, CliError> {
        let mut locked = self.lock()?;
        if std::mem::replace(&mut locked.state.said_token, true) {
            return Ok(Reply::default());
        }
        locked.save()?;
        let agent = self.args.agent;
        Ok(Reply {
            system: Some(format!(
                "cipc: this session's hooks cannot use their token ({problem}). This session is not a cipc peer: \
                 fix the file, or rerun `cipc {} setup --role ROLE --token-file PATH` with the broker's token file, \
                 then start a new {} session.",
                agent.program(),
                agent.title()
            )),
            ..Reply::default()
        })
    }

    /// The sentence for a refused token: what the hooks sent and the fix.
    fn token_problem(&self, e: &ClientError) -> String {
        let sent = match (&self.args.token_file, &self.token) {
            (Some(f), _) => format!("the token in {}", f.display()),
            (None, Some(_)) => "the token in CIPC_TOKEN".to_string(),
            (None, None) => "no token".to_string(),
        };
        let agent = self.args.agent;
        let fix = if self.token.is_some() {
            format!(
                "make it the broker's token (`cipc serve --token-file` names the broker's), then start a new {} session",
                agent.title()
            )
        } else {
            format!(
                "rerun `cipc {} setup --role ROLE --token-file PATH` with the broker's token file, or start `{}` with CIPC_TOKEN set to the broker's token",
                agent.program(),
                agent.program()
            )
        };
        format!(
            "cipc: the broker at {} refused this session's hooks ({e}); they sent {sent}. This session is not a cipc peer: {fix}.",
            self.url
        )
    }

    async fn session_start(&self) -> Result<Reply, CliError> {
        let env_file = std::env::var_os("CLAUDE_ENV_FILE").filter(|f| !f.is_empty());
        let repo = self
            .cwd
            .as_deref()
            .and_then(|d| crate::cli::repo::Checkout::discover(d).ok())
            .map(|c| c.repo);
        let role = self.args.role.clone();
        let agent = self.args.agent.title();
        let reach = match self.args.agent {
            Agent::ClaudeCode => "between tool calls, and they wake you when you are idle",
            Agent::Codex => {
                "between tool calls, and at the end of a turn (your work goes on with them)"
            }
        };
        let url = self.url.clone();
        self.with_peer(true, |client, peer, key, mut st| async move {
            st.ended = false;
            st.took_turn = false;
            st.renamed = false;
            if st.attention {
                client.set_attention(&peer.to_string(), &AttentionRequest::default()).await?;
                st.attention = false;
            }
            let exported = match &env_file {
                Some(f) => export_identity(f, &url, peer, &key).is_ok(),
                None => false,
            };
            let orders = take_orders(&client, peer).await?;
            answers(&client, peer, &mut st).await?;
            let mut text = format!(
                "[cipc] This {agent} session is cipc peer {peer} with role \"{role}\" on the broker at {url}. \
                 Orders for \"{role}\" reach you here: {reach}. \
                 The cipc MCP tools already act as this peer (the session's hooks add its identity to every call): \
                 never pass peer_key and do not call connect. "
            );
            text.push_str(if exported {
                "In Bash, `cipc` acts as this peer too. "
            } else {
                "In Bash, `cipc` acts as nobody in particular: use the MCP tools to act as this peer. "
            });
            text.push_str("Finish each order by acking it with its result (or an error).");
            if let Some(repo) = &repo {
                text.push_str(&format!(
                    " Sessions share this code base as repo \"{repo}\": an edit of a file another session leases is refused (you \
                     are told who holds it and why); lease what you are about to change with the cipc MCP tool claim_paths \
                     (paths relative to the repo's top level) and release it with release_paths when done."
                ));
            }
            if orders.is_empty() {
                text.push_str(" No order is waiting for you now.");
            } else {
                for c in &orders {
                    text.push_str("\n\n");
                    text.push_str(&describe_order(c));
                }
            }
            Ok((
                Reply {
                    context: Some(text),
                    ..Reply::default()
                },
                st,
            ))
        })
        .await
    }

    /// `prompt` and `post-tool-use`: what arrived since the last hook.
    async fn between(&self) -> Result<Reply, CliError> {
        let role = self.args.role.clone();
        let ran = (self.args.event == "post-tool-use").then(|| permission::call_of(&self.input));
        self.with_peer(false, |client, peer, _key, mut st| async move {
            st.took_turn = true;
            // The session moved on: a permission prompt for the tool that
            // just ran was answered in the terminal, and a new prompt means
            // nothing waits for any.
            permission::close_where(&client, &mut st, |p| ran.as_ref().is_none_or(|c| *c == p.call)).await;
            if st.attention {
                client
                    .set_attention(&peer.to_string(), &AttentionRequest::default())
                    .await?;
                st.attention = false;
            }
            let mut parts = Vec::new();
            if std::mem::take(&mut st.renamed) {
                parts.push(format!(
                    "[cipc] This session is now cipc peer {peer} with role \"{role}\" (newly registered: the broker did not know \
                     it as a peer, e.g. after a reset). The cipc MCP tools act as the new peer by themselves."
                ));
            }
            parts.extend(take_orders(&client, peer).await?.iter().map(describe_order));
            parts.extend(answers(&client, peer, &mut st).await?);
            let context = (!parts.is_empty()).then(|| parts.join("\n\n"));
            Ok((
                Reply {
                    context,
                    ..Reply::default()
                },
                st,
            ))
        })
        .await
    }

    async fn notification(&self) -> Result<Reply, CliError> {
        let message = self
            .input
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(
                || format!("{} is waiting for you", self.args.agent.title()),
                str::to_string,
            );
        let attention: String = message
            .chars()
            .take(crate::api::MAX_ATTENTION_LEN)
            .collect();
        self.with_peer(false, |client, peer, _key, mut st| async move {
            client
                .set_attention(
                    &peer.to_string(),
                    &AttentionRequest {
                        attention: Some(attention),
                    },
                )
                .await?;
            st.attention = true;
            Ok((Reply::default(), st))
        })
        .await
    }

    async fn session_end(&self) -> Result<Reply, CliError> {
        self.with_peer(false, |client, peer, _key, mut st| async move {
            st.ended = true;
            if let Some(pid) = st.waiter.take() {
                // Claude Code waits for a background hook before it exits:
                // end the waiter now rather than at its next check.
                stop_process(pid);
            }
            st.attention = false;
            // Leaving closes the peer's open permission questions on the
            // broker, so they need no request of their own.
            st.permissions.clear();
            if st.took_turn {
                client.disconnect(&peer.to_string()).await?;
            } else {
                // A run that never took a turn (`claude mcp list`, a session
                // opened and closed) leaves no ghost peer behind.
                client.forget_peer(&peer.to_string()).await?;
                st.peer = None;
                st.key = None;
                st.answers_through = None;
            }
            Ok((Reply::default(), st))
        })
        .await
    }
}

/// Lets `cipc` in the session's Bash tool act as its peer.
fn export_identity(
    file: &std::ffi::OsStr,
    url: &str,
    peer: Uuid,
    key: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)?;
    writeln!(
        f,
        "export CIPC_URL={} CIPC_PEER={peer} CIPC_PEER_KEY={key}",
        crate::agents::shell_quote(url)
    )
}
