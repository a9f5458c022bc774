//! `cipc hook stop` for Codex: the end of a turn. Codex runs its Stop hook
//! in the turn (there is no background hook that may wake a session
//! later), and a Stop hook that exits 2 makes the same turn go on with its
//! stderr as the next user message (measured with 0.171). So orders that
//! arrived during the turn, and answers to the session's own commands, are
//! handed over here and the session works on at once; with nothing
//! waiting the turn ends, and the idle waiter (`codex_waiter.rs`) takes
//! over.

use super::orders::{answers, describe_order, take_orders};
use super::{Hook, Reply};
use crate::cli::CliError;

impl Hook {
    /// Continues the turn with whatever waits for the session, if anything.
    pub(super) async fn turn_end(&self) -> Result<Reply, CliError> {
        // The turn is over: no permission prompt of it waits any more.
        self.withdraw_permissions().await?;
        let reply = self
            .with_peer(false, |client, peer, _key, mut st| async move {
                st.took_turn = true;
                let mut parts: Vec<String> = take_orders(&client, peer)
                    .await?
                    .iter()
                    .map(describe_order)
                    .collect();
                parts.extend(answers(&client, peer, &mut st).await?);
                let wake = (!parts.is_empty()).then(|| parts.join("\n\n"));
                Ok((
                    Reply {
                        wake,
                        ..Reply::default()
                    },
                    st,
                ))
            })
            .await?;
        if reply.wake.is_none() {
            self.start_idle_waiter();
        }
        Ok(reply)
    }
}
