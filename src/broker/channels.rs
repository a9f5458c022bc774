//! Channels: append-only message streams read by sequence number.
//!
//! Memory holds each channel's head and its newest messages only
//! ([`RECENT_KEPT`](crate::store::RECENT_KEPT) when the store can serve the
//! older ones), so start-up time and memory do not grow with how much history
//! is retained. A read that reaches further back than memory goes to the
//! store, after waiting until everything it could read there is saved.

use super::{Broker, BrokerError, Caller, Channel, State, WaitEnd, WakeKey};
use crate::api::{validate_name, ChannelInfo, Message, MessagesResponse};
use crate::error_code::ErrorCode;
use crate::store::{Mutation, TurnKind};
use serde_json::Value;
use std::time::Duration;

impl Channel {
    pub(super) fn empty() -> Channel {
        Channel {
            recent: Default::default(),
            first_seq: 1,
            last_seq: 0,
            last_at: None,
        }
    }

    fn count(&self) -> u64 {
        (self.last_seq + 1).saturating_sub(self.first_seq)
    }

    /// The oldest seq held in memory (`last_seq + 1` when none is).
    fn recent_first(&self) -> u64 {
        self.recent.front().map_or(self.last_seq + 1, |m| m.seq)
    }
}

/// What a read found in memory, and what it still needs from the store.
struct Plan {
    head: MessagesResponse,
    /// Seqs `from..=to` to read from the store first, before `head.messages`.
    from_store: Option<(u64, u64)>,
}

impl Broker {
    /// `POST /channels/{name}/send`: appends `data`; answers once it is durable.
    pub async fn channel_send(
        &self,
        name: &str,
        data: Value,
        from: Option<String>,
    ) -> Result<Message, BrokerError> {
        validate_name("channel name", name)?;
        let retention = self.inner.config.channel_retention.max(1) as u64;
        let _turn = self.turn(TurnKind::Write).await?;
        let (msg, commits) = {
            let mut st = self.lock();
            let mut commits = Vec::new();
            if !st.channels.contains_key(name) {
                self.make_room_for_channel(&mut st, &mut commits)?;
            }
            let kept = self.inner.recent_kept;
            let ch = st
                .channels
                .entry(name.to_string())
                .or_insert_with(Channel::empty);
            ch.last_seq += 1;
            let msg = Message {
                seq: ch.last_seq,
                channel: name.to_string(),
                data,
                from,
                sent_at: self.now(),
            };
            ch.last_at = Some(msg.sent_at);
            ch.recent.push_back(msg.clone());
            let oldest_kept = (ch.last_seq + 1).saturating_sub(retention).max(1);
            let trimmed_from = ch.first_seq;
            let trimmed = oldest_kept > ch.first_seq;
            ch.first_seq = ch.first_seq.max(oldest_kept);
            while ch.recent.len() > kept || ch.recent.front().is_some_and(|m| m.seq < ch.first_seq)
            {
                ch.recent.pop_front();
            }
            let first = ch.first_seq;
            commits.push(self.persist(Mutation::Message(Box::new(msg.clone()))));
            if trimmed {
                commits.push(self.persist(Mutation::Trim {
                    channel: name.to_string(),
                    from: trimmed_from,
                    below: first,
                }));
            }
            st.events.push("message", &msg);
            st.wake(&WakeKey::Channel(name.to_string()));
            (msg, commits)
        };
        Broker::committed(commits).await?;
        Ok(msg)
    }

    /// Before a new channel: at the cap, forgets the longest-idle channel
    /// that nobody follows, or refuses with 429 when every one is followed.
    fn make_room_for_channel(
        &self,
        st: &mut State,
        commits: &mut Vec<crate::store::Commit>,
    ) -> Result<(), BrokerError> {
        let max = self.inner.config.max_channels.max(1);
        if st.channels.len() < max {
            return Ok(());
        }
        let idle = st
            .channels
            .iter()
            .filter(|(name, _)| !st.notifies.contains_key(&WakeKey::Channel((*name).clone())))
            .min_by_key(|(_, ch)| ch.last_at)
            .map(|(name, _)| name.clone());
        let Some(victim) = idle else {
            return Err(BrokerError::new(ErrorCode::TooManyChannels, format!(
                "the broker already keeps {max} channels and every one is being followed (--max-channels); reuse a channel or raise the limit"
            )));
        };
        tracing::info!(channel = %victim, "channel cap reached; forgetting the longest-idle channel");
        st.channels.remove(&victim);
        commits.push(self.persist(Mutation::ForgetChannel { name: victim }));
        Ok(())
    }

