//! The HTTP server: one axum router over one [`Broker`], with four doors:
//! REST ([`rest`]), SSE streams ([`streams`]), MCP ([`mcp`]) and the web
//! dashboard ([`dashboard`]). The front door (token, Origin, Host, peer keys, then durability of the answer) stands in front of all of them.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
mod handed;
pub mod listen;
pub mod mcp;
mod openapi;
pub mod rest;
pub mod streams;

#[cfg(test)]
mod router_tests;

use crate::broker::Broker;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Server-side settings (the HTTP half of `cipc serve`'s flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Events buffered per SSE reader before it counts as too slow.
    pub sse_buffer: usize,
    /// Bytes of events buffered per SSE reader before it counts as too
    /// slow (an event larger than this still goes out, alone).
    pub sse_buffer_bytes: usize,
    /// Open connections at most (`--max-connections`); past it a new one is
    /// answered 503 `too_many_connections` and closed.
    pub max_connections: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout: std::time::Duration,
    /// A client must send a request body within this time (408 after).
    pub body_read_timeout: std::time::Duration,
    /// How often a blocking MCP tool reports progress while it waits
    /// (at most every 25 s is honoured).
    pub mcp_progress_every: std::time::Duration,
    /// How long an SSE stream may stay unable to take its next event before
    /// the reader counts as too slow and is disconnected.
    pub slow_reader_grace: std::time::Duration,
    /// Live MCP sessions allowed at once (`--max-mcp-sessions`): each costs
    /// memory until it ends, so a flood of `initialize` calls stays bounded.
    pub max_mcp_sessions: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body: 1024 * 1024,
            sse_buffer: 256,
            sse_buffer_bytes: 1024 * 1024,
            max_connections: 10_000,
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(30),
            mcp_progress_every: std::time::Duration::from_secs(20),
            slow_reader_grace: std::time::Duration::from_secs(5),
            max_mcp_sessions: 1024,
        }
    }
}

/// What every handler can reach: one shared [`AppParts`], so the clone
/// each request makes of it (middleware, extractors) is one counter, not one
/// per part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// The state of a server made of `parts`.
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    /// The state machine.
    pub broker: Broker,
    /// HTTP settings.
    pub config: Arc<ServerConfig>,
    /// Token, Host policy, dashboard sessions.
    pub security: Arc<auth::Security>,
    /// How many MCP sessions are live (the MCP routes count, `GET /status`
    /// shows it).
    pub mcp_sessions: mcp::LiveSessions,
}

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(rest::routes())
        .merge(streams::routes())
        .route("/openapi.json", get(openapi::openapi))
        .merge(dashboard::routes())
        .merge(mcp::routes(&state))
        .fallback(error::fallback)
        .layer(middleware::from_fn_with_state(state.clone(), front_door))
        .layer(DefaultBodyLimit::max(state.config.max_body))
        .with_state(state)
}

/// The one middleware every request passes (one, because each layer costs
/// every parked long-poll memory): the token, Origin, Host and peer-key
/// checks of [`auth::admit`], then principle 8 for the answer: it leaves only
/// once everything the handler could have read is saved (every position
/// handed out while it held the state lock, [`Broker::observing`]); if some of it was
/// lost to a failed commit, the answer is a 503 instead (the client retries,
/// with `dedupeKey` for sends). Streams settle each event themselves;
/// `/healthz` reads no state. With several nodes, a read first applies
/// whatever other nodes committed before it ([`Broker::sync`]).
async fn front_door(
    axum::extract::State(s): axum::extract::State<AppState>,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let req = match auth::admit(&s, addr, req).await {
        Ok(req) => req,
        Err(refused) => return refused,
    };
    let reads_state = req.uri().path() != "/healthz";
    if reads_state && req.method() == axum::http::Method::GET {
        // With several nodes: see every change committed before this read.
        s.broker.sync().await;
    }
    if !reads_state {
        return next.run(req).await;
    }
    // What the handler saw under the state lock, not what others queued
    // since: an answer waits for its own commit, not for the next one too.
    let (response, seen) = s.broker.observing(next.run(req)).await;
    if let Err(e) = s.broker.settled_through(seen).await {
        return error::ApiError::from(e).into_response();
    }
    response
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; then answers parked long-polls, ends
    /// streams, waits for in-flight requests and flushes the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let broker = self.state.broker.clone();
        let sweeper = broker.spawn_sweeper();
        let follower = broker.spawn_follower();
        let limits = listen::ConnectionLimits {
            max_connections: self.state.config.max_connections,
            header_read_timeout: self.state.config.header_read_timeout,
        };
        let app = router(self.state);
        let b = broker.clone();
        let result = listen::serve(
            self.listener,
            app,
            limits,
            async move {
                shutdown.await;
                tracing::info!("shutting down: answering open waits and flushing the store");
                b.shutdown();
            },
            std::time::Duration::from_secs(10),
        )
        .await;
        broker.shutdown();
        let _ = sweeper.await;
        if let Some(f) = follower {
            let _ = f.await;
        }
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.close_store()).await;
        result
    }
}

/// A broker served in-process on a free loopback port: for tests and `cipc bench`.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The broker behind it.
    pub broker: Broker,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningServer {
    /// Starts `broker` on 127.0.0.1 with a free port and optional token.
    pub async fn start(
        broker: Broker,
        config: ServerConfig,
        token: Option<String>,
    ) -> std::io::Result<RunningServer> {
        RunningServer::start_at(([127, 0, 0, 1], 0).into(), broker, config, token).await
    }

    /// Starts `broker` on a given loopback address (to restart a broker
    /// where its clients expect it).
    pub async fn start_at(
        bind: SocketAddr,
        broker: Broker,
        config: ServerConfig,
        token: Option<String>,
    ) -> std::io::Result<RunningServer> {
        let state = AppState::new(AppParts {
            broker: broker.clone(),
            config: Arc::new(config),
            security: Arc::new(auth::Security::new(token, bind.ip(), &[])),
            mcp_sessions: Default::default(),
        });
        let server = Server::bind(bind, state).await?;
        let addr = server.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Ok(RunningServer {
            addr,
            broker,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it the way SIGTERM would, and waits until it is down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
