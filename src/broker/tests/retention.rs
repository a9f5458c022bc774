//! Retention and liveness over time: forgetting, caps, trimming, ttl.

use super::*;
use serde_json::Value;

fn broker(config: BrokerConfig) -> Broker {
    Broker::in_memory(config)
}

#[tokio::test]
async fn offline_peers_are_forgotten_after_forget_after() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let id = connect(&b, "w").await;
    clock.advance(Duration::from_secs(15 * 60));
    b.sweep();
    assert_eq!(
        b.peer(id).expect("still known").status,
        crate::api::PeerStatus::Offline
    );
    clock.advance(Duration::from_secs(23 * 3600));
    b.sweep();
    assert!(b.peer(id).is_ok(), "not yet: 24 h since it was last seen");
    clock.advance(Duration::from_secs(3600));
    b.sweep();
    assert!(b.peer(id).is_err(), "forgotten");
}

#[tokio::test]
async fn the_sweep_follows_contact_and_silence() {
    use crate::api::CommandStatus::{Delivered, Pending};
    use crate::api::PeerStatus::{Offline, Online, Stale};
    // The defaults: stale after 90 s, offline after 15 min.
    let (b, clock) = broker_at(BrokerConfig::default());
    let id = connect(&b, "w").await;
    let status = |b: &Broker| b.peer(id).expect("peer").status;
    // It holds a command: only the sweep's offline verdict requeues it.
    let send = crate::api::SendRequest {
        target: "w".into(),
        action: "build".into(),
        ..Default::default()
    };
    b.send(send, &Caller::default()).await.expect("send");
    let cmd = b
        .wait_command(id, Duration::ZERO, &Caller::default())
        .await
        .expect("wait")
        .expect("a command")
        .id;
    let held = |b: &Broker| b.command(cmd).expect("command").status;
    // Heard from every minute: online through every sweep for an hour.
    for _ in 0..60 {
        clock.advance(Duration::from_secs(60));
        b.touch(id);
        b.sweep();
        assert_eq!(status(&b), Online);
        assert_eq!(held(&b), Delivered);
    }
    // A long wait is contact: online for an hour without a word.
    let guard = b.contact(id).expect("contact");
    clock.advance(Duration::from_secs(3600));
    b.sweep();
    assert_eq!(status(&b), Online);
    assert_eq!(held(&b), Delivered);
    drop(guard);
    // Then silence: stale past 90 s, offline (work requeued) past 15 min.
    clock.advance(Duration::from_secs(89));
    b.sweep();
    assert_eq!(status(&b), Online);
    clock.advance(Duration::from_secs(2));
    b.sweep();
    assert_eq!(status(&b), Stale);
    assert_eq!(held(&b), Delivered);
    clock.advance(Duration::from_secs(15 * 60 - 91));
    b.sweep();
    assert_eq!(status(&b), Offline);
    assert_eq!(held(&b), Pending, "going offline requeued it");
}

#[tokio::test]
async fn a_ttl_expires_the_command_nobody_took() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let send = crate::api::SendRequest {
        target: "nobody-yet".into(),
        action: "build".into(),
        ttl: Some(60_000),
        ..Default::default()
    };
    let sent = b.send(send, &Caller::default()).await.expect("send");
    let SendOutcome::Created { command, queued } = sent else {
        panic!("one command");
    };
    assert!(queued);
    clock.advance(Duration::from_secs(59));
    b.sweep();
    let c = b.command(command.id).expect("command");
    assert_eq!(c.status, crate::api::CommandStatus::Pending);
    clock.advance(Duration::from_secs(1));
    b.sweep();
    let c = b.command(command.id).expect("command");
    assert_eq!(c.status, crate::api::CommandStatus::Expired);
}

#[tokio::test]
async fn at_the_peer_cap_the_longest_offline_goes_and_live_ones_stay() {
    let b = broker(BrokerConfig {
        max_peers: 2,
        ..BrokerConfig::default()
    });
    let a = connect(&b, "a").await;
    let _b2 = connect(&b, "b").await;
    let full = b
        .connect(
            ConnectRequest {
                role: "c".into(),
                ..ConnectRequest::default()
            },
            Via::Http,
            &Caller::default(),
        )
        .await;
    assert!(
        matches!(&full, Err(e) if e.code == ErrorCode::TooManyPeers),
        "{full:?}"
    );
    b.disconnect(a, &Caller::default())
        .await
        .expect("disconnect");
    let c = connect(&b, "c").await;
    assert!(b.peer(a).is_err(), "the offline peer made room");
    assert!(b.peer(c).is_ok());
}

#[tokio::test]
async fn at_the_channel_cap_the_longest_idle_unfollowed_channel_goes() {
    let b = broker(BrokerConfig {
        max_channels: 2,
        ..BrokerConfig::default()
    });
    b.channel_send("a", Value::Null, None).await.expect("a");
    b.channel_send("b", Value::Null, None).await.expect("b");
    b.channel_send("c", Value::Null, None).await.expect("c");
    let names: Vec<String> = b.channels().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["b", "c"]);
    // Both left are followed: a new channel is refused, nothing is lost.
    let (b1, b2) = (b.clone(), b.clone());
    let f1 = tokio::spawn(async move {
        b1.channel_wait("b", 1, 10, Duration::from_secs(30), &Caller::default())
            .await
    });
    let f2 = tokio::spawn(async move {
        b2.channel_wait("c", 1, 10, Duration::from_secs(30), &Caller::default())
            .await
    });
    while b.open_waiters() < 2 {
        tokio::task::yield_now().await;
    }
    let refused = b.channel_send("d", Value::Null, None).await;
    assert!(
        matches!(&refused, Err(e) if e.code == ErrorCode::TooManyChannels),
        "{refused:?}"
    );
    f1.abort();
    f2.abort();
}

#[tokio::test]
async fn at_the_signal_cap_the_longest_idle_unwaited_signal_goes() {
    let b = broker(BrokerConfig {
        max_signals: 2,
        ..BrokerConfig::default()
    });
    b.emit("a", None, None).await.expect("a");
    b.emit("b", None, None).await.expect("b");
    b.emit("c", None, None).await.expect("c");
    let names: Vec<String> = b.signals().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["b", "c"]);
}

#[tokio::test]
async fn retention_trims_channels_and_reads_stay_contiguous() {
    let b = broker(BrokerConfig {
        channel_retention: 5,
        ..BrokerConfig::default()
    });
    for i in 1..=12 {
        b.channel_send("log", serde_json::json!(i), None)
            .await
            .expect("send");
    }
    let r = b.channel_read("log", 0, 100).await.expect("read");
    let seqs: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [8, 9, 10, 11, 12]);
    assert_eq!((r.first_seq, r.last_seq), (8, 12));
    let info = &b.channels()[0];
    assert_eq!((info.count, info.first_seq, info.last_seq), (5, 8, 12));
    let r = b.channel_read("log", 9, 2).await.expect("read");
    let seqs: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [10, 11]);
}
