//! Waiting costs nothing: a long-poll parks on a [`Notify`] armed under the
//! state lock (so no wake-up is lost between looking and parking), keyed by
//! what it waits on ([`WakeKey`]); a change wakes exactly the waiters of its
//! key. Open waits and streams are counted and bounded (`--max-waiters`).

use super::{Broker, BrokerError, Caller, Inner, State};
use crate::error_code::ErrorCode;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// What a parked waiter waits on; a change wakes the waiters of its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum WakeKey {
    /// Commands for a target: a role, or a peer id.
    Queue(String),
    /// One command's outcome.
    Result(Uuid),
    /// New messages on a channel.
    Channel(String),
    /// A signal's emission.
    Signal(String),
    /// A question's answer (or its end).
    Question(Uuid),
}

/// A parked waiter: armed under the lock, awaited outside it.
pub(super) type Armed = Pin<Box<tokio::sync::futures::OwnedNotified>>;

pub(super) fn arm(n: Arc<Notify>) -> Armed {
    let mut f = Box::pin(n.notified_owned());
    f.as_mut().enable();
    f
}

/// Removes the wake-ups of a finished wait that nobody else holds.
struct ForgetUnused<'a> {
    broker: &'a Broker,
    keys: Vec<WakeKey>,
}

impl Drop for ForgetUnused<'_> {
    fn drop(&mut self) {
        let mut st = self.broker.lock();
        for k in &self.keys {
            if st
                .notifies
                .get(k)
                .is_some_and(|n| Arc::strong_count(n) == 1)
            {
                st.notifies.remove(k);
            }
        }
    }
}

/// How a wait ended when it did not get what it waited for.
pub(super) enum WaitEnd {
    Woken,
    TimedOut,
}

/// Holds one of the broker's bounded waiter slots until dropped.
pub struct WaiterPermit {
    inner: Arc<Inner>,
    /// The waiting caller's peer counts as in contact while it waits.
    _contact: Option<super::ContactGuard>,
}

impl Drop for WaiterPermit {
    fn drop(&mut self) {
        self.inner.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

impl State {
    pub(super) fn notify(&mut self, key: &WakeKey) -> Arc<Notify> {
        self.notifies
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Arms a wake-up on `key` (created on first use; [`Broker::park`]
    /// removes it again once nobody waits on it).
    pub(super) fn arm(&mut self, key: WakeKey) -> (WakeKey, Armed) {
        let armed = arm(self.notify(&key));
        (key, armed)
    }

    pub(super) fn wake(&self, key: &WakeKey) {
        if let Some(n) = self.notifies.get(key) {
            n.notify_waiters();
        }
    }
}

impl Broker {
    /// Takes one of the bounded waiter slots (long-polls and streams), or says
    /// how to back off when all are in use.
    pub fn acquire_waiter(&self) -> Result<WaiterPermit, BrokerError> {
        let max = self.inner.config.max_waiters;
        let prev = self.inner.waiters.fetch_add(1, Ordering::Relaxed);
        let permit = WaiterPermit {
            inner: self.inner.clone(),
            _contact: None,
        };
        if prev >= max {
            drop(permit);
            return Err(BrokerError::new(ErrorCode::TooManyWaiters, format!(
                "the broker already holds {max} open waits and streams (--max-waiters); retry shortly or raise the limit"
            )));
        }
        Ok(permit)
    }

    /// Like [`Broker::acquire_waiter`], for a wait by `caller`: a peer that
    /// waits (for a result, a signal, an answer) is in contact for as long
    /// as it waits, so it stays online whichever door it waits through.
    pub fn acquire_waiter_for(&self, caller: &Caller) -> Result<WaiterPermit, BrokerError> {
        let mut permit = self.acquire_waiter()?;
        permit._contact = caller.peer.and_then(|p| self.contact(p).ok());
        Ok(permit)
    }

    /// How many wake-up entries exist (each has a parked waiter).
    pub fn wake_entries(&self) -> usize {
        self.lock().notifies.len()
    }

    /// How many waits and streams are open now.
    pub fn open_waiters(&self) -> usize {
        self.inner.waiters.load(Ordering::Relaxed)
    }

    /// Parks on `armed` until woken, `deadline`, or shutdown. However the
    /// wait ends (even by being dropped), wake-ups nobody else waits on are
    /// removed, so the table does not grow with every name ever waited on.
    pub(super) async fn park(
        &self,
        armed: Vec<(WakeKey, Armed)>,
        deadline: tokio::time::Instant,
    ) -> WaitEnd {
        let (keys, armed): (Vec<WakeKey>, Vec<Armed>) = armed.into_iter().unzip();
        let _forget = ForgetUnused { broker: self, keys };
        let woken = futures::future::select_all(armed);
        tokio::select! {
            _ = woken => WaitEnd::Woken,
            _ = tokio::time::sleep_until(deadline) => WaitEnd::TimedOut,
            _ = self.inner.shutdown.cancelled() => WaitEnd::TimedOut,
        }
    }
}
