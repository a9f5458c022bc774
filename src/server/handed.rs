//! A REST answer that hands out a command (`GET /commands/{peer}/wait`,
//! `POST /commands/{id}/ack?next=`). If the answer never leaves (hyper drops
//! its body before taking it: the client went away between the take and
//! the answer), the command is given back at once ([`Broker::give_back`]),
//! instead of staying held by a taker that never heard of it. It is the
//! rule the MCP door applies to a tool call whose stream closed
//! (`mcp::delivery`), for the REST door.

use crate::api::Command;
use crate::broker::Broker;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use uuid::Uuid;

/// The command an answer hands out and its holder, when it is one that was
/// just delivered.
pub(super) fn delivery_of(command: Option<&Command>) -> Option<(Uuid, Uuid)> {
    command.and_then(|c| c.delivered_to.map(|holder| (c.id, holder)))
}

/// Wraps `response`, whose body hands out the command `taken` (with its
/// holder), so that a body dropped unread gives it back.
pub(super) fn handing_out(
    broker: &Broker,
    taken: Option<(Uuid, Uuid)>,
    response: Response,
) -> Response {
    let Some((id, holder)) = taken else {
        return response;
    };
    let broker = broker.clone();
    response.map(|inner| {
        Body::new(WatchedBody::new(inner, move |sent| {
            if !sent {
                tracing::info!(command = %id, peer = %holder, "answer never sent; giving the command back");
                broker.give_back(id, holder);
            }
        }))
    })
}

/// A response body that says, when it is dropped, whether its answer left:
/// read to its end, or nothing left in it (hyper took its last bytes). The
/// one place both doors learn that an answer never reached its client.
pub(crate) struct WatchedBody {
    inner: Body,
    ended: bool,
    on_drop: Option<Box<dyn FnOnce(bool) + Send>>,
}

impl WatchedBody {
    /// Wraps `inner`; `on_drop` hears `true` when the answer left, `false`
    /// when the body was dropped before its end.
    pub(crate) fn new(inner: Body, on_drop: impl FnOnce(bool) + Send + 'static) -> WatchedBody {
        WatchedBody {
            inner,
            ended: false,
            on_drop: Some(Box::new(on_drop)),
        }
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        let sent = self.ended || self.inner.is_end_stream();
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(sent);
        }
    }
}
