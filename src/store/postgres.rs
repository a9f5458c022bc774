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
//! pruned after [`LOG_KEPT_SECS`]; a node that fell further behind reloads
//! everything from the tables.

use super::shared::TurnKind;
use super::{
    CatchUp, ChannelHead, Commit, LogEntry, Mutation, Progress, SharedEvent, Snapshot, Store,
    StoreError, StoredPeer, Turn, TurnFuture, RECENT_KEPT,
};
use crate::api::{Command, Message, Question, Signal};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedMutexGuard};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// The advisory lock that makes a write turn one node's at a time.
const TURN_LOCK: i64 = 0x6369_7063_0000_0001;
/// The advisory lock held while the schema is migrated.
const MIGRATION_LOCK: i64 = 0x6369_7063_0000_0002;
/// How long log rows are kept for nodes that are catching up.
const LOG_KEPT_SECS: f64 = 600.0;
/// Every this many log rows, the writer prunes old ones.
const PRUNE_EVERY: u64 = 256;
/// How long a write turn takes in more of this node's changes.
const JOIN_FOR: Duration = Duration::from_millis(20);
/// Connections in each node's pool.
const POOL_SIZE: usize = 16;
/// How long to wait for a connection (or a new one) before answering 503.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// The schema, one versioned step at a time. A step is never edited once
/// released; changes are new steps.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE cipc_peers (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE cipc_commands (id TEXT PRIMARY KEY, ord BIGINT NOT NULL, body TEXT NOT NULL);
     CREATE TABLE cipc_messages (channel TEXT NOT NULL, seq BIGINT NOT NULL, body TEXT NOT NULL,
                                 PRIMARY KEY (channel, seq));
     CREATE TABLE cipc_channels (name TEXT PRIMARY KEY, last_seq BIGINT NOT NULL);
     CREATE TABLE cipc_signals (name TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE cipc_questions (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE cipc_log (seq BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(),
                            entry TEXT NOT NULL);
     CREATE TABLE cipc_sessions (hash TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
     CREATE TABLE cipc_head (id INT PRIMARY KEY CHECK (id = 1), pruned_through BIGINT NOT NULL);
     INSERT INTO cipc_head (id, pruned_through) VALUES (1, 0);",
)];

/// PostgreSQL shared by several broker nodes.
pub struct PgStore {
    inner: Arc<PgInner>,
}

struct PgInner {
    pool: Pool,
    pg_config: tokio_postgres::Config,
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
    closed: CancellationToken,
}

/// A write turn: its connection (holding [`TURN_LOCK`]), what its members
/// changed and not committed yet, and who is in it.
///
/// Changes made on this node while a turn is open join it instead of
/// waiting for a turn of their own (for at most [`JOIN_FOR`]): their
/// commits go out together, one log row per flush (group commit).
struct OpenTurn {
    conn: tokio::sync::Mutex<Option<Object>>,
    pending: parking_lot::Mutex<Pending>,
    members: parking_lot::Mutex<Members>,
}

struct Members {
    /// Holds not dropped yet.
    count: usize,
    opened: std::time::Instant,
    /// Once set, nobody joins: the turn is ending.
    closing: bool,
    /// This node's turn slot, released when the turn has ended.
    slot: Option<OwnedMutexGuard<()>>,
}

#[derive(Default)]
struct Pending {
    mutations: Vec<Mutation>,
    events: Vec<SharedEvent>,
    first_lsn: Option<u64>,
    last_lsn: u64,
    /// Every position up to here has been written, or failed.
    done_through: u64,
    /// The first position that failed in this turn.
    failed_from: Option<u64>,
}

impl Pending {
    fn outcome(&self, lsn: u64) -> Result<(), StoreError> {
        match self.failed_from {
            Some(first) if lsn >= first => Err(StoreError::Unavailable(
                "the change could not be committed".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// One member's hold on a write turn; the last one to go ends the turn.
struct WriteHold {
    inner: Arc<PgInner>,
    open: Arc<OpenTurn>,
    /// Set for the member that opened the turn until its catch-up is applied.
    opener: bool,
}

impl super::shared::TurnHold for WriteHold {
    fn caught_up(&mut self) {
        if std::mem::take(&mut self.opener) {
            *self.inner.current.lock() = Some(self.open.clone());
            self.inner.opened.notify_waiters();
        }
    }
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        let slot = {
            let mut m = self.open.members.lock();
            m.count = m.count.saturating_sub(1);
            if m.count > 0 {
                return;
            }
            m.closing = true;
            m.slot.take()
        };
        {
            let mut current = self.inner.current.lock();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.open)) {
                *current = None;
            }
        }
        let (inner, open) = (self.inner.clone(), self.open.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // A failure is recorded in `progress`; nobody awaits this.
                let _ = inner.flush(&open, u64::MAX, true).await;
                drop(slot);
            });
        } else if let Ok(mut conn) = open.conn.try_lock() {
            // No runtime to unlock with: closing the connection frees the lock.
            if let Some(c) = conn.take() {
                drop(Object::take(c));
            }
        }
    }
}

/// Says why a database call failed, in one line.
fn why(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://USER:PASS@HOST:PORT/DB`), creates or
    /// migrates the schema (safe with several nodes starting at once), reads
    /// back the state, and starts following the other nodes' changes.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut pg_config =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Open {
                path: "the --store URL".into(),
                reason: format!("{e}; give it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
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
            NoTls,
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
                "{e}; is PostgreSQL running there, and may this user connect?"
            ))
        })?;
        migrate(&mut conn).await.map_err(open_err)?;
        let (snapshot, head) = read_snapshot(&mut conn).await.map_err(open_err)?;
        drop(conn);
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
            closed: CancellationToken::new(),
        });
        tokio::spawn(listen(Arc::downgrade(&inner), inner.closed.clone()));
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

