//! Router-level tests: the whole HTTP surface (front door, routes, error
//! shape) driven with `oneshot`, no sockets, on a broker whose clock moves
//! only when the test says so.

use super::{auth, router, AppParts, AppState, ServerConfig};
use crate::broker::clock::ManualClock;
use crate::broker::{Broker, BrokerConfig};
use crate::time::Timestamp;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The router of a memory broker on a manual clock, with an optional token.
fn app(token: Option<&str>) -> (Router, Broker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    let store = Arc::new(crate::store::MemoryStore::default());
    let broker =
        Broker::open_with_clock(store, BrokerConfig::default(), clock.clone()).expect("open");
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let state = AppState::new(AppParts {
        broker: broker.clone(),
        config: Arc::new(ServerConfig::default()),
        security: Arc::new(auth::Security::new(
            token.map(str::to_string),
            bind.ip(),
            &[],
        )),
        mcp_sessions: Default::default(),
    });
    (router(state), broker, clock)
}

/// A request as it would arrive from a loopback client.
fn request(method: Method, path: &str, body: &str) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let addr: SocketAddr = ([127, 0, 0, 1], 40_000).into();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

/// Sends `req` through the router; answers the status and the JSON body.
async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts the contract's error shape: `error.code` (class) and `error.reason`.
fn assert_error(body: &Value, code: &str, reason: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["reason"], reason, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "every error says what to do: {body}");
}

#[tokio::test]
async fn an_unknown_route_is_a_404_unknown_route() {
    let (app, _, _) = app(None);
    let (status, body) = call(&app, request(Method::GET, "/no/such/thing", "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", "unknown_route");
}

#[tokio::test]
async fn an_unknown_peer_is_a_404_unknown_peer() {
    let (app, _, _) = app(None);
    let path = format!("/peers/{}", uuid::Uuid::new_v4());
    let (status, body) = call(&app, request(Method::GET, &path, "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", "unknown_peer");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_invalid_json() {
    let (app, _, _) = app(None);
    let req = request(Method::POST, "/commands/send", "{target: backend");
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_json", "invalid_json");
}

#[tokio::test]
async fn without_the_token_a_request_is_a_401_bad_token() {
    let (app, broker, _) = app(Some("s3cret"));
    let req = request(Method::POST, "/peers/connect", r#"{"role": "backend"}"#);
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", "bad_token");
    assert!(broker.peers().is_empty(), "nothing was done");

    let mut req = request(Method::POST, "/peers/connect", r#"{"role": "backend"}"#);
    req.headers_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("header"));
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn connect_is_a_201_with_the_peer_and_its_key() {
    let (app, broker, _) = app(None);
    let req = request(Method::POST, "/peers/connect", r#"{"role": "backend"}"#);
    let (status, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["peer"]["role"], "backend");
    assert_eq!(body["peer"]["status"], "online");
    assert!(
        body["key"].as_str().is_some_and(|k| k.starts_with("pk_")),
        "{body}"
    );
    let id: uuid::Uuid = body["peer"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");
    assert_eq!(broker.peer(id).expect("known").role, "backend");
}

#[tokio::test]
async fn a_peer_header_on_any_request_is_contact_but_not_without_the_token() {
    let (app, broker, clock) = app(Some("s3cret"));
    let mut req = request(Method::POST, "/peers/connect", r#"{"role": "backend"}"#);
    req.headers_mut()
        .insert("x-cipc-token", "s3cret".parse().expect("header"));
    let (_, body) = call(&app, req).await;
    let id = body["peer"]["id"].as_str().expect("id").to_string();
    let named = |path: &str, token: bool| {
        let mut req = request(Method::GET, path, "");
        req.headers_mut()
            .insert("x-cipc-peer", id.parse().expect("header"));
        if token {
            req.headers_mut()
                .insert("x-cipc-token", "s3cret".parse().expect("header"));
        }
        req
    };
    let status = |broker: &Broker| {
        let id = id.parse().expect("uuid");
        broker.peer(id).expect("peer").status
    };

    // Silent past offline_after: offline.
    clock.advance(BrokerConfig::default().offline_after);
    assert_eq!(status(&broker), crate::api::PeerStatus::Offline);
    // Naming it without the token, on a public and a private path: no contact.
    call(&app, named("/healthz", false)).await;
    let (refused, _) = call(&app, named("/status", false)).await;
    assert_eq!(refused, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&broker), crate::api::PeerStatus::Offline);
    // With the token, any request naming it is contact.
    let (ok, _) = call(&app, named("/status", true)).await;
    assert_eq!(ok, StatusCode::OK);
    assert_eq!(status(&broker), crate::api::PeerStatus::Online);
    clock.advance(Duration::from_millis(1));
    assert_eq!(status(&broker), crate::api::PeerStatus::Online);
}

/// A command handed out in an answer that never left (its body dropped
/// unread: the client went away) goes back to its queue at once; one whose
/// answer was read stays with its taker. The same rule as MCP's.
#[tokio::test]
async fn a_wait_answer_that_never_leaves_gives_its_command_back() {
    let (app, broker, _clock) = app(None);
    let (_, peer) = call(
        &app,
        request(Method::POST, "/peers/connect", r#"{"role":"w"}"#),
    )
    .await;
    let peer = peer["peer"]["id"].as_str().expect("peer id").to_string();
    let send = r#"{"target":"w","action":"build"}"#;
    let (_, sent) = call(&app, request(Method::POST, "/commands/send", send)).await;
    let id: uuid::Uuid = sent["command"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("command id");
    let wait = format!("/commands/{peer}/wait?timeout=0");

    // The answer is built, then dropped unread.
    let res = app
        .clone()
        .oneshot(request(Method::GET, &wait, ""))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        broker.command(id).expect("command").status,
        crate::api::CommandStatus::Delivered
    );
    drop(res);
    let given_back = broker.command(id).expect("command");
    assert_eq!(given_back.status, crate::api::CommandStatus::Pending);
    assert!(given_back.redelivered);

    // Taken again, and this time the answer is read: it stays delivered.
    let (status, got) = call(&app, request(Method::GET, &wait, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["command"]["id"], serde_json::json!(id));
    assert_eq!(
        broker.command(id).expect("command").status,
        crate::api::CommandStatus::Delivered
    );
}
