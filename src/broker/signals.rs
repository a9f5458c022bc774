//! Signals: named latches with data that release every waiter at once.

use super::{Broker, BrokerError, Caller, WaitEnd, WakeKey};
use crate::api::{validate_name, Signal};
use crate::error_code::ErrorCode;
use crate::store::{Mutation, TurnKind};
use serde_json::Value;
use std::time::Duration;

fn blank(name: &str) -> Signal {
    Signal {
        name: name.to_string(),
        emitted: false,
        data: None,
        emitted_at: None,
        emitted_by: None,
        count: 0,
    }
}

impl Broker {
    /// `POST /signals/{name}`: sets the latch, replaces its data, bumps `count`.
    pub async fn emit(
        &self,
        name: &str,
        data: Option<Value>,
        by: Option<String>,
    ) -> Result<Signal, BrokerError> {
        self.update_signal(name, |s| {
            s.emitted = true;
            s.data = data;
            s.emitted_at = Some(self.now());
            s.emitted_by = by;
            s.count += 1;
        })
        .await
    }

    /// Changes one signal (creating it blank), then persists, announces and
    /// wakes its waiters (who re-check whether it now releases them).
    async fn update_signal(
        &self,
        name: &str,
        change: impl FnOnce(&mut Signal),
    ) -> Result<Signal, BrokerError> {
        validate_name("signal name", name)?;
        let _turn = self.turn(TurnKind::Write).await?;
        let (s, commits) = {
            let mut st = self.lock();
            let mut commits = Vec::new();
            if !st.signals.contains_key(name) {
                let max = self.inner.config.max_signals.max(1);
                if st.signals.len() >= max {
                    let idle = st
                        .signals
                        .values()
                        .filter(|s| !st.notifies.contains_key(&WakeKey::Signal(s.name.clone())))
                        .min_by_key(|s| s.emitted_at)
                        .map(|s| s.name.clone());
                    let Some(victim) = idle else {
                        return Err(BrokerError::new(ErrorCode::TooManySignals, format!(
                            "the broker already keeps {max} signals and every one is being waited for (--max-signals); reuse a signal or raise the limit"
                        )));
                    };
                    tracing::info!(signal = %victim, "signal cap reached; forgetting the longest-idle signal");
                    st.signals.remove(&victim);
                    commits.push(self.persist(Mutation::ForgetSignal { name: victim }));
                }
            }
            let s = st
                .signals
                .entry(name.to_string())
                .or_insert_with(|| blank(name));
            change(s);
            let s = s.clone();
            commits.push(self.persist(Mutation::Signal(Box::new(s.clone()))));
            st.events.push("signal", &s);
            st.wake(&WakeKey::Signal(name.to_string()));
            (s, commits)
        };
        Broker::committed(commits).await?;
        Ok(s)
    }

    /// `GET /signals/{name}`: never 404; an unknown signal is not emitted.
    pub fn signal(&self, name: &str) -> Result<Signal, BrokerError> {
        validate_name("signal name", name)?;
        let st = self.lock();
        Ok(st.signals.get(name).cloned().unwrap_or_else(|| blank(name)))
    }

    /// `DELETE /signals/{name}`: unsets the latch (the count is kept, so
    /// `after=K` waits stay meaningful).
    pub async fn clear_signal(&self, name: &str) -> Result<Signal, BrokerError> {
        self.update_signal(name, |s| {
            s.emitted = false;
            s.data = None;
        })
        .await
    }

    /// Every signal, by name.
    pub fn signals(&self) -> Vec<Signal> {
        self.lock().signals.values().cloned().collect()
    }

    /// `GET /signals/{name}/wait`: returns once the signal is emitted (and,
    /// with `after = Some(K)`, its count exceeds K). The bool is true on timeout.
    pub async fn wait_signal(
        &self,
        name: &str,
        after: Option<u64>,
        timeout: Duration,
        caller: &Caller,
    ) -> Result<(Signal, bool), BrokerError> {
        validate_name("signal name", name)?;
        let _permit = self.acquire_waiter_for(caller)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let armed = {
                let mut st = self.lock();
                let s = st.signals.get(name).cloned().unwrap_or_else(|| blank(name));
                if s.emitted && after.is_none_or(|k| s.count > k) {
                    return Ok((s, false));
                }
                vec![st.arm(WakeKey::Signal(name.to_string()))]
            };
            if let WaitEnd::TimedOut = self.park(armed, deadline).await {
                return Ok((self.signal(name)?, true));
            }
        }
    }
}
