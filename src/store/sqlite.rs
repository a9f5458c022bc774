//! The default store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Rows hold the API objects as JSON so the schema never fights the wire types.
//! A single writer thread drains every queued mutation into one transaction and
//! answers all of their commit futures at once (group commit).
//!
//! (A file of one concern, the SQLite store: its schema, its writer thread
//! and the rows of every mutation.)

use super::{
    decode_row, json, sh_double_quoted, sql_text, ChannelHead, Commit, Fault, Mutation, Progress,
    RowAt, Snapshot, Store, StoreError, StoredLease, StoredPeer, UnreadableRow, RECENT_KEPT,
};
use crate::api::{Command, Message, Question, Signal};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Answers one write once its batch is committed (or failed).
type Reply = oneshot::Sender<Result<(), StoreError>>;

/// What the writer thread is asked to do, in order.
enum Job {
    /// Save a mutation at position `lsn`.
    Write {
        lsn: u64,
        mutation: Box<Mutation>,
        reply: Reply,
        /// Nobody is shown it before a later change ([`Store::apply_deferred`]).
        deferred: bool,
    },
    /// After a failure: prove the file is writable, read it back, and count
    /// every position up to `through` that was not saved as lost.
    Recover {
        through: u64,
        reply: std::sync::mpsc::Sender<Result<Snapshot, StoreError>>,
    },
}

/// An SQLite file with a group-committing writer thread.
pub struct SqliteStore {
    path: PathBuf,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    snapshot: Mutex<Option<Snapshot>>,
    /// Which positions are saved; shared with the writer thread.
    progress: Arc<Progress>,
    /// A read-only connection for old messages.
    reader: Mutex<Connection>,
    /// Keeps every other broker off this directory while this one runs.
    lock: super::DirLock,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS peers (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, ord INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (channel TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (channel, seq));
CREATE TABLE IF NOT EXISTS channels (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS signals (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS questions (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, body TEXT NOT NULL);
";

impl SqliteStore {
    /// Opens (creating if needed) `cipc.db` in `dir`, reads back what the
    /// broker keeps in memory (not every message: see [`RECENT_KEPT`]), and
    /// starts the writer thread. With `verify`, runs SQLite's `quick_check`
    /// first, which reads the whole file (so it is not done by default: start
    /// time must not grow with the database). Errors name the path.
    pub fn open(dir: &Path, verify: bool) -> Result<Self, StoreError> {
        let open_err = |path: &Path, reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(dir, e.to_string()))?;
        let lock = super::DirLock::acquire(dir)?;
        let path = dir.join("cipc.db");
        let conn = Connection::open(&path).map_err(|e| open_err(&path, e.to_string()))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "SQLite did not switch to WAL mode");
            }
            conn.execute_batch("PRAGMA synchronous=FULL;")?;
            if verify {
                let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
                if check != "ok" {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                        Some(format!("integrity check failed: {check}")),
                    ));
                }
            }
            conn.execute_batch(SCHEMA)?;
            Ok(())
        };
        setup().map_err(|e| {
            open_err(
                &path,
                format!("{e} (move the file aside or pick another --data-dir)"),
            )
        })?;
        let snapshot = read_all(&conn).map_err(|e| open_err(&path, e.to_string()))?;
        // Readers of old messages get their own connection (WAL lets them
        // read while the writer writes).
        let reader = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(&path, e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let progress = Arc::new(Progress::default());
        let writer_progress = progress.clone();
        let writer = std::thread::Builder::new()
            .name("cipc-store-writer".into())
            .spawn(move || writer_loop(conn, rx, &writer_progress))
            .map_err(|e| open_err(&path, format!("cannot start writer thread: {e}")))?;
        Ok(SqliteStore {
            path,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            snapshot: Mutex::new(Some(snapshot)),
            progress,
            reader: Mutex::new(reader),
            lock,
        })
    }
}

impl SqliteStore {
    /// Hands `mutation` to the writer; `deferred`: see [`Store::apply_deferred`].
    fn queue(&self, mutation: Mutation, deferred: bool) -> Commit {
        let (tx, rx) = oneshot::channel();
        let lsn = self.progress.next();
        let job = Job::Write {
            lsn,
            mutation: Box::new(mutation),
            reply: tx,
            deferred,
        };
        let sent = match self.sender.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(s) => s.send(job).is_ok(),
                None => false,
            },
            Err(_) => false,
        };
        if !sent {
            // Nobody will save it: it settles as failed now.
            self.progress.settle(lsn, Some(lsn));
        }
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        })
    }
}

