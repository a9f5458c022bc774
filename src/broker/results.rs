//! How a command ends and how its sender hears: acks (by the holder, once),
//! cancels (who may), and waits for a result, one command's or a fan-out's.

use super::commands::{open_command, unknown_command, Ending, SendOutcome, Sent};
use super::{Broker, BrokerError, Caller, State, WaitEnd, WakeKey};
use crate::api::{AckRequest, Command, CommandStatus, SendRequest};
use crate::error_code::ErrorCode;
use crate::store::TurnKind;
use std::time::Duration;
use uuid::Uuid;

impl Broker {
    /// `POST /commands/{id}/ack`. With `caller.peer` set, only the peer that
    /// holds the command may ack it, so one command never ends with two
    /// results; a command held by a protected peer needs that peer's key.
    pub async fn ack(
        &self,
        id: Uuid,
        req: AckRequest,
        caller: &Caller,
    ) -> Result<Command, BrokerError> {
        let AckRequest {
            result,
            error,
            attempt,
        } = req;
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (out, commits) = {
            let mut st = self.lock();
            let (ord, c) = open_command(&st, id, "a command takes one result")?;
            if c.status == CommandStatus::Pending && c.attempt == 0 {
                return Err(BrokerError::new(ErrorCode::NotDelivered, format!(
                    "command {id} was never delivered, so there is no result to ack yet: it waits for a taker of {}; \
                     a taker acks it after taking it (GET /commands/{{peerId}}/wait), or cancel it (DELETE /commands/{id})",
                    c.target
                )));
            }
            if let Some(a) = attempt {
                let current = c.status == CommandStatus::Delivered && c.attempt == a;
                if !current {
                    return Err(BrokerError::new(ErrorCode::DeliveryOver, format!(
                        "delivery {a} of command {id} is over (it is {} at delivery {}): it was given to another taker; wait for it again before acking",
                        c.status.as_str(),
                        c.attempt
                    )));
                }
            }
            if let (CommandStatus::Delivered, Some(holder)) = (c.status, c.delivered_to) {
                self.prove_in(&st, holder, caller)?;
            }
            if let Some(p) = caller.peer {
                if c.delivered_to != Some(p) || c.status != CommandStatus::Delivered {
                    let holder = match (c.status, c.delivered_to) {
                        (CommandStatus::Delivered, Some(h)) => format!("it is held by peer {h}"),
                        _ => "it is pending again (its earlier delivery was requeued)".to_string(),
                    };
                    return Err(BrokerError::new(ErrorCode::NotHolder, format!(
                        "peer {p} cannot ack command {id}: {holder}; wait for it again before acking"
                    )));
                }
            }
            let status = if error.is_some() {
                CommandStatus::Failed
            } else {
                CommandStatus::Acked
            };
            let mut commits = Vec::new();
            let out = self
                .finish(
                    &mut st,
                    (ord, id),
                    Ending {
                        status,
                        result,
                        error,
                        at: now,
                    },
                    &mut commits,
                )
                .ok_or_else(|| unknown_command(id))?;
            (out, commits)
        };
        tracing::info!(command = %id, status = out.status.as_str(), "command acked");
        Broker::committed(commits).await?;
        Ok(out)
    }

    /// `DELETE /commands/{id}`: cancels a pending or delivered command. One
    /// held by a protected peer can be taken back only by that peer or by a
    /// protected sender, each with its key; the order of a person or an
    /// unprotected client can be withdrawn by anyone with the broker's token.
    pub async fn cancel(&self, id: Uuid, caller: &Caller) -> Result<Command, BrokerError> {
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let by = caller
            .peer
            .map(|p| format!("peer {p}"))
            .or_else(|| caller.address.clone())
            .unwrap_or_else(|| "a client".into());
        let (out, commits) = {
            let mut st = self.lock();
            let (ord, c) = open_command(
                &st,
                id,
                "only pending or delivered commands can be cancelled",
            )?;
            self.may_cancel(&st, c, caller)?;
            let error = Some(format!("cancelled by {by}"));
            let mut commits = Vec::new();
            let out = self
                .finish(
                    &mut st,
                    (ord, id),
                    Ending {
                        status: CommandStatus::Cancelled,
                        result: None,
                        error,
                        at: now,
                    },
                    &mut commits,
                )
                .ok_or_else(|| unknown_command(id))?;
            (out, commits)
        };
        Broker::committed(commits).await?;
        Ok(out)
    }

