//! The Stop hook's background waiter: while the session is idle it
//! long-polls for the next order and wakes the session with it (exit 2),
//! and it steps aside when Claude Code is gone or a newer waiter took over.

use super::{describe_order, take_orders, Hook, Reply};
use crate::agents::claude::process::{claude_input_closed, session_can_wake};
use crate::agents::host::parent_pid;
use crate::cli::backoff::Backoff;
use crate::cli::{exit, CliError};
use crate::client::{Client, ClientError};
use std::time::Duration;
use uuid::Uuid;

/// How long one long-poll of the Stop waiter lasts before it checks that
/// the session is still there.
const WAITER_POLL_MS: u64 = 20_000;

/// What one long-poll of a waiter brought.
pub(super) enum Polled {
    /// The waiter should stop (checked before and during the poll).
    Over,
    /// Nothing arrived in time.
    Nothing,
    /// Orders, taken, as the text that hands them to the model.
    Orders(String),
    /// The broker refused or could not be reached.
    Failed(ClientError),
}

/// One long-poll for the peer's next order (and any others already
/// waiting, taken with it), given up as soon as `over` says the waiter
/// should stop: checked first, then every second while the poll runs
/// (dropping the poll takes nothing: the broker gives a vanished waiter
/// nothing). Both agents' waiters wait this way.
pub(super) async fn next_orders(
    client: &Client,
    peer: Uuid,
    poll_ms: u64,
    over: impl Fn() -> bool,
) -> Polled {
    if over() {
        return Polled::Over;
    }
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if over() {
                break;
            }
        }
    };
    let peer_id = peer.to_string();
    let polled = tokio::select! {
        r = client.wait_command(&peer_id, poll_ms) => r,
        () = watch => return Polled::Over,
    };
    match polled {
        Ok(r) => {
            let Some(first) = r.command else {
                return Polled::Nothing;
            };
            let mut orders = vec![first];
            if let Ok(more) = take_orders(client, peer).await {
                orders.extend(more);
            }
            let text: Vec<String> = orders.iter().map(describe_order).collect();
            Polled::Orders(text.join("\n\n"))
        }
        Err(e) => Polled::Failed(e),
    }
}

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
            match next_orders(&client, peer, WAITER_POLL_MS, || {
                self.session_over(me, parent)
            })
            .await
            {
                Polled::Over => return Ok(Reply::default()),
                Polled::Nothing => backoff.reset(),
                Polled::Orders(text) => {
                    return Ok(Reply {
                        wake: Some(text),
                        ..Reply::default()
                    });
                }
                Polled::Failed(e) if e.refuses_token() => return Ok(Reply::default()),
                Polled::Failed(e) if e.refuses_peer() => {
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
                Polled::Failed(_) => backoff.wait(None).await,
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
