//! Typed HTTP client of the broker API (`shared/API.md`).
//!
//! Every `cipc` client subcommand goes through this one type, and it speaks in
//! the same [`crate::api`] types the server answers with, so the CLI cannot
//! drift from the wire contract. It is deliberately thin: one method per
//! route, no retries of its own (the CLI decides which calls are safe to
//! repeat), and errors sorted by what the user should do about them
//! ([`ClientError`]).
//!
//! The client speaks plain HTTP only: reqwest is built without TLS so that a
//! `cipc` call in a shell loop starts fast. An `https://` URL is refused with
//! advice rather than failing obscurely.

mod error;
mod routes;
mod sse;

pub use error::ClientError;
use error::{api_error, foreign};

pub use sse::{SseEvent, SseParser};

use crate::api::*;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// Where clients look for the broker unless told otherwise (`cipc serve`'s default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9100";

pub use crate::api::{PEER_HEADER, PEER_KEY_HEADER};

/// How long an ordinary (non-waiting) request may take before we give up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time granted past a long-poll's own timeout before the request is
/// considered lost (a broker that vanished without closing the connection).
const POLL_GRACE: Duration = Duration::from_secs(15);
/// How long establishing a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The answer to `POST /commands/send`: one command, or one per online peer for `"*"`.
#[derive(Debug, Clone)]
pub enum Sent {
    /// A single target.
    One {
        /// The answer as sent by the broker.
        response: Box<SendResponse>,
        /// False when a repeated `dedupeKey` returned the original command.
        created: bool,
    },
    /// The `"*"` fan-out: a copy per online peer.
    FanOut(CommandsResponse),
}

impl Sent {
    /// The commands created (or found), in order.
    pub fn commands(&self) -> Vec<&Command> {
        match self {
            Sent::One { response, .. } => vec![&response.command],
            Sent::FanOut(r) => r.commands.iter().collect(),
        }
    }
}

/// Serializes as the API object, exactly as the broker shaped it.
impl Serialize for Sent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Sent::One { response, .. } => response.serialize(s),
            Sent::FanOut(r) => r.serialize(s),
        }
    }
}

/// A typed client of one broker.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    shown: String,
    token: Option<String>,
    peer: Option<Uuid>,
    key: Option<String>,
    /// Caps every request's time, long-polls included ([`Client::impatient`]).
    limit: Option<Duration>,
}

impl Client {
    /// A client of the broker at `url` (plain `http://` only), sending
    /// `token` as a bearer token and `peer` as `X-Cipc-Peer` when given.
    pub fn new(
        url: &str,
        token: Option<String>,
        peer: Option<Uuid>,
    ) -> Result<Client, ClientError> {
        let base = parse_base_url(url)?;
        let http = http_client(&base, CONNECT_TIMEOUT)?;
        let shown = base.as_str().trim_end_matches('/').to_string();
        Ok(Client {
            http,
            base,
            shown,
            token: token
                .filter(|t| !t.trim().is_empty())
                .map(|t| t.trim().to_string()),
            peer,
            key: None,
            limit: None,
        })
    }

    /// The same client giving up on any request after `limit`, connecting
    /// included: for callers that must never hold anyone up, such as Claude
    /// Code hooks when the broker is down.
    pub fn impatient(mut self, limit: Duration) -> Result<Client, ClientError> {
        self.http = http_client(&self.base, limit)?;
        self.limit = Some(limit);
        Ok(self)
    }

    /// The same client speaking for `peer` (`X-Cipc-Peer`): for a client
    /// whose identity is settled after it was made (it may take the broker
    /// to resolve part of an id).
    pub fn with_peer(mut self, peer: Option<Uuid>) -> Client {
        self.peer = peer;
        self
    }

    /// The same client proving its peer with `key` (`X-Cipc-Peer-Key`).
    pub fn with_key(mut self, key: Option<String>) -> Client {
        self.key = key;
        self
    }

    /// The same client speaking for nobody (no peer id, no key): for
    /// registering a new peer while the environment names another.
    pub fn anonymous(&self) -> Client {
        Client {
            peer: None,
            key: None,
            ..self.clone()
        }
    }

    /// The peer key this client sends, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The broker URL as the user should see it in messages.
    pub fn base_url(&self) -> &str {
        &self.shown
    }

    /// The peer this client speaks for (`X-Cipc-Peer`), if any.
    pub fn peer(&self) -> Option<Uuid> {
        self.peer
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut rb = self.http.request(method, url);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(p) = self.peer {
            rb = rb.header(PEER_HEADER, p.to_string());
        }
        if let Some(k) = &self.key {
            rb = rb.header(PEER_KEY_HEADER, k);
        }
        rb
    }

