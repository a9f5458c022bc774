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

/// Wraps `response`, whose body hands out `command` (when it is one that
/// was just delivered), so that a body dropped unread gives it back.
pub(super) fn handing_out(
    broker: &Broker,
    command: Option<&Command>,
    response: Response,
) -> Response {
    let Some((id, holder)) = command.and_then(|c| c.delivered_to.map(|h| (c.id, h))) else {
        return response;
    };
    let broker = broker.clone();
    response.map(|inner| {
        Body::new(Handed {
            inner,
            taken: Some((id, holder)),
            broker,
        })
    })
}

/// The body of an answer that hands out a command.
struct Handed {
    inner: Body,
    /// The command and its holder, until the answer's bytes are taken.
    taken: Option<(Uuid, Uuid)>,
    broker: Broker,
}

impl HttpBody for Handed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_)) | None) = &polled {
            // The answer is on its way out: from here the taker has it.
            self.taken = None;
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

impl Drop for Handed {
    fn drop(&mut self) {
        if let Some((id, holder)) = self.taken.take() {
            tracing::info!(command = %id, peer = %holder, "answer never sent; giving the command back");
            self.broker.give_back(id, holder);
        }
    }
}