/// Applies every migration step not applied yet, one node at a time.
async fn migrate(conn: &mut Object) -> Result<(), String> {
    let e = |e: tokio_postgres::Error| format!("migrating the schema: {}", why(&e));
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(e)?;
    let result = async {
        conn.batch_execute(
            "CREATE TABLE IF NOT EXISTS cipc_schema_migrations (
                 version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(e)?;
        let applied: Vec<i32> = conn
            .query("SELECT version FROM cipc_schema_migrations", &[])
            .await
            .map_err(e)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(newer) = applied.iter().find(|v| **v > MIGRATIONS.len() as i32) {
            return Err(format!(
                "the database has schema version {newer}, newer than this cipc knows ({}); upgrade cipc on this node",
                MIGRATIONS.len()
            ));
        }
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let tx = conn.transaction().await.map_err(e)?;
            tx.batch_execute(sql).await.map_err(e)?;
            tx.execute(
                "INSERT INTO cipc_schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(e)?;
            tx.commit().await.map_err(e)?;
            tracing::info!(version, "database schema migrated");
        }
        Ok(())
    }
    .await;
    let unlocked = conn
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result?;
    unlocked.map(|_| ()).map_err(e)
}

fn parse<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("unreadable {what}: {e}"))
}

/// Reads the whole state and the log position it reflects, in one
/// consistent view.
async fn read_snapshot(conn: &mut Object) -> Result<(Snapshot, u64), String> {
    let e = |e: tokio_postgres::Error| format!("reading the state: {}", why(&e));
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(e)?;
    let head: i64 = tx
        .query_one(
            "SELECT GREATEST((SELECT COALESCE(MAX(seq), 0) FROM cipc_log),
                             (SELECT pruned_through FROM cipc_head WHERE id = 1))",
            &[],
        )
        .await
        .map_err(e)?
        .get(0);
    let bodies = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    let mut snap = Snapshot::default();
    for b in bodies(
        tx.query("SELECT body FROM cipc_peers", &[])
            .await
            .map_err(e)?,
    ) {
        snap.peers.push(parse::<StoredPeer>(&b, "peer")?);
    }
    for b in bodies(
        tx.query("SELECT body FROM cipc_signals ORDER BY name", &[])
            .await
            .map_err(e)?,
    ) {
        snap.signals.push(parse::<Signal>(&b, "signal")?);
    }
    for b in bodies(
        tx.query("SELECT body FROM cipc_questions ORDER BY id", &[])
            .await
            .map_err(e)?,
    ) {
        snap.questions.push(parse::<Question>(&b, "question")?);
    }
    for r in tx
        .query("SELECT ord, body FROM cipc_commands ORDER BY ord", &[])
        .await
        .map_err(e)?
    {
        let ord: i64 = r.get(0);
        let body: String = r.get(1);
        snap.commands.push((
            u64::try_from(ord).unwrap_or(0),
            parse::<Command>(&body, "command")?,
        ));
    }
    for r in tx
        .query(
            "SELECT c.name, c.last_seq, MIN(m.seq) FROM cipc_channels c
             LEFT JOIN cipc_messages m ON m.channel = c.name
             GROUP BY c.name, c.last_seq ORDER BY c.name",
            &[],
        )
        .await
        .map_err(e)?
    {
        let last_seq = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
        let first: Option<i64> = r.get(2);
        snap.channels.push(ChannelHead {
            name: r.get(0),
            last_seq,
            first_seq: first.map_or(last_seq + 1, |f| u64::try_from(f.max(1)).unwrap_or(1)),
        });
    }
    for r in tx
        .query("SELECT hash, expires_at FROM cipc_sessions", &[])
        .await
        .map_err(e)?
    {
        snap.sessions
            .push((r.get(0), crate::time::Timestamp(r.get(1))));
    }
    let kept = i64::try_from(RECENT_KEPT).unwrap_or(i64::MAX);
    for b in bodies(
        tx.query(
            "SELECT body FROM (
                 SELECT body, channel, seq,
                        row_number() OVER (PARTITION BY channel ORDER BY seq DESC) AS newest
                 FROM cipc_messages) recent
             WHERE newest <= $1 ORDER BY channel, seq",
            &[&kept],
        )
        .await
        .map_err(e)?,
    ) {
        snap.messages.push(parse::<Message>(&b, "message")?);
    }
    tx.commit().await.map_err(e)?;
    Ok((snap, u64::try_from(head).unwrap_or(0)))
}

