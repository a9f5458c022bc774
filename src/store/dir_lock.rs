//! One broker per data directory.
//!
//! Two `cipc serve` processes on one `cipc.db` would each hand out the same
//! sequence numbers and overwrite each other's rows: writes both answered
//! 2xx, one of them lost. So a broker holds an OS lock (`flock`) on
//! `cipc.lock` in the directory for as long as it runs. The kernel releases
//! it when the process ends, however it ends (`kill -9` included), so a
//! crashed broker never leaves a stale lock behind. The file's contents
//! name the holder in a refusal (its pid), and say whether the last broker
//! stopped cleanly (`stopped` after the pid, written at a clean stop): after
//! a crash, a delivery whose answer may never have left is handed to its
//! taker again when it asks (see `Broker::open`).

use super::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The file, in the data directory, that a running broker holds locked.
pub const LOCK_FILE: &str = "cipc.lock";

/// A held lock on a data directory; released when dropped (or when the
/// process dies).
#[derive(Debug)]
pub struct DirLock {
    file: File,
    /// True unless the last broker on this directory stopped cleanly.
    unclean_start: bool,
}

/// The mark a clean stop leaves after the pid.
const STOPPED: &str = "stopped";

impl DirLock {
    /// Takes the lock on `dir` (which must exist) without waiting, or says
    /// which process holds it and what to do.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err(e.to_string()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::InUse {
                    dir: dir.display().to_string(),
                    holder: describe_holder(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => {
                return Err(err(format!("cannot lock it: {e}")));
            }
        }
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let unclean_start = !previous.trim_end().ends_with(STOPPED);
        let pid = std::process::id();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"));
        if let Err(e) = written {
            // The lock is what matters; the pid only improves a message.
            tracing::debug!(error = %e, "could not write the pid into {}", path.display());
        }
        Ok(DirLock {
            file,
            unclean_start,
        })
    }

    /// True when the broker before this one did not stop cleanly (killed,
    /// crashed, or a data dir never served before): answers it wrote may not
    /// have reached their clients.
    pub fn unclean_start(&self) -> bool {
        self.unclean_start
    }

    /// Records a clean stop: everything was answered and saved.
    pub fn mark_clean_stop(&self) {
        let mut file = &self.file;
        let pid = std::process::id();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid} {STOPPED}"))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not record the clean stop in {LOCK_FILE}");
        }
    }
}

/// "pid 1234 (cipc serve --port 9100)" from the holder's lock file, as far
/// as it can be told.
fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let Some(pid) = text.trim().parse::<u32>().ok() else {
        return "another process".to_string();
    };
    match command_line(pid) {
        Some(cmd) => format!("pid {pid} ({cmd})"),
        None => format!("pid {pid}"),
    }
}

/// The command line of `pid`, where the OS tells it (Linux `/proc`).
fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(PathBuf::from(format!("/proc/{pid}/cmdline"))).ok()?;
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_dir_is_refused_with_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = DirLock::acquire(dir.path()).expect("first lock");
        let err = DirLock::acquire(dir.path()).expect_err("second lock must fail");
        assert!(first.unclean_start(), "a new dir counts as unclean");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        drop(first);
        let second = DirLock::acquire(dir.path()).expect("free again once the holder is gone");
        assert!(second.unclean_start(), "dropped without a clean stop");
        second.mark_clean_stop();
        drop(second);
        let third = DirLock::acquire(dir.path()).expect("free again");
        assert!(!third.unclean_start(), "after a clean stop");
    }
}
