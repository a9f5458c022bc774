//! Durability behind one small trait.
//!
//! The broker keeps its whole state in memory and describes every change as a
//! [`Mutation`]. A store persists mutations and, at start-up, hands back a
//! [`Snapshot`] to rebuild the state from. The SQLite store commits batches of
//! mutations from a single writer thread (group commit), so a 2xx answer can wait
//! for its own commit without serialising every request behind an fsync.
//!
//! A store can also be shared by several broker nodes ([`PgStore`]): then a
//! node makes every change in a [`Turn`], which the store grants to one node
//! at a time after handing it the other nodes' changes ([`CatchUp`]), and
//! each turn's mutations become one [`LogEntry`] the other nodes apply.

mod dir_lock;
mod memory;
mod postgres;
mod progress;
mod shared;
#[cfg(test)]
pub(crate) mod shared_memory;
mod sqlite;

pub use dir_lock::{DirLock, LOCK_FILE};
pub use memory::MemoryStore;
pub use postgres::{PgStore, DEFAULT_TURN_TIMEOUT};
pub use progress::{Lost, Progress};
pub use shared::{CatchUp, LogEntry, SharedEvent, Turn, TurnKind};
pub use sqlite::SqliteStore;

use crate::api::{Command, Lease, Message, Peer, Question, Signal};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A peer as stored: the wire object plus the digest of its key, which no
/// answer ever shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPeer {
    /// The peer.
    #[serde(flatten)]
    pub peer: Peer,
    /// Hex SHA-256 of the peer's key; absent for peers saved before keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
}

/// A lease as stored: the wire object plus the ttl it was taken (or last
/// renewed) with, which a renewal that names no ttl takes again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredLease {
    /// The lease.
    #[serde(flatten)]
    pub lease: Lease,
    /// Its ttl in milliseconds.
    pub ttl: u64,
}

/// One change to persist, in the order the broker made it. A shared store
/// also ships them to the other nodes ([`LogEntry`]), hence the serde.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Mutation {
    /// A peer was created or changed.
    Peer(Box<StoredPeer>),
    /// A command was created or changed; `ord` is its position in FIFO order.
    Command {
        /// Its place in FIFO order.
        ord: u64,
        /// The command as it is now (boxed: by far the largest change).
        command: Box<Command>,
    },
    /// A finished command was forgotten by retention.
    ForgetCommand {
        /// The command.
        id: uuid::Uuid,
    },
    /// A message was appended to a channel.
    Message(Box<Message>),
    /// A channel's messages with `from <= seq < below` were trimmed by
    /// retention (nothing older was left).
    Trim {
        /// The channel trimmed.
        channel: String,
        /// The oldest seq that was still kept (bounds the delete, so it
        /// never walks over what earlier trims removed).
        #[serde(default)]
        from: u64,
        /// The first seq kept.
        below: u64,
    },
    /// A signal was emitted or cleared.
    Signal(Box<Signal>),
    /// A peer was forgotten (offline too long, or evicted by the cap).
    ForgetPeer {
        /// The peer.
        id: uuid::Uuid,
    },
    /// A channel and all its messages were forgotten (evicted by the cap).
    ForgetChannel {
        /// The channel.
        name: String,
    },
    /// A signal was forgotten (evicted by the cap).
    ForgetSignal {
        /// The signal.
        name: String,
    },
    /// A question was asked or changed.
    Question(Box<Question>),
    /// A closed question was forgotten by retention.
    ForgetQuestion {
        /// The question.
        id: uuid::Uuid,
    },
    /// A lease was granted or changed (renewed, released, expired).
    Lease(Box<StoredLease>),
    /// An ended lease was forgotten by retention.
    ForgetLease {
        /// The lease.
        id: uuid::Uuid,
    },
    /// A dashboard login was opened (only the digest of its id is kept).
    Session {
        /// Hex SHA-256 of the session id.
        hash: String,
        /// When it stops being valid.
        expires: crate::time::Timestamp,
    },
    /// A dashboard login ended (logout, expiry, or the cap).
    EndSession {
        /// Hex SHA-256 of the session id.
        hash: String,
    },
    /// Everything was cleared.
    Reset,
}

