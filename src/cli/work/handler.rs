//! Running CMD for one command: checking it before anything is registered,
//! spawning it with the command in its environment and on stdin, the
//! timeout, capturing stdout and stderr, and turning how it ended into the
//! result or the error its command is acked with.

use super::peer::Shared;
use crate::api::{AckRequest, Command};
use crate::cli::output::{compact, human_duration};
use crate::cli::CliError;
use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The most of a handler's stdout kept as its result.
const STDOUT_CAP: usize = 4 * 1024 * 1024;
/// How much of the end of a handler's stderr goes into a failure.
const STDERR_TAIL: usize = 2048;
/// After a handler exits, how long to let its pipes drain (a background
/// process it started may hold them open forever).
const DRAIN: Duration = Duration::from_millis(500);

/// The program to run, checked before anything is registered.
pub(super) struct Spec {
    /// CMD itself: a path, or a name looked up on `PATH`.
    program: OsString,
    /// CMD's arguments, passed as they are (no shell).
    args: Vec<OsString>,
    /// The command line as people read it.
    pub(super) shown: String,
}

impl Spec {
    /// The program from `cmd` (what came after `--`), or a usage error when
    /// it is missing or cannot be run, so a typo fails before any command
    /// is taken.
    pub(super) fn new(cmd: &[OsString]) -> Result<Spec, CliError> {
        let Some((program, args)) = cmd.split_first() else {
            return Err(CliError::usage(
                "give the program to run after `--`, e.g. cipc work build -- ./build.sh",
            ));
        };
        check_program(program).map_err(|e| CliError::usage(e.to_string()))?;
        let shown = cmd
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Spec {
            program: program.clone(),
            args: args.to_vec(),
            shown: compact(&Value::String(shown), 80),
        })
    }
}

/// Whether `program` names an executable file: a path as given, or a name
/// found on `PATH`.
fn check_program(program: &OsStr) -> Result<(), ProgramError> {
    if program.is_empty() {
        return Err(ProgramError::Empty);
    }
    let path = Path::new(program);
    let shown = path.display().to_string();
    if program.as_encoded_bytes().contains(&b'/') {
        return match std::fs::metadata(path) {
            Err(source) => Err(ProgramError::CannotRun { shown, source }),
            Ok(m) if !m.is_file() => Err(ProgramError::NotAFile(shown)),
            Ok(_) if !is_executable(path) => Err(ProgramError::NotExecutable(shown)),
            Ok(_) => Ok(()),
        };
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .any(|dir| is_executable(&dir.join(path)));
    if found {
        Ok(())
    } else {
        Err(ProgramError::NotOnPath(shown))
    }
}

/// Why `cipc work`'s CMD cannot be run; each says what to do.
#[derive(Debug, thiserror::Error)]
enum ProgramError {
    /// Nothing after `--`.
    #[error("CMD is empty; give the program to run after `--`")]
    Empty,
    /// A path that cannot be read.
    #[error("CMD {shown} cannot be run: {source}")]
    CannotRun {
        /// The path as given.
        shown: String,
        /// Why.
        source: std::io::Error,
    },
    /// A path that is a folder or the like.
    #[error("CMD {0} is not a file")]
    NotAFile(String),
    /// A file without an x bit.
    #[error(
        "CMD {0} is not executable; chmod +x it, or run it through its interpreter (-- sh {0})"
    )]
    NotExecutable(String),
    /// A name no folder on `PATH` holds.
    #[error("CMD {0} is not found on PATH; give its path (e.g. ./{0})")]
    NotOnPath(String),
}

/// Whether `path` is a file someone may execute (any x bit), as the
/// kernel would let us run it.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What happened to a handler.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// Exit 0: the result to ack with.
    Done(Value),
    /// Anything else.
    Failed {
        /// The command's error, for the sender.
        error: String,
        /// One short line for the terminal.
        short: String,
    },
}

