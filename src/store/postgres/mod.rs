//! The shared store: PostgreSQL, so that any number of `cipc serve` nodes
//! started with the same URL act as one broker.
//!
//! Tables mirror the SQLite store's (the API objects as JSON text, so key
//! order and numbers survive exactly), plus `cipc_log`: one row per write
//! turn, holding that turn's mutations and events, which the other nodes
//! apply ([`super::shared`] explains turns). Write turns are serialised
//! across nodes by a session advisory lock, so log order is commit order and
//! every node applies the same changes in the same order. A committed turn
//! is announced with `NOTIFY cipc_log`; each node `LISTEN`s on its own
//! connection and catches up when told, and at every turn. Old log rows are
//! pruned after ten minutes; a node that fell further behind reloads
//! everything from the tables. A turn cannot outlive its holder's
//! liveness: PostgreSQL ends the session of a holder silent for
//! `--turn-timeout`, and the others refuse writes as stalled rather than
//! wait for it without end (`bounds.rs`, `TurnBounds`).

//!
//! - `schema.rs`: the versioned migrations, and reading the whole state back.
//! - `rows.rs`: the statements that save each mutation in the tables.
//! - `turns.rs`: write turns (the lock, catch-up, group commit, pruning).
//! - `listen.rs`: following the other nodes' `NOTIFY`.
//! - `tls.rs`: the URL, and TLS (off unless asked for, then verified).

mod bounds;
mod listen;
mod rows;
mod schema;
mod tls;
mod turns;

use super::shared::TurnKind;
use super::{Commit, Mutation, Progress, SharedEvent, Snapshot, Store, StoreError, TurnFuture};
use crate::api::Message;
use bounds::TurnBounds;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rows::seq_param;
use schema::{migrate, parse, read_snapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use turns::OpenTurn;

/// Connections in each node's pool.
const POOL_SIZE: usize = 16;
/// How long to wait for a connection (or a new one) before answering 503.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// How long a node may hold the write turn without a word to PostgreSQL
/// before PostgreSQL ends its session (and with it the turn), unless
/// `cipc serve --turn-timeout` says otherwise.
pub const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL shared by several broker nodes.
pub struct PgStore {
    inner: Arc<PgInner>,
}

pub(super) struct PgInner {
    pool: Pool,
    pg_config: tokio_postgres::Config,
    /// How the `LISTEN` connection does TLS (as the pool does).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The URL without its password.
    describe: String,
    /// This node's name in the log (host, process, random suffix).
    node: String,
    progress: Arc<Progress>,
    /// One turn at a time on this node (write turns are also one at a time
    /// across nodes, by [`TURN_LOCK`]).
    turns: Arc<tokio::sync::Mutex<()>>,
    /// The last log position this node has applied.
    cursor: AtomicU64,
    /// The write turn in progress on this node, which collects mutations.
    current: parking_lot::Mutex<Option<Arc<OpenTurn>>>,
    /// Wakes changes waiting for a turn when one opens that they may join.
    opened: tokio::sync::Notify,
    snapshot: parking_lot::Mutex<Option<Snapshot>>,
    /// The newest log position announced by `NOTIFY`.
    changes: watch::Sender<u64>,
    /// Why the database cannot be used now, if it cannot.
    trouble: parking_lot::Mutex<Option<String>>,
    /// How long a turn may be held in silence, and waited for.
    bounds: TurnBounds,
    /// Why writes are refused while another node stalls the write turn;
    /// cleared when this node gets the turn again (or its probe does).
    stalled: parking_lot::Mutex<Option<String>>,
    /// Set while a task watches for the stalled turn to come free.
    probing: std::sync::atomic::AtomicBool,
    closed: CancellationToken,
}

/// Says why a database call failed, in one line.
fn why(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    // "error connecting to server" alone hides the reason (refused, timed
    // out, no such host): name every cause.
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Says why no connection could be had from the pool, in one line.
fn why_no_connection(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => why(e),
        deadpool_postgres::PoolError::Timeout(_) => format!(
            "no connection within {} s (is PostgreSQL reachable from here?)",
            CONNECT_WAIT.as_secs()
        ),
        other => other.to_string(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://USER:PASS@HOST:PORT/DB`), creates or
    /// migrates the schema (safe with several nodes starting at once), reads
    /// back the state, and starts following the other nodes' changes; write
    /// turns are bounded by [`DEFAULT_TURN_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url, DEFAULT_TURN_TIMEOUT).await
    }

    /// [`PgStore::connect`] with write turns bounded by `turn_timeout`: a
    /// node that holds the turn and says nothing to PostgreSQL for that long
    /// (frozen, or cut off) loses its session and the turn with it, and a
    /// node waits at most half that long for the turn before it refuses a
    /// write as stalled (`--turn-timeout`, which exists so a frozen node
    /// cannot stop every other node's writes for as long as it is frozen).
    pub async fn connect_with(url: &str, turn_timeout: Duration) -> Result<PgStore, StoreError> {
        let tls::StoreUrl {
            config: mut pg_config,
            tls,
        } = tls::parse(url).map_err(|e| StoreError::Open {
            path: "the --store URL".into(),
            reason: e.to_string(),
        })?;
        let describe = redact(&pg_config);
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(CONNECT_WAIT);
        }
        pg_config.keepalives(true);
        pg_config.keepalives_idle(Duration::from_secs(30));
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("cipc");
        }
        let open_err = |reason: String| StoreError::Open {
            path: describe.clone(),
            reason,
        };
        let manager = Manager::from_config(
            pg_config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_WAIT))
            .create_timeout(Some(CONNECT_WAIT))
            .recycle_timeout(Some(CONNECT_WAIT))
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let mut conn = pool.get().await.map_err(|e| {
            open_err(format!(
                "{}; is PostgreSQL running there, does the database exist, and may this user connect?",
                why_no_connection(&e)
            ))
        })?;
        migrate(&mut conn)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let (snapshot, head) = read_snapshot(&mut conn)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let version: i32 = conn
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| open_err(why(&e)))?
            .get(0);
        drop(conn);
        // idle_session_timeout (which bounds a silent holder between
        // statements) came with PostgreSQL 14.
        let idle_session = version >= 140_000;
        if !idle_session {
            tracing::warn!(
                version,
                "PostgreSQL before 14 cannot end the session of a node that freezes between statements while it holds the write turn; other nodes' writes then answer write_turn_stalled until it resumes or dies"
            );
        }
        let node = format!(
            "{}-{}-{}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let (changes, _) = watch::channel(head);
        let inner = Arc::new(PgInner {
            pool,
            pg_config,
            tls,
            describe,
            node,
            progress: Arc::new(Progress::default()),
            turns: Arc::new(tokio::sync::Mutex::new(())),
            cursor: AtomicU64::new(head),
            current: parking_lot::Mutex::new(None),
            opened: tokio::sync::Notify::new(),
            snapshot: parking_lot::Mutex::new(Some(snapshot)),
            changes,
            trouble: parking_lot::Mutex::new(None),
            bounds: TurnBounds::new(turn_timeout, idle_session),
            stalled: parking_lot::Mutex::new(None),
            probing: std::sync::atomic::AtomicBool::new(false),
            closed: CancellationToken::new(),
        });
        tokio::spawn(listen::listen(Arc::downgrade(&inner), inner.closed.clone()));
        Ok(PgStore { inner })
    }
}