/// How to get past an unreadable row of this file: the `sqlite3` command
/// that removes it, and moving the data directory aside.
struct Fixes {
    file: String,
    dir: String,
}

impl Fixes {
    fn of(conn: &Connection) -> Fixes {
        let file = conn
            .path()
            .filter(|p| !p.is_empty())
            .unwrap_or("cipc.db")
            .to_string();
        let dir = Path::new(&file)
            .parent()
            .map(|d| d.display().to_string())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| ".".to_string());
        Fixes { file, dir }
    }

    /// Decodes one row's body; an unreadable one names itself and the way out.
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        body: &str,
        at: &RowAt<'_>,
    ) -> Result<T, UnreadableRow> {
        let aside = format!(
            "move the data directory aside to start empty and keep the old file (mv {0} {0}.old); \
`cipc serve --check-store` also checks the file itself",
            sh_double_quoted(&self.dir)
        );
        decode_row(
            body,
            at,
            |delete| {
                format!(
                    "sqlite3 {} {}",
                    sh_double_quoted(&self.file),
                    sh_double_quoted(delete)
                )
            },
            &aside,
        )
    }
}

fn read_all(conn: &Connection) -> Result<Snapshot, Fault> {
    let fixes = Fixes::of(conn);
    // Every keyed table as (key, body), so an unreadable row names itself.
    fn rows<T: serde::de::DeserializeOwned>(
        conn: &Connection,
        fixes: &Fixes,
        table: &str,
        column: &str,
    ) -> Result<Vec<T>, Fault> {
        let sql = format!("SELECT {column}, body FROM {table} ORDER BY {column}");
        let mut stmt = conn.prepare(&sql)?;
        let bodies =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in bodies {
            let (key, body) = row?;
            out.push(fixes.decode(&body, &RowAt::new(table, column, &key))?);
        }
        Ok(out)
    }
    let peers: Vec<StoredPeer> = rows(conn, &fixes, "peers", "id")?;
    let signals: Vec<Signal> = rows(conn, &fixes, "signals", "name")?;
    let questions: Vec<Question> = rows(conn, &fixes, "questions", "id")?;
    let leases: Vec<StoredLease> = rows(conn, &fixes, "leases", "id")?;

    let mut commands = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT id, ord, body FROM commands ORDER BY ord")?;
        let it = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in it {
            let (id, ord, body) = row?;
            let cmd: Command = fixes.decode(&body, &RowAt::new("commands", "id", &id))?;
            commands.push((ord as u64, cmd));
        }
    }
    // Per channel: its head, its oldest retained seq and its newest
    // messages, each by the primary key's index, so start-up reads what it
    // keeps and not every message.
    let mut channels = Vec::new();
    let mut messages = Vec::new();
    {
        let mut heads = conn.prepare("SELECT name, last_seq FROM channels ORDER BY name")?;
        let heads: Vec<(String, i64)> = heads
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut oldest = conn.prepare("SELECT MIN(seq) FROM messages WHERE channel = ?1")?;
        let mut newest = conn.prepare(
            "SELECT seq, body FROM messages WHERE channel = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        for (name, last_seq) in heads {
            let last_seq = last_seq.max(0) as u64;
            let first: Option<i64> = oldest.query_row(params![name], |r| r.get(0))?;
            let mut recent: Vec<Message> = newest
                .query_map(params![name, RECENT_KEPT as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .map(|row| {
                    let (seq, body) = row?;
                    let at = RowAt {
                        table: "messages",
                        filter: format!("channel = {} AND seq = {seq}", sql_text(&name)),
                    };
                    Ok(fixes.decode(&body, &at)?)
                })
                .collect::<Result<_, Fault>>()?;
            recent.reverse();
            messages.extend(recent);
            channels.push(ChannelHead {
                name,
                last_seq,
                first_seq: first.map_or(last_seq + 1, |f| f.max(1) as u64),
            });
        }
    }
    let sessions = {
        let mut stmt = conn.prepare("SELECT hash, expires_at FROM sessions")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| r.map(|(hash, at)| (hash, crate::time::Timestamp(at))))
            .collect::<Result<Vec<_>, rusqlite::Error>>()?
    };
    Ok(Snapshot {
        peers,
        commands,
        messages,
        channels,
        signals,
        questions,
        leases,
        sessions,
    })
}

