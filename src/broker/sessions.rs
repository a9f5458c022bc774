//! Dashboard logins: a session id handed out for the broker's token, kept
//! (as its digest) in the broker's state and store, so a login survives a
//! restart and is valid on every node of a shared store.

use super::keys::KeyHash;
use super::{Broker, BrokerError, State};
use crate::store::{Commit, Mutation, TurnKind};
use crate::time::Timestamp;
use std::time::Duration;

/// Dashboard sessions kept at most; past it the oldest are forgotten (those
/// browsers simply log in again).
const MAX_SESSIONS: usize = 10_000;

impl State {
    fn forget_session(&mut self, hash: &str) -> bool {
        match self.sessions.remove(hash) {
            Some(expires) => {
                self.session_expiry
                    .remove(&(expires.millis(), hash.to_string()));
                true
            }
            None => false,
        }
    }

    /// Records a session (local or another node's).
    pub(super) fn put_session(&mut self, hash: String, expires: Timestamp) {
        self.forget_session(&hash);
        self.session_expiry.insert((expires.millis(), hash.clone()));
        self.sessions.insert(hash, expires);
    }

    /// Forgets a session; true when it existed.
    pub(super) fn drop_session(&mut self, hash: &str) -> bool {
        self.forget_session(hash)
    }
}

impl Broker {
    /// A new dashboard session id, valid for `ttl`. Only its digest is kept.
    pub async fn open_session(&self, ttl: Duration) -> Result<String, BrokerError> {
        let bytes: [u8; 32] = rand::random();
        let id = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let hash = KeyHash::of(&id).to_hex();
        let _turn = self.turn(TurnKind::Write).await?;
        let expires = self
            .now()
            .plus_millis(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let commits = {
            let mut st = self.lock();
            let mut commits = Vec::new();
            while st.sessions.len() >= MAX_SESSIONS {
                let Some((_, oldest)) = st.session_expiry.first().cloned() else {
                    break;
                };
                st.drop_session(&oldest);
                commits.push(self.persist(Mutation::EndSession { hash: oldest }));
            }
            st.put_session(hash.clone(), expires);
            commits.push(self.persist(Mutation::Session { hash, expires }));
            commits
        };
        Broker::committed(commits).await?;
        Ok(id)
    }

    /// True for a session that exists and has not expired.
    pub fn session_valid(&self, id: &str) -> bool {
        let hash = KeyHash::of(id).to_hex();
        let now = self.now();
        self.lock().sessions.get(&hash).is_some_and(|e| *e > now)
    }

    /// Ends a session (logout); ending an unknown one is not an error.
    pub async fn end_session(&self, id: &str) -> Result<(), BrokerError> {
        let hash = KeyHash::of(id).to_hex();
        let _turn = self.turn(TurnKind::Write).await?;
        let commit = {
            let mut st = self.lock();
            if !st.drop_session(&hash) {
                return Ok(());
            }
            self.persist(Mutation::EndSession { hash })
        };
        Broker::committed(vec![commit]).await
    }

    /// Sweeper pass: forgets expired sessions.
    pub(super) fn sweep_sessions(&self, st: &mut State, now: Timestamp, commits: &mut Vec<Commit>) {
        while let Some((at, hash)) = st.session_expiry.first().cloned() {
            if at > now.millis() {
                break;
            }
            st.drop_session(&hash);
            commits.push(self.persist(Mutation::EndSession { hash }));
        }
    }
}
