//! Questions: asked, answered once (with choices enforced), cancelled or
//! expired at their ttl, and whoever waits hears the outcome.

use super::*;
use crate::api::{AskRequest, QuestionStatus};

fn ask_req(text: &str, choices: Option<&[&str]>, ttl: Option<u64>) -> AskRequest {
    AskRequest {
        text: text.into(),
        choices: choices.map(|cs| cs.iter().map(|c| (*c).to_string()).collect()),
        ttl,
        ..AskRequest::default()
    }
}

#[tokio::test]
async fn an_answer_releases_the_asker_and_is_given_once() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let asker = connect(&b, "backend").await;
    let q = b
        .ask(
            ask_req("Deploy to prod?", Some(&["yes", "no"]), None),
            &as_peer(asker),
        )
        .await
        .expect("ask");
    assert_eq!(
        (q.status, q.from.as_str()),
        (QuestionStatus::Open, "backend")
    );
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_question(q.id, Duration::from_secs(30), &Caller::default())
                .await
        })
    };
    while b.open_waiters() == 0 {
        tokio::task::yield_now().await;
    }
    let e = b
        .answer(q.id, reply("maybe", None), &Caller::default())
        .await
        .expect_err("not a choice");
    assert_eq!(e.code, ErrorCode::InvalidChoice);
    assert!(e.message.contains("\"yes\", \"no\""), "{}", e.message);
    let a = b
        .answer(q.id, reply("yes", Some("ana".into())), &Caller::default())
        .await
        .expect("answer");
    assert_eq!(a.answered_by.as_deref(), Some("ana"));
    let (seen, timed_out) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("released")
        .expect("task")
        .expect("wait");
    assert!(!timed_out);
    assert_eq!(seen.answer.as_deref(), Some("yes"));
    let again = b
        .answer(q.id, reply("no", None), &Caller::default())
        .await
        .expect_err("answered once");
    assert_eq!(again.code, ErrorCode::AlreadyFinished);
}

#[tokio::test]
async fn an_open_question_expires_exactly_at_its_ttl_and_cancel_ends_it() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let q = b
        .ask(
            ask_req("Which branch?", None, Some(10_000)),
            &Caller::default(),
        )
        .await
        .expect("ask");
    advance_ms(&b, &clock, 9_999);
    assert_eq!(b.question(q.id).expect("q").status, QuestionStatus::Open);
    advance_ms(&b, &clock, 1);
    assert_eq!(b.question(q.id).expect("q").status, QuestionStatus::Expired);
    let e = b
        .answer(q.id, reply("main", None), &Caller::default())
        .await
        .expect_err("too late");
    assert_eq!(e.code, ErrorCode::AlreadyFinished);

    let q = b
        .ask(ask_req("Free text?", None, None), &Caller::default())
        .await
        .expect("ask");
    let c = b
        .cancel_question(q.id, &Caller::default())
        .await
        .expect("cancel");
    assert_eq!(c.status, QuestionStatus::Cancelled);
    let (w, timed_out) = b
        .wait_question(q.id, Duration::from_secs(5), &Caller::default())
        .await
        .expect("wait");
    assert_eq!((w.status, timed_out), (QuestionStatus::Cancelled, false));
}

#[tokio::test]
async fn open_questions_list_first_oldest_first() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let mut ids = Vec::new();
    for t in ["one", "two", "three"] {
        ids.push(
            b.ask(ask_req(t, None, None), &Caller::default())
                .await
                .expect("ask")
                .id,
        );
    }
    b.answer(ids[0], reply("x", None), &Caller::default())
        .await
        .expect("answer");
    let listed: Vec<Uuid> = b.questions(None).iter().map(|q| q.id).collect();
    assert_eq!(listed, [ids[1], ids[2], ids[0]]);
    assert_eq!(b.questions(Some(QuestionStatus::Answered)).len(), 1);
}

#[tokio::test]
async fn bad_questions_are_refused_with_their_reason() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    for req in [
        ask_req("   ", None, None),
        ask_req("q", Some(&[]), None),
        ask_req("q", Some(&["a", "a"]), None),
        ask_req(&"x".repeat(2001), None, None),
    ] {
        let e = b.ask(req, &Caller::default()).await.expect_err("refused");
        assert_eq!(e.code, ErrorCode::InvalidQuestion, "{}", e.message);
    }
}

/// An answer as the REST and MCP doors pass it.
fn reply(answer: &str, by: Option<String>) -> crate::api::AnswerRequest {
    crate::api::AnswerRequest {
        answer: answer.into(),
        by,
        note: None,
    }
}

