//! What the hooks of one agent session (Claude Code or Codex) remember
//! between runs: which peer the session is (id and key, so a resumed
//! session stays the same peer), what it has already been told, and
//! whether it was told that the broker is down. One small JSON file per
//! `session_id`, private to the user (0600), updated under an exclusive
//! lock because an agent may run several hooks of one session at once.

use crate::cli::CliError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// One session's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The peer this session is, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Uuid>,
    /// Its key (the file is private to the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The broker it is registered with; a different URL means a new peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Answers to this peer's own commands are reported once: those
    /// finished at or before this time (ms, the broker's clock) have been.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers_through: Option<i64>,
    /// The peer's attention is set (so work resuming clears it).
    #[serde(default)]
    pub attention: bool,
    /// The session was told the broker is unreachable (said once).
    #[serde(default)]
    pub said_down: bool,
    /// The peer was registered afresh since the model last heard who it is
    /// (the broker forgot the old one): the next hook tells it.
    #[serde(default)]
    pub renamed: bool,
    /// The session has ended; a waiter still running stops.
    #[serde(default)]
    pub ended: bool,
    /// The background Stop waiter that owns the session's wake-ups (pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiter: Option<u32>,
    /// The session was told that the broker refuses the hooks' token
    /// (said once).
    #[serde(default)]
    pub said_token: bool,
    /// The session took a turn (a prompt, a tool call). One that never did
    /// (`claude mcp list` starts and ends a session) leaves no peer behind.
    #[serde(default)]
    pub took_turn: bool,
    /// Permission questions this session asked that may still be open;
    /// they are closed when the session moves on without their answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<OpenPermission>,
}

/// A permission question the session's `permission` hook asked and may
/// still wait for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPermission {
    /// The question on the broker.
    pub question: Uuid,
    /// The tool call it asks about: the tool's name and a digest of its
    /// input, so the tool running (answered in the terminal) closes it.
    pub call: String,
}

/// Why a session's state cannot be kept: the hook says so and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No environment variable says where state lives.
    #[error("neither CIPC_STATE_DIR, XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
    /// The agent sent a session id that cannot be a file name.
    #[error("session_id {0:?} from the agent is not an id (letters, digits, - and _)")]
    BadSessionId(String),
    /// The file system refused (`action` is "create", "open", ...).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done: create, open, lock, read, write.
        action: &'static str,
        /// The folder or file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The state did not turn into JSON (never expected).
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
}

impl StateError {
    /// A [`StateError::Io`] maker for `map_err`.
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
        let path = path.to_path_buf();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    }
}

/// A hook whose state cannot be kept fails with exit 1 and the reason.
impl From<StateError> for CliError {
    fn from(e: StateError) -> CliError {
        CliError::error(e.to_string())
    }
}

/// Where hook state lives: `$CIPC_STATE_DIR`, else
/// `$XDG_STATE_HOME/cipc/claude`, else `~/.local/state/cipc/claude`.
pub fn state_dir() -> Result<PathBuf, StateError> {
    if let Some(d) = std::env::var_os("CIPC_STATE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("cipc").join("claude"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(StateError::NoStateDir)?;
    Ok(PathBuf::from(home)
        .join(".local")
        .join("state")
        .join("cipc")
        .join("claude"))
}

/// A session id from Claude Code, made safe as a file name.
fn file_name(session_id: &str) -> Result<String, StateError> {
    let ok = !session_id.is_empty()
        && session_id.len() <= 128
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(format!("{session_id}.json"))
    } else {
        Err(StateError::BadSessionId(session_id.to_string()))
    }
}

/// A session's state file, held open and locked until dropped.
pub struct Locked {
    file: File,
    path: PathBuf,
    /// The state as read; change it and [`Locked::save`].
    pub state: SessionState,
}

impl Locked {
    /// Opens (creating if needed) and locks the state of `session_id` in `dir`.
    pub fn open(dir: &Path, session_id: &str) -> Result<Locked, StateError> {
        std::fs::create_dir_all(dir).map_err(StateError::io("create", dir))?;
        let path = dir.join(file_name(session_id)?);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(StateError::io("open", &path))?;
        file.lock().map_err(StateError::io("lock", &path))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(StateError::io("read", &path))?;
        // A damaged file is started afresh: the worst case is a new peer.
        let state = serde_json::from_str(&text).unwrap_or_default();
        Ok(Locked { file, path, state })
    }

    /// Writes the state back (still under the lock).
    pub fn save(&mut self) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(&self.state)?;
        let write = |f: &mut File| -> std::io::Result<()> {
            f.seek(SeekFrom::Start(0))?;
            f.set_len(0)?;
            f.write_all(&text)?;
            f.sync_data()
        };
        write(&mut self.file).map_err(StateError::io("write", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_is_private() {
        let dir = std::env::temp_dir().join(format!("cipc-state-{}", Uuid::new_v4()));
        {
            let mut l = Locked::open(&dir, "abc-123").expect("opens");
            assert!(l.state.peer.is_none());
            l.state.peer = Some(Uuid::nil());
            l.state.said_down = true;
            l.save().expect("saves");
        }
        let l = Locked::open(&dir, "abc-123").expect("reopens");
        assert_eq!(l.state.peer, Some(Uuid::nil()));
        assert!(l.state.said_down);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("abc-123.json"))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        drop(l);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn session_ids_cannot_escape_the_directory() {
        assert!(file_name("../../etc/passwd").is_err());
        assert!(file_name("").is_err());
        assert!(file_name("0f1e2d3c-aaaa-bbbb-cccc-111122223333").is_ok());
    }
}
