//! Deadlines: an unfinished command past its deadline becomes overdue,
//! exactly at the boundary, once, and whoever waits for its result hears of
//! it then; a finished one never does.

use super::*;

fn with_deadline(target: &str, ms: u64) -> SendRequest {
    SendRequest {
        target: target.into(),
        action: "deploy".into(),
        deadline: Some(ms),
        ..SendRequest::default()
    }
}

#[tokio::test]
async fn a_command_becomes_overdue_exactly_at_its_deadline() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let c = send_req(&b, with_deadline("w", 60_000)).await;
    assert_eq!(
        c.deadline.map(|d| d.millis() - c.created_at.millis()),
        Some(60_000)
    );
    advance_ms(&b, &clock, 59_999);
    assert!(!b.command(c.id).expect("command").overdue, "not yet");
    advance_ms(&b, &clock, 1);
    let now = b.command(c.id).expect("command");
    assert!(now.overdue);
    assert_eq!(
        now.status,
        CommandStatus::Pending,
        "overdue is not an ending"
    );
    let overdue = crate::api::CommandFilter {
        overdue: Some(true),
        ..Default::default()
    };
    let listed = b.list_commands_where(&overdue, 100);
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [c.id]);
}

#[tokio::test]
async fn a_held_command_goes_overdue_too_and_a_finished_one_never() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let w = connect(&b, "w").await;
    let held = send_req(&b, with_deadline("w", 1_000)).await;
    assert_eq!(take(&b, w).await.map(|c| c.id), Some(held.id));
    let done = send_req(&b, with_deadline("w", 1_000)).await;
    take(&b, w).await.expect("second");
    ack_as(&b, done.id, w).await.expect("acked in time");
    advance_ms(&b, &clock, 5_000);
    assert!(b.command(held.id).expect("held").overdue);
    assert!(!b.command(done.id).expect("done").overdue);
    // Finishing late keeps the mark: it tells what happened.
    let late = ack_as(&b, held.id, w).await.expect("late ack");
    assert!(late.overdue && late.status == CommandStatus::Acked);
}

#[tokio::test]
async fn the_sender_waiting_for_the_result_hears_of_the_missed_deadline() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let c = send_req(&b, with_deadline("w", 1_000)).await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_result(c.id, Duration::from_secs(30), &Caller::default())
                .await
        })
    };
    while b.open_waiters() == 0 {
        tokio::task::yield_now().await;
    }
    advance_ms(&b, &clock, 1_000);
    let (seen, timed_out) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("released, not left waiting")
        .expect("task")
        .expect("wait");
    assert!(!timed_out);
    assert!(seen.overdue && seen.status == CommandStatus::Pending);
    // Waiting again waits for the end, not for the overdue mark again.
    let again = b
        .wait_result(c.id, Duration::from_millis(20), &Caller::default())
        .await
        .expect("wait");
    assert!(again.1, "times out: the command is still not finished");
}

#[tokio::test]
async fn a_deadline_past_a_year_is_refused_with_its_reason() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let e = b
        .send(
            with_deadline("w", crate::api::MAX_TTL_MS + 1),
            &Caller::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!(e.code, ErrorCode::DeadlineTooLong);
}
