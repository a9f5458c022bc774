//! The error catalogue: every reason the broker refuses a request, with its
//! stable wire code, in one place.
//!
//! An error answer carries two codes. `error.code` is the status class that
//! shared/API.md lists ([`ErrorClass`]: `not_found`, `conflict`, ...) and that
//! clients of the old broker already branch on; `error.reason` is the specific
//! [`ErrorCode`] (`unknown_peer`, `not_holder`, ...) for clients that need to
//! tell one refusal from another. The HTTP status follows from the class.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The status class of an error: `error.code` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// 400: the request itself is wrong.
    BadRequest,
    /// 400: the body is not JSON.
    InvalidJson,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 413: the body is larger than `--max-body`.
    PayloadTooLarge,
    /// 401: no token, or a wrong one (REST).
    Unauthorized,
    /// 403: not allowed for this caller.
    Forbidden,
    /// 404: nothing by that name.
    NotFound,
    /// 409: the state does not allow it now.
    Conflict,
    /// 429: a limit is reached; retry later.
    TooManyRequests,
    /// 503: the broker cannot do it now.
    Unavailable,
    /// 500: a bug; never caused by input.
    Internal,
}

impl ErrorClass {
    /// The HTTP status of this class.
    pub fn status(self) -> u16 {
        match self {
            ErrorClass::BadRequest | ErrorClass::InvalidJson => 400,
            ErrorClass::Unauthorized => 401,
            ErrorClass::Forbidden => 403,
            ErrorClass::NotFound => 404,
            ErrorClass::RequestTimeout => 408,
            ErrorClass::Conflict => 409,
            ErrorClass::PayloadTooLarge => 413,
            ErrorClass::TooManyRequests => 429,
            ErrorClass::Internal => 500,
            ErrorClass::Unavailable => 503,
        }
    }

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::InvalidJson => "invalid_json",
            ErrorClass::RequestTimeout => "request_timeout",
            ErrorClass::PayloadTooLarge => "payload_too_large",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::TooManyRequests => "too_many_requests",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Internal => "internal",
        }
    }
}

/// Why a request was refused: `error.reason` on the wire. The names are
/// stable; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A role, channel or signal name is not 1-64 of `[A-Za-z0-9._-]`.
    InvalidName,
    /// A command's target is not a role, a peer id or `"*"`.
    InvalidTarget,
    /// A command's action is empty or too long.
    InvalidAction,
    /// `from` is too long.
    InvalidFrom,
    /// `ttl` is past the maximum.
    TtlTooLong,
    /// `deadline` is past the maximum.
    DeadlineTooLong,
    /// A question's text, choices or `from` break their limits.
    InvalidQuestion,
    /// The answer is not one of the question's choices.
    InvalidChoice,
    /// `dedupeKey` is empty or too long.
    InvalidDedupeKey,
    /// A peer's capabilities or name break their limits.
    InvalidPeerDetails,
    /// A query parameter is malformed or out of range.
    InvalidQuery,
    /// The body is JSON but not the shape the route takes.
    InvalidBody,
    /// A header is malformed (not text, not an id).
    InvalidHeader,
    /// The token was put in the URL.
    TokenInUrl,
    /// The body is not JSON.
    InvalidJson,
    /// The body is larger than `--max-body`.
    PayloadTooLarge,
    /// The body did not arrive in time.
    RequestTimeout,
    /// No token was sent, or a wrong one.
    BadToken,
    /// Too many wrong tokens recently; wrong ones are answered slowly.
    TooManyWrongTokens,
    /// A protected peer was named without its key.
    KeyRequired,
    /// The peer key is not the named peer's, or not a key at all.
    WrongKey,
    /// Only the holder (or a protected sender) may cancel this command.
    NotAllowedToCancel,
    /// The Host header names a host this broker does not serve.
    ForeignHost,
    /// A browser request came from another web origin.
    ForeignOrigin,
    /// No peer has that id.
    UnknownPeer,
    /// No command has that id.
    UnknownCommand,
    /// No question has that id.
    UnknownQuestion,
    /// The path is not part of the API.
    UnknownRoute,
    /// The MCP session has ended or never existed.
    UnknownSession,
    /// The command (or question) is already finished: acked, failed,
    /// answered, cancelled or expired.
    AlreadyFinished,
    /// The command is held by another peer (or by nobody).
    NotHolder,
    /// That delivery of the command is over: it went to another taker.
    DeliveryOver,
    /// `--max-waiters` open waits and streams are reached.
    TooManyWaiters,
    /// `--max-peers` is reached and no peer can be forgotten.
    TooManyPeers,
    /// `--max-channels` is reached and every channel is in use.
    TooManyChannels,
    /// `--max-signals` is reached and every signal is in use.
    TooManySignals,
    /// The store cannot save or read now.
    StoreFailed,
    /// The shared database (PostgreSQL) cannot be reached now; nothing was
    /// changed, and the node reconnects by itself.
    StoreUnreachable,
    /// A bug: the broker could not build its own answer.
    Internal,
}

