//! How far the store has got: which mutations are durable, and which were
//! lost to a failed commit.
//!
//! Every mutation gets a position (its LSN) when it is handed to the store,
//! in the order the broker made it. A reader that is about to show anything
//! (an answer, an event, a stream item) waits until everything up to the
//! position current at that moment has settled ([`Progress::settled`]); if
//! any of it failed, it shows nothing and answers 503 instead. That is how
//! nobody ever sees a change that a crash could undo (shared/DESIGN.md,
//! principle 8).

use crate::api::StoreCommits;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Why [`Progress::settled`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a change at position {0} could not be saved")]
pub struct Lost(pub u64);

/// The store's progress through the positions it handed out.
#[derive(Debug)]
pub struct Progress {
    /// The last position handed out.
    queued: AtomicU64,
    /// Every position up to this one has settled (saved or failed).
    settled: AtomicU64,
    /// Readers waiting in [`Progress::settled`]: only while there are any
    /// does settling wake anyone (on the memory store, and for answers that
    /// find their change already saved, nobody waits).
    waiting: AtomicUsize,
    moved: Notify,
    /// Some position ever failed: until then no reader takes the lock.
    ever_failed: AtomicBool,
    failures: Mutex<Failures>,
    /// Commits made since start, and the mutations they held.
    commits: AtomicU64,
    committed_writes: AtomicU64,
}

#[derive(Debug, Default)]
struct Failures {
    /// Closed ranges of positions that failed (inclusive), oldest first.
    lost: Vec<(u64, u64)>,
    /// The first failed position of a failure not yet recovered from: every
    /// position from here on fails until [`Progress::recovered`].
    open: Option<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            queued: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            moved: Notify::new(),
            ever_failed: AtomicBool::new(false),
            failures: Mutex::new(Failures::default()),
            commits: AtomicU64::new(0),
            committed_writes: AtomicU64::new(0),
        }
    }
}

impl Progress {
    /// Hands out the next position (call in mutation order).
    pub fn next(&self) -> u64 {
        self.queued.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The last position handed out.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Records that everything up to `lsn` has settled; `failed_from` is the
    /// first position of it that failed, if any did.
    pub fn settle(&self, lsn: u64, failed_from: Option<u64>) {
        if let Some(first) = failed_from {
            let mut f = self.failures.lock();
            if f.open.is_none() {
                f.open = Some(first);
            }
            self.ever_failed.store(true, Ordering::SeqCst);
        }
        // SeqCst here and in `settled`: either a reader sees the new
        // position, or this sees the reader counted (and registered) and
        // wakes it.
        let before = self.settled.fetch_max(lsn, Ordering::SeqCst);
        if lsn > before && self.waiting.load(Ordering::SeqCst) > 0 {
            self.moved.notify_waiters();
        }
    }

    /// Counts one successful commit of `writes` mutations (the store calls
    /// it once per transaction it made durable).
    pub fn count_commit(&self, writes: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed_writes
            .fetch_add(writes as u64, Ordering::Relaxed);
    }

    /// The commits counted so far, as `GET /status` shows them (zero on a
    /// store that never commits, such as `--memory`).
    pub fn commit_counts(&self) -> StoreCommits {
        StoreCommits {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.committed_writes.load(Ordering::Relaxed),
        }
    }

    /// True while a failure has not been recovered from.
    pub fn failing(&self) -> bool {
        self.ever_failed.load(Ordering::SeqCst) && self.failures.lock().open.is_some()
    }

    /// Closes the open failure: positions up to `through` stay lost, later
    /// ones are saved normally again.
    pub fn recovered(&self, through: u64) {
        let mut f = self.failures.lock();
        if let Some(first) = f.open.take() {
            f.lost.push((first, through.max(first)));
        }
    }

    fn check(&self, lsn: u64) -> Result<(), Lost> {
        if !self.ever_failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let f = self.failures.lock();
        let lost = f.open.is_some_and(|first| lsn >= first)
            || f.lost.iter().any(|(a, b)| (*a..=*b).contains(&lsn));
        if lost {
            Err(Lost(lsn))
        } else {
            Ok(())
        }
    }

    /// Resolves once every position up to `lsn` has settled: `Ok` when all
    /// of them were saved, `Err` when one failed.
    pub async fn settled(&self, lsn: u64) -> Result<(), Lost> {
        if self.settled.load(Ordering::Acquire) < lsn {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _counted = Counted(&self.waiting);
            loop {
                let moved = self.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                if self.settled.load(Ordering::SeqCst) >= lsn {
                    break;
                }
                moved.await;
            }
        }
        self.check(lsn)
    }
}

/// Uncounts a reader of [`Progress::settled`] however its wait ends
/// (answered, or dropped with its request).
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reader_waits_for_what_it_could_see_and_no_longer() {
        let p = Arc::new(Progress::default());
        let (a, b) = (p.next(), p.next());
        p.settle(a, None);
        assert_eq!(p.settled(a).await, Ok(()));
        let p2 = p.clone();
        let waiting = tokio::spawn(async move { p2.settled(b).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "b is not saved yet");
        p.settle(b, None);
        assert_eq!(waiting.await.expect("task"), Ok(()));
    }

    #[tokio::test]
    async fn a_failure_loses_its_positions_until_recovery_and_only_those() {
        let p = Progress::default();
        let saved = p.next();
        p.settle(saved, None);
        let (f1, f2) = (p.next(), p.next());
        p.settle(f2, Some(f1));
        assert!(p.failing());
        // Later positions fail too while the failure is open.
        let during = p.next();
        p.settle(during, None);
        assert_eq!(p.settled(during).await, Err(Lost(during)));
        p.recovered(during);
        assert!(!p.failing());
        let after = p.next();
        p.settle(after, None);
        assert_eq!(p.settled(saved).await, Ok(()));
        assert_eq!(p.settled(f1).await, Err(Lost(f1)));
        assert_eq!(p.settled(f2).await, Err(Lost(f2)));
        assert_eq!(p.settled(during).await, Err(Lost(during)));
        assert_eq!(p.settled(after).await, Ok(()));
    }

    /// Readers that start waiting while another thread settles, one
    /// position at a time, are all released: none misses the wake-up of
    /// the position it waits for (the reader counts itself and registers
    /// before it looks; the settler moves, then looks for readers).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_reader_misses_the_settling_of_its_position() {
        const POSITIONS: u64 = 2000;
        let p = Arc::new(Progress::default());
        for _ in 0..POSITIONS {
            p.next();
        }
        let readers: Vec<_> = (1..=POSITIONS)
            .map(|lsn| {
                let p = p.clone();
                tokio::spawn(async move { p.settled(lsn).await })
            })
            .collect();
        let settler = {
            let p = p.clone();
            std::thread::spawn(move || {
                for lsn in 1..=POSITIONS {
                    p.settle(lsn, None);
                    if lsn % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let all = futures::future::join_all(readers);
        let done = tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("every reader is released");
        assert!(done.iter().all(|r| matches!(r, Ok(Ok(())))));
        settler.join().expect("settler");
        assert_eq!(
            p.waiting.load(Ordering::SeqCst),
            0,
            "every reader uncounted"
        );
    }
}