/// `postgres://user@host:port/db`, without the password.
fn redact(c: &tokio_postgres::Config) -> String {
    let host = c.get_hosts().first().map_or_else(
        || "localhost".into(),
        |h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        },
    );
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().unwrap_or("")
    )
}

impl Store for PgStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.snapshot.lock().take().ok_or(StoreError::Closed)
    }

    fn apply(&self, mutation: Mutation) -> Commit {
        let lsn = self.inner.progress.next();
        let open = self.inner.current.lock().clone();
        let Some(open) = open else {
            // Every change is made in a write turn; one made outside would be
            // decided on state other nodes may have moved past. Refuse it:
            // the failure makes the next turn reload what is committed.
            tracing::error!(
                ?mutation,
                "a change was made outside a write turn; refusing it"
            );
            self.inner.progress.settle(lsn, Some(lsn));
            return Box::pin(std::future::ready(Err(StoreError::Write(
                "internal: a change was made outside a write turn".into(),
            ))));
        };
        open.collect(lsn, mutation);
        let inner = self.inner.clone();
        Box::pin(async move { inner.flush(&open, lsn, false).await })
    }

    fn close(&self) {
        self.inner.closed.cancel();
    }

    fn describe(&self) -> String {
        format!(
            "{} (shared; this node is {})",
            self.inner.describe, self.inner.node
        )
    }

    fn health(&self) -> Result<(), StoreError> {
        if let Some(t) = self.inner.trouble.lock().clone() {
            return Err(StoreError::Unavailable(format!(
                "PostgreSQL at {}: {t}",
                self.inner.describe
            )));
        }
        if let Some(t) = self.inner.stalled.lock().clone() {
            return Err(StoreError::TurnStalled(t));
        }
        if self.inner.progress.failing() {
            return Err(StoreError::Unavailable(
                "a commit failed and this node has not reloaded yet".into(),
            ));
        }
        Ok(())
    }

    fn progress(&self) -> Arc<Progress> {
        self.inner.progress.clone()
    }

    fn serves_messages(&self) -> bool {
        true
    }

    fn read_messages(
        &self,
        channel: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Closed)?;
        let pool = self.inner.pool.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let bodies: Vec<String> = rt.block_on(async {
            let conn = pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(why_no_connection(&e)))?;
            let rows = conn
                .query(
                    "SELECT body FROM cipc_messages WHERE channel = $1 AND seq >= $2 AND seq <= $3
                     ORDER BY seq LIMIT $4",
                    &[&channel, &seq_param(from), &seq_param(to), &limit],
                )
                .await
                .map_err(|e| StoreError::Unavailable(why(&e)))?;
            Ok::<_, StoreError>(rows.iter().map(|r| r.get(0)).collect())
        })?;
        bodies
            .iter()
            .map(|b| parse(b).map_err(|e| StoreError::Write(format!("unreadable message: {e}"))))
            .collect()
    }

    fn begin_turn(&self, kind: TurnKind) -> TurnFuture<'_> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.begin(kind).await })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn behind(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, StoreError>> + Send + '_>>
    {
        Box::pin(async move {
            // While the database is known to be unreachable, reads answer
            // from memory at once instead of waiting for a connection.
            if let Some(t) = self.inner.trouble.lock().clone() {
                return Err(StoreError::Unavailable(t));
            }
            let conn = self
                .inner
                .pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(why_no_connection(&e)))?;
            let stmt = conn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM cipc_log")
                .await
                .map_err(|e| StoreError::Unavailable(why(&e)))?;
            let head: i64 = conn
                .query_one(&stmt, &[])
                .await
                .map_err(|e| StoreError::Unavailable(why(&e)))?
                .get(0);
            Ok(u64::try_from(head).unwrap_or(0) > self.inner.cursor.load(Ordering::Acquire))
        })
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.inner.changes.subscribe())
    }

    fn record_event(&self, kind: &'static str, data: &serde_json::Value) {
        if let Some(open) = self.inner.current.lock().as_ref() {
            open.collect_event(SharedEvent {
                kind: kind.to_string(),
                data: data.clone(),
            });
        }
    }
}