/// Serialises a stored object; plain data never fails to serialise.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

fn seq_param(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One statement parameter, owned so a whole flush can be pipelined.
type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn text(v: impl Into<String>) -> Param {
    Box::new(v.into())
}

fn int(v: i64) -> Param {
    Box::new(v)
}

/// The statements that save one mutation in the tables.
fn plan(m: &Mutation) -> Vec<(&'static str, Vec<Param>)> {
    match m {
        Mutation::Peer(p) => vec![(
            "INSERT INTO cipc_peers (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            vec![text(p.peer.id.to_string()), text(json(p))],
        )],
        Mutation::Command { ord, command } => vec![(
            "INSERT INTO cipc_commands (id, ord, body) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET ord = excluded.ord, body = excluded.body",
            vec![
                text(command.id.to_string()),
                int(seq_param(*ord)),
                text(json(command)),
            ],
        )],
        Mutation::ForgetCommand { id } => vec![(
            "DELETE FROM cipc_commands WHERE id = $1",
            vec![text(id.to_string())],
        )],
        Mutation::Message(msg) => vec![
            (
                "INSERT INTO cipc_messages (channel, seq, body) VALUES ($1, $2, $3)
                 ON CONFLICT (channel, seq) DO UPDATE SET body = excluded.body",
                vec![
                    text(msg.channel.clone()),
                    int(seq_param(msg.seq)),
                    text(json(msg)),
                ],
            ),
            (
                "INSERT INTO cipc_channels (name, last_seq) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE
                 SET last_seq = GREATEST(cipc_channels.last_seq, excluded.last_seq)",
                vec![text(msg.channel.clone()), int(seq_param(msg.seq))],
            ),
        ],
        Mutation::Trim {
            channel,
            from,
            below,
        } => vec![(
            // Bounded below too: the rows earlier trims deleted stay in the
            // index until vacuumed, and an unbounded range walks them all.
            "DELETE FROM cipc_messages WHERE channel = $1 AND seq >= $2 AND seq < $3",
            vec![
                text(channel.clone()),
                int(seq_param(*from)),
                int(seq_param(*below)),
            ],
        )],
        Mutation::Signal(sig) => vec![(
            "INSERT INTO cipc_signals (name, body) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET body = excluded.body",
            vec![text(sig.name.clone()), text(json(sig))],
        )],
        Mutation::ForgetPeer { id } => vec![(
            "DELETE FROM cipc_peers WHERE id = $1",
            vec![text(id.to_string())],
        )],
        Mutation::ForgetChannel { name } => vec![
            (
                "DELETE FROM cipc_messages WHERE channel = $1",
                vec![text(name.clone())],
            ),
            (
                "DELETE FROM cipc_channels WHERE name = $1",
                vec![text(name.clone())],
            ),
        ],
        Mutation::ForgetSignal { name } => vec![(
            "DELETE FROM cipc_signals WHERE name = $1",
            vec![text(name.clone())],
        )],
        Mutation::Question(q) => vec![(
            "INSERT INTO cipc_questions (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            vec![text(q.id.to_string()), text(json(q))],
        )],
        Mutation::ForgetQuestion { id } => vec![(
            "DELETE FROM cipc_questions WHERE id = $1",
            vec![text(id.to_string())],
        )],
        Mutation::Session { hash, expires } => vec![(
            "INSERT INTO cipc_sessions (hash, expires_at) VALUES ($1, $2)
             ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at",
            vec![text(hash.clone()), int(expires.millis())],
        )],
        Mutation::EndSession { hash } => vec![(
            "DELETE FROM cipc_sessions WHERE hash = $1",
            vec![text(hash.clone())],
        )],
        Mutation::Reset => vec![
            ("DELETE FROM cipc_peers", Vec::new()),
            ("DELETE FROM cipc_commands", Vec::new()),
            ("DELETE FROM cipc_messages", Vec::new()),
            ("DELETE FROM cipc_channels", Vec::new()),
            ("DELETE FROM cipc_signals", Vec::new()),
            ("DELETE FROM cipc_questions", Vec::new()),
        ],
    }
}

/// A future a flush pipelines: everything is sent at once, in order.
type Step<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<i64>, tokio_postgres::Error>> + Send + 'a>,
>;

impl PgInner {
    fn unavailable(&self, reason: String) -> StoreError {
        *self.trouble.lock() = Some(reason.clone());
        StoreError::Unavailable(reason)
    }

    /// Joins the write turn open on this node, if it still takes members.
    fn join(self: &Arc<Self>) -> Option<Turn> {
        let open = self.current.lock().clone()?;
        {
            let mut m = open.members.lock();
            if m.closing || m.opened.elapsed() >= JOIN_FOR {
                return None;
            }
            m.count += 1;
        }
        Some(Turn {
            catch_up: None,
            hold: Some(Box::new(WriteHold {
                inner: self.clone(),
                open,
                opener: false,
            })),
        })
    }

    async fn begin(self: &Arc<Self>, kind: TurnKind) -> Result<Turn, StoreError> {
        let slot = loop {
            if kind == TurnKind::Read {
                break self.turns.clone().lock_owned().await;
            }
            // Join the open turn, or wait for this node's slot; a turn that
            // opens meanwhile is joined instead (so waiting changes go out
            // together rather than one turn each).
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if let Some(turn) = self.join() {
                return Ok(turn);
            }
            tokio::select! {
                slot = self.turns.clone().lock_owned() => break slot,
                () = &mut opened => {}
            }
        };
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        let mut conn = Some(conn);
        let caught = match conn.as_mut() {
            Some(c) => self.catch_up(c, kind == TurnKind::Write).await,
            None => Ok(None),
        };
        let catch_up = match caught {
            Ok(c) => c,
            Err(e) => {
                if let Some(c) = conn.take() {
                    // It may hold the turn lock: close it rather than pool it.
                    drop(Object::take(c));
                }
                return Err(self.unavailable(e));
            }
        };
        *self.trouble.lock() = None;
        let hold: Box<dyn super::shared::TurnHold> = if kind == TurnKind::Write {
            let open = Arc::new(OpenTurn {
                conn: tokio::sync::Mutex::new(conn),
                pending: parking_lot::Mutex::new(Pending::default()),
                members: parking_lot::Mutex::new(Members {
                    count: 1,
                    opened: std::time::Instant::now(),
                    closing: false,
                    slot: Some(slot),
                }),
            });
            Box::new(WriteHold {
                inner: self.clone(),
                open,
                opener: true,
            })
        } else {
            drop(conn);
            Box::new(slot)
        };
        Ok(Turn {
            catch_up,
            hold: Some(hold),
        })
    }

    /// Takes the turn lock (for a write turn) and reads what this node has
    /// not applied yet, in one round trip: the log since its cursor, or
    /// everything when it fell behind the pruned log or lost a commit.
    async fn catch_up(&self, conn: &mut Object, write: bool) -> Result<Option<CatchUp>, String> {
        let cursor = self.cursor.load(Ordering::Acquire);
        let read = conn
            .prepare_cached(
                "SELECT h.pruned_through, l.seq, l.entry FROM cipc_head h
                 LEFT JOIN cipc_log l ON l.seq > $1
                 WHERE h.id = 1 ORDER BY l.seq",
            )
            .await
            .map_err(|e| why(&e))?;
        let cursor_param = seq_param(cursor);
        let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&TURN_LOCK];
        let read_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&cursor_param];
        let rows = if write {
            // Prepared first: a query given as text is prepared when polled,
            // which would send it after the read below.
            let lock = conn
                .prepare_cached("SELECT pg_advisory_lock($1)")
                .await
                .map_err(|e| why(&e))?;
            let lock = conn.execute(&lock, &lock_params);
            let rows = conn.query(&read, &read_params);
            let (locked, rows) = futures::join!(lock, rows);
            locked.map_err(|e| why(&e))?;
            rows
        } else {
            conn.query(&read, &read_params).await
        }
        .map_err(|e| why(&e))?;
        if self.progress.failing() {
            return self.reload(conn).await.map(Some);
        }
        let pruned = rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0));
        if pruned > cursor {
            tracing::warn!(cursor, pruned, "this node fell behind the log; reloading");
            return self.reload(conn).await.map(Some);
        }
        let mut entries = Vec::new();
        for r in &rows {
            let (Some(seq), Some(body)) =
                (r.get::<_, Option<i64>>(1), r.get::<_, Option<String>>(2))
            else {
                continue;
            };
            match serde_json::from_str::<LogEntry>(&body) {
                Ok(mut entry) => {
                    entry.seq = u64::try_from(seq).unwrap_or(0);
                    entries.push(entry);
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "unreadable log entry; reloading");
                    return self.reload(conn).await.map(Some);
                }
            }
        }
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(None);
        };
        self.cursor.store(last, Ordering::Release);
        Ok(Some(CatchUp::Entries(entries)))
    }

    async fn reload(&self, conn: &mut Object) -> Result<CatchUp, String> {
        let (snapshot, head) = read_snapshot(conn).await?;
        self.cursor.store(head, Ordering::Release);
        if self.progress.failing() {
            self.progress.recovered(self.progress.queued());
            let marker = self.progress.next();
            self.progress.settle(marker, None);
        }
        Ok(CatchUp::Reload(snapshot))
    }

    /// Commits what the turn's members collected (up to `upto` at least) as
    /// one log row, and answers whether position `upto` is durable. With
    /// `last`, also gives the turn lock back (the turn has ended).
    async fn flush(&self, open: &OpenTurn, upto: u64, last: bool) -> Result<(), StoreError> {
        let mut conn = open.conn.lock().await;
        let (mutations, events, first, last_lsn) = {
            let mut p = open.pending.lock();
            if upto <= p.done_through && !last {
                return p.outcome(upto);
            }
            (
                std::mem::take(&mut p.mutations),
                std::mem::take(&mut p.events),
                p.first_lsn.take(),
                p.last_lsn,
            )
        };
        let Some(c) = conn.as_mut() else {
            return Err(StoreError::Unavailable(
                "the connection was lost earlier in this turn".into(),
            ));
        };
        let written = if mutations.is_empty() && events.is_empty() {
            if last {
                unlock(c).await
            } else {
                Ok(None)
            }
        } else {
            self.write_entry(c, mutations, events, last)
                .await
                .map(|seq| Some(i64::try_from(seq).unwrap_or(i64::MAX)))
        };
        let mut p = open.pending.lock();
        p.done_through = p.done_through.max(last_lsn);
        match written {
            Ok(seq) => {
                if let Some(seq) = seq.and_then(|s| u64::try_from(s).ok()) {
                    let before = self.cursor.fetch_max(seq, Ordering::AcqRel);
                    if seq / PRUNE_EVERY > before / PRUNE_EVERY {
                        self.prune_soon();
                    }
                }
                if first.is_some() {
                    self.progress.settle(last_lsn, None);
                }
                if last {
                    // Back to the pool, unlocked.
                    conn.take();
                }
                p.outcome(upto)
            }
            Err(e) => {
                tracing::error!(error = %e, "commit to PostgreSQL failed");
                if let Some(c) = conn.take() {
                    // It may hold the turn lock: close it rather than pool it.
                    drop(Object::take(c));
                }
                if let Some(first) = first {
                    p.failed_from.get_or_insert(first);
                    self.progress.settle(last_lsn, Some(first));
                }
                Err(self.unavailable(e))
            }
        }
    }

    /// One log row with its mutations, pipelined in one transaction (one
    /// round trip once the statements are prepared); with `unlock`, the
    /// turn lock is given back in the same round trip.
    async fn write_entry(
        &self,
        conn: &mut Object,
        mutations: Vec<Mutation>,
        events: Vec<SharedEvent>,
        unlock_after: bool,
    ) -> Result<u64, String> {
        let e = |e: tokio_postgres::Error| why(&e);
        let mut statements = Vec::new();
        for m in &mutations {
            for (sql, params) in plan(m) {
                statements.push((conn.prepare_cached(sql).await.map_err(e)?, params));
            }
        }
        let insert = conn
            .prepare_cached("INSERT INTO cipc_log (entry) VALUES ($1) RETURNING seq")
            .await
            .map_err(e)?;
        // Every statement is prepared before the pipeline starts, so they are
        // sent (and run) in order: above all, the unlock after the commit.
        let unlock_stmt = conn
            .prepare_cached("SELECT pg_advisory_unlock($1)")
            .await
            .map_err(e)?;
        let entry = LogEntry {
            seq: 0,
            node: self.node.clone(),
            mutations,
            events,
        };
        let body = json(&entry);
        let client: &tokio_postgres::Client = conn;
        let mut steps: Vec<Step<'_>> = vec![
            Box::pin(async { client.batch_execute("BEGIN").await.map(|()| None) }),
            Box::pin(async {
                let row = client.query_one(&insert, &[&body]).await?;
                Ok(Some(row.get::<_, i64>(0)))
            }),
        ];
        for (stmt, params) in &statements {
            steps.push(Box::pin(async move {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client.execute(stmt, &refs).await.map(|_| None)
            }));
        }
        steps.push(Box::pin(async {
            client
                .batch_execute(
                    "SELECT pg_notify('cipc_log', currval(pg_get_serial_sequence('cipc_log', 'seq'))::text); COMMIT",
                )
                .await
                .map(|()| None)
        }));
        if unlock_after {
            steps.push(Box::pin(async {
                client
                    .execute(&unlock_stmt, &[&TURN_LOCK])
                    .await
                    .map(|_| None)
            }));
        }
        let mut seq = None;
        for step in futures::future::join_all(steps).await {
            if let Some(s) = step.map_err(e)? {
                seq = Some(s);
            }
        }
        let seq = seq.ok_or("the log row got no position")?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// Deletes log rows older than [`LOG_KEPT_SECS`] in the background (no
    /// turn needed: nobody reads them but a node far behind, which then
    /// reloads).
    fn prune_soon(&self) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let Ok(conn) = pool.get().await else { return };
            let pruned = conn
                .execute(
                    "WITH gone AS (DELETE FROM cipc_log
                                   WHERE at < now() - make_interval(secs => $1) RETURNING seq)
                     UPDATE cipc_head SET pruned_through =
                         GREATEST(pruned_through, COALESCE((SELECT MAX(seq) FROM gone), 0))
                     WHERE id = 1",
                    &[&LOG_KEPT_SECS],
                )
                .await;
            if let Err(e) = pruned {
                tracing::warn!(error = %why(&e), "pruning the log failed; will retry later");
            }
        });
    }
}

