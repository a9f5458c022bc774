//! The sweeper: the background task that applies the rules of time
//! (liveness, requeue when a holder goes offline, ttl expiry, deadlines,
//! question and lease expiry, logins). Each rule keeps a due-time schedule,
//! so a sweep visits only what may change; the rules themselves live with
//! their subjects (peers.rs, commands.rs, questions.rs, leases.rs,
//! sessions.rs).

use super::Broker;
use std::time::{Duration, Instant};

impl Broker {
    /// Starts the background sweeper (liveness, requeue on offline, ttl expiry).
    /// It stops when [`Broker::shutdown`] is called.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut every = broker.inner.config.sweep_interval;
            if broker.inner.shared {
                // Often enough to save the lastSeen of peers in contact
                // before any other node could take them for stale.
                let save = u64::try_from(broker.save_seen_every()).unwrap_or(u64::MAX);
                every = every.min(Duration::from_millis((save / 2).max(10)));
            }
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // With several nodes each sweeps in its turn, on the
                        // state every node agrees on, and only when something
                        // is due (a turn holds up every other node's writes).
                        if broker.inner.shared && !broker.sweep_due() {
                            continue;
                        }
                        match broker.turn(crate::store::TurnKind::Write).await {
                            Ok(_turn) => broker.sweep(),
                            Err(e) => tracing::debug!(error = %e, "sweep skipped"),
                        }
                    }
                    _ = broker.inner.shutdown.cancelled() => break,
                }
            }
        })
    }

    /// Runs one sweep now and says how long it held the broker (for
    /// `cipc bench --sweep`).
    pub fn sweep_timed(&self) -> Duration {
        let t = Instant::now();
        self.sweep();
        t.elapsed()
    }

    /// Whether a sweep now could change anything: a peer, deadline,
    /// question, lease or login due, or a pending command past its ttl.
    pub(super) fn sweep_due(&self) -> bool {
        let now = self.now();
        let st = self.lock();
        let due = |at: Option<i64>| at.is_some_and(|at| at <= now.millis());
        due(st.schedule.first().map(|(at, _)| *at))
            || due(st.deadlines.first().map(|(at, _)| *at))
            || due(st.question_expiry.first().map(|(at, _)| *at))
            || due(st.session_expiry.first().map(|(at, _)| *at))
            || due(st.lease_expiry.first().map(|(at, _)| *at))
            || st.queues.values().flatten().any(|(_, id)| {
                st.commands
                    .get(id)
                    .and_then(|e| e.command.expires_at)
                    .is_some_and(|t| t <= now)
            })
    }

    pub(super) fn sweep(&self) {
        // A shared store recovers in the next turn ([`replica`]).
        if !self.inner.shared && self.inner.store.progress().failing() {
            self.recover();
            return;
        }
        let now = self.now();
        let mut st = self.lock();
        let mut commits = Vec::new();
        self.sweep_peers(&mut st, now, &mut commits);
        self.sweep_expired(&mut st, now, &mut commits);
        self.sweep_overdue(&mut st, now, &mut commits);
        self.sweep_questions(&mut st, now, &mut commits);
        self.sweep_leases(&mut st, now, &mut commits);
        self.sweep_sessions(&mut st, now, &mut commits);
        drop(st);
        // The sweeper does not answer anyone; errors are logged by the store.
        drop(commits);
    }
}
