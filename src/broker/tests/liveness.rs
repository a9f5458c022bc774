//! Liveness: a silent peer is online, then stale at exactly `stale_after`,
//! then offline at exactly `offline_after` (its work requeued); contact of
//! any kind brings it back.

use super::*;

const STALE_MS: u64 = 10_000;
const OFFLINE_MS: u64 = 60_000;

/// A broker whose peers go stale after 10 s and offline after 60 s.
fn short_lived() -> (Broker, Arc<clock::ManualClock>) {
    broker_at(BrokerConfig {
        stale_after: Duration::from_millis(STALE_MS),
        offline_after: Duration::from_millis(OFFLINE_MS),
        ..BrokerConfig::default()
    })
}

/// Whether a send to `role` now says it was queued (no online peer holds it).
async fn queued_for(b: &Broker, role: &str) -> bool {
    let req = SendRequest {
        target: role.into(),
        action: "probe".into(),
        ..SendRequest::default()
    };
    match b.send(req, &Caller::default()).await.expect("send") {
        SendOutcome::Created { command, queued } => {
            b.cancel(command.id, &Caller::default())
                .await
                .expect("cancel");
            queued
        }
        other => panic!("expected one command, got {other:?}"),
    }
}

#[tokio::test]
async fn silence_makes_a_peer_stale_then_offline_exactly_at_the_thresholds() {
    let (b, clock) = short_lived();
    let id = connect(&b, "w").await;
    let discoverable = |b: &Broker| b.discover().peers.iter().any(|p| p.id == id);

    advance_ms(&b, &clock, STALE_MS - 1);
    assert_eq!(
        status(&b, id),
        PeerStatus::Online,
        "1 ms before stale_after"
    );
    assert!(discoverable(&b));
    assert!(!queued_for(&b, "w").await, "an online peer holds the role");

    advance_ms(&b, &clock, 1);
    assert_eq!(status(&b, id), PeerStatus::Stale, "at stale_after");
    assert!(!discoverable(&b), "discover lists online peers only");
    assert!(
        queued_for(&b, "w").await,
        "a stale peer does not count as holder"
    );

    advance_ms(&b, &clock, OFFLINE_MS - STALE_MS - 1);
    assert_eq!(
        status(&b, id),
        PeerStatus::Stale,
        "1 ms before offline_after"
    );

    advance_ms(&b, &clock, 1);
    assert_eq!(status(&b, id), PeerStatus::Offline, "at offline_after");
    assert!(b.peer(id).is_ok(), "offline, not forgotten");
}

#[tokio::test]
async fn going_offline_requeues_held_work_and_stale_does_not() {
    let (b, clock) = short_lived();
    let holder = connect(&b, "w").await;
    let c = send(&b, "w", "build").await;
    assert_eq!(take(&b, holder).await.expect("taken").id, c.id);

    advance_ms(&b, &clock, OFFLINE_MS - 1);
    assert_eq!(status(&b, holder), PeerStatus::Stale);
    let held = b.command(c.id).expect("command");
    assert_eq!(
        (held.status, held.delivered_to),
        (CommandStatus::Delivered, Some(holder))
    );
    assert_eq!(b.peer(holder).expect("peer").working_on, [c.id]);

    advance_ms(&b, &clock, 1);
    assert_eq!(status(&b, holder), PeerStatus::Offline);
    let back = b.command(c.id).expect("command");
    assert_eq!(
        back.status,
        CommandStatus::Pending,
        "requeued when its holder went offline"
    );
    assert_eq!((back.delivered_to, back.redelivered), (None, true));
    assert!(b.peer(holder).expect("peer").working_on.is_empty());

    let next = connect(&b, "w").await;
    let again = take(&b, next).await.expect("redelivered");
    assert_eq!(
        (again.id, again.attempt, again.redelivered),
        (c.id, 2, true)
    );
}

#[tokio::test]
async fn a_disconnect_requeues_held_work_in_its_fifo_place() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let leaver = connect(&b, "w").await;
    let first = send(&b, "w", "first").await;
    let second = send(&b, "w", "second").await;
    assert_eq!(take(&b, leaver).await.expect("taken").id, first.id);

    let gone = b
        .disconnect(leaver, &Caller::default())
        .await
        .expect("disconnect");
    assert_eq!(gone.status, PeerStatus::Offline);
    assert!(gone.working_on.is_empty());
    let back = b.command(first.id).expect("command");
    assert_eq!(
        (back.status, back.redelivered),
        (CommandStatus::Pending, true)
    );
    assert_eq!(back.attempt, 1, "attempt counts deliveries made so far");

    let next = connect(&b, "w").await;
    let got = take(&b, next).await.expect("the requeued one first");
    assert_eq!((got.id, got.attempt, got.redelivered), (first.id, 2, true));
    let got = take(&b, next).await.expect("then the next");
    assert_eq!(
        (got.id, got.attempt, got.redelivered),
        (second.id, 1, false)
    );
}

