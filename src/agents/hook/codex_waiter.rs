//! Codex's idle waiter: what wakes a Codex session that has nothing to do.
//!
//! Codex has no hook that outlives a turn, but it has a door into a running
//! session: `codex queue --thread ID --message TEXT` hands a message to a
//! thread, and a session that is idle runs a turn with it at once
//! (measured with 0.171: an interactive `codex` auto-starts Codex's local
//! background server, runs its threads there, hooks included, and a queued
//! message started the next turn of an idle session in well under a
//! second; a `codex exec` run ends with its turn, like `claude -p`, and is
//! never woken). So when a turn ends with nothing waiting, the Stop hook
//! starts this waiter as a detached process: it long-polls the broker as
//! the session's peer and, when an order arrives, queues it into the
//! session's thread with the `codex` that runs the session, then ends (the
//! next turn's Stop hook starts the next waiter).
//!
//! It ends without waking anyone when the process that ran the hooks is
//! gone, when the session ended (`SessionEnd` stops it), or when a newer
//! waiter took over. An order it took but could not queue is given back:
//! the peer disconnects, which queues what it held again for its role, and
//! the session's next hook registers it afresh.

use super::waiter::{next_orders, Polled};
use super::{Hook, HookOptions, Reply};
use crate::agents::host::{hook_host, process_alive};
use crate::cli::backoff::Backoff;
use crate::cli::CliError;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The environment variable that tells the waiter which process ran the
/// session's hooks (Codex's background server, or `codex` itself).
const HOST_VAR: &str = "CIPC_CODEX_HOST";
/// The `codex` program that queues the message; by default the executable
/// of the process that ran the hooks.
pub const CODEX_VAR: &str = "CIPC_CODEX";
/// One long-poll of the waiter, so the end of the session is noticed.
const POLL_MS: u64 = 25_000;

impl Hook {
    /// Starts the idle waiter for this session, detached, unless the
    /// session can never be woken (`codex exec`).
    pub(super) fn start_idle_waiter(&self) {
        let host = hook_host();
        if !host_can_wake(host) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut cmd = Command::new(exe);
        cmd.args(["hook", "idle"]).args(self.args.flags());
        cmd.env(HOST_VAR, host.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = &self.args.token {
            cmd.env("CIPC_TOKEN", t);
        }
        #[cfg(unix)]
        {
            // Its own process group: Codex ending the hook's group (a
            // timeout, a cancelled turn) leaves the waiter be.
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let Ok(mut child) = cmd.spawn() else {
            return;
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(self.input.to_string().as_bytes());
        }
        // Not waited for: it lives on after this hook returns.
        drop(child);
    }

    /// The waiter itself (`cipc hook idle`): waits for the next order and
    /// queues it into the session's thread.
    pub(super) async fn idle(&self) -> Result<Reply, CliError> {
        let host: u32 = std::env::var(HOST_VAR)
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(hook_host);
        let me = std::process::id();
        let (peer, key) = {
            let mut locked = self.lock()?;
            if locked.state.ended {
                return Ok(Reply::default());
            }
            let mut st = locked.state.clone();
            let found = self.peer(&mut st, false).await;
            st.waiter = Some(me);
            locked.state = st;
            locked.save()?;
            match found {
                Ok(pk) => pk,
                // Down or refused: the session's next hook says so; a waiter
                // that cannot reach the broker has nothing to wait for.
                Err(_) => return Ok(Reply::default()),
            }
        };
        let client = self.as_peer(peer, &key, false)?;
        let mut backoff = Backoff::new();
        loop {
            match next_orders(&client, peer, POLL_MS, || self.idle_over(me, host)).await {
                Polled::Over => return Ok(Reply::default()),
                Polled::Nothing => backoff.reset(),
                Polled::Orders(text) => {
                    if queue(host, &self.session, &text).is_err() {
                        // Give them back: what a peer held is queued again
                        // when it leaves.
                        let _ = client.disconnect(&peer.to_string()).await;
                        let mut locked = self.lock()?;
                        locked.state.peer = None;
                        locked.state.key = None;
                        locked.state.answers_through = None;
                        locked.save()?;
                    }
                    return Ok(Reply::default());
                }
                Polled::Failed(e) if e.refuses_token() || e.refuses_peer() => {
                    return Ok(Reply::default())
                }
                Polled::Failed(_) => backoff.wait(None).await,
            }
        }
    }

    /// Whether the waiter should stop: the hooks' process is gone, the
    /// session ended, or a newer waiter replaced this one.
    fn idle_over(&self, me: u32, host: u32) -> bool {
        let replaced = !self
            .lock()
            .is_ok_and(|l| !l.state.ended && l.state.waiter == Some(me));
        replaced || !process_alive(host)
    }
}

impl HookOptions {
    /// The flags that make another `cipc hook` run the same session's peer.
    fn flags(&self) -> Vec<String> {
        let mut out = vec![
            "--agent".to_string(),
            self.agent.id().to_string(),
            "--role".into(),
            self.role.clone(),
            "--url".into(),
            self.url.clone(),
        ];
        if let Some(n) = &self.name {
            out.extend(["--name".into(), n.clone()]);
        }
        if let Some(f) = &self.token_file {
            out.extend(["--token-file".into(), f.to_string_lossy().into_owned()]);
        }
        out
    }
}

/// Runs `codex queue --thread SESSION --message TEXT`.
fn queue(host: u32, session: &str, text: &str) -> std::io::Result<()> {
    let program = std::env::var_os(CODEX_VAR)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::fs::read_link(format!("/proc/{host}/exe")).ok())
        .unwrap_or_else(|| PathBuf::from("codex"));
    let status = Command::new(program)
        .args(["queue", "--thread", session, "--message", text])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("codex queue: {status}")))
    }
}

/// Whether a session whose hooks `host` runs can be woken later: not a
/// one-shot `codex exec` (Linux: read from /proc; elsewhere assumed).
fn host_can_wake(host: u32) -> bool {
    match std::fs::read(format!("/proc/{host}/cmdline")) {
        Ok(raw) => {
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            !args.iter().skip(1).any(|a| a == "exec" || a == "e")
        }
        Err(_) => true,
    }
}
