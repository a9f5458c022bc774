//! Unit tests of the broker's rules, one file per concern, each on a clock
//! that moves only when the test says so: a rule about time ("a peer silent
//! for 90 s is stale") is proven by moving the clock, never by sleeping.
//!
//! - `queue.rs`: who gets which command (FIFO, competing consumers, peer
//!   ids, `"*"` fan-out, dedupe, ttl).
//! - `liveness.rs`: online / stale / offline at their exact boundaries, and
//!   the requeue of a peer's work when it goes.
//! - `acks.rs`: who may ack, which delivery, and waiting for the result.
//! - `retention.rs`: forgetting, caps and trimming over time.
//! - `wakeups.rs`: parked waits leave nothing behind.
//! - `deadlines.rs`: overdue at the exact deadline, and the sender told.
//! - `questions.rs`: asked, answered once, choices, ttl, cancel.
//! - `leases.rs`: granted all or nothing, conflicts, ttl, ended when the
//!   holder leaves, renew and release, and never two conflicting leases
//!   across nodes. (The conflict rule's own table is in
//!   `broker/lease_paths.rs`.)
//! - `nodes.rs`: several nodes of one broker (an in-process shared log):
//!   decisions, liveness, sessions and events across nodes.

use super::*;
use crate::api::{
    AckRequest, Command, CommandStatus, ConnectRequest, PeerStatus, SendRequest, Via,
};
use crate::error_code::ErrorCode;

mod acks;
mod deadlines;
mod leases;
mod liveness;
mod nodes;
mod questions;
mod queue;
mod retention;
mod wakeups;

/// A broker on a clock that moves only when the test says so.
fn broker_at(config: BrokerConfig) -> (Broker, Arc<clock::ManualClock>) {
    let clock = Arc::new(clock::ManualClock::new(Timestamp(1_800_000_000_000)));
    let store = Arc::new(crate::store::MemoryStore::default());
    let b = Broker::open_with_clock(store, config, clock.clone()).expect("open");
    (b, clock)
}

/// Connects a peer of `role` and answers its id.
async fn connect(b: &Broker, role: &str) -> Uuid {
    let req = ConnectRequest {
        role: role.into(),
        ..ConnectRequest::default()
    };
    b.connect(req, Via::Http, &Caller::default())
        .await
        .expect("connect")
        .0
        .id
}

/// A caller that says it is `peer` (as `X-Cipc-Peer` does).
fn as_peer(peer: Uuid) -> Caller {
    Caller {
        peer: Some(peer),
        ..Caller::default()
    }
}

/// Sends `action` to `target` (a role or a peer id) and answers the one
/// command it made.
async fn send(b: &Broker, target: &str, action: &str) -> Command {
    send_req(
        b,
        SendRequest {
            target: target.into(),
            action: action.into(),
            ..SendRequest::default()
        },
    )
    .await
}

/// Sends `req`, which must make exactly one new command, and answers it.
async fn send_req(b: &Broker, req: SendRequest) -> Command {
    match b.send(req, &Caller::default()).await.expect("send") {
        SendOutcome::Created { command, .. } => command,
        other => panic!("expected one new command, got {other:?}"),
    }
}

/// What `peer` gets when it asks for work now, without waiting.
async fn take(b: &Broker, peer: Uuid) -> Option<Command> {
    b.wait_command(peer, Duration::ZERO, &Caller::default())
        .await
        .expect("wait")
}

/// Acks `id` as `peer` with a result.
async fn ack_as(b: &Broker, id: Uuid, peer: Uuid) -> Result<Command, BrokerError> {
    let req = AckRequest {
        result: Some(serde_json::json!("done")),
        ..AckRequest::default()
    };
    b.ack(id, req, &as_peer(peer)).await
}

/// A peer's status as users see it now.
fn status(b: &Broker, peer: Uuid) -> PeerStatus {
    b.peer(peer).expect("peer").status
}

/// A command's status as users see it now.
fn cmd_status(b: &Broker, id: Uuid) -> CommandStatus {
    b.command(id).expect("command").status
}

/// Moves the clock by `ms` milliseconds and runs one sweep.
fn advance_ms(b: &Broker, clock: &clock::ManualClock, ms: u64) {
    clock.advance(Duration::from_millis(ms));
    b.sweep();
}
