//! Who gets which command: FIFO per role, competing consumers, peer ids,
//! `"*"` fan-out, dedupe keys and ttl expiry.

use super::*;

#[tokio::test]
async fn a_role_gets_its_commands_oldest_first() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let w = connect(&b, "w").await;
    let first = send(&b, "w", "one").await;
    let second = send(&b, "w", "two").await;
    let third = send(&b, "w", "three").await;
    for expected in [&first, &second, &third] {
        let got = take(&b, w).await.expect("a command");
        assert_eq!(
            (got.id, got.action.as_str()),
            (expected.id, expected.action.as_str())
        );
        assert_eq!(got.status, CommandStatus::Delivered);
        assert_eq!(got.delivered_to, Some(w));
        assert_eq!((got.attempt, got.redelivered), (1, false));
    }
    assert!(take(&b, w).await.is_none(), "nothing left");
}

#[tokio::test]
async fn competing_consumers_each_get_a_different_command() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let p1 = connect(&b, "w").await;
    let p2 = connect(&b, "w").await;
    let waiter = |peer: Uuid| {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_command(peer, Duration::from_secs(10), &Caller::default())
                .await
                .expect("wait")
                .expect("a command")
        })
    };
    let (w1, w2) = (waiter(p1), waiter(p2));
    while b.open_waiters() < 2 {
        tokio::task::yield_now().await;
    }
    let a = send(&b, "w", "a").await;
    let c = send(&b, "w", "c").await;
    let (got1, got2) = (w1.await.expect("task"), w2.await.expect("task"));
    assert_ne!(got1.id, got2.id, "one command went to two peers");
    let mut got = [got1.id, got2.id];
    got.sort();
    let mut sent = [a.id, c.id];
    sent.sort();
    assert_eq!(got, sent, "each command went to exactly one peer");
    assert_eq!(got1.delivered_to, Some(p1));
    assert_eq!(got2.delivered_to, Some(p2));
    assert!(take(&b, p1).await.is_none());
    assert!(take(&b, p2).await.is_none());
}

#[tokio::test]
async fn a_command_to_a_peer_id_goes_only_to_that_peer() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let mine = connect(&b, "w").await;
    let other = connect(&b, "w").await;
    let sent = b
        .send(
            SendRequest {
                target: mine.to_string(),
                action: "build".into(),
                ..SendRequest::default()
            },
            &Caller::default(),
        )
        .await
        .expect("send");
    let SendOutcome::Created { command, queued } = sent else {
        panic!("one command");
    };
    assert!(!queued, "its peer is online");
    assert!(take(&b, other).await.is_none(), "same role, other peer");
    let got = take(&b, mine).await.expect("its command");
    assert_eq!((got.id, got.delivered_to), (command.id, Some(mine)));
}

#[tokio::test]
async fn a_peer_id_and_its_role_share_one_fifo() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let w = connect(&b, "w").await;
    let by_role = send(&b, "w", "first").await;
    let by_id = send(&b, &w.to_string(), "second").await;
    let by_role_again = send(&b, "w", "third").await;
    for expected in [by_role.id, by_id.id, by_role_again.id] {
        assert_eq!(take(&b, w).await.expect("a command").id, expected);
    }
}

#[tokio::test]
async fn star_fans_out_to_every_online_peer_only() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let stale = connect(&b, "s").await;
    advance_ms(&b, &clock, 90_000);
    assert_eq!(status(&b, stale), PeerStatus::Stale);
    let gone = connect(&b, "g").await;
    b.disconnect(gone, &Caller::default()).await.expect("bye");
    let x = connect(&b, "x").await;
    let y = connect(&b, "y").await;
    let req = SendRequest {
        target: "*".into(),
        action: "reload".into(),
        ..SendRequest::default()
    };
    let SendOutcome::FanOut(copies) = b.send(req, &Caller::default()).await.expect("send") else {
        panic!("a fan-out");
    };
    let mut targets: Vec<String> = copies.iter().map(|c| c.target.clone()).collect();
    targets.sort();
    let mut online = vec![x.to_string(), y.to_string()];
    online.sort();
    assert_eq!(
        targets, online,
        "one copy per online peer, none for stale or offline ones"
    );
    assert_ne!(copies[0].id, copies[1].id);
    for peer in [x, y] {
        let got = take(&b, peer).await.expect("its copy");
        assert_eq!(
            (got.action.as_str(), got.target.clone()),
            ("reload", peer.to_string())
        );
        assert!(take(&b, peer).await.is_none(), "one copy each");
    }
    assert!(take(&b, stale).await.is_none());
}

#[tokio::test]
async fn a_repeated_dedupe_key_answers_the_original() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let req = |action: &str| SendRequest {
        target: "w".into(),
        action: action.into(),
        dedupe_key: Some("deploy-42".into()),
        ..SendRequest::default()
    };
    let original = send_req(&b, req("deploy")).await;
    let again = b.send(req("deploy-again"), &Caller::default()).await;
    match again.expect("send") {
        SendOutcome::Deduplicated(c) => {
            assert_eq!((c.id, c.action.as_str()), (original.id, "deploy"));
        }
        other => panic!("expected the original, got {other:?}"),
    }
    assert_eq!(
        b.list_commands(None, None, 100).len(),
        1,
        "nothing new queued"
    );
}

