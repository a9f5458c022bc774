//! Why a broker call failed ([`ClientError`]), sorted by what the user
//! should do about it, and how a non-2xx answer becomes one: the broker's
//! own error body (with its catalogued reason), or another server's page.

use crate::api::ErrorResponse;
use crate::error_code::ErrorCode;
use reqwest::StatusCode;

/// Why a call failed, sorted by what the user should do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The client was set up wrongly (bad URL, TLS asked for, bad peer id): fix the flags.
    #[error("{0}")]
    Config(String),
    /// Nothing answered at the URL (refused, reset, timed out): start or find the broker.
    #[error("cannot reach the broker at {url} ({reason})")]
    Unreachable {
        /// The broker URL that was tried.
        url: String,
        /// What the network said.
        reason: String,
    },
    /// The broker answered with an error (`{"error": {"code", "reason", "message"}}`).
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The contract's snake_case code (the status class).
        code: String,
        /// Which refusal this is, so callers branch on it rather than on
        /// the status; `None` from a broker older than the catalogue, or
        /// for a reason newer than this client knows.
        reason: Option<ErrorCode>,
        /// The broker's own explanation.
        message: String,
    },
    /// Something answered, but not like a cipc broker.
    #[error("unexpected answer from {url}: {reason}; is this a cipc broker?")]
    Protocol {
        /// The URL that answered.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// Another kind of server answered with a page of its own (a web
    /// server's HTML, a proxy's error text): the URL is probably not a broker.
    #[error("{}", foreign_text(.url, *.status, .snippet.as_deref()))]
    Foreign {
        /// The URL that answered (empty when not known where the answer was made).
        url: String,
        /// The HTTP status it answered with.
        status: u16,
        /// The start of its body, when that is short plain text (never HTML).
        snippet: Option<String>,
    },
}

/// The line for [`ClientError::Foreign`].
fn foreign_text(url: &str, status: u16, snippet: Option<&str>) -> String {
    let who = if url.is_empty() {
        "the server".to_string()
    } else {
        format!("the server at {url}")
    };
    let what = match snippet {
        Some(text) => format!("HTTP {status} that is not a cipc answer ({text:?})"),
        None => format!("HTTP {status} with a non-cipc page"),
    };
    format!("{who} answered {what}; is CIPC_URL (or --url) pointing at a cipc broker? `cipc serve` prints the URL it listens on")
}

impl ClientError {
    /// The broker's specific reason for refusing ([`ErrorCode`]), when it
    /// gave one this client knows: what the CLI branches on.
    pub fn reason(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { reason, .. } => *reason,
            _ => None,
        }
    }

    /// Whether the broker refused the peer this client speaks for: it
    /// forgot the peer (a reset, a new store), or the key does not prove it
    /// (missing, or given to another connect). Registering anew is the fix.
    pub fn refuses_peer(&self) -> bool {
        matches!(
            self.reason(),
            Some(ErrorCode::UnknownPeer | ErrorCode::KeyRequired | ErrorCode::WrongKey)
        )
    }

    /// Whether the broker refused the token (missing, wrong, or too many
    /// wrong ones lately): no retry helps until the token is fixed.
    pub fn refuses_token(&self) -> bool {
        matches!(self, ClientError::Api { status: 401, .. })
            || self.reason() == Some(ErrorCode::BadToken)
    }

    /// Whether the broker is up but cannot use its store now (disk, data
    /// directory or PostgreSQL): it answers, but saves nothing.
    pub fn store_down(&self) -> bool {
        matches!(
            self.reason(),
            Some(
                ErrorCode::StoreFailed | ErrorCode::StoreUnreachable | ErrorCode::WriteTurnStalled
            )
        )
    }

    /// Whether repeating the same request later may succeed: the broker is
    /// down or restarting, busy (429), or briefly unavailable (502-504).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } | ClientError::Foreign { status, .. } => {
                matches!(status, 429 | 502 | 503 | 504)
            }
            _ => false,
        }
    }
}

/// Turns a non-2xx answer into [`ClientError::Api`] when it is the
/// contract's error body, else into [`ClientError::Foreign`] (some other
/// server answered; its URL is filled in by the caller that knows it).
pub(super) fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    if let Ok(body) = serde_json::from_slice::<ErrorResponse>(bytes) {
        // A reason this client does not know (a newer broker's) is no
        // reason to reject the answer: it reads as `None`.
        let reason = body
            .error
            .reason
            .as_deref()
            .and_then(|r| ErrorCode::ALL.iter().copied().find(|c| c.as_str() == r));
        return ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            reason,
            message: body.error.message,
        };
    }
    foreign(status, bytes)
}

/// The most of a foreign plain-text body an error line quotes.
const SNIPPET_CHARS: usize = 120;

/// [`ClientError::Foreign`] for an answer that is not the broker's: its
/// status, and a short quote of its body only when that is plain text
/// (an HTML page would bury the message).
pub(super) fn foreign(status: StatusCode, bytes: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.trim_start_matches('\u{feff}');
    let html = text.starts_with('<');
    let snippet = (!html && !text.is_empty()).then(|| {
        if text.chars().count() > SNIPPET_CHARS {
            let cut: String = text.chars().take(SNIPPET_CHARS - 1).collect();
            format!("{cut}…")
        } else {
            text.to_string()
        }
    });
    ClientError::Foreign {
        url: String::new(),
        status: status.as_u16(),
        snippet,
    }
}
