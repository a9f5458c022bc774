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
const PRUNE_EVERY: i64 = 256;
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
    snapshot: parking_lot::Mutex<Option<Snapshot>>,
    /// The newest log position announced by `NOTIFY`.
    changes: watch::Sender<u64>,
    /// Why the database cannot be used now, if it cannot.
    trouble: parking_lot::Mutex<Option<String>>,
    closed: CancellationToken,
}

/// A write turn's connection (holding [`TURN_LOCK`]) and what it collected.
struct OpenTurn {
    conn: tokio::sync::Mutex<Option<Object>>,
    pending: parking_lot::Mutex<Pending>,
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

/// Ends a turn when the broker drops it.
struct TurnHold {
    inner: Arc<PgInner>,
    open: Option<Arc<OpenTurn>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for TurnHold {
    fn drop(&mut self) {
        let guard = self.guard.take();
        let Some(open) = self.open.take() else {
            return;
        };
        {
            let mut current = self.inner.current.lock();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &open)) {
                *current = None;
            }
        }
        let inner = self.inner.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // A failure is recorded in `progress`; nobody awaits this.
                let _ = inner.flush(&open, u64::MAX).await;
                PgInner::release(&open).await;
                drop(guard);
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

async fn write_one(
    tx: &deadpool_postgres::Transaction<'_>,
    m: &Mutation,
) -> Result<(), tokio_postgres::Error> {
    async fn run(
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), tokio_postgres::Error> {
        let stmt = tx.prepare_cached(sql).await?;
        tx.execute(&stmt, params).await.map(|_| ())
    }
    match m {
        Mutation::Peer(p) => {
            run(
                tx,
                "INSERT INTO cipc_peers (id, body) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&p.peer.id.to_string(), &json(p)],
            )
            .await
        }
        Mutation::Command { ord, command } => {
            run(
                tx,
                "INSERT INTO cipc_commands (id, ord, body) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET ord = excluded.ord, body = excluded.body",
                &[&command.id.to_string(), &seq_param(*ord), &json(command)],
            )
            .await
        }
        Mutation::ForgetCommand { id } => {
            run(
                tx,
                "DELETE FROM cipc_commands WHERE id = $1",
                &[&id.to_string()],
            )
            .await
        }
        Mutation::Message(msg) => {
            run(
                tx,
                "INSERT INTO cipc_messages (channel, seq, body) VALUES ($1, $2, $3)
                 ON CONFLICT (channel, seq) DO UPDATE SET body = excluded.body",
                &[&msg.channel, &seq_param(msg.seq), &json(msg)],
            )
            .await?;
            run(
                tx,
                "INSERT INTO cipc_channels (name, last_seq) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE
                 SET last_seq = GREATEST(cipc_channels.last_seq, excluded.last_seq)",
                &[&msg.channel, &seq_param(msg.seq)],
            )
            .await
        }
        Mutation::Trim { channel, below } => {
            run(
                tx,
                "DELETE FROM cipc_messages WHERE channel = $1 AND seq < $2",
                &[channel, &seq_param(*below)],
            )
            .await
        }
        Mutation::Signal(s) => {
            run(
                tx,
                "INSERT INTO cipc_signals (name, body) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET body = excluded.body",
                &[&s.name, &json(s)],
            )
            .await
        }
        Mutation::ForgetPeer { id } => {
            run(
                tx,
                "DELETE FROM cipc_peers WHERE id = $1",
                &[&id.to_string()],
            )
            .await
        }
        Mutation::ForgetChannel { name } => {
            run(tx, "DELETE FROM cipc_messages WHERE channel = $1", &[name]).await?;
            run(tx, "DELETE FROM cipc_channels WHERE name = $1", &[name]).await
        }
        Mutation::ForgetSignal { name } => {
            run(tx, "DELETE FROM cipc_signals WHERE name = $1", &[name]).await
        }
        Mutation::Question(q) => {
            run(
                tx,
                "INSERT INTO cipc_questions (id, body) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&q.id.to_string(), &json(q)],
            )
            .await
        }
        Mutation::ForgetQuestion { id } => {
            run(
                tx,
                "DELETE FROM cipc_questions WHERE id = $1",
                &[&id.to_string()],
            )
            .await
        }
        Mutation::Session { hash, expires } => {
            run(
                tx,
                "INSERT INTO cipc_sessions (hash, expires_at) VALUES ($1, $2)
                 ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at",
                &[hash, &expires.millis()],
            )
            .await
        }
        Mutation::EndSession { hash } => {
            run(tx, "DELETE FROM cipc_sessions WHERE hash = $1", &[hash]).await
        }
        Mutation::Reset => {
            tx.batch_execute(
                "DELETE FROM cipc_peers; DELETE FROM cipc_commands; DELETE FROM cipc_messages;
                 DELETE FROM cipc_channels; DELETE FROM cipc_signals; DELETE FROM cipc_questions;",
            )
            .await
        }
    }
}

impl PgInner {
    fn unavailable(&self, reason: String) -> StoreError {
        *self.trouble.lock() = Some(reason.clone());
        StoreError::Unavailable(reason)
    }

