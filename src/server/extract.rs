//! Request extractors that answer bad input with the contract's JSON errors
//! (axum's own rejections are plain text).

use super::error::ApiError;
use super::AppState;
use crate::api::{MAX_LONG_POLL_MS, PEER_HEADER, PEER_KEY_HEADER};
use crate::broker::Caller;
use crate::error_code::ErrorCode;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use uuid::Uuid;

/// A JSON body: 413 past the limit, 400 `invalid_json` when it does not parse,
/// 400 `bad_request` naming the field when it has the wrong shape. Any
/// `Content-Type` is accepted, as the original broker did (curl `-d`).
pub struct JsonBody<T>(pub T);

/// Reads the raw body, mapping the size limit to 413 and a body that does
/// not arrive within `body_read_timeout` to 408, so a client trickling bytes
/// cannot hold a buffer forever.
pub async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let limit = state.config.body_read_timeout;
    let read = tokio::time::timeout(limit, Bytes::from_request(req, state));
    let Ok(read) = read.await else {
        return Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms; send it in one go",
                limit.as_millis()
            ),
        ));
    };
    read.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the request body is larger than {} bytes (--max-body); send less, or raise the limit",
                    state.config.max_body
                ),
            )
        } else {
            ApiError::new(ErrorCode::InvalidBody, format!("could not read the request body: {}", rej.body_text()))
        }
    })
}

/// Parses JSON text into `T`, classifying the failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], empty_as: &str) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        empty_as.as_bytes()
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::new(ErrorCode::InvalidBody, format!("invalid request body: {e}"))
        }
        _ => ApiError::new(
            ErrorCode::InvalidJson,
            format!("the request body is not valid JSON ({e}); check quoting and commas"),
        ),
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_object(&bytes).map(JsonBody)
    }
}

/// Parses a body that must be a JSON object (or empty, meaning `{}`); serde
/// would otherwise also read a struct from an array of its fields.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None | Some(b'{') => parse_json(bytes, "{}"),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidBody,
            "the request body must be a JSON object, e.g. {\"result\": ...}",
        )),
    }
}

/// The query string as a map, with helpers that validate each parameter.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("bad query string: {}", e.body_text()),
                )
            })?;
        Ok(Params(map))
    }
}

impl Params {
    /// An optional non-negative integer parameter.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            // At most i64::MAX: every stored number is a signed 64-bit integer.
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!(
                            "query parameter {name}={v:?} must be a whole number from 0 to {}",
                            i64::MAX
                        ),
                    )
                }),
        }
    }

    /// `timeout` in milliseconds: default 30 000, at most 3 600 000; anything
    /// else is refused rather than clamped.
    pub fn timeout(&self) -> Result<Duration, ApiError> {
        Ok(self
            .wait_param("timeout")?
            .unwrap_or(Duration::from_millis(crate::api::DEFAULT_LONG_POLL_MS)))
    }

    /// A long-poll parameter in milliseconds (`timeout`, `wait`, `next`):
    /// absent is `None`; at most 3 600 000, anything else is refused.
    pub fn wait_param(&self, name: &str) -> Result<Option<Duration>, ApiError> {
        let Some(ms) = self.u64(name)? else {
            return Ok(None);
        };
        if ms > MAX_LONG_POLL_MS {
            return Err(ApiError::new(ErrorCode::InvalidQuery, format!(
                "{name}={ms} is too long: the maximum is {MAX_LONG_POLL_MS} ms (one hour); wait again after it returns"
            )));
        }
        Ok(Some(Duration::from_millis(ms)))
    }

    /// `limit`: default `default`, between 1 and `max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.u64("limit")? {
            None => Ok(default),
            Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
            Some(n) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("limit={n} is out of range: use 1 to {max}"),
            )),
        }
    }

    /// An optional boolean parameter: `true`/`1` or `false`/`0` (absent:
    /// false); anything else is a 400 naming the parameter.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name).map(|v| v.trim()) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some(v) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("{name}={v:?} is not a boolean; use {name}=true or leave it out"),
            )),
        }
    }

    /// An optional string parameter.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Parses a peer id from a path segment: anything else names no peer (404).
pub fn peer_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_id(ErrorCode::UnknownPeer, "peer", raw)
}

/// Parses a command id from a path segment: anything else names no command (404).
pub fn command_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_id(ErrorCode::UnknownCommand, "command", raw)
}

/// Parses a question id from a path segment: anything else names no question (404).
pub fn question_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_id(ErrorCode::UnknownQuestion, "question", raw)
}

/// Parses a lease id from a path segment: anything else names no lease (404).
pub fn lease_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_id(ErrorCode::UnknownLease, "lease", raw)
}

fn parse_id(code: ErrorCode, kind: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::new(
            code,
            format!("{raw:?} is not a {kind} id (ids are UUIDs like 0193a1b2-...)"),
        )
    })
}

/// Who is calling: `X-Cipc-Peer`, `X-Cipc-Peer-Key` and the network address.
/// The auth guard has already checked these claims ([`Broker::admit`](crate::broker::Broker::admit)).
pub struct CallerInfo(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for CallerInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // The front door read it already (and left it for the handler).
        if let Some(caller) = parts.extensions.remove::<Caller>() {
            return Ok(CallerInfo(caller));
        }
        caller_of(parts).map(CallerInfo)
    }
}

/// Reads the caller's claims from a request's headers.
pub fn caller_of(parts: &Parts) -> Result<Caller, ApiError> {
    let header = |name: &str| -> Result<Option<String>, ApiError> {
        match parts.headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidHeader,
                        format!("the {name} header is not text"),
                    )
                }),
        }
    };
    let peer = match header(PEER_HEADER)? {
        None => None,
        Some(s) => Some(Uuid::parse_str(&s).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidHeader,
                format!("X-Cipc-Peer {s:?} is not a peer id; use the id from POST /peers/connect"),
            )
        })?),
    };
    let key = header(PEER_KEY_HEADER)?;
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    Ok(Caller::presented(peer, key, address))
}
