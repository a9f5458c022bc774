//! `cipc hook EVENT`: what Claude Code runs at each hook `cipc claude setup`
//! installed. Each run reads the hook's JSON on stdin, acts as the session's
//! peer (registered at `SessionStart`, remembered per `session_id` in
//! [`super::state`]) and answers in Claude Code's hook output format.
//!
//! - `session-start`: registers (or re-registers) the peer and tells the model
//!   who it is and which orders wait for it.
//! - `prompt` and `post-tool-use`: new orders for the peer, and answers to
//!   the commands it sent, reach the model between turns and between tool
//!   calls, each once (an order is taken when it is shown).
//! - `stop` (a background hook that may wake the session): long-polls for
//!   the next order while the session is idle; when one arrives it exits 2
//!   with the order, which wakes the session.
//! - `notification`: the peer shows `attention` (a permission prompt, a
//!   question) until work resumes.
//! - `session-end`: the peer goes offline and what it held is queued again.
//!
//! A hook never holds a session up: every request gives up within
//! a second, an unreachable broker is reported once per session, and the
//! session carries on.

mod waiter;

use super::process::stop_process;
use super::state::{state_dir, Locked, SessionState};
use crate::api::{AttentionRequest, Command, CommandStatus, ConnectRequest, Via};
use crate::cli::{exit, CliError, ClientArgs, Exit};
use crate::client::{Client, ClientError};
use clap::Args;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// How long a hook waits for the broker before it gives up.
const QUICK: Duration = Duration::from_millis(900);
/// At most this many orders are taken at once.
const MAX_ORDERS: usize = 20;

/// Flags of `cipc hook`.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// The hook event (Claude Code runs this; `cipc claude setup` installs it).
    #[arg(value_parser = super::settings::HOOK_WORDS)]
    pub event: String,
    /// The role this Claude Code session takes.
    #[arg(long)]
    pub role: String,
    /// A name for the session's peer (default: the project directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Broker and token flags (--peer and --peer-key are not used: the
    /// session's identity is kept per Claude Code session).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What one hook run says back to Claude Code.
#[derive(Debug, Default)]
struct Reply {
    /// Text for the model (`additionalContext`).
    context: Option<String>,
    /// A line for the person (`systemMessage`).
    system: Option<String>,
    /// Wake the idle session with this text (exit 2, on stderr).
    wake: Option<String>,
}

/// Runs `cipc hook EVENT`; returns the exit code (0, or 2 to wake).
pub fn run(args: HookArgs) -> Exit {
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
    if let Some(text) = reply.context {
        let event_name = match event {
            "session-start" => "SessionStart",
            "prompt" => "UserPromptSubmit",
            _ => "PostToolUse",
        };
        out.insert(
            "hookSpecificOutput".into(),
            json!({"hookEventName": event_name, "additionalContext": text}),
        );
    }
    if let Some(text) = reply.system {
        out.insert("systemMessage".into(), json!(text));
    }
    if !out.is_empty() {
        println!("{}", Value::Object(out));
    }
    exit::OK
}

/// One hook run's context: the input, the broker, and where state lives.
struct Hook {
    args: HookArgs,
    session: String,
    cwd: Option<PathBuf>,
    input: Value,
    url: String,
    token: Option<String>,
    dir: PathBuf,
}