/// What a store held at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every peer.
    pub peers: Vec<StoredPeer>,
    /// Every command with its FIFO position, in that order.
    pub commands: Vec<(u64, Command)>,
    /// The newest retained messages of each channel (at most
    /// [`RECENT_KEPT`] each when the store serves older ones through
    /// [`Store::read_messages`]; all of them otherwise), by channel then seq.
    pub messages: Vec<Message>,
    /// Every channel: its last seq ever used (so seqs continue after trims)
    /// and its oldest retained seq.
    pub channels: Vec<ChannelHead>,
    /// Every signal.
    pub signals: Vec<Signal>,
    /// Every question kept, oldest first.
    pub questions: Vec<Question>,
    /// Every lease kept (held ones, and ended ones up to retention).
    pub leases: Vec<StoredLease>,
    /// Dashboard sessions: the digest of each id and its expiry.
    pub sessions: Vec<(String, crate::time::Timestamp)>,
}

/// How many of each channel's newest messages the broker keeps in memory
/// when the store can serve the older ones.
pub const RECENT_KEPT: usize = 256;

/// What the store knows of a channel at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHead {
    /// The channel's name.
    pub name: String,
    /// The last seq ever used.
    pub last_seq: u64,
    /// The oldest retained seq (`last_seq + 1` when none is retained).
    pub first_seq: u64,
}

/// A stored object as JSON text (both stores keep rows as JSON text, so key
/// order and numbers survive exactly); plain data never fails to serialise.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

/// Where one stored row sits: its table and the SQL condition that picks
/// it out (`id = '...'`), so an unreadable row can be named and removed.
struct RowAt<'a> {
    table: &'a str,
    filter: String,
}

impl<'a> RowAt<'a> {
    /// The row of `table` whose `column` is `key`.
    fn new(table: &'a str, column: &str, key: &str) -> Self {
        RowAt {
            table,
            filter: format!("{column} = {}", sql_text(key)),
        }
    }
}

