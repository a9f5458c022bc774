//! Several nodes of one broker, on an in-process shared log and one manual
//! clock: what one node decides holds on every other, and liveness is
//! judged once across them.

use super::*;
use crate::store::shared_memory::SharedMemory;
use crate::store::TurnKind;

/// Two nodes (`a`, `b`) of one broker on one clock.
fn two_nodes(config: &BrokerConfig) -> (Broker, Broker, Arc<clock::ManualClock>) {
    let clock = Arc::new(clock::ManualClock::new(Timestamp(1_800_000_000_000)));
    let log = SharedMemory::new();
    let open = |name: &str| {
        Broker::open_with_clock(Arc::new(log.node(name)), config.clone(), clock.clone())
            .expect("open")
    };
    (open("a"), open("b"), clock)
}

/// One sweep of `node`, in its turn, as its sweeper runs it.
async fn sweep(node: &Broker) {
    let _turn = node.turn(TurnKind::Write).await.expect("turn");
    node.sweep();
}

#[tokio::test]
async fn a_command_sent_on_one_node_is_taken_once_on_either() {
    let (a, b, _) = two_nodes(&BrokerConfig::default());
    let on_a = connect(&a, "backend").await;
    let on_b = connect(&b, "backend").await;
    let c = send(&a, "backend", "build").await;
    // The oldest-connected peer of the role is not favoured: whoever asks first takes it.
    let taken = take(&b, on_b).await.expect("b takes the command sent on a");
    assert_eq!(taken.id, c.id);
    assert!(take(&a, on_a).await.is_none(), "a cannot take it again");
    ack_as(&a, c.id, on_b)
        .await
        .expect("the holder acks on the other node");
    b.sync().await;
    assert_eq!(cmd_status(&b, c.id), CommandStatus::Acked);
}

#[tokio::test]
async fn a_dedupe_key_holds_across_nodes() {
    let (a, b, _) = two_nodes(&BrokerConfig::default());
    let req = || SendRequest {
        target: "backend".into(),
        action: "deploy".into(),
        dedupe_key: Some("deploy-42".into()),
        ..SendRequest::default()
    };
    let first = send_req(&a, req()).await;
    match b.send(req(), &Caller::default()).await.expect("send") {
        SendOutcome::Deduplicated(c) => assert_eq!(c.id, first.id),
        other => panic!("the second node made a new command: {other:?}"),
    }
}