impl Outcome {
    /// The ack that reports this outcome for the delivery `attempt`, so a
    /// late ack after a redelivery is refused.
    pub(super) fn ack(&self, attempt: u32) -> AckRequest {
        match self {
            Outcome::Done(v) => AckRequest {
                result: Some(v.clone()),
                error: None,
                attempt: Some(attempt),
            },
            Outcome::Failed { error, .. } => AckRequest {
                result: None,
                error: Some(error.clone()),
                attempt: Some(attempt),
            },
        }
    }
}

/// Runs the handler for one command and says how it went.
pub(super) async fn run_handler(
    spec: &Spec,
    shared: &Shared,
    c: &Command,
    timeout: Option<Duration>,
) -> Outcome {
    let ident = shared.ident();
    let params = serde_json::to_string(&c.params).unwrap_or_else(|_| "null".into());
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env("CIPC_COMMAND_ID", c.id.to_string())
        .env("CIPC_ACTION", &c.action)
        .env("CIPC_PARAMS", &params)
        .env("CIPC_FROM", &c.from)
        .env("CIPC_ATTEMPT", c.attempt.to_string())
        .env("CIPC_URL", shared.base.base_url())
        .env("CIPC_PEER", ident.id.to_string())
        .env("CIPC_PEER_KEY", &ident.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: Ctrl-C at the terminal stops the worker
        // taking orders, but must not kill the handlers it lets finish.
        .process_group(0);
    if let Some(t) = &shared.token {
        cmd.env("CIPC_TOKEN", t);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let error = format!("cannot start {}: {e}", spec.shown);
            return Outcome::Failed {
                short: error.clone(),
                error,
            };
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let mut data = params.into_bytes();
        data.push(b'\n');
        // A handler that never reads stdin must not block us: write aside.
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
            let _ = stdin.shutdown().await;
        });
    }
    let stdout = Arc::new(Mutex::new(Capture::default()));
    let stderr = Arc::new(Mutex::new(Capture::default()));
    let mut readers = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        readers.push(tokio::spawn(read_into(pipe, stdout.clone(), Keep::Head)));
    }
    if let Some(pipe) = child.stderr.take() {
        readers.push(tokio::spawn(read_into(pipe, stderr.clone(), Keep::Tail)));
    }
    let status = match timeout {
        None => Some(child.wait().await),
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => Some(status),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                None
            }
        },
    };
    let _ = tokio::time::timeout(DRAIN, async {
        for r in &mut readers {
            let _ = r.await;
        }
    })
    .await;
    for r in &readers {
        r.abort();
    }
    let take = |c: &Arc<Mutex<Capture>>| {
        std::mem::take(&mut *c.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    };
    let (out, err) = (take(&stdout), take(&stderr));
    let head = match status {
        None => format!(
            "timed out after {}; the handler was killed (SIGKILL)",
            human_duration(timeout.unwrap_or_default())
        ),
        Some(Err(e)) => format!("cannot wait for the handler: {e}"),
        Some(Ok(s)) if s.success() => {
            if out.overflow {
                format!(
                    "the handler printed more than {} MiB on stdout; write large output to a file and print its path",
                    STDOUT_CAP / (1024 * 1024)
                )
            } else {
                return Outcome::Done(result_of(&out.bytes));
            }
        }
        Some(Ok(s)) => exit_words(s),
    };
    let tail = stderr_tail(&err);
    let last = tail
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Outcome::Failed {
        error: if tail.is_empty() {
            head.clone()
        } else {
            format!("{head}: {tail}")
        },
        short: if last.is_empty() {
            head
        } else {
            format!(
                "{head}: {}",
                compact(&Value::String(last.trim().into()), 120)
            )
        },
    }
}

/// The result of a handler that exited 0: its stdout as JSON when it
/// parses, else `{"stdout": "..."}`.
fn result_of(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
            return v;
        }
    }
    json!({"stdout": text.trim_end()})
}