fn write_one(tx: &rusqlite::Transaction<'_>, m: &Mutation) -> rusqlite::Result<()> {
    match m {
        Mutation::Peer(p) => {
            tx.prepare_cached("INSERT OR REPLACE INTO peers (id, body) VALUES (?1, ?2)")?
                .execute(params![p.peer.id.to_string(), json(p)])?;
        }
        Mutation::Command { ord, command } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO commands (id, ord, body) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![command.id.to_string(), *ord as i64, json(command)])?;
        }
        Mutation::ForgetCommand { id } => {
            tx.prepare_cached("DELETE FROM commands WHERE id = ?1")?
                .execute(params![id.to_string()])?;
        }
        Mutation::Message(msg) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO messages (channel, seq, body) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![msg.channel, msg.seq as i64, json(msg)])?;
            tx.prepare_cached(
                "INSERT INTO channels (name, last_seq) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
            )?
            .execute(params![msg.channel, msg.seq as i64])?;
        }
        Mutation::Trim {
            channel,
            from,
            below,
        } => {
            tx.prepare_cached(
                "DELETE FROM messages WHERE channel = ?1 AND seq >= ?2 AND seq < ?3",
            )?
            .execute(params![channel, *from as i64, *below as i64])?;
        }
        Mutation::Signal(s) => {
            tx.prepare_cached("INSERT OR REPLACE INTO signals (name, body) VALUES (?1, ?2)")?
                .execute(params![s.name, json(s)])?;
        }
        Mutation::ForgetPeer { id } => {
            tx.prepare_cached("DELETE FROM peers WHERE id = ?1")?
                .execute(params![id.to_string()])?;
        }
        Mutation::ForgetChannel { name } => {
            tx.prepare_cached("DELETE FROM messages WHERE channel = ?1")?
                .execute(params![name])?;
            tx.prepare_cached("DELETE FROM channels WHERE name = ?1")?
                .execute(params![name])?;
        }
        Mutation::ForgetSignal { name } => {
            tx.prepare_cached("DELETE FROM signals WHERE name = ?1")?
                .execute(params![name])?;
        }
        Mutation::Question(q) => {
            tx.prepare_cached("INSERT OR REPLACE INTO questions (id, body) VALUES (?1, ?2)")?
                .execute(params![q.id.to_string(), json(q)])?;
        }
        Mutation::ForgetQuestion { id } => {
            tx.prepare_cached("DELETE FROM questions WHERE id = ?1")?
                .execute(params![id.to_string()])?;
        }
        Mutation::Lease(l) => {
            tx.prepare_cached("INSERT OR REPLACE INTO leases (id, body) VALUES (?1, ?2)")?
                .execute(params![l.lease.id.to_string(), json(l)])?;
        }
        Mutation::ForgetLease { id } => {
            tx.prepare_cached("DELETE FROM leases WHERE id = ?1")?
                .execute(params![id.to_string()])?;
        }
        Mutation::Session { hash, expires } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions (hash, expires_at) VALUES (?1, ?2)",
            )?
            .execute(params![hash, expires.millis()])?;
        }
        Mutation::EndSession { hash } => {
            tx.prepare_cached("DELETE FROM sessions WHERE hash = ?1")?
                .execute(params![hash])?;
        }
        Mutation::Reset => {
            tx.execute_batch(
                "DELETE FROM peers; DELETE FROM commands; DELETE FROM messages;
                 DELETE FROM channels; DELETE FROM signals; DELETE FROM questions;
                 DELETE FROM leases;",
            )?;
        }
    }
    Ok(())
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>, progress: &Progress) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::new();
        // Whether every write in the batch may wait for a later one.
        let mut deferrable = true;
        let defer_until = std::time::Instant::now() + DEFER_AT_MOST;
        let mut next = Some(first);
        loop {
            while let Some(job) = next.take() {
                match job {
                    Job::Write {
                        lsn,
                        mutation,
                        reply,
                        deferred,
                    } => {
                        deferrable &= deferred;
                        batch.push((lsn, mutation, reply));
                    }
                    Job::Recover { through, reply } => {
                        // Everything queued before the request is settled first.
                        commit_batch(&mut conn, std::mem::take(&mut batch), progress);
                        let _ = reply.send(recover(&conn, through, progress));
                        deferrable = true;
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // Only deferred writes: no sync of their own, the next write's
            // covers them (or this one, once they waited long enough).
            if deferrable && !batch.is_empty() && batch.len() < MAX_BATCH {
                let left = defer_until.saturating_duration_since(std::time::Instant::now());
                if let Ok(job) = rx.recv_timeout(left) {
                    next = Some(job);
                    continue;
                }
            }
            break;
        }
        // One commit (one sync) covers every write queued meanwhile.
        commit_batch(&mut conn, batch, progress);
    }
    // Every sender is gone: checkpoint so the next start reads one file.
    let _ = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .optional();
}

/// How long a deferred write ([`Store::apply_deferred`]) waits for a later
/// one to share its sync: a command sent with `wait` for the delivery that
/// a parked worker makes of it a few microseconds later.
const DEFER_AT_MOST: std::time::Duration = std::time::Duration::from_millis(2);

/// Writes one transaction holds at most.
const MAX_BATCH: usize = 4096;

/// Commits a batch in one transaction and answers each job. While a failure
/// is not recovered from, nothing is written: those mutations were made on
/// top of changes that were never saved.
fn commit_batch(
    conn: &mut Connection,
    batch: Vec<(u64, Box<Mutation>, Reply)>,
    progress: &Progress,
) {
    let (Some(first), Some(last)) = (batch.first().map(|b| b.0), batch.last().map(|b| b.0)) else {
        return;
    };
    let outcome = if progress.failing() {
        Err("an earlier change could not be saved; the broker is recovering".to_string())
    } else {
        // A panic while writing fails this batch, never the writer: the
        // broker must keep being able to say that its store is broken.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let tx = conn.transaction()?;
            for (_, m, _) in &batch {
                write_one(&tx, m)?;
            }
            tx.commit()
        }))
        .unwrap_or_else(|_| {
            Err(rusqlite::Error::ToSqlConversionFailure(
                "the writer panicked on this batch".into(),
            ))
        })
        .map_err(|e| e.to_string())
    };
    match &outcome {
        Ok(()) => progress.count_commit(batch.len()),
        Err(e) => tracing::error!(error = %e, batch = batch.len(), "store commit failed"),
    }
    progress.settle(last, outcome.is_err().then_some(first));
    for (_, _, reply) in batch {
        let _ = reply.send(outcome.clone().map_err(StoreError::Write));
    }
}

