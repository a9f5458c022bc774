//! The legacy HTTP+SSE transport (MCP 2024-11-05), what `.mcp.json`
//! `"type": "sse"` clients use. rmcp no longer ships it, so this is the small
//! adapter that bridges the wire format into an rmcp service (which serves any
//! Sink/Stream pair); the protocol handling stays rmcp's.
//!
//! - `GET /mcp/sse` opens the stream. Its first event is `endpoint`, whose data
//!   is the URL to POST to (`/mcp/messages?sessionId=<random>`); every response
//!   and notification then comes as an `event: message`. A keep-alive comment
//!   goes out every 15 seconds so proxies do not cut a quiet stream.
//! - `POST /mcp/messages?sessionId=` takes one JSON-RPC message (or a batch)
//!   and answers 202 Accepted; the answer comes on the stream.
//! - The stream is the session: when it closes, the session ends and its peer
//!   is disconnected. Re-opening it starts a new session. It holds one of the
//!   `--max-mcp-sessions` seats; when the session ends for another reason
//!   (evicted to make room), the stream closes.

use super::session::{Door, Hub, Session};
use super::tools::CipcMcp;
use crate::error_code::ErrorCode;
use crate::server::error::ApiError;
use crate::server::extract::read_body;
use crate::server::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::serve_server_with_ct;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// How often a quiet stream gets a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Messages buffered from the POST endpoint into one session.
const INBOX: usize = 64;

/// The open legacy sessions, by the id in their endpoint URL.
pub(super) struct Legacy {
    hub: Arc<Hub>,
    sessions: Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>,
}

impl Legacy {
    /// No sessions yet.
    pub fn new(hub: Arc<Hub>) -> Legacy {
        Legacy {
            hub,
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

/// Ends the session when the client's stream goes away.
struct OnClose {
    legacy: Arc<Legacy>,
    id: String,
    serve: CancellationToken,
    session: Arc<Session>,
}

impl Drop for OnClose {
    fn drop(&mut self) {
        self.legacy.sessions.lock().remove(&self.id);
        self.serve.cancel();
        let session = self.session.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { session.finish().await });
        }
        tracing::debug!(session = %self.id, "legacy MCP stream closed");
    }
}

/// The SSE body: the session's events, holding [`OnClose`] until dropped.
struct SessionStream<S> {
    inner: S,
    _guard: OnClose,
}

impl<S: Stream + Unpin> Stream for SessionStream<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// `GET /mcp/sse`: opens a session and its event stream.
pub(super) async fn open(
    legacy: Arc<Legacy>,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let permit = state.broker.acquire_waiter()?;
    let ticket = legacy.hub.reserve().await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (in_tx, in_rx) = mpsc::channel::<ClientJsonRpcMessage>(INBOX);
    // rmcp writes into `rmcp_tx`; a relay moves each message into the
    // stream's small buffer and ends the session when the reader leaves it
    // full for longer than the grace (a slow reader is cut, not buffered).
    let (rmcp_tx, mut rmcp_rx) = futures::channel::mpsc::channel::<ServerJsonRpcMessage>(16);
    let (out_tx, out_rx) = mpsc::channel::<ServerJsonRpcMessage>(state.config.sse_buffer.max(1));
    legacy.sessions.lock().insert(id.clone(), in_tx);

    let session = Session::new(legacy.hub.clone(), Door::LegacySse);
    ticket.seat(&session);
    let handler = CipcMcp::new(session.clone());
    let serve = state.broker.shutdown_token().child_token();
    {
        // The session ended without its stream closing (evicted): stop
        // serving it, which closes the stream.
        let (serve, ended) = (serve.clone(), session.ended().clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = ended.cancelled() => serve.cancel(),
                _ = serve.cancelled() => {}
            }
        });
    }
    {
        let serve = serve.clone();
        let grace = state.config.slow_reader_grace;
        let id = id.clone();
        tokio::spawn(async move {
            // The stream's waiter slot lives as long as messages can flow.
            let _permit = permit;
            while let Some(m) = rmcp_rx.next().await {
                match tokio::time::timeout(grace, out_tx.send(m)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::info!(session = %id, "legacy MCP reader fell behind; ending its session");
                        serve.cancel();
                        break;
                    }
                }
            }
        });
    }
    {
        let serve = serve.clone();
        let session = session.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let transport = (rmcp_tx, ReceiverStream::new(in_rx));
            match serve_server_with_ct(handler, transport, serve).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => {
                    tracing::debug!(session = %id, error = %e, "legacy MCP session ended before initialize");
                }
            }
            session.finish().await;
        });
    }
    tracing::debug!(session = %id, "legacy MCP stream opened");

    let endpoint = SseEvent::default()
        .event("endpoint")
        .data(format!("/mcp/messages?sessionId={id}"));
    let messages = ReceiverStream::new(out_rx).map(|m| {
        SseEvent::default()
            .event("message")
            .data(serde_json::to_string(&m).unwrap_or_default())
    });
    let events = futures::stream::once(async move { endpoint })
        .chain(messages)
        .take_until(serve.clone().cancelled_owned())
        .map(Ok::<_, Infallible>);
    let body = SessionStream {
        inner: Box::pin(events),
        _guard: OnClose {
            legacy: legacy.clone(),
            id,
            serve,
            session,
        },
    };
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

/// `POST /mcp/messages?sessionId=`: hands one message (or a batch) to the session.
pub(super) async fn post(
    legacy: Arc<Legacy>,
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let sid = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "sessionId" || *k == "session_id")
        .map(|(_, v)| v.to_string());
    let Some(sid) = sid.filter(|s| !s.is_empty()) else {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "missing sessionId: open GET /mcp/sse first and POST to the endpoint URL it sends",
        ));
    };
    let tx = legacy.sessions.lock().get(&sid).cloned();
    let Some(tx) = tx else {
        return Err(ApiError::new(
            ErrorCode::UnknownSession,
            format!(
            "no MCP session {sid}: it ended when its event stream closed; open GET /mcp/sse again"
        ),
        ));
    };
    let bytes = read_body(req, &state).await?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON ({e}); send one JSON-RPC message"),
        )
    })?;
    let items = match value {
        Value::Array(items) => items,
        v => vec![v],
    };
    let mut messages = Vec::with_capacity(items.len());
    for item in items {
        let m: ClientJsonRpcMessage = serde_json::from_value(item).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidBody,
                format!("the body is not a JSON-RPC 2.0 request, notification or response ({e})"),
            )
        })?;
        messages.push(m);
    }
    for m in messages {
        if tx.send(m).await.is_err() {
            return Err(ApiError::new(
                ErrorCode::UnknownSession,
                format!("MCP session {sid} has ended; open GET /mcp/sse again"),
            ));
        }
    }
    Ok((StatusCode::ACCEPTED, "Accepted").into_response())
}