async fn run_event(args: HookArgs) -> Result<Reply, CliError> {
    let input = read_input()?;
    let session = input
        .get("session_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::usage("the hook input has no session_id; `cipc hook` is run by Claude Code (see `cipc claude setup`)"))?
        .to_string();
    let token = match &args.client.token_file {
        Some(path) => Some(crate::cli::token::read_token_file(path)?),
        None => args.client.token.clone(),
    };
    let hook = Hook {
        cwd: input.get("cwd").and_then(Value::as_str).map(PathBuf::from),
        url: args.client.url.clone(),
        token,
        dir: state_dir()?,
        session,
        input,
        args,
    };
    match hook.args.event.as_str() {
        "session-start" => hook.session_start().await,
        "prompt" | "post-tool-use" => hook.between().await,
        "notification" => hook.notification().await,
        "stop" => hook.stop().await,
        "session-end" => hook.session_end().await,
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
                reply
            }
            Err(e) if e.refuses_peer() && !renew => {
                // The broker forgot this peer (a reset, a new store) or
                // gave its key to another connect: the next hook registers
                // the session afresh.
                st.peer = None;
                st.key = None;
                st.answers_through = None;
                Reply::default()
            }
            Err(e @ ClientError::Unreachable { .. }) => {
                let first = !st.said_down;
                st.said_down = true;
                Reply {
                    system: first.then(|| {
                        format!(
                            "cipc: {e}; this session is not reachable as a cipc peer until the broker is back (start it with `cipc serve`)"
                        )
                    }),
                    ..Reply::default()
                }
            }
            Err(e) => return Err(CliError::from(e)),
        };
        locked.state = st;
        locked.save()?;
        Ok(reply)
    }

    async fn session_start(&self) -> Result<Reply, CliError> {
        let env_file = std::env::var_os("CLAUDE_ENV_FILE").filter(|f| !f.is_empty());
        let role = self.args.role.clone();
        let url = self.url.clone();
        self.with_peer(true, |client, peer, key, mut st| async move {
            st.ended = false;
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
                "[cipc] This Claude Code session is cipc peer {peer} with role \"{role}\" on the broker at {url}. \
                 Orders for \"{role}\" reach you here: between tool calls, and they wake you when you are idle. \
                 With the cipc MCP tools, pass peer_key \"{key}\" on every call to act as this peer; "
            );
            text.push_str(if exported {
                "in Bash, `cipc` already acts as this peer (CIPC_PEER and CIPC_PEER_KEY are set). "
            } else {
                "in Bash, run `cipc` with CIPC_PEER_KEY set to that key. "
            });
            text.push_str("Keep the key to yourself. Finish each order by acking it with its result (or an error).");
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
        self.with_peer(false, |client, peer, key, mut st| async move {
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
                     it as a peer, e.g. after a reset). Pass peer_key \"{key}\" on cipc MCP tool calls from now on; \
                     in Bash, run `cipc` with CIPC_PEER_KEY set to that key."
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
            .unwrap_or("Claude Code is waiting for you")
            .to_string();
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
            client.disconnect(&peer.to_string()).await?;
            Ok((Reply::default(), st))
        })
        .await
    }
}

/// Takes every order waiting for `peer` (at most [`MAX_ORDERS`]).
async fn take_orders(client: &Client, peer: Uuid) -> Result<Vec<Command>, ClientError> {
    let mut taken = Vec::new();
    while taken.len() < MAX_ORDERS {
        match client.wait_command(&peer.to_string(), 0).await?.command {
            Some(c) => taken.push(c),
            None => break,
        }
    }
    Ok(taken)
}

/// Answers to the commands `peer` sent that finished since the last report.
/// The first look only notes where history ends.
async fn answers(
    client: &Client,
    peer: Uuid,
    st: &mut SessionState,
) -> Result<Vec<String>, ClientError> {
    // The broker records a peer's commands with the peer as their origin;
    // only those are asked for, so the hook's cost does not grow with the broker.
    let mine = crate::api::CommandFilter {
        origin: Some(crate::api::Origin::Peer(peer).to_string()),
        ..Default::default()
    };
    let listed = client.list_commands_where(&mine, Some(100)).await?.commands;
    let finished: Vec<&Command> = listed.iter().filter(|c| c.status.is_terminal()).collect();
    let newest = finished
        .iter()
        .filter_map(|c| c.acked_at.map(crate::time::Timestamp::millis))
        .max();
    let Some(through) = st.answers_through else {
        st.answers_through = Some(newest.unwrap_or(0));
        return Ok(Vec::new());
    };
    let mut fresh: Vec<&&Command> = finished
        .iter()
        .filter(|c| c.acked_at.is_some_and(|t| t.millis() > through))
        .collect();
    fresh.sort_by_key(|c| c.acked_at.map(crate::time::Timestamp::millis));
    if let Some(n) = newest {
        st.answers_through = Some(n.max(through));
    }
    Ok(fresh.into_iter().map(|c| describe_answer(c)).collect())
}

fn describe_order(c: &Command) -> String {
    let mut s = format!("[cipc] New order {} from {}: {}", c.id, c.from, c.action);
    let empty = c.params.is_null() || c.params.as_object().is_some_and(serde_json::Map::is_empty);
    if !empty {
        let _ = write!(s, "\nparams: {}", c.params);
    }
    let _ = write!(
        s,
        "\nDo it, then report back: the MCP tool ack_command with command_id \"{id}\" and a result (or an error), \
         or in Bash `cipc ack {id} --result '<json>'` (or `--error '<why>'`).",
        id = c.id
    );
    s
}

fn describe_answer(c: &Command) -> String {
    let mut s = format!(
        "[cipc] Your command {} ({} for {}) is {}",
        c.id,
        c.action,
        c.target,
        c.status.as_str()
    );
    match (c.status, &c.result, &c.error) {
        (CommandStatus::Acked, Some(r), _) => {
            let _ = write!(s, ": result {r}");
        }
        (_, _, Some(e)) => {
            let _ = write!(s, ": {e}");
        }
        _ => {}
    }
    s
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
        super::settings::shell_quote(url)
    )
}