#[tokio::test]
async fn contact_of_any_kind_brings_a_silent_peer_back_online() {
    let (b, clock) = short_lived();
    let id = connect(&b, "w").await;

    // A heartbeat, from stale.
    advance_ms(&b, &clock, STALE_MS);
    assert_eq!(status(&b, id), PeerStatus::Stale);
    let p = b
        .heartbeat(id, &Caller::default())
        .await
        .expect("heartbeat");
    assert_eq!(p.status, PeerStatus::Online);

    // Any request naming the peer (X-Cipc-Peer), from offline.
    advance_ms(&b, &clock, OFFLINE_MS);
    assert_eq!(status(&b, id), PeerStatus::Offline);
    b.admit(&as_peer(id)).expect("admit");
    assert_eq!(status(&b, id), PeerStatus::Online);

    // Asking for work, from stale.
    advance_ms(&b, &clock, STALE_MS);
    assert_eq!(status(&b, id), PeerStatus::Stale);
    assert!(take(&b, id).await.is_none());
    assert_eq!(status(&b, id), PeerStatus::Online);

    // A heartbeat revives even an explicit disconnect.
    b.disconnect(id, &Caller::default())
        .await
        .expect("disconnect");
    assert_eq!(status(&b, id), PeerStatus::Offline);
    let p = b
        .heartbeat(id, &Caller::default())
        .await
        .expect("heartbeat");
    assert_eq!(p.status, PeerStatus::Online);

    // The new contact starts the clock again.
    advance_ms(&b, &clock, STALE_MS - 1);
    assert_eq!(status(&b, id), PeerStatus::Online);
    advance_ms(&b, &clock, 1);
    assert_eq!(status(&b, id), PeerStatus::Stale);
}

#[tokio::test]
async fn a_peer_back_from_silence_before_the_sweep_still_loses_its_work() {
    let (b, clock) = short_lived();
    let id = connect(&b, "w").await;
    let c = send(&b, "w", "build").await;
    assert_eq!(take(&b, id).await.expect("taken").id, c.id);
    // Offline by silence, but no sweep has run yet.
    clock.advance(Duration::from_millis(OFFLINE_MS));
    let p = b
        .heartbeat(id, &Caller::default())
        .await
        .expect("heartbeat");
    assert_eq!(p.status, PeerStatus::Online);
    assert!(
        p.working_on.is_empty(),
        "its delivery ended with its silence"
    );
    let back = b.command(c.id).expect("command");
    assert_eq!(
        (back.status, back.redelivered),
        (CommandStatus::Pending, true)
    );
    let again = take(&b, id).await.expect("it may take it again");
    assert_eq!((again.id, again.attempt), (c.id, 2));
}

#[tokio::test]
async fn a_parked_wait_keeps_its_peer_online_and_silence_counts_from_its_end() {
    let (b, clock) = short_lived();
    let id = connect(&b, "w").await;
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_command(id, Duration::from_secs(10), &Caller::default())
                .await
                .expect("wait")
        })
    };
    while b.open_waiters() < 1 {
        tokio::task::yield_now().await;
    }
    advance_ms(&b, &clock, 10 * OFFLINE_MS);
    assert_eq!(status(&b, id), PeerStatus::Online, "waiting is contact");
    let c = send(&b, "w", "build").await;
    let got = waiting.await.expect("task").expect("the waiter got it");
    assert_eq!(got.id, c.id);

    advance_ms(&b, &clock, STALE_MS - 1);
    assert_eq!(status(&b, id), PeerStatus::Online);
    advance_ms(&b, &clock, 1);
    assert_eq!(status(&b, id), PeerStatus::Stale);
}

#[tokio::test]
async fn a_peer_waiting_for_a_result_a_signal_or_an_answer_stays_online_through_any_door() {
    let (b, clock) = short_lived();
    let sender = connect(&b, "lead").await;
    let c = send(&b, "nobody", "build").await;
    // The broker's waits keep their caller in contact, so REST and MCP
    // behave alike: a peer parked on a result is not silent.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_result(c.id, Duration::from_secs(3600), &as_peer(sender))
                .await
        })
    };
    while b.open_waiters() == 0 {
        tokio::task::yield_now().await;
    }
    advance_ms(&b, &clock, OFFLINE_MS * 2);
    assert_eq!(
        status(&b, sender),
        PeerStatus::Online,
        "in contact while it waits"
    );
    waiter.abort();
    let _ = waiter.await;
    // The wait is over: silence counts again from now.
    advance_ms(&b, &clock, OFFLINE_MS);
    assert_eq!(status(&b, sender), PeerStatus::Offline);
}