impl ErrorCode {
    /// Every code, in catalogue order (for docs and tests).
    pub const ALL: [ErrorCode; 39] = [
        ErrorCode::InvalidName,
        ErrorCode::InvalidTarget,
        ErrorCode::InvalidAction,
        ErrorCode::InvalidFrom,
        ErrorCode::TtlTooLong,
        ErrorCode::DeadlineTooLong,
        ErrorCode::InvalidQuestion,
        ErrorCode::InvalidChoice,
        ErrorCode::InvalidDedupeKey,
        ErrorCode::InvalidPeerDetails,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidHeader,
        ErrorCode::TokenInUrl,
        ErrorCode::InvalidJson,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::BadToken,
        ErrorCode::TooManyWrongTokens,
        ErrorCode::KeyRequired,
        ErrorCode::WrongKey,
        ErrorCode::NotAllowedToCancel,
        ErrorCode::ForeignHost,
        ErrorCode::ForeignOrigin,
        ErrorCode::UnknownPeer,
        ErrorCode::UnknownCommand,
        ErrorCode::UnknownQuestion,
        ErrorCode::UnknownRoute,
        ErrorCode::UnknownSession,
        ErrorCode::AlreadyFinished,
        ErrorCode::NotHolder,
        ErrorCode::DeliveryOver,
        ErrorCode::TooManyWaiters,
        ErrorCode::TooManyPeers,
        ErrorCode::TooManyChannels,
        ErrorCode::TooManySignals,
        ErrorCode::StoreFailed,
        ErrorCode::StoreUnreachable,
        ErrorCode::Internal,
    ];

    /// The status class this reason answers with. (A missing or wrong token
    /// on an MCP route is the one exception: it answers `forbidden`, so MCP
    /// clients do not start an OAuth flow.)
    pub fn class(self) -> ErrorClass {
        use ErrorCode::*;
        match self {
            InvalidName | InvalidTarget | InvalidAction | InvalidFrom | TtlTooLong
            | DeadlineTooLong | InvalidQuestion | InvalidChoice | InvalidDedupeKey
            | InvalidPeerDetails | InvalidQuery | InvalidBody | InvalidHeader | TokenInUrl => {
                ErrorClass::BadRequest
            }
            InvalidJson => ErrorClass::InvalidJson,
            PayloadTooLarge => ErrorClass::PayloadTooLarge,
            RequestTimeout => ErrorClass::RequestTimeout,
            BadToken => ErrorClass::Unauthorized,
            KeyRequired | WrongKey | NotAllowedToCancel | ForeignHost | ForeignOrigin => {
                ErrorClass::Forbidden
            }
            UnknownPeer | UnknownCommand | UnknownQuestion | UnknownRoute | UnknownSession => {
                ErrorClass::NotFound
            }
            AlreadyFinished | NotHolder | DeliveryOver => ErrorClass::Conflict,
            TooManyWrongTokens | TooManyWaiters | TooManyPeers | TooManyChannels
            | TooManySignals => ErrorClass::TooManyRequests,
            StoreFailed | StoreUnreachable => ErrorClass::Unavailable,
            Internal => ErrorClass::Internal,
        }
    }

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidName => "invalid_name",
            InvalidTarget => "invalid_target",
            InvalidAction => "invalid_action",
            InvalidFrom => "invalid_from",
            TtlTooLong => "ttl_too_long",
            DeadlineTooLong => "deadline_too_long",
            InvalidQuestion => "invalid_question",
            InvalidChoice => "invalid_choice",
            InvalidDedupeKey => "invalid_dedupe_key",
            InvalidPeerDetails => "invalid_peer_details",
            InvalidQuery => "invalid_query",
            InvalidBody => "invalid_body",
            InvalidHeader => "invalid_header",
            TokenInUrl => "token_in_url",
            InvalidJson => "invalid_json",
            PayloadTooLarge => "payload_too_large",
            RequestTimeout => "request_timeout",
            BadToken => "bad_token",
            TooManyWrongTokens => "too_many_wrong_tokens",
            KeyRequired => "key_required",
            WrongKey => "wrong_key",
            NotAllowedToCancel => "not_allowed_to_cancel",
            ForeignHost => "foreign_host",
            ForeignOrigin => "foreign_origin",
            UnknownPeer => "unknown_peer",
            UnknownCommand => "unknown_command",
            UnknownQuestion => "unknown_question",
            UnknownRoute => "unknown_route",
            UnknownSession => "unknown_session",
            AlreadyFinished => "already_finished",
            NotHolder => "not_holder",
            DeliveryOver => "delivery_over",
            TooManyWaiters => "too_many_waiters",
            TooManyPeers => "too_many_peers",
            TooManyChannels => "too_many_channels",
            TooManySignals => "too_many_signals",
            StoreFailed => "store_failed",
            StoreUnreachable => "store_unreachable",
            Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn wire_names_match_serde_and_are_unique() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("serializes");
            assert_eq!(json, code.as_str(), "{code:?}");
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }

    #[test]
    fn the_readme_lists_every_reason() {
        let readme = include_str!("../README.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{code}` | {} ", code.class().status());
            assert!(readme.contains(&row), "README's error table lacks {row:?}");
        }
    }

    #[test]
    fn classes_match_serde() {
        for code in ErrorCode::ALL {
            let class = code.class();
            assert_eq!(
                serde_json::to_value(class).expect("serializes"),
                class.as_str()
            );
        }
    }
}
