//! The `--memory` store: nothing is persisted, every commit is instant.

use super::{Commit, Mutation, Snapshot, Store, StoreError};

/// Keeps nothing: for tests and throwaway runs (`cipc serve --memory`).
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::default())
    }

    fn apply(&self, _mutation: Mutation) -> Commit {
        Box::pin(std::future::ready(Ok(())))
    }

    fn close(&self) {}

    fn describe(&self) -> String {
        "memory (nothing is kept after exit)".to_string()
    }
}