/// `text` as an SQL string literal.
fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` inside double quotes for a POSIX shell.
fn sh_double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Decodes one stored row's JSON body. A row that does not decode stops
/// start-up (skipping it would silently lose a peer or an order), so the
/// error names the table and the row, and says how to get past it: `remove`
/// turns the row's `DELETE` statement into the store's own command line,
/// and `aside` is how to start over while keeping the old data.
fn decode_row<T: serde::de::DeserializeOwned>(
    body: &str,
    at: &RowAt<'_>,
    remove: impl Fn(&str) -> String,
    aside: &str,
) -> Result<T, UnreadableRow> {
    serde_json::from_str(body).map_err(|e| UnreadableRow {
        table: at.table.to_string(),
        row: at.filter.clone(),
        reason: e.to_string(),
        remove: remove(&format!("DELETE FROM {} WHERE {}", at.table, at.filter)),
        aside: aside.to_string(),
    })
}

/// A stored row that does not decode: it names itself and the ways past it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the row {row} of table {table} is unreadable ({reason}): it was changed by another program or written by a newer cipc. \
To start anyway, remove that row (what it held is lost): {remove}; or {aside}"
)]
pub struct UnreadableRow {
    table: String,
    row: String,
    reason: String,
    remove: String,
    aside: String,
}

/// What went wrong inside a store, before it is told as a [`StoreError`]
/// (which says where: the file, or the database).
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// SQLite refused or failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed: what was being done, and its reason
    /// in one line (never the password).
    #[error("{doing}{why}")]
    Postgres {
        /// What was being done ("migrating the schema: "), or nothing.
        doing: &'static str,
        /// PostgreSQL's own reason.
        why: String,
    },
    /// A stored row that does not decode.
    #[error(transparent)]
    Row(#[from] UnreadableRow),
    /// PostgreSQL committed a log row but gave it no position.
    #[error("the log row got no position")]
    NoLogPosition,
    /// The database holds a schema newer than this cipc knows.
    #[error("the database has schema version {found}, newer than this cipc knows ({known}); upgrade cipc on this node")]
    NewerSchema {
        /// The version found.
        found: i32,
        /// The newest this cipc knows.
        known: usize,
    },
}

/// A future that resolves once a mutation is durable (or failed to be).
pub type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// A future that resolves to a granted [`Turn`].
pub type TurnFuture<'a> = Pin<Box<dyn Future<Output = Result<Turn, StoreError>> + Send + 'a>>;

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or file could not be opened, created or read.
    #[error("cannot use data at {path}: {reason}")]
    Open {
        /// The path involved.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Another broker is running on this data directory ([`DirLock`]).
    #[error(
        "the data dir {dir} is in use by {holder}: two brokers on one data dir would lose each other's writes; \
         stop that one, or give this one another --data-dir (and --port)"
    )]
    InUse {
        /// The data directory.
        dir: String,
        /// Who holds it ("pid 1234 (cipc serve --port 9100)").
        holder: String,
    },
    /// A write failed; the change was not persisted.
    #[error("store write failed: {0}")]
    Write(String),
    /// The writer has shut down.
    #[error("the store is closed (the broker is shutting down)")]
    Closed,
    /// The shared database cannot be reached now (the node retries by itself).
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// Another node holds the shared write turn and has gone silent (frozen,
    /// or cut off from the database): waiting longer would stall every
    /// write here. The database ends that node's turn by itself.
    #[error("the write turn is stalled: {0}")]
    TurnStalled(String),
}

/// Persistence for the broker's state.
pub trait Store: Send + Sync + 'static {
    /// Reads everything back (called once, at start-up).
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Queues a mutation. It must be called in the order the changes happened
    /// (the broker calls it under its state lock); the returned future resolves
    /// when the mutation is committed. Dropping the future does not cancel the write.
    fn apply(&self, mutation: Mutation) -> Commit;
    /// Like [`Store::apply`], for a change nobody can be shown before a
    /// later one that depends on it: a command sent with `wait`, whose
    /// sender sees only its result and whose worker sees it only through
    /// its delivery. The store may keep it for the next commit instead of
    /// syncing it alone (the SQLite store, for at most 2 ms), so a round
    /// trip costs one sync fewer; the future still resolves only once it is
    /// durable, and every reader still waits for it ([`Progress`]).
    fn apply_deferred(&self, mutation: Mutation) -> Commit {
        self.apply(mutation)
    }
    /// Flushes every queued mutation and stops accepting new ones.
    fn close(&self);
    /// A human description of where data lives ("memory" or a file path).
    fn describe(&self) -> String;
    /// False for a store that keeps nothing (`--memory`): it never commits,
    /// so `GET /status` shows no commit counts for it.
    fn is_durable(&self) -> bool {
        true
    }
    /// Whether writes can be saved now; why not when they cannot
    /// (`/healthz` answers 503 with it, and with a reason the error's kind
    /// decides: unreachable, or a write turn stalled by another node).
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Which mutations are durable: every reader waits on it before it
    /// shows anything ([`Progress::settled`]).
    fn progress(&self) -> std::sync::Arc<Progress>;
    /// After a failed commit: once the store can write again, reads back
    /// what is durable (every mutation queued before this call that was not
    /// saved is given up) so the broker can start over from it.
    fn recover(&self) -> Result<Snapshot, StoreError> {
        Err(StoreError::Closed)
    }
    /// True when the last broker on this store did not stop cleanly, so an
    /// answer handing out a command may have been lost between its commit
    /// and the client ([`crate::broker::Broker::open`] hands such
    /// deliveries to their takers again). Only a store that one broker owns
    /// can tell.
    fn unclean_start(&self) -> bool {
        false
    }
    /// True when older messages can be read back with
    /// [`Store::read_messages`], so the broker keeps only recent ones in
    /// memory; false when memory is the only copy (`--memory`).
    fn serves_messages(&self) -> bool {
        false
    }
    /// The saved messages of `channel` with `from <= seq <= to`, oldest
    /// first, at most `limit`. Blocking: call it off the async threads.
    fn read_messages(
        &self,
        _channel: &str,
        _from: u64,
        _to: u64,
        _limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(Vec::new())
    }
    /// Grants this node a turn ([`Turn`] says what one is). A
    /// single-node store grants every turn at once with nothing to apply.
    fn begin_turn(&self, _kind: TurnKind) -> TurnFuture<'_> {
        Box::pin(std::future::ready(Ok(Turn::default())))
    }
    /// True when other nodes share this store: the broker then follows
    /// [`Store::changes`] and takes a turn before every change.
    fn is_shared(&self) -> bool {
        false
    }
    /// The newest log position another node announced (shared stores only):
    /// the broker takes a read turn whenever it moves.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Whether other nodes committed changes this node has not applied
    /// (shared stores only; a single-node store is never behind).
    fn behind(&self) -> Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send + '_>> {
        Box::pin(std::future::ready(Ok(false)))
    }
    /// Ships a dashboard event with the current turn's log entry (shared
    /// stores only; others keep events in memory).
    fn record_event(&self, _kind: &'static str, _data: &serde_json::Value) {}
}
