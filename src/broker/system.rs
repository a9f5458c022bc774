//! Whole-broker operations: status and reset.

use super::{Broker, BrokerError};
use crate::api::{CommandSummary, StatusResponse};
use crate::store::Mutation;

impl Broker {
    /// `GET /status`: everything at a glance.
    pub fn status(&self) -> StatusResponse {
        StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.uptime().as_millis() as u64,
            peers: self.peers(),
            commands: CommandSummary {
                counts: self.command_counts(),
                recent: self.list_commands(None, None, 20),
            },
            channels: self.channels(),
            signals: self.signals(),
            waiters: self.open_waiters() as u64,
            mcp_sessions: None,
            store: self
                .inner
                .store
                .is_durable()
                .then(|| self.inner.progress.commit_counts()),
        }
    }

    /// `POST /reset`: forgets every peer, command, channel and signal. Parked
    /// waiters wake and find their peer or command gone.
    pub async fn reset(&self) -> Result<(), BrokerError> {
        let _turn = self.turn(crate::store::TurnKind::Write).await?;
        let commit = {
            let mut st = self.lock();
            st.clear_all();
            let commit = self.persist(Mutation::Reset);
            st.events.push("reset", &serde_json::json!({"ok": true}));
            commit
        };
        tracing::warn!("broker reset: all peers, commands, channels and signals cleared");
        Broker::committed(vec![commit]).await
    }
}
