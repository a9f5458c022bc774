//! Whether a tool call's answer can still reach its client.
//!
//! A `wait_for_command` whose response stream closed (client timeout, proxy,
//! crash, the end of a stateless request) must not take a command, or must
//! give it back at once. rmcp does not tell a handler that its POST's
//! response stream is gone, so `/mcp` tags every POST with a serial
//! ([`STREAM_HEADER`]) and wraps the response body in a watched body ([`tracked`]):
//! when hyper drops it before its end, the call's [`Watch`] is closed, which
//! cancels the wait and gives back any command the call took.

use crate::broker::Broker;
use crate::server::handed::WatchedBody;
use axum::body::Body;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The header `/mcp` adds to each POST so a tool can find its [`Watch`].
pub(super) const STREAM_HEADER: &str = "x-cipc-mcp-stream";

/// One POST's response stream, as seen by the tool it runs.
pub(super) struct Watch {
    closed: CancellationToken,
    /// Commands this call took, to give back if the answer is never written.
    taken: Mutex<Vec<(Uuid, Uuid)>>,
    broker: Broker,
}

impl Watch {
    /// Cancelled when the response stream closed before its end.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Records that this call took `command` for `holder`. False when the
    /// stream is already gone: the command was given back and the caller must
    /// not report it as delivered.
    pub fn took(&self, command: Uuid, holder: Uuid) -> bool {
        let mut taken = self.taken.lock();
        if self.closed.is_cancelled() {
            drop(taken);
            self.broker.give_back(command, holder);
            return false;
        }
        taken.push((command, holder));
        true
    }

    fn close(&self) {
        let taken = {
            let taken = self.taken.lock();
            self.closed.cancel();
            taken.clone()
        };
        for (command, holder) in taken {
            self.broker.give_back(command, holder);
        }
    }
}

/// Every open POST stream of `/mcp`, by serial.
pub(super) struct Watches {
    broker: Broker,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Watch>>>,
}

impl Watches {
    /// An empty registry over `broker`.
    pub fn new(broker: Broker) -> Watches {
        Watches {
            broker,
            next: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a watch for a new POST; returns its serial.
    pub fn open(&self) -> (u64, Arc<Watch>) {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            closed: CancellationToken::new(),
            taken: Mutex::new(Vec::new()),
            broker: self.broker.clone(),
        });
        self.open.lock().insert(serial, watch.clone());
        (serial, watch)
    }

    /// The watch of the POST that carries `serial`.
    pub fn get(&self, serial: &str) -> Option<Arc<Watch>> {
        let serial: u64 = serial.parse().ok()?;
        self.open.lock().get(&serial).cloned()
    }

    fn forget(&self, serial: u64) {
        self.open.lock().remove(&serial);
    }
}

/// The response to the POST tagged `serial`, watched: dropped before its
/// end, it closes the call's [`Watch`] (giving back what the call took);
/// either way the watch is forgotten.
pub(super) fn tracked(
    inner: Body,
    serial: u64,
    watch: Arc<Watch>,
    watches: Arc<Watches>,
) -> WatchedBody {
    WatchedBody::new(inner, move |sent| {
        if !sent {
            watch.close();
        }
        watches.forget(serial);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CommandStatus, ConnectRequest, SendRequest, Via};
    use crate::broker::{BrokerConfig, Caller};
    use std::time::Duration;

    /// A worker peer with one command taken: (broker, peer id, command id).
    async fn taken() -> (Broker, Uuid, Uuid) {
        let broker = Broker::in_memory(BrokerConfig::default());
        let nobody = Caller::default();
        let req = ConnectRequest {
            role: "w".into(),
            ..ConnectRequest::default()
        };
        let (peer, _key) = broker
            .connect(req, Via::Mcp, &nobody)
            .await
            .expect("connect");
        let send = SendRequest {
            target: "w".into(),
            action: "build".into(),
            ..SendRequest::default()
        };
        broker.send(send, &nobody).await.expect("send");
        let c = broker
            .wait_command(peer.id, Duration::ZERO, &nobody)
            .await
            .expect("wait")
            .expect("a command");
        (broker, peer.id, c.id)
    }

    fn endless() -> Body {
        Body::from_stream(futures::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >())
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_gives_back_what_its_call_took() {
        let (broker, peer, cmd) = taken().await;
        let watches = Arc::new(Watches::new(broker.clone()));
        let (serial, watch) = watches.open();
        assert!(watch.took(cmd, peer));
        drop(tracked(endless(), serial, watch.clone(), watches.clone()));
        assert!(watch.closed().is_cancelled());
        let c = broker.command(cmd).expect("command");
        assert_eq!(c.status, CommandStatus::Pending);
        assert!(c.redelivered);
        assert!(watches.get(&serial.to_string()).is_none(), "forgotten");
    }

    #[tokio::test]
    async fn a_call_that_takes_after_its_stream_closed_gives_back_at_once() {
        let (broker, peer, cmd) = taken().await;
        let watches = Arc::new(Watches::new(broker.clone()));
        let (serial, watch) = watches.open();
        drop(tracked(endless(), serial, watch.clone(), watches.clone()));
        assert!(!watch.took(cmd, peer));
        assert_eq!(
            broker.command(cmd).expect("command").status,
            CommandStatus::Pending
        );
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_keeps_the_delivery() {
        use http_body_util::BodyExt;
        let (broker, peer, cmd) = taken().await;
        let watches = Arc::new(Watches::new(broker.clone()));
        let (serial, watch) = watches.open();
        assert!(watch.took(cmd, peer));
        let body = tracked(Body::from("answer"), serial, watch.clone(), watches);
        let read = body.collect().await.expect("read").to_bytes();
        assert_eq!(&read[..], b"answer");
        assert!(!watch.closed().is_cancelled());
        assert_eq!(
            broker.command(cmd).expect("command").status,
            CommandStatus::Delivered
        );
    }
}