    fn network_error(&self, e: reqwest::Error) -> ClientError {
        let reason = if e.is_timeout() {
            "no answer in time".to_string()
        } else if e.is_connect() {
            // The innermost cause is the readable one ("Connection refused").
            let mut source: &dyn std::error::Error = &e;
            while let Some(s) = source.source() {
                source = s;
            }
            source.to_string()
        } else {
            "the connection broke".to_string()
        };
        ClientError::Unreachable {
            url: self.shown.clone(),
            reason,
        }
    }

    /// Sends a request and decodes a 2xx answer into `T` (or the error body).
    async fn call<T: DeserializeOwned>(
        &self,
        rb: RequestBuilder,
        timeout: Duration,
    ) -> Result<(StatusCode, T), ClientError> {
        let timeout = self.limit.map_or(timeout, |l| l.min(timeout));
        let resp = rb
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.network_error(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.network_error(e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(|v| (status, v))
                .map_err(|e| {
                    if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
                        // Not JSON at all: a web page, not a broker.
                        return self.located(foreign(status, &bytes));
                    }
                    ClientError::Protocol {
                        url: self.shown.clone(),
                        reason: format!(
                            "HTTP {} with a body that does not fit the API ({e})",
                            status.as_u16()
                        ),
                    }
                });
        }
        Err(self.located(api_error(status, &bytes)))
    }

    /// Names this client's URL in an error that was made without it.
    fn located(&self, e: ClientError) -> ClientError {
        match e {
            ClientError::Foreign {
                url,
                status,
                snippet,
            } if url.is_empty() => ClientError::Foreign {
                url: self.shown.clone(),
                status,
                snippet,
            },
            other => other,
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query);
        Ok(self
            .call(self.request(Method::GET, url), REQUEST_TIMEOUT)
            .await?
            .1)
    }

    async fn poll<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        timeout_ms: u64,
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query);
        let limit = Duration::from_millis(timeout_ms) + POLL_GRACE;
        Ok(self.call(self.request(Method::GET, url), limit).await?.1)
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<(StatusCode, T), ClientError> {
        let url = self.url(segments, &[]);
        let mut rb = self.request(method, url);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.call(rb, REQUEST_TIMEOUT).await
    }

    /// A POST with a JSON body that may wait on the broker for up to
    /// `wait_ms` (given as the query parameter `param`).
    async fn post_waiting<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        param: &str,
        wait_ms: u64,
        body: &B,
    ) -> Result<(StatusCode, T), ClientError> {
        let url = self.url(segments, &[(param, wait_ms.to_string())]);
        let rb = self.request(Method::POST, url).json(body);
        self.call(rb, Duration::from_millis(wait_ms) + POLL_GRACE)
            .await
    }
}

/// An open `text/event-stream` answer, read event by event.
#[derive(Debug)]
pub struct SseStream {
    resp: reqwest::Response,
    parser: SseParser,
    shown: String,
}

impl SseStream {
    /// The next event, `Ok(None)` when the broker closed the stream. Comments
    /// (keep-alives) are skipped. An error means the connection broke.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(ev) = self.parser.next_event() {
                return Ok(Some(ev));
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.parser.feed(&bytes),
                Ok(None) => return Ok(None),
                Err(_) => {
                    return Err(ClientError::Unreachable {
                        url: self.shown.clone(),
                        reason: "the stream broke".into(),
                    })
                }
            }
        }
    }
}

