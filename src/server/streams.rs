//! Server-Sent Event streams: `/events` for the dashboard and
//! `/channels/{name}/stream` for channel followers.
//!
//! Each stream is fed by a task through a small bounded buffer. A reader that
//! falls behind (its buffer stays full, or it lags the broadcast) is
//! disconnected rather than allowed to grow memory; it resumes with
//! `Last-Event-ID` and loses nothing still in the history.

use super::error::ApiError;
use super::extract::Params;
use super::AppState;
use crate::api::validate_name;
use crate::broker::Event;
use crate::error_code::ErrorCode;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// The stream routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(events))
        .route("/channels/{name}/stream", get(channel_stream))
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().unwrap_or_default().trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<u64>().map(Some).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidHeader,
                    format!("Last-Event-ID {s:?} is not an event id (a whole number)"),
                )
            })
        }
    }
}

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>>;
type SseStream = Sse<axum::response::sse::KeepAliveStream<BoxedEvents>>;

fn into_sse(rx: mpsc::Receiver<SseEvent>) -> SseStream {
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Sse::new(Box::pin(stream) as BoxedEvents).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    )
}

/// Hands one event to the reader's buffer; false when the reader is gone or
/// has not made room within `grace` (too slow: the stream is cut).
async fn push(tx: &mpsc::Sender<SseEvent>, ev: SseEvent, grace: Duration) -> bool {
    matches!(tokio::time::timeout(grace, tx.send(ev)).await, Ok(Ok(())))
}

fn event_to_sse(ev: &Event) -> SseEvent {
    SseEvent::default()
        .id(ev.id.to_string())
        .event(ev.kind)
        .data(ev.data.to_string())
}

#[utoipa::path(get, path = "/events", tag = "system",
    params(("since" = Option<u64>, Query, description = "start after this event id: 0 replays the history the broker keeps (the dashboard's activity on load); Last-Event-ID wins when sent")),
    responses((status = 200, description = "text/event-stream: events peer, command, message, signal, question, reset (and resync when Last-Event-ID or since is older than the history); data is the changed object; id increases")))]
pub(super) async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Params,
) -> Result<SseStream, ApiError> {
    let permit = s.broker.acquire_waiter()?;
    // A browser resuming sends Last-Event-ID; a page that wants the kept
    // history first asks with `since` (EventSource cannot set headers).
    let last = match last_event_id(&headers)? {
        Some(id) => Some(id),
        None => q.u64("since")?,
    };
    let sub = s.broker.subscribe_events(last);
    let (tx, rx) = mpsc::channel(s.config.sse_buffer.max(1));
    let grace = s.config.slow_reader_grace;
    let shutdown = s.broker.shutdown_token();
    let broker = s.broker.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut live = sub.live;
        if sub.gap && !push(&tx, SseEvent::default().event("resync").data("{}"), grace).await {
            return;
        }
        let mut last_sent = if sub.gap { 0 } else { last.unwrap_or(0) };
        for ev in sub.missed {
            last_sent = ev.id;
            if broker.settled_through(ev.lsn).await.is_err()
                || !push(&tx, event_to_sse(&ev), grace).await
            {
                return;
            }
        }
        loop {
            tokio::select! {
                r = live.recv() => match r {
                    Ok(ev) if ev.id <= last_sent => {}
                    Ok(ev) => {
                        last_sent = ev.id;
                        // Shown only once saved; a lost change ends the
                        // stream (the reader reconnects and resyncs).
                        if broker.settled_through(ev.lsn).await.is_err() { return; }
                        if !push(&tx, event_to_sse(&ev), grace).await { return; }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "event reader fell behind; disconnecting it");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
            }
        }
    });
    Ok(into_sse(rx))
}

#[utoipa::path(get, path = "/channels/{name}/stream", tag = "channels",
    params(("name" = String, Path, description = "channel name"), ("since" = Option<u64>, Query, description = "start after this seq (default 0); Last-Event-ID wins when sent")),
    responses((status = 200, description = "text/event-stream: one `message` event per Message, id = seq")))]
pub(super) async fn channel_stream(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Params,
) -> Result<SseStream, ApiError> {
    validate_name("channel name", &name).map_err(|m| ApiError::new(ErrorCode::InvalidName, m))?;
    let permit = s.broker.acquire_waiter()?;
    let mut since = match last_event_id(&headers)? {
        Some(id) => id,
        None => q.u64("since")?.unwrap_or(0),
    };
    let (tx, rx) = mpsc::channel(s.config.sse_buffer.max(1));
    let grace = s.config.slow_reader_grace;
    let broker = s.broker.clone();
    let shutdown = broker.shutdown_token();
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let batch = tokio::select! {
                r = broker.wait_messages(&name, since, 500, Duration::from_secs(3600)) => r,
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
            };
            let Ok(batch) = batch else { return };
            if broker.settled().await.is_err() {
                return;
            }
            for m in batch.messages {
                since = m.seq;
                let ev = SseEvent::default()
                    .id(m.seq.to_string())
                    .event("message")
                    .data(serde_json::to_string(&m).unwrap_or_default());
                if !push(&tx, ev, grace).await {
                    return;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    });
    Ok(into_sse(rx))
}
