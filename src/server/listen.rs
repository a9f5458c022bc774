//! The accept loop: hyper connections with a header-read timeout (which
//! `axum::serve` does not offer), a cap on open connections, a way for a
//! handler to close its own connection, and graceful shutdown.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Closes the connection a request came on, from inside its handler: a
/// stream whose reader stopped reading is cut this way, so the socket and
/// everything buffered for it (in hyper and in the kernel) are freed at
/// once, not when the reader finally goes away. In every request's
/// extensions when served by [`serve`].
#[derive(Clone, Debug, Default)]
pub struct ConnectionCloser(CancellationToken);

impl ConnectionCloser {
    /// Drops the connection: no more bytes are written to it.
    pub fn close(&self) {
        self.0.cancel();
    }
}

/// What one connection may cost, set by `cipc serve`'s flags.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most; past it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
}

/// The whole answer to a connection past `--max-connections`: written
/// without reading the request, then the connection is closed.
fn too_many_connections_answer(max: usize) -> String {
    let body = serde_json::json!({"error": {
        "code": crate::error_code::ErrorCode::TooManyConnections.class().as_str(),
        "reason": crate::error_code::ErrorCode::TooManyConnections.as_str(),
        "message": format!("the broker has {max} connections open (--max-connections): retry in a moment, or close idle clients"),
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Answers a connection past the cap and closes it, in at most a second
/// (a client that does not read cannot hold the task).
fn refuse(mut stream: TcpStream, max: usize) {
    tokio::spawn(async move {
        let answer = too_many_connections_answer(max);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
    });
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting
/// and waits (at most `grace`) for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: every client of the broker (curl, reqwest, browsers'
    // EventSource, MCP clients) speaks it, and it keeps an idle long-poll
    // connection small, which is what ten thousand parked waiters cost.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "--max-connections reached; refusing a connection"
            );
            refuse(stream, limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let closer = ConnectionCloser::default();
        let closed = closer.0.clone();
        let svc = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(remote));
            req.extensions_mut().insert(closer.clone());
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                r = watched => if let Err(e) = r {
                    tracing::trace!(error = %e, "connection ended with an error");
                },
                // Dropping the connection closes the socket and frees
                // whatever was buffered for it.
                () = closed.cancelled() => tracing::debug!(%remote, "connection closed by its handler"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the shutdown grace period");
    }
    Ok(())
}
