//! Server-Sent Event streams: `/events` for the dashboard and
//! `/channels/{name}/stream` for channel followers.
//!
//! Each stream is fed by a task through an `Outbox` bounded in events and
//! in bytes. A reader that falls behind (its outbox stays full for the grace
//! period, or it lags the broadcast) has its connection closed, which frees
//! the outbox, hyper's buffer and the socket's at once, rather than being
//! allowed to grow memory; it resumes with `Last-Event-ID` and loses nothing
//! still in the history.

use super::error::ApiError;
use super::extract::Params;
use super::listen::ConnectionCloser;
use super::AppState;
use crate::api::validate_name;
use crate::broker::Event;
use crate::error_code::ErrorCode;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use futures::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
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

/// An event on its way to a reader, holding its share of the reader's byte
/// budget until hyper takes it.
type Queued = (SseEvent, OwnedSemaphorePermit);

/// The feeding side of one reader's stream: at most `sse_buffer` events and
/// `sse_buffer_bytes` bytes wait for the reader; a reader that does not make
/// room within the grace period is cut off ([`Outbox::push`]).
struct Outbox {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<Semaphore>,
    budget: usize,
    grace: Duration,
    closer: Option<ConnectionCloser>,
}

impl Outbox {
    /// An outbox and the response that drains it.
    fn open(s: &AppState, closer: Option<ConnectionCloser>) -> (Outbox, SseStream) {
        let (tx, rx) = mpsc::channel::<Queued>(s.config.sse_buffer.max(1));
        let budget = s.config.sse_buffer_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let outbox = Outbox {
            tx,
            bytes: Arc::new(Semaphore::new(budget)),
            budget,
            grace: s.config.slow_reader_grace,
            closer,
        };
        // The permit is dropped as hyper takes the event, which makes room.
        let stream = ReceiverStream::new(rx).map(|(ev, _permit)| Ok::<_, Infallible>(ev));
        let sse = Sse::new(Box::pin(stream) as BoxedEvents).keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        );
        (outbox, sse)
    }

    /// Hands one event of `size` bytes to the reader; false when the reader
    /// is gone or has not made room within the grace period. A reader too
    /// slow is cut off: its connection is closed, which frees what it held.
    async fn push(&self, ev: SseEvent, size: usize) -> bool {
        let want = u32::try_from(size.clamp(1, self.budget)).unwrap_or(u32::MAX);
        let sent = tokio::time::timeout(self.grace, async {
            let permit = self.bytes.clone().acquire_many_owned(want).await.ok()?;
            self.tx.send((ev, permit)).await.ok()
        })
        .await;
        match sent {
            Ok(Some(())) => true,
            Ok(None) => false,
            Err(_) => {
                tracing::debug!("a stream reader stopped reading; closing its connection");
                if let Some(closer) = &self.closer {
                    closer.close();
                }
                false
            }
        }
    }

    /// Resolves when the reader is gone.
    async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// An SSE event and its size on the wire (near enough: the data).
fn event_to_sse(ev: &Event) -> (SseEvent, usize) {
    let data = ev.data.clone();
    let size = data.len();
    (
        SseEvent::default()
            .id(ev.id.to_string())
            .event(ev.kind)
            .data(data),
        size,
    )
}

#[utoipa::path(get, path = "/events", tag = "system",
    params(("since" = Option<u64>, Query, description = "start after this event id: 0 replays the history the broker keeps (the dashboard's activity on load); Last-Event-ID wins when sent")),
    responses((status = 200, description = "text/event-stream: events peer, command, message, signal, question, reset (and resync when Last-Event-ID or since is older than the history); data is the changed object; id increases")))]
pub(super) async fn events(
    State(s): State<AppState>,
    closer: Option<Extension<ConnectionCloser>>,
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
    let (out, sse) = Outbox::open(&s, closer.map(|Extension(c)| c));
    let shutdown = s.broker.shutdown_token();
    let broker = s.broker.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut live = sub.live;
        if sub.gap
            && !out
                .push(SseEvent::default().event("resync").data("{}"), 2)
                .await
        {
            return;
        }
        let mut last_sent = if sub.gap { 0 } else { last.unwrap_or(0) };
        for ev in sub.missed {
            last_sent = ev.id;
            let (sse, size) = event_to_sse(&ev);
            if broker.settled_through(ev.lsn).await.is_err() || !out.push(sse, size).await {
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
                        let (sse, size) = event_to_sse(&ev);
                        if !out.push(sse, size).await { return; }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "event reader fell behind; disconnecting it");
                        if let Some(closer) = &out.closer {
                            closer.close();
                        }
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = out.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    });
    Ok(sse)
}

/// Messages a channel stream reads at a time: the batch is held while it
/// goes out, so it is kept small (a message may be up to `--max-body`).
const STREAM_BATCH: usize = 32;

#[utoipa::path(get, path = "/channels/{name}/stream", tag = "channels",
    params(("name" = String, Path, description = "channel name"), ("since" = Option<u64>, Query, description = "start after this seq (default 0); Last-Event-ID wins when sent")),
    responses((status = 200, description = "text/event-stream: one `message` event per Message, id = seq")))]
pub(super) async fn channel_stream(
    State(s): State<AppState>,
    closer: Option<Extension<ConnectionCloser>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Params,
) -> Result<SseStream, ApiError> {
    validate_name("channel name", &name)
        .map_err(|e| ApiError::new(ErrorCode::InvalidName, e.to_string()))?;
    let permit = s.broker.acquire_waiter()?;
    let mut since = match last_event_id(&headers)? {
        Some(id) => id,
        None => q.u64("since")?.unwrap_or(0),
    };
    let (out, sse) = Outbox::open(&s, closer.map(|Extension(c)| c));
    let broker = s.broker.clone();
    let shutdown = broker.shutdown_token();
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let batch = tokio::select! {
                r = broker.wait_messages(&name, since, STREAM_BATCH, Duration::from_secs(3600)) => r,
                () = out.closed() => return,
                () = shutdown.cancelled() => return,
            };
            let Ok(batch) = batch else { return };
            if broker.settled().await.is_err() {
                return;
            }
            for m in batch.messages {
                since = m.seq;
                let data = serde_json::to_string(&m).unwrap_or_default();
                let size = data.len();
                let ev = SseEvent::default()
                    .id(m.seq.to_string())
                    .event("message")
                    .data(data);
                if !out.push(ev, size).await {
                    return;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    });
    Ok(sse)
}
