//! Acks: only the holder of the current delivery ends a command, once; and
//! whoever waits for the result is released by that ack.

use super::*;

/// A broker with one peer of role "w" holding one command.
async fn one_held() -> (Broker, Uuid, Command) {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let holder = connect(&b, "w").await;
    send(&b, "w", "build").await;
    let c = take(&b, holder).await.expect("taken");
    (b, holder, c)
}

fn code<T: std::fmt::Debug>(r: Result<T, BrokerError>) -> ErrorCode {
    r.expect_err("refused").code
}

#[tokio::test]
async fn the_holder_acks_with_a_result_or_an_error() {
    let (b, holder, c) = one_held().await;
    let done = ack_as(&b, c.id, holder).await.expect("ack");
    assert_eq!(done.status, CommandStatus::Acked);
    assert_eq!(done.result, Some(serde_json::json!("done")));
    assert!(done.acked_at.is_some());
    assert!(b.peer(holder).expect("peer").working_on.is_empty());

    send(&b, "w", "lint").await;
    let c = take(&b, holder).await.expect("taken");
    let req = AckRequest {
        error: Some("lint failed".into()),
        ..AckRequest::default()
    };
    let failed = b.ack(c.id, req, &as_peer(holder)).await.expect("ack");
    assert_eq!(failed.status, CommandStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("lint failed"));
}

#[tokio::test]
async fn a_peer_that_does_not_hold_the_command_cannot_ack_it() {
    let (b, holder, c) = one_held().await;
    let other = connect(&b, "w").await;
    assert_eq!(code(ack_as(&b, c.id, other).await), ErrorCode::NotHolder);
    let still = b.command(c.id).expect("command");
    assert_eq!(
        (still.status, still.delivered_to),
        (CommandStatus::Delivered, Some(holder))
    );

    // Once requeued, its former holder no longer holds it either.
    b.disconnect(holder, &Caller::default())
        .await
        .expect("disconnect");
    assert_eq!(code(ack_as(&b, c.id, holder).await), ErrorCode::NotHolder);
    assert_eq!(cmd_status(&b, c.id), CommandStatus::Pending);
}

#[tokio::test]
async fn an_ack_for_an_earlier_delivery_is_refused() {
    let (b, first, c) = one_held().await;
    assert_eq!(c.attempt, 1);
    b.disconnect(first, &Caller::default())
        .await
        .expect("disconnect");
    let second = connect(&b, "w").await;
    let again = take(&b, second).await.expect("redelivered");
    assert_eq!((again.id, again.attempt), (c.id, 2));

    let stale = AckRequest {
        attempt: Some(1),
        ..AckRequest::default()
    };
    assert_eq!(
        code(b.ack(c.id, stale, &Caller::default()).await),
        ErrorCode::DeliveryOver
    );
    assert_eq!(cmd_status(&b, c.id), CommandStatus::Delivered);

    let current = AckRequest {
        attempt: Some(2),
        ..AckRequest::default()
    };
    let done = b.ack(c.id, current, &Caller::default()).await.expect("ack");
    assert_eq!(done.status, CommandStatus::Acked);
}

#[tokio::test]
async fn a_command_ends_once() {
    let (b, holder, c) = one_held().await;
    ack_as(&b, c.id, holder).await.expect("first ack");
    assert_eq!(
        code(ack_as(&b, c.id, holder).await),
        ErrorCode::AlreadyFinished
    );
    assert_eq!(
        code(b.ack(c.id, AckRequest::default(), &Caller::default()).await),
        ErrorCode::AlreadyFinished
    );
    assert_eq!(
        code(b.cancel(c.id, &Caller::default()).await),
        ErrorCode::AlreadyFinished
    );
    let kept = b.command(c.id).expect("command");
    assert_eq!(
        (kept.status, kept.result),
        (CommandStatus::Acked, Some(serde_json::json!("done")))
    );
}

#[tokio::test]
async fn an_unknown_command_is_unknown_everywhere() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let w = connect(&b, "w").await;
    let nobody = Uuid::now_v7();
    assert_eq!(code(ack_as(&b, nobody, w).await), ErrorCode::UnknownCommand);
    assert_eq!(
        code(b.cancel(nobody, &Caller::default()).await),
        ErrorCode::UnknownCommand
    );
    assert_eq!(code(b.command(nobody)), ErrorCode::UnknownCommand);
    assert_eq!(
        code(
            b.wait_result(nobody, Duration::ZERO, &Caller::default())
                .await
        ),
        ErrorCode::UnknownCommand
    );
}

#[tokio::test]
async fn the_ack_releases_whoever_waits_for_the_result() {
    let (b, holder, c) = one_held().await;
    let (b2, id) = (b.clone(), c.id);
    let waiting = tokio::spawn(async move {
        b2.wait_result(id, Duration::from_secs(10), &Caller::default())
            .await
    });
    while b.open_waiters() < 1 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished());
    ack_as(&b, c.id, holder).await.expect("ack");
    let (done, timed_out) = waiting.await.expect("task").expect("result");
    assert!(!timed_out);
    assert_eq!((done.id, done.status), (c.id, CommandStatus::Acked));
    assert_eq!(done.result, Some(serde_json::json!("done")));
}

#[tokio::test]
async fn a_result_wait_times_out_with_the_command_as_it_stands() {
    let (b, _holder, c) = one_held().await;
    let (now, timed_out) = b
        .wait_result(c.id, Duration::from_millis(5), &Caller::default())
        .await
        .expect("wait");
    assert!(timed_out);
    assert_eq!(now.status, CommandStatus::Delivered);
}

#[tokio::test]
async fn a_cancel_releases_whoever_waits_for_the_result() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let c = send(&b, "w", "build").await;
    let (b2, id) = (b.clone(), c.id);
    let waiting = tokio::spawn(async move {
        b2.wait_result(id, Duration::from_secs(10), &Caller::default())
            .await
    });
    while b.open_waiters() < 1 {
        tokio::task::yield_now().await;
    }
    b.cancel(c.id, &Caller::default()).await.expect("cancel");
    let (done, timed_out) = waiting.await.expect("task").expect("result");
    assert!(!timed_out);
    assert_eq!(done.status, CommandStatus::Cancelled);
    let w = connect(&b, "w").await;
    assert!(
        take(&b, w).await.is_none(),
        "a cancelled command is never delivered"
    );
}