/// Gives the turn lock back.
async fn unlock(c: &Object) -> Result<Option<i64>, String> {
    c.execute("SELECT pg_advisory_unlock($1)", &[&TURN_LOCK])
        .await
        .map(|_| None)
        .map_err(|e| why(&e))
}

/// Follows `NOTIFY cipc_log` on a connection of its own, reconnecting with
/// backoff; after every (re)connect it announces a change so the node
/// catches up on whatever it missed meanwhile.
async fn listen(inner: std::sync::Weak<PgInner>, closed: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(pg) = inner.upgrade() else { return };
        let config = pg.pg_config.clone();
        drop(pg);
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(m)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = m {
                            if tx.send(n.payload().parse().unwrap_or(0)).is_err() {
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute("LISTEN cipc_log").await {
                    tracing::warn!(error = %why(&e), "cannot LISTEN for other nodes' changes");
                } else {
                    backoff = Duration::from_millis(100);
                    if let Some(pg) = inner.upgrade() {
                        *pg.trouble.lock() = None;
                        let at = pg.changes.borrow().to_owned();
                        pg.changes.send_replace(at);
                    }
                    loop {
                        tokio::select! {
                            seq = rx.recv() => match (seq, inner.upgrade()) {
                                (Some(seq), Some(pg)) => {
                                    let at = pg.changes.borrow().to_owned().max(seq);
                                    pg.changes.send_replace(at);
                                }
                                _ => break,
                            },
                            () = closed.cancelled() => {
                                driver.abort();
                                return;
                            }
                        }
                    }
                    if let Some(pg) = inner.upgrade() {
                        *pg.trouble.lock() =
                            Some("lost the connection that follows other nodes' changes".into());
                    }
                    tracing::warn!("lost the LISTEN connection to PostgreSQL; reconnecting");
                }
                driver.abort();
            }
            Err(e) => {
                if let Some(pg) = inner.upgrade() {
                    *pg.trouble.lock() = Some(why(&e));
                }
                tracing::debug!(error = %why(&e), "cannot reach PostgreSQL yet");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = closed.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
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
        {
            let mut p = open.pending.lock();
            p.first_lsn.get_or_insert(lsn);
            p.last_lsn = lsn;
            p.mutations.push(mutation);
        }
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

    fn health(&self) -> Result<(), String> {
        if let Some(t) = self.inner.trouble.lock().clone() {
            return Err(format!("PostgreSQL at {}: {t}", self.inner.describe));
        }
        if self.inner.progress.failing() {
            return Err("a commit failed and this node has not reloaded yet".into());
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
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
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
            .map(|b| parse(b, "message").map_err(StoreError::Write))
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
            let conn = self
                .inner
                .pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
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
            open.pending.lock().events.push(SharedEvent {
                kind: kind.to_string(),
                data: data.clone(),
            });
        }
    }
}
