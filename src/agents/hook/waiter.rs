//! The Stop hook's background waiter: while the session is idle it
//! long-polls for the next order and wakes the session with it (exit 2),
//! and it steps aside when Claude Code is gone or a newer waiter took over.

use super::{describe_order, take_orders, Hook, Reply};
use crate::agents::claude::process::{claude_input_closed, parent_pid, session_can_wake};
use crate::cli::backoff::Backoff;
use crate::cli::{exit, CliError};
use std::time::Duration;
use uuid::Uuid;

/// How long one long-poll of the Stop waiter lasts before it checks that
/// the session is still there.
const WAITER_POLL_MS: u64 = 20_000;

impl Hook {
    /// The background waiter: takes the next order while the session is
    /// idle and wakes the session with it (exit 2). It stops, without
    /// waking anyone, when a newer waiter or the end of the session replaces
    /// it, or when Claude Code is gone.
    pub(super) async fn stop(&self) -> Result<Reply, CliError> {
        // The turn is over: no permission prompt of it waits any more.
        self.withdraw_permissions().await?;
        if !session_can_wake() {
            // `claude -p PROMPT` ends after its answer and never wakes; a
            // waiter would only hold its exit up (Claude Code waits up to
            // 30 s for background hooks before it exits).
            return Ok(Reply::default());
        }
        let me = std::process::id();
        let parent = parent_pid();
        let (peer, key) = {
            let mut locked = self.lock()?;
            let mut st = locked.state.clone();
            let found = self.peer(&mut st, false).await;
            st.waiter = Some(me);
            st.ended = false;
            locked.state = st;
            locked.save()?;
            match found {
                Ok(pk) => pk,
                // A refused token is not retried: only the person can fix
                // it, and the session was told how.
                Err(e) if e.refuses_token() => return Ok(Reply::default()),
                // The broker is down: wait for it like any waiter does.
                Err(_) => match (locked.state.peer, locked.state.key.clone()) {
                    (Some(p), Some(k)) => (p, k),
                    _ => self.register_when_up().await?,
                },
            }
        };
        let client = self.as_peer(peer, &key, false)?;
        let mut backoff = Backoff::new();
        loop {
            if self.session_over(me, parent) {
                return Ok(Reply::default());
            }
            // Checked every second while the long-poll runs, so the waiter
            // never holds up the end of a session (dropping the poll takes
            // nothing: the broker gives a vanished waiter nothing).
            let over = async {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if self.session_over(me, parent) {
                        break;
                    }
                }
            };
            let peer_id = peer.to_string();
            let polled = tokio::select! {
                r = client.wait_command(&peer_id, WAITER_POLL_MS) => r,
                () = over => return Ok(Reply::default()),
            };
            match polled {
                Ok(r) => {
                    backoff.reset();
                    let Some(first) = r.command else { continue };
                    let mut orders = vec![first];
                    if let Ok(more) = take_orders(&client, peer).await {
                        orders.extend(more);
                    }
                    let text: Vec<String> = orders.iter().map(describe_order).collect();
                    return Ok(Reply {
                        wake: Some(text.join("\n\n")),
                        ..Reply::default()
                    });
                }
                Err(e) if e.refuses_token() => return Ok(Reply::default()),
                Err(e) if e.refuses_peer() => {
                    // The broker forgot the peer (reset, or a new store): a
                    // new peer of the same role takes over.
                    let mut locked = self.lock()?;
                    let mut st = locked.state.clone();
                    st.peer = None;
                    st.key = None;
                    locked.state = st;
                    locked.save()?;
                    drop(locked);
                    return Box::pin(self.stop()).await;
                }
                Err(_) => backoff.wait(None).await,
            }
        }
    }

    /// Registers once the broker answers (the Stop waiter of a session that
    /// started while the broker was down).
    async fn register_when_up(&self) -> Result<(Uuid, String), CliError> {
        let parent = parent_pid();
        let mut backoff = Backoff::new();
        loop {
            if parent_pid() != parent {
                return Err(CliError::quiet(exit::OK));
            }
            let mut locked = self.lock()?;
            let mut st = locked.state.clone();
            match self.peer(&mut st, false).await {
                Ok(pk) => {
                    locked.state = st;
                    locked.save()?;
                    return Ok(pk);
                }
                Err(e) if e.refuses_token() => return Err(CliError::quiet(exit::OK)),
                Err(_) => {}
            }
            drop(locked);
            backoff.wait(None).await;
        }
    }

    fn still_waiter(&self, me: u32) -> Result<bool, CliError> {
        let locked = self.lock()?;
        Ok(!locked.state.ended && locked.state.waiter == Some(me))
    }

    /// Whether this waiter should stop: Claude Code is gone or is ending
    /// the session, or a newer waiter (or the end of the session) replaced
    /// it.
    fn session_over(&self, me: u32, parent: u32) -> bool {
        parent_pid() != parent || !self.still_waiter(me).unwrap_or(true) || claude_input_closed()
    }
}