/// Proves the file takes writes again and reads it back.
fn recover(conn: &Connection, through: u64, progress: &Progress) -> Result<Snapshot, StoreError> {
    let write = |e: rusqlite::Error| StoreError::Write(e.to_string());
    conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
        .map_err(write)?;
    let snapshot = read_all(conn).map_err(|e| StoreError::Write(e.to_string()))?;
    progress.recovered(through);
    tracing::warn!(through, "store recovered; state reloaded from the file");
    Ok(snapshot)
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.snapshot
            .lock()
            .map_err(|_| StoreError::Closed)?
            .take()
            .ok_or(StoreError::Closed)
    }

    fn apply(&self, mutation: Mutation) -> Commit {
        self.queue(mutation, false)
    }

    fn apply_deferred(&self, mutation: Mutation) -> Commit {
        self.queue(mutation, true)
    }

    fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            if handle.join().is_ok() && !self.progress.failing() {
                self.lock.mark_clean_stop();
            }
        }
    }

    fn unclean_start(&self) -> bool {
        self.lock.unclean_start()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn health(&self) -> Result<(), StoreError> {
        let running = self
            .writer
            .lock()
            .ok()
            .is_some_and(|w| w.as_ref().is_some_and(|h| !h.is_finished()));
        if !running {
            return Err(StoreError::Write("the store's writer has stopped".into()));
        }
        if self.progress.failing() {
            return Err(StoreError::Write(
                "a commit failed and the store has not recovered yet".into(),
            ));
        }
        Ok(())
    }

    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
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
        let reader = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let read = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = reader.prepare_cached(
                "SELECT body FROM messages WHERE channel = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![
                    channel,
                    i64::try_from(from).unwrap_or(i64::MAX),
                    i64::try_from(to).unwrap_or(i64::MAX),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| r.get::<_, String>(0),
            )?;
            rows.collect()
        };
        let bodies = read().map_err(|e| StoreError::Write(format!("reading messages: {e}")))?;
        bodies
            .iter()
            .map(|b| {
                serde_json::from_str(b)
                    .map_err(|e| StoreError::Write(format!("unreadable message: {e}")))
            })
            .collect()
    }

    fn recover(&self) -> Result<Snapshot, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = Job::Recover {
            through: self.progress.queued(),
            reply: tx,
        };
        let sent = self
            .sender
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|s| s.send(job).is_ok()))
            .unwrap_or(false);
        if !sent {
            return Err(StoreError::Closed);
        }
        let snapshot = rx.recv().unwrap_or(Err(StoreError::Closed))?;
        // A position of its own past the lost ones, so readers from now on
        // wait for nothing that was lost.
        let marker = self.progress.next();
        self.progress.settle(marker, None);
        Ok(snapshot)
    }
}