    /// Messages with `seq > since`, at most `limit`, without waiting.
    pub async fn channel_read(
        &self,
        name: &str,
        since: u64,
        limit: usize,
    ) -> Result<MessagesResponse, BrokerError> {
        validate_name("channel name", name)?;
        let plan = {
            let st = self.lock();
            plan_read(st.channels.get(name), name, since, limit)
        };
        self.complete(name, plan, limit).await
    }

    /// Reads what a plan needs from the store and puts it in front.
    async fn complete(
        &self,
        name: &str,
        plan: Plan,
        limit: usize,
    ) -> Result<MessagesResponse, BrokerError> {
        let Plan {
            mut head,
            from_store,
        } = plan;
        let Some((from, to)) = from_store else {
            return Ok(head);
        };
        // Everything the store could hand back must be saved first, or a
        // message not yet written would look like a gap.
        self.settled().await?;
        let store = self.inner.store.clone();
        let channel = name.to_string();
        let older =
            tokio::task::spawn_blocking(move || store.read_messages(&channel, from, to, limit))
                .await
                .map_err(|e| BrokerError::store(format!("reading old messages failed: {e}")))?
                .map_err(|e| BrokerError::store(format!("{e}; retry shortly")))?;
        let contiguous =
            older.last().map(|m| m.seq) == Some(to) && older.len() as u64 == to + 1 - from;
        let mut messages = older;
        if contiguous {
            let room = limit.saturating_sub(messages.len());
            messages.extend(head.messages.drain(..).take(room));
        }
        head.messages = messages;
        Ok(head)
    }

    /// Like [`Broker::channel_read`], but when nothing is newer than `since`,
    /// waits up to `timeout` for a message (`timedOut` when none came).
    pub async fn channel_wait(
        &self,
        name: &str,
        since: u64,
        limit: usize,
        timeout: Duration,
        caller: &Caller,
    ) -> Result<MessagesResponse, BrokerError> {
        let _permit = self.acquire_waiter_for(caller)?;
        self.wait_messages(name, since, limit, timeout).await
    }

    /// The waiting part of [`Broker::channel_wait`], for callers that already
    /// hold a waiter slot (SSE streams).
    pub async fn wait_messages(
        &self,
        name: &str,
        since: u64,
        limit: usize,
        timeout: Duration,
    ) -> Result<MessagesResponse, BrokerError> {
        validate_name("channel name", name)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = {
                let mut st = self.lock();
                let plan = plan_read(st.channels.get(name), name, since, limit);
                if !plan.head.messages.is_empty() || plan.from_store.is_some() {
                    Err(plan)
                } else {
                    Ok(vec![st.arm(WakeKey::Channel(name.to_string()))])
                }
            };
            let armed = match next {
                Ok(armed) => armed,
                Err(plan) => return self.complete(name, plan, limit).await,
            };
            if let WaitEnd::TimedOut = self.park(armed, deadline).await {
                let mut r = self.channel_read(name, since, limit).await?;
                r.timed_out = r.messages.is_empty();
                return Ok(r);
            }
        }
    }

    /// Every channel with its counts.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let st = self.lock();
        st.channels
            .iter()
            .map(|(name, ch)| ChannelInfo {
                name: name.clone(),
                count: ch.count(),
                first_seq: ch.first_seq,
                last_seq: ch.last_seq,
                last_at: ch.last_at,
            })
            .collect()
    }
}

/// Works out a read under the lock: what memory has, and which older seqs
/// must come from the store.
fn plan_read(ch: Option<&Channel>, name: &str, since: u64, limit: usize) -> Plan {
    let Some(ch) = ch else {
        return Plan {
            head: MessagesResponse {
                channel: name.to_string(),
                messages: vec![],
                first_seq: 1,
                last_seq: 0,
                timed_out: false,
            },
            from_store: None,
        };
    };
    let start = since.saturating_add(1).max(ch.first_seq);
    let recent_first = ch.recent_first();
    let from_store = (start < recent_first && start <= ch.last_seq).then(|| {
        let to = (recent_first - 1).min(start.saturating_add(limit.max(1) as u64 - 1));
        (start, to)
    });
    // Seqs are contiguous within memory, so index arithmetic finds `start`.
    let skip = start.saturating_sub(recent_first) as usize;
    let messages = ch.recent.iter().skip(skip).take(limit).cloned().collect();
    Plan {
        head: MessagesResponse {
            channel: name.to_string(),
            messages,
            first_seq: ch.first_seq,
            last_seq: ch.last_seq,
            timed_out: false,
        },
        from_store,
    }
}
