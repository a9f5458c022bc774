//! What a store shared by several broker nodes hands the broker: turns, and
//! the other nodes' changes to apply first.
//!
//! Every node keeps the whole state in memory, as a single broker does. A
//! shared store keeps one ordered log of changes. A node that is about to
//! change anything takes a *write turn*: the store grants it to one node at a
//! time (across all nodes) and first hands it every log entry it has not seen,
//! so the node decides on the same state every other node would. What the
//! node changes during its turn becomes the next log entry, committed before
//! any of it is answered; the other nodes are told and apply it in turn.
//! Single-node stores (memory, SQLite) grant turns at once and have no log.

use super::{Mutation, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One dashboard event shipped with a log entry, so every node's `/events`
/// shows every node's changes exactly as the node that made them saw them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedEvent {
    /// `peer`, `command`, `message`, `signal`, `question`, `lease` or `reset`.
    pub kind: String,
    /// The changed object.
    pub data: Value,
}

/// One node's turn's worth of changes, in the order they were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its place in the log (increases by at least one per entry).
    #[serde(skip)]
    pub seq: u64,
    /// The node that wrote it.
    pub node: String,
    /// The changes.
    pub mutations: Vec<Mutation>,
    /// The events the changes produced.
    #[serde(default)]
    pub events: Vec<SharedEvent>,
}

/// What a node must apply before it acts.
#[derive(Debug)]
pub enum CatchUp {
    /// The entries written since the node last looked, oldest first.
    Entries(Vec<LogEntry>),
    /// Start over from this: the node fell further behind than the log
    /// keeps, or a commit of its own failed and its memory holds changes
    /// that were never saved.
    Reload(Snapshot),
}

/// A node's turn: what to apply first, and a guard that ends the turn (and
/// commits whatever is still queued) when dropped.
#[derive(Default)]
pub struct Turn {
    /// Other nodes' changes to apply before anything else.
    pub catch_up: Option<CatchUp>,
    /// Ends the turn when dropped.
    pub(crate) hold: Option<Box<dyn TurnHold>>,
}

impl Turn {
    /// Says the catch-up was applied: from now on other changes of this
    /// node may join the turn (they need no catch-up of their own).
    pub fn caught_up(&mut self) {
        if let Some(h) = &mut self.hold {
            h.caught_up();
        }
    }
}

/// What keeps a store's turn open.
pub(crate) trait TurnHold: Send {
    /// See [`Turn::caught_up`].
    fn caught_up(&mut self) {}
}

/// A read turn holds only the node's turn slot.
impl TurnHold for tokio::sync::OwnedMutexGuard<()> {}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("catch_up", &self.catch_up)
            .field("held", &self.hold.is_some())
            .finish()
    }
}

/// Whether a turn may change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    /// Catch up and change: one node at a time across all of them.
    Write,
    /// Only catch up (many nodes at once; one turn at a time per node).
    Read,
}
