//! Wake-ups: parked waits leave nothing behind.

use super::*;

#[tokio::test]
async fn waits_on_ever_new_names_leave_no_wake_ups_behind() {
    let broker = Broker::in_memory(BrokerConfig::default());
    for i in 0..200 {
        let name = format!("never-{i}");
        let (_, timed_out) = broker
            .wait_signal(&name, None, Duration::ZERO, &Caller::default())
            .await
            .expect("wait");
        assert!(timed_out);
        broker
            .channel_wait(&name, 0, 10, Duration::ZERO, &Caller::default())
            .await
            .expect("wait");
    }
    assert_eq!(broker.wake_entries(), 0);

    // A wait that is dropped (its client left) cleans up too, and one
    // still parked on the same name keeps its entry until it ends.
    let (b1, b2) = (broker.clone(), broker.clone());
    let dropped = tokio::spawn(async move {
        b1.wait_signal("shared", None, Duration::from_secs(60), &Caller::default())
            .await
    });
    let kept = tokio::spawn(async move {
        b2.wait_signal("shared", None, Duration::from_secs(60), &Caller::default())
            .await
    });
    while broker.open_waiters() < 2 {
        tokio::task::yield_now().await;
    }
    dropped.abort();
    let _ = dropped.await;
    assert_eq!(broker.wake_entries(), 1, "the other waiter still needs it");
    broker.emit("shared", None, None).await.expect("emit");
    let (signal, timed_out) = kept.await.expect("task").expect("wait");
    assert!(!timed_out && signal.emitted);
    assert_eq!(broker.wake_entries(), 0);
}