#[tokio::test]
async fn a_ttl_ends_a_pending_command_exactly_at_its_boundary() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let req = SendRequest {
        target: "w".into(),
        action: "build".into(),
        ttl: Some(10_000),
        ..SendRequest::default()
    };
    let c = send_req(&b, req).await;
    advance_ms(&b, &clock, 9_999);
    assert_eq!(cmd_status(&b, c.id), CommandStatus::Pending, "1 ms left");
    advance_ms(&b, &clock, 1);
    let expired = b.command(c.id).expect("command");
    assert_eq!(expired.status, CommandStatus::Expired, "at the ttl");
    assert!(expired
        .error
        .as_deref()
        .is_some_and(|e| e.contains("expired")));
    let w = connect(&b, "w").await;
    assert!(
        take(&b, w).await.is_none(),
        "an expired command is never delivered"
    );
}

#[tokio::test]
async fn a_taker_never_gets_a_command_whose_ttl_ran_out_before_the_sweep() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let w = connect(&b, "w").await;
    let ttl = |action: &str, ms| SendRequest {
        target: "w".into(),
        action: action.into(),
        ttl: Some(ms),
        ..SendRequest::default()
    };
    let short = send_req(&b, ttl("short", 1_000)).await;
    let long = send_req(&b, ttl("long", 1_001)).await;
    // No sweep: the take itself must skip what ran out.
    clock.advance(Duration::from_millis(1_000));
    let got = take(&b, w).await.expect("the live one");
    assert_eq!(got.id, long.id);
    assert_eq!(cmd_status(&b, short.id), CommandStatus::Expired);
}

#[tokio::test]
async fn a_delivered_command_does_not_expire() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let w = connect(&b, "w").await;
    let req = SendRequest {
        target: "w".into(),
        action: "build".into(),
        ttl: Some(1_000),
        ..SendRequest::default()
    };
    let c = send_req(&b, req).await;
    assert_eq!(take(&b, w).await.expect("taken").id, c.id);
    advance_ms(&b, &clock, 5_000);
    assert_eq!(cmd_status(&b, c.id), CommandStatus::Delivered);
    assert_eq!(
        ack_as(&b, c.id, w).await.expect("ack").status,
        CommandStatus::Acked
    );
}

#[tokio::test]
async fn a_star_send_with_a_wait_waits_for_every_copy_until_one_deadline() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let x = connect(&b, "x").await;
    let y = connect(&b, "y").await;
    let star = || SendRequest {
        target: "*".into(),
        action: "reload".into(),
        ..SendRequest::default()
    };

    // Both copies acked: the wait ends with both results, not timed out.
    let b2 = b.clone();
    let waiting = tokio::spawn(async move {
        b2.send_and_wait(star(), &Caller::default(), Some(Duration::from_secs(30)))
            .await
    });
    for peer in [x, y] {
        let copy = loop {
            match take(&b, peer).await {
                Some(c) => break c,
                None => tokio::task::yield_now().await,
            }
        };
        ack_as(&b, copy.id, peer).await.expect("ack");
    }
    let sent = waiting.await.expect("join").expect("send");
    let SendOutcome::FanOut(copies) = sent.outcome else {
        panic!("a fan-out");
    };
    assert!(!sent.timed_out);
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|c| c.status == CommandStatus::Acked));

    // One copy never acked: the whole wait ends at the one deadline, with
    // the acked copy's result and the other still delivered.
    let b2 = b.clone();
    let waiting = tokio::spawn(async move {
        b2.send_and_wait(star(), &Caller::default(), Some(Duration::from_millis(300)))
            .await
    });
    let copy = loop {
        match take(&b, x).await {
            Some(c) => break c,
            None => tokio::task::yield_now().await,
        }
    };
    ack_as(&b, copy.id, x).await.expect("ack");
    let held = loop {
        match take(&b, y).await {
            Some(c) => break c,
            None => tokio::task::yield_now().await,
        }
    };
    let started = tokio::time::Instant::now();
    let sent = waiting.await.expect("join").expect("send");
    assert!(started.elapsed() < Duration::from_secs(5), "one deadline");
    assert!(sent.timed_out);
    let SendOutcome::FanOut(copies) = sent.outcome else {
        panic!("a fan-out");
    };
    let status = |id: Uuid| copies.iter().find(|c| c.id == id).expect("copy").status;
    assert_eq!(status(copy.id), CommandStatus::Acked);
    assert_eq!(status(held.id), CommandStatus::Delivered);

    // Without a wait the copies come back at once, pending.
    let sent = b
        .send_and_wait(star(), &Caller::default(), None)
        .await
        .expect("send");
    let SendOutcome::FanOut(copies) = sent.outcome else {
        panic!("a fan-out");
    };
    assert!(!sent.timed_out);
    assert!(copies.iter().all(|c| c.status == CommandStatus::Pending));
}