#[tokio::test]
async fn a_permission_question_offers_allow_and_deny_and_carries_the_note() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let session = connect(&b, "backend").await;
    let mut req = ask_req("Bash(rm -rf build)", None, None);
    req.kind = Some(crate::api::QuestionKind::Permission);
    let q = b.ask(req, &as_peer(session)).await.expect("ask");
    assert_eq!(q.kind, crate::api::QuestionKind::Permission);
    assert_eq!(q.peer, Some(session));
    assert_eq!(
        q.choices.as_deref(),
        Some(&["allow".to_string(), "deny".to_string()][..])
    );
    let mut deny = reply("deny", Some("ana".into()));
    deny.note = Some("  not on main, use a branch  ".into());
    let q = b
        .answer(q.id, deny, &Caller::default())
        .await
        .expect("answer");
    assert_eq!(q.answer.as_deref(), Some("deny"));
    assert_eq!(q.note.as_deref(), Some("not on main, use a branch"));
    assert_eq!(q.answered_by.as_deref(), Some("ana"));

    let mut other = ask_req("Bash(ls)", Some(&["yes", "no"]), None);
    other.kind = Some(crate::api::QuestionKind::Permission);
    let e = b.ask(other, &as_peer(session)).await.expect_err("refused");
    assert!(e.to_string().contains("\"allow\" and \"deny\""), "{e}");
}

#[tokio::test]
async fn a_session_that_leaves_closes_its_open_permission_questions() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let session = connect(&b, "backend").await;
    let other = connect(&b, "frontend").await;
    let ask = |peer| {
        let b = b.clone();
        async move {
            let mut req = ask_req("Bash(make deploy)", None, None);
            req.kind = Some(crate::api::QuestionKind::Permission);
            b.ask(req, &as_peer(peer)).await.expect("ask")
        }
    };
    let mine = ask(session).await;
    let plain = b
        .ask(ask_req("Which branch?", None, None), &as_peer(session))
        .await
        .expect("ask");
    let theirs = ask(other).await;

    b.disconnect(session, &as_peer(session))
        .await
        .expect("disconnect");
    let status = |id| b.question(id).expect("kept").status;
    assert_eq!(status(mine.id), QuestionStatus::Cancelled);
    assert_eq!(
        status(plain.id),
        QuestionStatus::Open,
        "ordinary questions stay"
    );
    assert_eq!(status(theirs.id), QuestionStatus::Open);

    // Going offline by silence closes them too.
    advance_ms(&b, &clock, 24 * 3600 * 1000);
    assert_eq!(status(theirs.id), QuestionStatus::Cancelled);
}

#[tokio::test]
async fn only_a_person_answers_a_permission_question_and_only_they_or_its_asker_withdraw_it() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let session = connect(&b, "backend").await;
    let sibling = connect(&b, "frontend").await;
    let ask = || {
        let b = b.clone();
        async move {
            let mut req = ask_req("Bash(make deploy)", None, None);
            req.kind = Some(crate::api::QuestionKind::Permission);
            b.ask(req, &as_peer(session)).await.expect("ask")
        }
    };
    let q = ask().await;
    let mcp = Caller {
        address: Some("mcp".into()),
        ..Caller::default()
    };
    for (who, caller) in [
        ("a sibling session", as_peer(sibling)),
        ("the asking session itself", as_peer(session)),
        ("an MCP session without a key", mcp.clone()),
    ] {
        let e = b
            .answer(q.id, reply("allow", None), &caller)
            .await
            .expect_err(who);
        assert_eq!(e.code, ErrorCode::PersonOnly, "{who}: {e}");
        assert!(e.to_string().contains("only a person answers it"), "{e}");
    }
    for (who, caller) in [("a sibling session", as_peer(sibling)), ("MCP", mcp)] {
        let e = b.cancel_question(q.id, &caller).await.expect_err(who);
        assert_eq!(e.code, ErrorCode::PersonOnly, "{who}: {e}");
    }
    assert_eq!(b.question(q.id).expect("kept").status, QuestionStatus::Open);

    // A person answers (the dashboard, `cipc` naming no peer).
    let dashboard = Caller {
        address: Some("dashboard".into()),
        ..Caller::default()
    };
    let answered = b
        .answer(q.id, reply("allow", Some("ana".into())), &dashboard)
        .await
        .expect("a person answers");
    assert_eq!(answered.answer.as_deref(), Some("allow"));

    // The session that asked withdraws its own; a person may too.
    let q = ask().await;
    let c = b
        .cancel_question(q.id, &as_peer(session))
        .await
        .expect("the asker withdraws");
    assert_eq!(c.status, QuestionStatus::Cancelled);
    let q = ask().await;
    let c = b
        .cancel_question(q.id, &Caller::default())
        .await
        .expect("a person withdraws");
    assert_eq!(c.status, QuestionStatus::Cancelled);

    // Ordinary questions stay open to anyone's answer.
    let plain = b
        .ask(ask_req("Which branch?", None, None), &as_peer(session))
        .await
        .expect("ask");
    b.answer(plain.id, reply("main", None), &as_peer(sibling))
        .await
        .expect("a peer answers an ordinary question");
}