    async fn begin(self: &Arc<Self>, kind: TurnKind) -> Result<Turn, StoreError> {
        let guard = self.turns.clone().lock_owned().await;
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| self.unavailable(e.to_string()))?;
        if kind == TurnKind::Write {
            if let Err(e) = conn
                .execute("SELECT pg_advisory_lock($1)", &[&TURN_LOCK])
                .await
            {
                drop(Object::take(conn));
                return Err(self.unavailable(why(&e)));
            }
        }
        let mut conn = Some(conn);
        let caught = match conn.as_mut() {
            Some(c) => self.catch_up(c).await,
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
        let hold: Box<dyn Send> = if kind == TurnKind::Write {
            let open = Arc::new(OpenTurn {
                conn: tokio::sync::Mutex::new(conn),
                pending: parking_lot::Mutex::new(Pending::default()),
            });
            *self.current.lock() = Some(open.clone());
            Box::new(TurnHold {
                inner: self.clone(),
                open: Some(open),
                guard: Some(guard),
            })
        } else {
            drop(conn);
            Box::new(guard)
        };
        Ok(Turn {
            catch_up,
            hold: Some(hold),
        })
    }

    /// What this node has not applied yet: the log since its cursor, or
    /// everything when it fell behind the pruned log or lost a commit.
    async fn catch_up(&self, conn: &mut Object) -> Result<Option<CatchUp>, String> {
        if self.progress.failing() {
            return self.reload(conn).await.map(Some);
        }
        let cursor = self.cursor.load(Ordering::Acquire);
        let rows = conn
            .query(
                "SELECT h.pruned_through, l.seq, l.entry FROM cipc_head h
                 LEFT JOIN cipc_log l ON l.seq > $1
                 WHERE h.id = 1 ORDER BY l.seq",
                &[&seq_param(cursor)],
            )
            .await
            .map_err(|e| why(&e))?;
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

    /// Commits what the turn collected (up to `upto` at least) as one log
    /// entry; answers whether position `upto` is durable.
    async fn flush(&self, open: &OpenTurn, upto: u64) -> Result<(), StoreError> {
        let mut conn = open.conn.lock().await;
        let (mutations, events, first, last) = {
            let mut p = open.pending.lock();
            if upto <= p.done_through {
                return p.outcome(upto);
            }
            (
                std::mem::take(&mut p.mutations),
                std::mem::take(&mut p.events),
                p.first_lsn.take(),
                p.last_lsn,
            )
        };
        if mutations.is_empty() && events.is_empty() {
            return open.pending.lock().outcome(upto);
        }
        let written = match conn.as_mut() {
            Some(c) => self.write_entry(c, mutations, events).await,
            None => Err("the connection was lost earlier in this turn".to_string()),
        };
        let mut p = open.pending.lock();
        p.done_through = p.done_through.max(last);
        match written {
            Ok(seq) => {
                self.cursor.fetch_max(seq, Ordering::AcqRel);
                if first.is_some() {
                    self.progress.settle(last, None);
                }
                p.outcome(upto)
            }
            Err(e) => {
                tracing::error!(error = %e, "commit to PostgreSQL failed");
                if let Some(c) = conn.take() {
                    drop(Object::take(c));
                }
                if let Some(first) = first {
                    p.failed_from.get_or_insert(first);
                    self.progress.settle(last, Some(first));
                }
                Err(self.unavailable(e))
            }
        }
    }

    async fn write_entry(
        &self,
        conn: &mut Object,
        mutations: Vec<Mutation>,
        events: Vec<SharedEvent>,
    ) -> Result<u64, String> {
        let entry = LogEntry {
            seq: 0,
            node: self.node.clone(),
            mutations,
            events,
        };
        let body = json(&entry);
        let e = |e: tokio_postgres::Error| why(&e);
        let tx = conn.transaction().await.map_err(e)?;
        let insert = tx
            .prepare_cached("INSERT INTO cipc_log (entry) VALUES ($1) RETURNING seq")
            .await
            .map_err(e)?;
        let seq: i64 = tx.query_one(&insert, &[&body]).await.map_err(e)?.get(0);
        for m in &entry.mutations {
            write_one(&tx, m).await.map_err(e)?;
        }
        if seq % PRUNE_EVERY == 0 {
            tx.execute(
                "WITH gone AS (DELETE FROM cipc_log
                               WHERE at < now() - make_interval(secs => $1) RETURNING seq)
                 UPDATE cipc_head SET pruned_through =
                     GREATEST(pruned_through, COALESCE((SELECT MAX(seq) FROM gone), 0))
                 WHERE id = 1",
                &[&LOG_KEPT_SECS],
            )
            .await
            .map_err(e)?;
        }
        tx.execute("SELECT pg_notify('cipc_log', $1)", &[&seq.to_string()])
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// Gives the turn lock back (or closes the connection, which frees it).
    async fn release(open: &OpenTurn) {
        let mut conn = open.conn.lock().await;
        if let Some(c) = conn.take() {
            if c.execute("SELECT pg_advisory_unlock($1)", &[&TURN_LOCK])
                .await
                .is_err()
            {
                drop(Object::take(c));
            }
        }
    }
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
        Box::pin(async move { inner.flush(&open, lsn).await })
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
