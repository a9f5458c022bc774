//! Channels: append-only message streams read by sequence number.

use super::{Broker, BrokerError, Channel, WaitEnd};
use crate::api::{validate_name, ChannelInfo, Message, MessagesResponse};
use crate::store::Mutation;
use crate::time::Timestamp;
use serde_json::Value;
use std::time::Duration;

impl Broker {
    /// `POST /channels/{name}/send`: appends `data`; answers once it is durable.
    pub async fn channel_send(
        &self,
        name: &str,
        data: Value,
        from: Option<String>,
    ) -> Result<Message, BrokerError> {
        validate_name("channel name", name).map_err(BrokerError::BadRequest)?;
        let retention = self.inner.config.channel_retention.max(1);
        let (msg, commits) = {
            let mut st = self.lock();
            let ch = st.channels.entry(name.to_string()).or_insert(Channel {
                messages: Default::default(),
                last_seq: 0,
            });
            ch.last_seq += 1;
            let msg = Message {
                seq: ch.last_seq,
                channel: name.to_string(),
                data,
                from,
                sent_at: Timestamp::now(),
            };
            ch.messages.push_back(msg.clone());
            let mut trimmed = false;
            while ch.messages.len() > retention {
                ch.messages.pop_front();
                trimmed = true;
            }
            let first = ch.messages.front().map(|m| m.seq).unwrap_or(msg.seq);
            let mut commits = vec![self.persist(Mutation::Message(msg.clone()))];
            if trimmed {
                commits.push(self.persist(Mutation::Trim {
                    channel: name.to_string(),
                    below: first,
                }));
            }
            st.events
                .push("message", serde_json::to_value(&msg).unwrap_or_default());
            st.wake(&format!("c:{name}"));
            (msg, commits)
        };
        Broker::committed(commits).await?;
        Ok(msg)
    }

    /// Messages with `seq > since`, at most `limit`, without waiting.
    pub fn channel_read(
        &self,
        name: &str,
        since: u64,
        limit: usize,
    ) -> Result<MessagesResponse, BrokerError> {
        validate_name("channel name", name).map_err(BrokerError::BadRequest)?;
        let st = self.lock();
        Ok(read_locked(st.channels.get(name), name, since, limit))
    }

    /// Like [`Broker::channel_read`], but when nothing is newer than `since`,
    /// waits up to `timeout` for a message (`timedOut` when none came).
    pub async fn channel_wait(
        &self,
        name: &str,
        since: u64,
        limit: usize,
        timeout: Duration,
    ) -> Result<MessagesResponse, BrokerError> {
        let _permit = self.acquire_waiter()?;
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
        validate_name("channel name", name).map_err(BrokerError::BadRequest)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let armed = {
                let mut st = self.lock();
                let r = read_locked(st.channels.get(name), name, since, limit);
                if !r.messages.is_empty() {
                    return Ok(r);
                }
                vec![st.arm(format!("c:{name}"))]
            };
            if let WaitEnd::TimedOut = self.park(armed, deadline).await {
                let mut r = self.channel_read(name, since, limit)?;
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
                count: ch.messages.len() as u64,
                first_seq: ch
                    .messages
                    .front()
                    .map(|m| m.seq)
                    .unwrap_or(ch.last_seq + 1),
                last_seq: ch.last_seq,
                last_at: ch.messages.back().map(|m| m.sent_at),
            })
            .collect()
    }
}

fn read_locked(ch: Option<&Channel>, name: &str, since: u64, limit: usize) -> MessagesResponse {
    let Some(ch) = ch else {
        return MessagesResponse {
            channel: name.to_string(),
            messages: vec![],
            first_seq: 1,
            last_seq: 0,
            timed_out: false,
        };
    };
    let first_seq = ch
        .messages
        .front()
        .map(|m| m.seq)
        .unwrap_or(ch.last_seq + 1);
    // Seqs are contiguous within what is retained, so index arithmetic finds `since`.
    let skip = since.saturating_add(1).saturating_sub(first_seq) as usize;
    let messages = ch.messages.iter().skip(skip).take(limit).cloned().collect();
    MessagesResponse {
        channel: name.to_string(),
        messages,
        first_seq,
        last_seq: ch.last_seq,
        timed_out: false,
    }
}
