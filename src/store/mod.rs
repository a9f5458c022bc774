//! Durability behind one small trait.
//!
//! The broker keeps its whole state in memory and describes every change as a
//! [`Mutation`]. A store persists mutations and, at start-up, hands back a
//! [`Snapshot`] to rebuild the state from. The SQLite store commits batches of
//! mutations from a single writer thread (group commit), so a 2xx answer can wait
//! for its own commit without serialising every request behind an fsync.

mod memory;
mod progress;
mod sqlite;

pub use memory::MemoryStore;
pub use progress::{Lost, Progress};
pub use sqlite::SqliteStore;

use crate::api::{Command, Message, Peer, Question, Signal};
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

/// One change to persist, in the order the broker made it.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// A peer was created or changed.
    Peer(StoredPeer),
    /// A command was created or changed; `ord` is its position in FIFO order.
    Command {
        /// Its place in FIFO order.
        ord: u64,
        /// The command as it is now (boxed: by far the largest change).
        command: Box<Command>,
    },
    /// A finished command was forgotten by retention.
    ForgetCommand(uuid::Uuid),
    /// A message was appended to a channel.
    Message(Message),
    /// A channel's messages with `seq < below` were trimmed by retention.
    Trim {
        /// The channel trimmed.
        channel: String,
        /// The first seq kept.
        below: u64,
    },
    /// A signal was emitted or cleared.
    Signal(Signal),
    /// A peer was forgotten (offline too long, or evicted by the cap).
    ForgetPeer(uuid::Uuid),
    /// A channel and all its messages were forgotten (evicted by the cap).
    ForgetChannel(String),
    /// A signal was forgotten (evicted by the cap).
    ForgetSignal(String),
    /// A question was asked or changed.
    Question(Box<Question>),
    /// A closed question was forgotten by retention.
    ForgetQuestion(uuid::Uuid),
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

/// A future that resolves once a mutation is durable (or failed to be).
pub type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

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
    /// A write failed; the change was not persisted.
    #[error("store write failed: {0}")]
    Write(String),
    /// The writer has shut down.
    #[error("the store is closed (the broker is shutting down)")]
    Closed,
}

/// Persistence for the broker's state.
pub trait Store: Send + Sync + 'static {
    /// Reads everything back (called once, at start-up).
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Queues a mutation. It must be called in the order the changes happened
    /// (the broker calls it under its state lock); the returned future resolves
    /// when the mutation is committed. Dropping the future does not cancel the write.
    fn apply(&self, mutation: Mutation) -> Commit;
    /// Flushes every queued mutation and stops accepting new ones.
    fn close(&self);
    /// A human description of where data lives ("memory" or a file path).
    fn describe(&self) -> String;
    /// Whether writes can be saved now; the reason when they cannot
    /// (`/healthz` answers 503 with it).
    fn health(&self) -> Result<(), String> {
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
}
