//! The `--memory` store: nothing is persisted, every commit is instant.

use super::{Commit, Mutation, Progress, Snapshot, Store, StoreError};
use std::sync::Arc;

/// Keeps nothing: for tests and throwaway runs (`cipc serve --memory`).
/// Every mutation counts as settled at once.
#[derive(Debug, Default)]
pub struct MemoryStore {
    progress: Arc<Progress>,
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::default())
    }

    fn apply(&self, _mutation: Mutation) -> Commit {
        let lsn = self.progress.next();
        self.progress.settle(lsn, None);
        Box::pin(std::future::ready(Ok(())))
    }

    fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    fn close(&self) {}

    fn describe(&self) -> String {
        "memory (nothing is kept after exit)".to_string()
    }

    fn is_durable(&self) -> bool {
        false
    }
}