/// `exit 2`, or `killed by signal 9 (SIGKILL)`.
fn exit_words(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = s.code() {
        return format!("exit {code}");
    }
    match s.signal() {
        Some(n) => {
            let name = match n {
                libc::SIGHUP => " (SIGHUP)",
                libc::SIGINT => " (SIGINT)",
                libc::SIGQUIT => " (SIGQUIT)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGPIPE => " (SIGPIPE)",
                libc::SIGTERM => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {n}{name}")
        }
        None => format!("ended with {s}"),
    }
}

/// The last [`STDERR_TAIL`] bytes of stderr as text, from a whole character on.
fn stderr_tail(c: &Capture) -> String {
    let bytes = &c.bytes;
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    let mut slice = &bytes[start..];
    if start > 0 || c.overflow {
        // Skip a character cut in half.
        while let Some((&b, rest)) = slice.split_first() {
            if b & 0xC0 != 0x80 {
                break;
            }
            slice = rest;
        }
    }
    let text = String::from_utf8_lossy(slice).trim().to_string();
    if (start > 0 || c.overflow) && !text.is_empty() {
        format!("…{text}")
    } else {
        text
    }
}

/// What a reader kept of a pipe.
#[derive(Default)]
struct Capture {
    /// The bytes kept (see [`Keep`]).
    bytes: Vec<u8>,
    /// More came than was kept.
    overflow: bool,
}

/// Which part of a pipe to keep.
#[derive(Clone, Copy)]
enum Keep {
    /// The first [`STDOUT_CAP`] bytes.
    Head,
    /// The last [`STDERR_TAIL`] bytes.
    Tail,
}

/// Reads `pipe` to its end into `into`, keeping the part `keep` says, so a
/// chatty handler neither blocks on a full pipe nor fills our memory.
async fn read_into<R: AsyncRead + Unpin>(mut pipe: R, into: Arc<Mutex<Capture>>, keep: Keep) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut c = into
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match keep {
            Keep::Head => {
                let room = STDOUT_CAP.saturating_sub(c.bytes.len());
                c.bytes.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    c.overflow = true;
                }
            }
            Keep::Tail => {
                c.bytes.extend_from_slice(&buf[..n]);
                if c.bytes.len() > 2 * STDERR_TAIL {
                    let cut = c.bytes.len() - STDERR_TAIL;
                    c.bytes.drain(..cut);
                    c.overflow = true;
                }
            }
        }
    }
}

/// The pure parts: what a handler's output becomes, and checking CMD.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_json_when_stdout_parses() {
        assert_eq!(result_of(b"{\"a\": 1}\n"), json!({"a": 1}));
        assert_eq!(result_of(b"42"), json!(42));
        assert_eq!(result_of(b"hello\n"), json!({"stdout": "hello"}));
        assert_eq!(result_of(b""), json!({"stdout": ""}));
    }

    #[test]
    fn stderr_tails_keep_the_end_from_a_whole_character() {
        let mut c = Capture {
            bytes: "é".repeat(STDERR_TAIL).into_bytes(),
            overflow: false,
        };
        c.bytes.extend_from_slice(b"\nthe end\n");
        let t = stderr_tail(&c);
        assert!(t.starts_with('…') && t.ends_with("the end"), "{t}");
        assert!(t.len() <= STDERR_TAIL + 4, "{}", t.len());
        assert!(!t.contains('\u{FFFD}'), "{t}");
        let short = Capture {
            bytes: b"oops\n".to_vec(),
            overflow: false,
        };
        assert_eq!(stderr_tail(&short), "oops");
    }

    #[test]
    fn programs_are_checked_before_anything_runs() {
        assert!(check_program(OsStr::new("sh")).is_ok());
        assert!(check_program(OsStr::new("/bin/sh")).is_ok());
        let e = check_program(OsStr::new("no-such-program-here"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not found on PATH"), "{e}");
        let e = check_program(OsStr::new("/no/such/file"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be run"), "{e}");
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let e = check_program(OsStr::new(manifest)).unwrap_err().to_string();
        assert!(e.contains("not executable"), "{e}");
    }
}
