//! MCP: Claude Code sessions get native broker tools, over both HTTP
//! transports, with one tool implementation ([`tools::CipcMcp`], rmcp):
//! `args.rs` (what each tool takes), `tools/` (what each does, by subject), `render.rs`
//! (how answers read), `handler.rs` (the protocol side), `session.rs` (who a
//! session is), `delivery.rs` (answers that could not be written).
//!
//! - `/mcp`: Streamable HTTP (what `.mcp.json` `"type": "http"` uses), rmcp's
//!   own server with sessions on, its Host check given the broker's allowed
//!   hosts, and its idle timeout replaced by the broker's peer liveness. An
//!   ended session's `Mcp-Session-Id` answers 404 `unknown_session`.
//! - At most `--max-mcp-sessions` sessions (both transports) live at once;
//!   past it the longest-idle one with nothing in flight ends to make room,
//!   and when every one is busy a new one gets 429 `too_many_sessions`.
//! - `/mcp/sse` + `/mcp/messages?sessionId=`: the legacy HTTP+SSE transport
//!   (`"type": "sse"`), see [`legacy_sse`].
//!
//! The token, Origin and Host rules of [`super::auth::admit`] apply to every
//! route here (403, never 401, on MCP routes).

mod args;
mod delivery;
mod handler;
pub mod legacy_sse;
mod render;
mod session;
pub mod tools;

use super::error::ApiError;
use super::extract::read_body;
use super::AppState;
use crate::error_code::ErrorCode;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
pub use session::LiveSessions;
use session::{Door, Hub, Session, SESSION_HEADER};
use std::sync::Arc;
use std::time::Duration;

/// The longest progress interval honoured: a client must hear something well
/// within Claude Code's 5-minute limit, and the issue asks for every 30 s.
const MAX_PROGRESS: Duration = Duration::from_secs(25);

type Streamable = StreamableHttpService<tools::CipcMcp, LocalSessionManager>;

/// The MCP routes: `/mcp`, `/mcp/sse`, `/mcp/messages`.
pub fn routes(state: &AppState) -> Router<AppState> {
    // A session lives as long as its peer would: it ends after the same
    // silence that takes a REST peer offline (`--offline-after`).
    let idle_limit = state
        .broker
        .config()
        .offline_after
        .max(Duration::from_secs(1));
    let hub = Arc::new(Hub::new(
        state.broker.clone(),
        state.config.mcp_progress_every.min(MAX_PROGRESS),
        idle_limit,
        state.config.max_mcp_sessions,
        state.mcp_sessions.clone(),
    ));

    // rmcp's own idle timeout (5 minutes by default) would cut a session in
    // the middle of a long wait; ours (above) knows about in-flight calls.
    // rmcp's stays as a backstop past the longest possible wait.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive =
        Some(idle_limit.max(Duration::from_secs(tools::MAX_WAIT_SECS + 60)));
    let manager = Arc::new(manager);
    hub.set_manager(manager.clone());

    let config = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(Some(legacy_sse::KEEP_ALIVE))
        .with_legacy_session_mode(true)
        .with_max_request_body_bytes(state.config.max_body)
        .with_cancellation_token(state.broker.shutdown_token().child_token());
    // Same Host policy as the broker's guard (rmcp's default is loopback
    // only, which would refuse cross-PC clients of a LAN-bound broker).
    let config = match state.security.host_list() {
        Some(hosts) => config.with_allowed_hosts(hosts),
        None => config.disable_allowed_hosts(),
    };
    let factory_hub = hub.clone();
    let service: Arc<Streamable> = Arc::new(StreamableHttpService::new(
        move || {
            Ok(tools::CipcMcp::new(Session::new(
                factory_hub.clone(),
                Door::Streamable,
            )))
        },
        manager,
        config,
    ));

    let legacy = Arc::new(legacy_sse::Legacy::new(hub.clone()));
    let (l1, l2) = (legacy.clone(), legacy);
    Router::new()
        .route(
            "/mcp",
            any(move |s: State<AppState>, req: Request| {
                streamable(service.clone(), hub.clone(), s, req)
            }),
        )
        .route(
            "/mcp/sse",
            get(move |s: State<AppState>| legacy_sse::open(l1.clone(), s)),
        )
        .route(
            "/mcp/messages",
            post(move |s: State<AppState>, req: Request| legacy_sse::post(l2.clone(), s, req)),
        )
}

/// `/mcp`: rmcp serves it. Around it: an ended session's id answers 404, an
/// `initialize` that opens a session needs a seat, and a successful `DELETE`
/// also ends our session at once, so the peer's unacked commands are
/// requeued without waiting for rmcp to drain the session.
async fn streamable(
    service: Arc<Streamable>,
    hub: Arc<Hub>,
    State(state): State<AppState>,
    mut req: Request,
) -> Response {
    let sid = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(sid) = &sid {
        if !hub.has_sid(sid).await {
            return ApiError::new(
                ErrorCode::UnknownSession,
                format!("no MCP session {sid}: it ended (DELETE /mcp, idle past --offline-after, or the longest idle when --max-mcp-sessions was reached); send initialize without Mcp-Session-Id to start a new one"),
            )
            .into_response();
        }
    }
    // A POST without a session id that is an `initialize` opens a session
    // (whatever protocol it names), so it needs a seat first. Stateless
    // requests (no session id, not `initialize`) hold none.
    let mut ticket = None;
    if req.method() == Method::POST && sid.is_none() {
        let (parts, body) = req.into_parts();
        let bytes = match read_body(Request::from_parts(parts.clone(), body), &state).await {
            Ok(bytes) => bytes,
            Err(e) => return e.into_response(),
        };
        if is_initialize(&bytes) {
            match hub.reserve().await {
                Ok(t) => ticket = Some(t),
                Err(e) => return e.into_response(),
            }
        }
        req = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    // Each POST gets a watch, so a tool learns when its answer can no longer
    // be written (see `delivery`).
    let watch = (req.method() == Method::POST).then(|| {
        let (serial, watch) = hub.watches.open();
        req.headers_mut().insert(
            delivery::STREAM_HEADER,
            axum::http::HeaderValue::from(serial),
        );
        (serial, watch)
    });
    let deleted = sid.filter(|_| req.method() == Method::DELETE);
    let response = service.handle(req).await.into_response();
    if let Some((serial, _)) = &watch {
        let sid = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok());
        hub.opened(*serial, sid, ticket);
    }
    let response = match watch {
        Some((serial, watch)) => {
            let (parts, body) = response.into_parts();
            let body = delivery::tracked(body, serial, watch, hub.watches.clone());
            Response::from_parts(parts, axum::body::Body::new(body))
        }
        None => response,
    };
    if let Some(sid) = deleted {
        if response.status().is_success() {
            if let Some(session) = hub.session_by_sid(&sid) {
                session.finish().await;
            }
        }
    }
    response
}

/// True if a JSON-RPC body is an `initialize` request (anything else,
/// including a batch or invalid JSON, is left to rmcp to answer).
fn is_initialize(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        method: Option<String>,
    }
    serde_json::from_slice::<Probe>(body).is_ok_and(|p| p.method.as_deref() == Some("initialize"))
}
