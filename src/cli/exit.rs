//! How a `cipc` process ends: the [`Exit`] codes as a type (as fd's
//! `exit_codes.rs` does), their short names (`exit::OK`, ...), and
//! [`CliError`], the one error every subcommand returns, with the one place
//! that sorts a [`ClientError`] into an exit code.

use crate::client::ClientError;

/// How a `cipc` process ends: its exit status, documented in `--help`, the
/// man page and docs/cli.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The broker said no, a command failed, or another error.
    Error = 1,
    /// Bad usage (unknown flag, bad value, unsafe configuration refused).
    Usage = 2,
    /// The broker could not be reached.
    Unreachable = 3,
    /// A wait ran out of time.
    TimedOut = 124,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// Success.
pub const OK: Exit = Exit::Ok;
/// The broker said no, a command failed, or another error.
pub const ERROR: Exit = Exit::Error;
/// Bad usage (unknown flag, bad value, unsafe configuration refused).
pub const USAGE: Exit = Exit::Usage;
/// The broker could not be reached.
pub const UNREACHABLE: Exit = Exit::Unreachable;
/// A wait ran out of time.
pub const TIMED_OUT: Exit = Exit::TimedOut;
/// `cipc hook stop` found an order: Claude Code wakes an idle session
/// when a background (`asyncRewake`) hook exits 2.
pub const WAKE: Exit = Exit::Usage;

/// Which exit code a failed broker call ends the process with: usage for a
/// client set up wrongly, "unreachable" when no broker answered where we
/// looked (nothing at all, or another kind of server), else error.
impl From<&ClientError> for Exit {
    fn from(e: &ClientError) -> Exit {
        match e {
            ClientError::Config(_) => USAGE,
            ClientError::Unreachable { .. } | ClientError::Foreign { .. } => UNREACHABLE,
            ClientError::Api { .. } | ClientError::Protocol { .. } => ERROR,
        }
    }
}

/// Why a subcommand stopped: an exit code and, usually, one line for stderr.
#[derive(Debug, Clone)]
pub struct CliError {
    /// The process exit code ([`Exit`]; short names in this module).
    pub code: Exit,
    /// What failed and what to do; `None` when everything was already said.
    pub message: Option<String>,
}

impl CliError {
    /// Exit code 1 with a message.
    pub fn error(message: impl Into<String>) -> CliError {
        CliError {
            code: ERROR,
            message: Some(message.into()),
        }
    }

    /// Exit code 2 (bad usage) with a message.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: USAGE,
            message: Some(message.into()),
        }
    }

    /// An exit code with nothing more to say.
    pub fn quiet(code: Exit) -> CliError {
        CliError {
            code,
            message: None,
        }
    }

    /// The same error, its message ending with `suffix`.
    pub fn suffixed(mut self, suffix: &str) -> CliError {
        self.message = self.message.map(|m| format!("{m}{suffix}"));
        self
    }

    /// The same error, its message starting with `prefix`.
    pub fn prefixed(mut self, prefix: &str) -> CliError {
        self.message = self.message.map(|m| format!("{prefix}{m}"));
        self
    }
}

/// A failed broker call as the line the user reads: its exit code from
/// [`Exit::from`], its message with what to do where one helps.
impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        let code = Exit::from(&e);
        let message = match &e {
            ClientError::Unreachable { .. } => format!(
                "{e}; is it running? Start one with `cipc serve`, or point --url / CIPC_URL at it"
            ),
            ClientError::Api { .. } => format!("the broker said: {e}"),
            // No broker where we looked: like nothing answering at all (exit 3).
            ClientError::Config(_) | ClientError::Protocol { .. } | ClientError::Foreign { .. } => {
                e.to_string()
            }
        };
        CliError {
            code,
            message: Some(message),
        }
    }
}
