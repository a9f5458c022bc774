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
///
/// Each reason is one row of the table below: its variant, its wire name and
/// its status class, written once; the enum, [`ErrorCode::ALL`],
/// [`ErrorCode::class`] and [`ErrorCode::as_str`] all come from that row.
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $wire:literal, $class:ident; )*) => {
        /// Why a request was refused: `error.reason` on the wire (see the
        /// table in `src/error_code.rs`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in catalogue order (for docs and tests).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The status class this reason answers with. (A missing or wrong
            /// token on an MCP route is the one exception: it answers
            /// `forbidden`, so MCP clients do not start an OAuth flow.)
            pub fn class(self) -> ErrorClass {
                match self { $(ErrorCode::$variant => ErrorClass::$class,)* }
            }

            /// The snake_case wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)* }
            }
        }
    };
}

error_codes! {
    /// A role, channel or signal name is not 1-64 of `[A-Za-z0-9._-]`.
    InvalidName = "invalid_name", BadRequest;
    /// A command's target is not a role, a peer id or `"*"`.
    InvalidTarget = "invalid_target", BadRequest;
    /// A command's action is empty or too long.
    InvalidAction = "invalid_action", BadRequest;
    /// `from` is too long.
    InvalidFrom = "invalid_from", BadRequest;
    /// `ttl` is past the maximum.
    TtlTooLong = "ttl_too_long", BadRequest;
    /// `deadline` is past the maximum.
    DeadlineTooLong = "deadline_too_long", BadRequest;
    /// A question's text, choices or `from` break their limits.
    InvalidQuestion = "invalid_question", BadRequest;
    /// The answer is not one of the question's choices.
    InvalidChoice = "invalid_choice", BadRequest;
    /// `dedupeKey` is empty or too long.
    InvalidDedupeKey = "invalid_dedupe_key", BadRequest;
    /// A peer's capabilities or name break their limits.
    InvalidPeerDetails = "invalid_peer_details", BadRequest;
    /// A query parameter is malformed or out of range.
    InvalidQuery = "invalid_query", BadRequest;
    /// The body is JSON but not the shape the route takes.
    InvalidBody = "invalid_body", BadRequest;
    /// A header is malformed (not text, not an id).
    InvalidHeader = "invalid_header", BadRequest;
    /// The token was put in the URL.
    TokenInUrl = "token_in_url", BadRequest;
    /// A route or MCP tool that acts as a peer was called by nobody in
    /// particular: no `X-Cipc-Peer` (or key) on REST; no `peer_key` and
    /// never connected on MCP.
    NotRegistered = "not_registered", BadRequest;
    /// A lease request or check breaks a rule: a path pattern (absolute,
    /// `..`, empty, a backslash, a control character, not a glob, too
    /// long), too many paths, no repo or a bad one, a ttl or reason out of
    /// range.
    InvalidLease = "invalid_lease", BadRequest;
    /// An MCP `reset` without `confirm: true`.
    ConfirmRequired = "confirm_required", BadRequest;
    /// The body is not JSON.
    InvalidJson = "invalid_json", InvalidJson;
    /// The body is larger than `--max-body`.
    PayloadTooLarge = "payload_too_large", PayloadTooLarge;
    /// The body did not arrive in time.
    RequestTimeout = "request_timeout", RequestTimeout;
    /// An MCP tool's wait ended before anything arrived: the client
    /// cancelled it, or its answer could no longer be written.
    WaitCancelled = "wait_cancelled", RequestTimeout;
    /// No token was sent, or a wrong one.
    BadToken = "bad_token", Unauthorized;
    /// Too many wrong tokens recently; wrong ones are answered slowly.
    TooManyWrongTokens = "too_many_wrong_tokens", TooManyRequests;
    /// A protected peer was named without its key.
    KeyRequired = "key_required", Forbidden;
    /// The peer key is not the named peer's, or not a key at all.
    WrongKey = "wrong_key", Forbidden;
    /// Only the holder (or a protected sender) may cancel this command.
    NotAllowedToCancel = "not_allowed_to_cancel", Forbidden;
    /// Only the holder of a lease may renew it; only the holder or a
    /// person (a request naming no peer) may release it.
    NotLeaseHolder = "not_lease_holder", Forbidden;
    /// A permission question (a session asking to use a tool) is answered
    /// by a person, not by a peer or an MCP session; only a person or the
    /// session that asked may withdraw it.
    PersonOnly = "person_only", Forbidden;
    /// The Host header names a host this broker does not serve.
    ForeignHost = "foreign_host", Forbidden;
    /// A browser request came from another web origin.
    ForeignOrigin = "foreign_origin", Forbidden;
    /// No peer has that id.
    UnknownPeer = "unknown_peer", NotFound;
    /// No command has that id.
    UnknownCommand = "unknown_command", NotFound;
    /// No question has that id.
    UnknownQuestion = "unknown_question", NotFound;
    /// No lease has that id (or none of the caller's matches the paths).
    UnknownLease = "unknown_lease", NotFound;
    /// The path is not part of the API.
    UnknownRoute = "unknown_route", NotFound;
    /// The MCP session has ended or never existed.
    UnknownSession = "unknown_session", NotFound;
    /// The command (or question, or lease) is already finished: acked,
    /// failed, answered, cancelled, released or expired.
    AlreadyFinished = "already_finished", Conflict;
    /// The command is held by another peer (or by nobody).
    NotHolder = "not_holder", Conflict;
    /// Some of the paths asked for are leased by another peer, and one of
    /// the two leases is exclusive: nothing was leased (the answer names
    /// the leases in the way, `conflicts`).
    LeaseConflict = "lease_conflict", Conflict;
    /// That delivery of the command is over: it went to another taker.
    DeliveryOver = "delivery_over", Conflict;
    /// The command was never delivered, so nobody can ack it yet: it waits
    /// for a taker (cancel it instead).
    NotDelivered = "not_delivered", Conflict;
    /// `--max-waiters` open waits and streams are reached.
    TooManyWaiters = "too_many_waiters", TooManyRequests;
    /// `--max-peers` is reached and no peer can be forgotten.
    TooManyPeers = "too_many_peers", TooManyRequests;
    /// `--max-channels` is reached and every channel is in use.
    TooManyChannels = "too_many_channels", TooManyRequests;
    /// `--max-signals` is reached and every signal is in use.
    TooManySignals = "too_many_signals", TooManyRequests;
    /// The broker holds as many leases as it keeps (10,000 by default).
    TooManyLeases = "too_many_leases", TooManyRequests;
    /// `--max-mcp-sessions` live MCP sessions are reached.
    TooManySessions = "too_many_sessions", TooManyRequests;
    /// `--max-connections` open connections are reached.
    TooManyConnections = "too_many_connections", Unavailable;
    /// The store cannot save or read now.
    StoreFailed = "store_failed", Unavailable;
    /// The shared database (PostgreSQL) cannot be reached now; nothing was
    /// changed, and the node reconnects by itself.
    StoreUnreachable = "store_unreachable", Unavailable;
    /// Another node has held the shared write turn (PostgreSQL) past its
    /// bound: it is frozen or cut off. Nothing was changed; the database
    /// ends that node's turn by itself and writes resume.
    WriteTurnStalled = "write_turn_stalled", Unavailable;
    /// A bug: the broker could not build its own answer.
    Internal = "internal", Internal;
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
    fn the_api_doc_lists_every_reason() {
        let doc = include_str!("../docs/api.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{code}` | {} ", code.class().status());
            assert!(
                doc.contains(&row),
                "docs/api.md's error table lacks {row:?}"
            );
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