/// Parses and checks a broker URL: plain http only.
fn parse_base_url(raw: &str) -> Result<Url, ClientError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        ClientError::Config(format!(
            "--url {raw:?} is not a URL ({e}); use e.g. {DEFAULT_URL}"
        ))
    })?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ClientError::Config(format!(
                "--url {raw:?} uses https, but this cipc speaks plain HTTP only (no TLS, to start fast); \
                 use an http:// URL (e.g. through an SSH tunnel: ssh -L 9100:127.0.0.1:9100 HOST), \
                 or put a local TLS-terminating proxy in front of the remote broker"
            )))
        }
        other => {
            return Err(ClientError::Config(format!(
                "--url {raw:?} has scheme {other:?}; use an http:// URL such as {DEFAULT_URL}"
            )))
        }
    }
    if url.host().is_none() {
        return Err(ClientError::Config(format!(
            "--url {raw:?} has no host; use e.g. {DEFAULT_URL}"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Config(format!(
            "--url {raw:?} must not have a query or fragment; use e.g. {DEFAULT_URL}"
        )));
    }
    Ok(url)
}

/// The HTTP client for a broker at `base`.
fn http_client(base: &Url, connect_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder().connect_timeout(connect_timeout);
    // A broker on this machine is never behind a proxy, and a stray
    // http_proxy variable must not send local orders elsewhere.
    let loopback = base
        .host_str()
        .map(|h| h.trim_matches(|c| c == '[' || c == ']'))
        .is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
    if loopback {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| ClientError::Config(format!("cannot set up the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_code::ErrorCode;

    #[test]
    fn urls_are_checked() {
        assert!(parse_base_url("http://127.0.0.1:9100").is_ok());
        assert!(parse_base_url("127.0.0.1:9100").is_ok());
        let e = parse_base_url("https://example.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain HTTP"), "{e}");
        assert!(parse_base_url("ftp://x").is_err());
    }

    #[test]
    fn foreign_pages_are_named_not_dumped() {
        let page = b"<!DOCTYPE html>\n<html><body><h1>Welcome to nginx!</h1></body></html>";
        let e = api_error(StatusCode::NOT_FOUND, page);
        let c = Client::new("http://127.0.0.1:8080", None, None).unwrap();
        let text = c.located(e).to_string();
        assert!(
            text.starts_with(
                "the server at http://127.0.0.1:8080 answered HTTP 404 with a non-cipc page;"
            ),
            "{text}"
        );
        assert!(
            text.contains("CIPC_URL") && !text.contains("nginx"),
            "{text}"
        );
        let e = api_error(StatusCode::BAD_GATEWAY, b"upstream   went away\n");
        assert!(e.is_retryable(), "a proxy's 502 is worth retrying");
        assert!(
            e.to_string().contains("(\"upstream went away\")"),
            "plain text is quoted: {e}"
        );
        let e = api_error(
            StatusCode::FORBIDDEN,
            br#"{"error":{"code":"forbidden","message":"no"}}"#,
        );
        assert!(matches!(e, ClientError::Api { status: 403, .. }), "{e:?}");
        assert_eq!(e.reason(), None, "no reason from an older broker");
        let e = api_error(
            StatusCode::FORBIDDEN,
            br#"{"error":{"code":"forbidden","reason":"wrong_key","message":"no"}}"#,
        );
        assert_eq!(e.reason(), Some(ErrorCode::WrongKey));
        assert!(e.refuses_peer());
        let e = api_error(
            StatusCode::CONFLICT,
            br#"{"error":{"code":"conflict","reason":"from_the_future","message":"no"}}"#,
        );
        assert!(
            matches!(
                e,
                ClientError::Api {
                    status: 409,
                    reason: None,
                    ..
                }
            ),
            "an unknown reason still parses: {e:?}"
        );
    }

    #[test]
    fn a_lease_refusal_keeps_the_leases_in_the_way() {
        let lease = serde_json::json!({
            "id": "01930000-0000-7000-8000-000000000001",
            "holder": "01930000-0000-7000-8000-000000000002",
            "holderRole": "backend", "holderName": "alice",
            "repo": "github.com/Org/App", "paths": ["src/api/"],
            "exclusive": true, "reason": "refactoring",
            "createdAt": "2026-11-24T21:40:00.123Z",
            "expiresAt": "2026-11-24T22:10:00.123Z", "status": "held"
        });
        let body = serde_json::json!({
            "error": {"code": "conflict", "reason": "lease_conflict", "message": "held"},
            "conflicts": [lease]
        });
        let e = api_error(StatusCode::CONFLICT, body.to_string().as_bytes());
        assert!(matches!(e, ClientError::Api { status: 409, .. }), "{e:?}");
        let held = e.lease_conflicts();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].holder_name.as_deref(), Some("alice"));
        assert_eq!(held[0].paths, ["src/api/"]);
        // Another refusal has none; a list that does not parse still leaves the error.
        let e = api_error(
            StatusCode::CONFLICT,
            br#"{"error":{"code":"conflict","message":"no"},"conflicts":[{"id":1}]}"#,
        );
        assert!(matches!(e, ClientError::Api { status: 409, .. }), "{e:?}");
        assert!(e.lease_conflicts().is_empty());
        assert!(ClientError::Config("x".into()).lease_conflicts().is_empty());
    }

    #[test]
    fn paths_join_under_a_prefix() {
        let c = Client::new("http://h:1/cipc/", None, None).unwrap();
        assert_eq!(
            c.url(&["signals", "a b"], &[]).as_str(),
            "http://h:1/cipc/signals/a%20b"
        );
        let c = Client::new("http://h:1", None, None).unwrap();
        assert_eq!(
            c.url(&["signals", "x", "wait"], &[("timeout", "5".into())])
                .as_str(),
            "http://h:1/signals/x/wait?timeout=5"
        );
    }
}
