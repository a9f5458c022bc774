//! A shared store kept in this process, for the unit tests of the
//! multi-node rules: several brokers on one [`SharedMemory`] act as the nodes
//! of one broker exactly as nodes on PostgreSQL do (same turns, same log,
//! same catch-up), but on a clock the test moves and without a database.

use super::shared::{TurnHold, TurnKind};
use super::{
    CatchUp, Commit, LogEntry, Mutation, Progress, SharedEvent, Snapshot, Store, StoreError, Turn,
    TurnFuture,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, OwnedMutexGuard};

/// The log every node shares, and the lock that makes a write turn one
/// node's at a time.
#[derive(Debug)]
pub struct SharedMemory {
    entries: parking_lot::Mutex<Vec<LogEntry>>,
    turn: Arc<tokio::sync::Mutex<()>>,
    changes: watch::Sender<u64>,
}

impl SharedMemory {
    /// An empty shared log.
    pub fn new() -> Arc<SharedMemory> {
        Arc::new(SharedMemory {
            entries: parking_lot::Mutex::new(Vec::new()),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            changes: watch::channel(0).0,
        })
    }

    /// A new node's store on this log (it starts from an empty state and
    /// catches up at its first turn).
    pub fn node(self: &Arc<Self>, name: &str) -> SharedMemoryNode {
        SharedMemoryNode {
            log: self.clone(),
            name: name.to_string(),
            cursor: Arc::new(AtomicU64::new(0)),
            slot: Arc::new(tokio::sync::Mutex::new(())),
            current: Arc::new(parking_lot::Mutex::new(None)),
            progress: Arc::new(Progress::default()),
        }
    }
}

/// One node's view of a [`SharedMemory`].
pub struct SharedMemoryNode {
    log: Arc<SharedMemory>,
    name: String,
    cursor: Arc<AtomicU64>,
    slot: Arc<tokio::sync::Mutex<()>>,
    current: Arc<parking_lot::Mutex<Option<Arc<Pending>>>>,
    progress: Arc<Progress>,
}

#[derive(Default)]
struct Pending {
    batch: parking_lot::Mutex<Batch>,
}

#[derive(Default)]
struct Batch {
    mutations: Vec<Mutation>,
    events: Vec<SharedEvent>,
    last_lsn: Option<u64>,
}

/// Appends what a turn collected as one log entry.
fn flush(log: &SharedMemory, name: &str, cursor: &AtomicU64, progress: &Progress, p: &Pending) {
    let batch = std::mem::take(&mut *p.batch.lock());
    if batch.mutations.is_empty() && batch.events.is_empty() {
        return;
    }
    let seq = {
        let mut entries = log.entries.lock();
        let seq = entries.len() as u64 + 1;
        entries.push(LogEntry {
            seq,
            node: name.to_string(),
            mutations: batch.mutations,
            events: batch.events,
        });
        seq
    };
    cursor.store(seq, Ordering::Release);
    if let Some(lsn) = batch.last_lsn {
        progress.settle(lsn, None);
    }
    log.changes.send_replace(seq);
}

struct WriteHold {
    log: Arc<SharedMemory>,
    name: String,
    cursor: Arc<AtomicU64>,
    progress: Arc<Progress>,
    current: Arc<parking_lot::Mutex<Option<Arc<Pending>>>>,
    pending: Arc<Pending>,
    _global: OwnedMutexGuard<()>,
    _slot: OwnedMutexGuard<()>,
}

impl TurnHold for WriteHold {
    fn caught_up(&mut self) {
        *self.current.lock() = Some(self.pending.clone());
    }
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        *self.current.lock() = None;
        flush(
            &self.log,
            &self.name,
            &self.cursor,
            &self.progress,
            &self.pending,
        );
    }
}

impl SharedMemoryNode {
    async fn begin(&self, kind: TurnKind) -> Turn {
        let slot = self.slot.clone().lock_owned().await;
        let global = match kind {
            TurnKind::Write => Some(self.log.turn.clone().lock_owned().await),
            TurnKind::Read => None,
        };
        let from = self.cursor.load(Ordering::Acquire);
        let missed: Vec<LogEntry> = self.log.entries.lock()[from as usize..].to_vec();
        if let Some(last) = missed.last() {
            self.cursor.store(last.seq, Ordering::Release);
        }
        let catch_up = (!missed.is_empty()).then_some(CatchUp::Entries(missed));
        let hold: Box<dyn TurnHold> = match global {
            Some(global) => Box::new(WriteHold {
                log: self.log.clone(),
                name: self.name.clone(),
                cursor: self.cursor.clone(),
                progress: self.progress.clone(),
                current: self.current.clone(),
                pending: Arc::new(Pending::default()),
                _global: global,
                _slot: slot,
            }),
            None => Box::new(slot),
        };
        Turn {
            catch_up,
            hold: Some(hold),
        }
    }
}

impl Store for SharedMemoryNode {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::default())
    }

    fn apply(&self, mutation: Mutation) -> Commit {
        let lsn = self.progress.next();
        let Some(pending) = self.current.lock().clone() else {
            self.progress.settle(lsn, Some(lsn));
            return Box::pin(std::future::ready(Err(StoreError::Write(
                "a change was made outside a write turn".into(),
            ))));
        };
        {
            let mut b = pending.batch.lock();
            b.mutations.push(mutation);
            b.last_lsn = Some(lsn);
        }
        let (log, name, cursor, progress) = (
            self.log.clone(),
            self.name.clone(),
            self.cursor.clone(),
            self.progress.clone(),
        );
        Box::pin(async move {
            flush(&log, &name, &cursor, &progress, &pending);
            Ok(())
        })
    }

    fn close(&self) {}

    fn describe(&self) -> String {
        format!("shared memory (node {})", self.name)
    }

    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    fn begin_turn(&self, kind: TurnKind) -> TurnFuture<'_> {
        Box::pin(async move { Ok(self.begin(kind).await) })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.log.changes.subscribe())
    }

    fn behind(&self) -> Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send + '_>> {
        let behind = self.log.entries.lock().len() as u64 > self.cursor.load(Ordering::Acquire);
        Box::pin(std::future::ready(Ok(behind)))
    }

    fn record_event(&self, kind: &'static str, data: &serde_json::Value) {
        if let Some(p) = self.current.lock().as_ref() {
            p.batch.lock().events.push(SharedEvent {
                kind: kind.to_string(),
                data: data.clone(),
            });
        }
    }
}