#[tokio::test]
async fn channel_seqs_continue_gapless_across_nodes() {
    let (a, b, _) = two_nodes(&BrokerConfig::default());
    let mut seqs = Vec::new();
    for (i, node) in [&a, &b, &a, &b, &b].into_iter().enumerate() {
        let m = node
            .channel_send("builds", serde_json::json!(i), None)
            .await
            .expect("send");
        seqs.push(m.seq);
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    a.sync().await;
    let read = a.channel_read("builds", 0, 100).await.expect("read");
    let data: Vec<_> = read.messages.iter().map(|m| m.data.clone()).collect();
    assert_eq!(
        data,
        (0..5).map(|i| serde_json::json!(i)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn contact_held_on_one_node_keeps_the_peer_online_on_the_other() {
    let config = BrokerConfig::default();
    let (a, b, clock) = two_nodes(&config);
    let w = connect(&a, "backend").await;
    let _polling_a = a.contact(w).expect("contact");
    // Far past stale_after, in steps shorter than the save interval.
    for _ in 0..12 {
        clock.advance(Duration::from_secs(20));
        sweep(&a).await;
        b.sync().await;
        assert_eq!(
            status(&b, w),
            PeerStatus::Online,
            "b sees the contact held on a"
        );
    }
}

#[tokio::test]
async fn when_a_node_dies_its_peers_go_offline_elsewhere_and_their_work_is_redelivered() {
    let config = BrokerConfig::default();
    let (a, b, clock) = two_nodes(&config);
    let w1 = connect(&a, "backend").await;
    let w2 = connect(&b, "backend").await;
    let c = send(&b, "backend", "build").await;
    let _polling_a = a.contact(w1).expect("contact");
    assert_eq!(take(&a, w1).await.map(|c| c.id), Some(c.id));
    // W2 keeps in touch with b; a is gone from here on (it never sweeps again).
    let _polling_b = b.contact(w2).expect("contact");
    clock.advance(config.stale_after);
    sweep(&b).await;
    assert_eq!(status(&b, w1), PeerStatus::Stale);
    assert_eq!(
        cmd_status(&b, c.id),
        CommandStatus::Delivered,
        "not yet: stale is not gone"
    );
    clock.advance(config.offline_after - config.stale_after);
    sweep(&b).await;
    assert_eq!(status(&b, w1), PeerStatus::Offline);
    let again = take(&b, w2).await.expect("redelivered to the peer on b");
    assert_eq!(again.id, c.id);
    assert!(again.redelivered);
    assert_eq!(again.attempt, 2);
    assert_eq!(status(&b, w2), PeerStatus::Online);
}

#[tokio::test]
async fn a_reset_on_one_node_clears_every_node() {
    let (a, b, _) = two_nodes(&BrokerConfig::default());
    connect(&a, "backend").await;
    send(&a, "backend", "build").await;
    b.reset().await.expect("reset");
    a.sync().await;
    assert!(a.peers().is_empty());
    assert!(a
        .list_commands_where(&crate::api::CommandFilter::default(), 10)
        .is_empty());
}

#[tokio::test]
async fn a_login_on_one_node_is_valid_on_the_other_until_logout_or_expiry() {
    let (a, b, clock) = two_nodes(&BrokerConfig::default());
    let ttl = Duration::from_secs(3600);
    let one = a.open_session(ttl).await.expect("login");
    let two = a.open_session(ttl).await.expect("login");
    b.sync().await;
    assert!(b.session_valid(&one) && b.session_valid(&two));
    assert!(!b.session_valid("made-up"));
    b.end_session(&one).await.expect("logout");
    a.sync().await;
    assert!(!a.session_valid(&one), "a logout on b ends it on a");
    clock.advance(ttl);
    assert!(
        !a.session_valid(&two) && !b.session_valid(&two),
        "expired everywhere"
    );
}

#[tokio::test]
async fn events_of_one_node_reach_the_event_stream_of_the_other() {
    let (a, b, _) = two_nodes(&BrokerConfig::default());
    let mut sub = b.subscribe_events(None);
    let c = send(&a, "backend", "build").await;
    b.sync().await;
    let ev = sub.live.try_recv().expect("b shows a's event");
    assert_eq!(ev.kind, "command");
    let data: serde_json::Value = serde_json::from_str(&ev.data).expect("event data is JSON");
    assert_eq!(data["id"], serde_json::json!(c.id));
}

#[tokio::test]
async fn a_wait_on_one_node_wakes_when_another_node_changes() {
    let (a, b, _) = two_nodes(&BrokerConfig::default());
    let _follower = b.spawn_follower().expect("a shared store has a follower");
    let w = connect(&a, "backend").await;
    let c = send(&a, "backend", "build").await;
    b.sync().await;
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_result(c.id, Duration::from_secs(30), &Caller::default())
                .await
        })
    };
    tokio::task::yield_now().await;
    take(&a, w).await.expect("take");
    ack_as(&a, c.id, w).await.expect("ack");
    let (done, timed_out) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait on b ends (safety net, not a timing claim)")
        .expect("task")
        .expect("wait");
    assert!(!timed_out);
    assert_eq!(done.status, CommandStatus::Acked);
    b.shutdown();
}

#[tokio::test]
async fn a_node_sweeps_only_when_something_is_due() {
    let config = BrokerConfig::default();
    let (a, _b, clock) = two_nodes(&config);
    assert!(!a.sweep_due(), "an empty broker has nothing to sweep");
    connect(&a, "backend").await;
    assert!(!a.sweep_due(), "a peer just seen is not due");
    clock.advance(config.stale_after);
    assert!(a.sweep_due(), "a silent peer is due to turn stale");
    sweep(&a).await;
    assert!(!a.sweep_due(), "the sweep settled it");
    let c = send_req(
        &a,
        SendRequest {
            target: "nobody".into(),
            action: "x".into(),
            ttl: Some(1000),
            ..SendRequest::default()
        },
    )
    .await;
    assert!(!a.sweep_due());
    clock.advance(Duration::from_secs(1));
    assert!(a.sweep_due(), "a command past its ttl is due to expire");
    sweep(&a).await;
    assert_eq!(cmd_status(&a, c.id), CommandStatus::Expired);
}