    fn may_cancel(&self, st: &State, c: &Command, caller: &Caller) -> Result<(), BrokerError> {
        let (CommandStatus::Delivered, Some(holder)) = (c.status, c.delivered_to) else {
            return Ok(());
        };
        if !st.peers.get(&holder).is_some_and(|e| e.peer.protected) {
            return Ok(());
        }
        let sender = c
            .origin
            .as_deref()
            .and_then(|o| crate::api::Origin::parse(o).peer());
        let protected_sender = sender.filter(|s| st.peers.get(s).is_some_and(|e| e.peer.protected));
        let allowed = self.holds_key(st, holder, caller)
            || protected_sender.is_none()
            || protected_sender.is_some_and(|s| self.holds_key(st, s, caller));
        if allowed {
            Ok(())
        } else {
            Err(BrokerError::new(ErrorCode::NotAllowedToCancel, format!(
                "command {} is held by protected peer {holder} and was sent by a protected peer: only one of them can cancel it, with its key (X-Cipc-Peer-Key)",
                c.id
            )))
        }
    }

    /// `GET /commands/{id}/result`: waits until the command finishes. The bool
    /// is true when the wait timed out first.
    ///
    /// A command that becomes overdue during the wait ends it too (not
    /// finished, `overdue: true`), so a sender hears of a missed deadline
    /// when it happens; waiting again then waits for the end.
    pub async fn wait_result(
        &self,
        id: Uuid,
        timeout: Duration,
        caller: &Caller,
    ) -> Result<(Command, bool), BrokerError> {
        let _permit = self.acquire_waiter_for(caller)?;
        self.sync().await;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut was_overdue = None;
        loop {
            let armed = {
                let mut st = self.lock();
                let c = st
                    .commands
                    .get(&id)
                    .map(|e| e.command.clone())
                    .ok_or_else(|| unknown_command(id))?;
                let overdue_before = *was_overdue.get_or_insert(c.overdue);
                if c.status.is_terminal() || c.overdue && !overdue_before {
                    return Ok((c, false));
                }
                vec![st.arm(WakeKey::Result(id))]
            };
            if let WaitEnd::TimedOut = self.park(armed, deadline).await {
                return Ok((self.command(id)?, true));
            }
        }
    }

    /// `POST /commands/send` with its optional wait: sends, then (with
    /// `wait`) waits for the result of every command the send made, a
    /// `"*"` fan-out's copies included, until one deadline `wait` from now.
    /// The commands exist (and are durable) before any wait, so a caller
    /// that gives up can still ask for their results later.
    pub async fn send_and_wait(
        &self,
        req: SendRequest,
        caller: &Caller,
        wait: Option<Duration>,
    ) -> Result<Sent, BrokerError> {
        let outcome = self.send_deferring(req, caller, wait.is_some()).await?;
        match wait {
            None => Ok(Sent {
                outcome,
                timed_out: false,
            }),
            Some(d) => self.wait_sent(outcome, d, caller).await,
        }
    }

    /// The wait half of [`Broker::send_and_wait`], for a caller that must
    /// know the ids before it waits (MCP tells a cancelled wait which
    /// commands were sent): waits up to `timeout` in all for every command
    /// in `outcome` to finish (or to turn overdue).
    pub async fn wait_sent(
        &self,
        outcome: SendOutcome,
        timeout: Duration,
        caller: &Caller,
    ) -> Result<Sent, BrokerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        Ok(match outcome {
            SendOutcome::Created { command, queued } => {
                let (command, timed_out) = self.wait_result(command.id, left(), caller).await?;
                Sent {
                    outcome: SendOutcome::Created { command, queued },
                    timed_out,
                }
            }
            SendOutcome::Deduplicated(command) => {
                let (command, timed_out) = self.wait_result(command.id, left(), caller).await?;
                Sent {
                    outcome: SendOutcome::Deduplicated(command),
                    timed_out,
                }
            }
            // One copy after another: each wait ends when its copy finishes
            // or at the shared deadline, so the whole wait never passes it.
            SendOutcome::FanOut(copies) => {
                let mut timed_out = false;
                let mut done = Vec::with_capacity(copies.len());
                for c in copies {
                    let (c, t) = self.wait_result(c.id, left(), caller).await?;
                    timed_out |= t;
                    done.push(c);
                }
                Sent {
                    outcome: SendOutcome::FanOut(done),
                    timed_out,
                }
            }
        })
    }
}
