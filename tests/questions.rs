//! Questions over real HTTP (shared/API.md "Questions"): ask, wait, answer
//! with choices enforced, cancel, expiry, and a restart in the middle of a
//! wait that keeps the question.

mod common;

use cipc::broker::BrokerConfig;
use cipc::server::ServerConfig;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn id_of(v: &Value) -> String {
    v["question"]["id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn ask_wait_answer_with_choices() {
    let b = start().await;
    let u = b.url();
    let asker = connect(&u, "backend").await;
    let r = http()
        .post(format!("{u}/questions"))
        .header("X-Cipc-Peer", &asker)
        .json(&json!({"text": "Deploy to prod?", "choices": ["yes", "no"], "context": {"diff": "+3 -1"}}))
        .send()
        .await
        .expect("ask");
    assert_eq!(r.status().as_u16(), 201);
    let q: Value = r.json().await.expect("json");
    assert_eq!(q["question"]["from"], "backend");
    assert_eq!(q["question"]["status"], "open");
    assert_eq!(q["question"]["context"], json!({"diff": "+3 -1"}));
    let id = id_of(&q);

    let waiter = {
        let u = u.clone();
        let id = id.clone();
        tokio::spawn(async move { get(&format!("{u}/questions/{id}/wait?timeout=20000")).await })
    };
    // The answers below come while the wait is parked, not before it.
    until_waiters(&u, 1).await;
    let (_, open) = get(&format!("{u}/questions?status=open")).await;
    assert_eq!(open["questions"][0]["id"], id.as_str());

    let (st, e) = post(
        &format!("{u}/questions/{id}/answer"),
        json!({"answer": "maybe"}),
    )
    .await;
    assert_eq!(
        (st, e["error"]["reason"].clone()),
        (400, json!("invalid_choice"))
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("\"yes\""));

    let (st, a) = post(
        &format!("{u}/questions/{id}/answer"),
        json!({"answer": "yes", "by": "ana"}),
    )
    .await;
    assert_eq!(st, 200, "{a}");
    let (st, w) = waiter.await.expect("task");
    assert_eq!(st, 200);
    assert_eq!(w["question"]["answer"], "yes");
    assert_eq!(w["question"]["answeredBy"], "ana");
    assert!(w.get("timedOut").is_none());

    let (st, e) = post(
        &format!("{u}/questions/{id}/answer"),
        json!({"answer": "no"}),
    )
    .await;
    assert_eq!((st, e["error"]["code"].clone()), (409, json!("conflict")));
    let (st, e) = get(&format!(
        "{u}/questions/0193a1b2-0000-7000-8000-000000000000"
    ))
    .await;
    assert_eq!(
        (st, e["error"]["reason"].clone()),
        (404, json!("unknown_question"))
    );
}

#[tokio::test]
async fn a_wait_times_out_open_cancel_ends_it_and_ttl_expires_it() {
    let cfg = BrokerConfig {
        sweep_interval: Duration::from_millis(20),
        ..BrokerConfig::default()
    };
    let b = start_with(cfg, ServerConfig::default(), None).await;
    let u = b.url();
    let (_, q) = post(&format!("{u}/questions"), json!({"text": "Which branch?"})).await;
    let id = id_of(&q);
    let (st, w) = get(&format!("{u}/questions/{id}/wait?timeout=50")).await;
    assert_eq!((st, w["timedOut"].clone()), (200, json!(true)));
    assert_eq!(w["question"]["status"], "open");
    let (st, c) = delete(&format!("{u}/questions/{id}")).await;
    assert_eq!(
        (st, c["question"]["status"].clone()),
        (200, json!("cancelled"))
    );

    let (_, q) = post(
        &format!("{u}/questions"),
        json!({"text": "Quick?", "ttl": 100}),
    )
    .await;
    let id = id_of(&q);
    let (st, w) = get(&format!("{u}/questions/{id}/wait?timeout=10000")).await;
    assert_eq!(st, 200);
    assert_eq!(w["question"]["status"], "expired", "{w}");
}

#[test]
fn a_question_survives_a_restart_in_the_middle_of_a_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BinaryBroker::durable(dir.path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let u = b.url.clone();
    let id = rt.block_on(async {
        let (_, q) = post(
            &format!("{u}/questions"),
            json!({"text": "Ship it?", "choices": ["yes", "no"]}),
        )
        .await;
        id_of(&q)
    });
    let wait = {
        let u = u.clone();
        let id = id.clone();
        rt.spawn(async move {
            http()
                .get(format!("{u}/questions/{id}/wait?timeout=30000"))
                .send()
                .await
        })
    };
    rt.block_on(until_waiters(&u, 1));
    assert!(b.terminate().success());
    // The wait ends with the broker (a clean stop answers it, timed out;
    // a broken connection is the other outcome), and nothing was answered.
    if let Ok(r) = rt.block_on(wait).expect("task") {
        let v: Value = rt.block_on(r.json()).expect("json");
        assert_eq!(v["question"]["status"], "open", "{v}");
    }

    let b = BinaryBroker::durable(dir.path());
    let u = b.url.clone();
    rt.block_on(async {
        let (st, q) = get(&format!("{u}/questions/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(q["question"]["status"], "open");
        assert_eq!(q["question"]["choices"], json!(["yes", "no"]));
        let waiter = {
            let u = u.clone();
            let id = id.clone();
            tokio::spawn(
                async move { get(&format!("{u}/questions/{id}/wait?timeout=20000")).await },
            )
        };
        until_waiters(&u, 1).await;
        let (st, _) = post(
            &format!("{u}/questions/{id}/answer"),
            json!({"answer": "no"}),
        )
        .await;
        assert_eq!(st, 200);
        let (_, w) = waiter.await.expect("task");
        assert_eq!(w["question"]["answer"], "no");
    });
    drop(b);
}
