//! The broker's front door: token, Origin and Host checks, and the brake on
//! repeated auth failures.
//!
//! Commands are orders to agents with a shell, so an open broker is remote code
//! execution for anyone who reaches it. Every request passes [`admit`] first.

mod host;

use super::error::ApiError;
use super::AppState;
use crate::broker::Broker;
use crate::error_code::{ErrorClass, ErrorCode};
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use host::{fetch_site_refusal, host_refusal};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Failed auth attempts from one address allowed per window before the brake
/// slows that address down.
const MAX_FAILURES: u32 = 20;
/// Failed attempts from all addresses together per window before the brake
/// slows everyone's wrong guesses (guessing from many addresses).
const MAX_FAILURES_ALL: u32 = 200;
/// The window and the brake both last a minute.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// While the brake is on, each wrong guess waits this long in one queue
/// shared by every address, so guessing runs at a few tries a second at most
/// however many addresses it comes from. A right token never waits.
const BRAKE_DELAY: Duration = Duration::from_millis(250);
/// Wrong guesses that may wait in the brake's queue at once. Each holds a
/// connection while it waits; past this many a wrong guess is answered at
/// once and its connection closed, so guessing can never use up the
/// broker's connections (or file descriptors) and lock a right token out.
const BRAKE_QUEUE: usize = 32;

/// The name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "cipc_session";
/// How long a dashboard login lasts; the browser logs in again after it.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Who may talk to the broker, decided once at start-up.
pub struct Security {
    /// The shared secret, when one is configured.
    pub token: Option<String>,
    /// Host header values allowed (lowercase, without port); `None` allows any.
    pub allowed_hosts: Option<HashSet<String>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Failures from every address in the current window.
    all_failures: Mutex<(Instant, u32)>,
    /// The queue wrong guesses wait in while the brake is on.
    brake: tokio::sync::Mutex<()>,
    /// How many wait in it now (at most [`BRAKE_QUEUE`]).
    braked: std::sync::atomic::AtomicUsize,
}

struct Failures {
    window_start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Security {
    /// Builds the policy for a broker bound to `bind`.
    ///
    /// Loopback binds allow loopback Host names only (DNS-rebinding defence).
    /// A specific LAN address adds itself and the machine's hostname. A
    /// wildcard bind (0.0.0.0, ::) cannot know every name it is reached by, so
    /// it allows any Host and relies on the token. `extra` (`--allowed-host`)
    /// is always added.
    pub fn new(token: Option<String>, bind: IpAddr, extra: &[String]) -> Security {
        let allowed_hosts = if bind.is_unspecified() && extra.is_empty() {
            None
        } else {
            let mut hosts: HashSet<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
                .iter()
                .map(std::string::ToString::to_string)
                .collect();
            if !bind.is_loopback() && !bind.is_unspecified() {
                hosts.insert(bind.to_string());
                hosts.insert(format!("[{bind}]"));
                if let Ok(h) = gethostname::gethostname().into_string() {
                    hosts.insert(h.to_ascii_lowercase());
                }
            }
            for h in extra {
                hosts.insert(h.trim().to_ascii_lowercase());
            }
            Some(hosts)
        };
        Security {
            token,
            allowed_hosts,
            failures: Mutex::new(HashMap::new()),
            all_failures: Mutex::new((Instant::now(), 0)),
            brake: tokio::sync::Mutex::new(()),
            braked: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The Host names (without ports) allowed, for rmcp's own Host check.
    pub fn host_list(&self) -> Option<Vec<String>> {
        self.allowed_hosts
            .as_ref()
            .map(|h| h.iter().cloned().collect())
    }

    /// Compares a presented token with the configured one in constant time.
    pub fn token_matches(&self, presented: &str) -> bool {
        match &self.token {
            None => true,
            Some(t) => t.as_bytes().ct_eq(presented.as_bytes()).into(),
        }
    }

    /// Whether `name` (a host already through [`parse_host`]: lowercase, no
    /// port) is one this broker serves.
    fn host_allowed(&self, name: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        allowed.contains(name)
            || bare
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() && allowed.contains("localhost"))
    }

    /// Counts one wrong token from `ip`; true when the brake is on for it
    /// (20 in a minute from it, or 200 in a minute from everyone).
    pub(crate) fn record_failure(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mine = {
            let mut f = self
                .failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if f.len() > 10_000 {
                f.retain(|_, e| now.duration_since(e.window_start) < FAILURE_WINDOW);
            }
            let e = f.entry(ip).or_insert(Failures {
                window_start: now,
                count: 0,
                blocked_until: None,
            });
            if now.duration_since(e.window_start) > FAILURE_WINDOW {
                e.window_start = now;
                e.count = 0;
            }
            e.count += 1;
            if e.count == MAX_FAILURES {
                e.blocked_until = Some(now + FAILURE_WINDOW);
                tracing::warn!(address = %ip, "too many failed auth attempts; slowing this address down");
            }
            e.blocked_until.is_some_and(|until| until > now)
        };
        let all = {
            let mut a = self
                .all_failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now.duration_since(a.0) > FAILURE_WINDOW {
                *a = (now, 0);
            }
            a.1 += 1;
            if a.1 == MAX_FAILURES_ALL {
                tracing::warn!(
                    "too many failed auth attempts from all addresses; slowing every wrong guess"
                );
            }
            a.1 >= MAX_FAILURES_ALL
        };
        mine || all
    }

    /// Waits in the brake's queue (one wrong guess at a time, each
    /// [`BRAKE_DELAY`] long); false, at once, when [`BRAKE_QUEUE`] guesses
    /// wait already (the caller then closes the connection).
    pub(crate) async fn brake(&self) -> bool {
        use std::sync::atomic::Ordering;
        /// Leaves the queue however the wait ends (a dropped request too).
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.braked.fetch_add(1, Ordering::AcqRel) >= BRAKE_QUEUE {
            self.braked.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let _waiting = Waiting(&self.braked);
        let _turn = self.brake.lock().await;
        tokio::time::sleep(BRAKE_DELAY).await;
        true
    }

    /// The answer to a wrong token while the brake is on.
    pub(crate) fn braked() -> ApiError {
        ApiError::new(
            ErrorCode::TooManyWrongTokens,
            "too many wrong tokens recently, so wrong ones are answered slowly; check CIPC_TOKEN (a right token is never slowed)",
        )
    }

    /// Whether a request may see the broker: no token configured, the right
    /// token in a header, or a live dashboard session (kept by `broker`, so
    /// that a login is valid on every node).
    pub fn authorized(&self, headers: &HeaderMap, broker: &Broker) -> bool {
        if self.token.is_none() {
            return true;
        }
        match presented_token(headers) {
            Some(t) => self.token_matches(t),
            None => cookie(headers, SESSION_COOKIE).is_some_and(|id| broker.session_valid(id)),
        }
    }

    /// The dashboard login's token check: a wrong token counts towards the
    /// brake (and waits in its queue when it is on). The caller then opens
    /// a session ([`Broker::open_session`]).
    pub async fn login(&self, token: &str, ip: IpAddr) -> Result<(), ApiError> {
        let token = token.trim();
        if token.is_empty() || !self.token_matches(token) {
            tracing::warn!(address = %ip, "dashboard login with a wrong token");
            if self.record_failure(ip) {
                let _ = self.brake().await;
                return Err(Security::braked());
            }
            return Err(ApiError::new(
                ErrorCode::BadToken,
                "that token is wrong: use the one the broker was started with (--token, CIPC_TOKEN or --token-file)",
            ));
        }
        tracing::info!(address = %ip, "dashboard logged in");
        Ok(())
    }
}

/// Reads one cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The token a request presents, from `Authorization: Bearer` or `X-Cipc-Token`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get("x-cipc-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        return Some(v);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn is_mcp(path: &str) -> bool {
    path == "/mcp" || path.starts_with("/mcp/")
}

/// Paths served without the token: health checks and the dashboard's page and
/// login (the page shows and changes nothing until it has the token).
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/dashboard" | "/dashboard/" | "/dashboard/login" | "/"
    ) || path.starts_with("/dashboard/assets/")
}

/// The front door's checks: token, Origin and Host decide, then the peer a request
/// names is checked against its key (and its contact noted). `Err` is the
/// answer refusing it.
pub async fn admit(s: &AppState, addr: SocketAddr, req: Request) -> Result<Request, Response> {
    match refusal(s, addr, &req) {
        None => {}
        Some(Refused::Now(no)) => return Err(no),
        Some(Refused::AfterBrake(mut no)) => {
            if !s.security.brake().await {
                no.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            return Err(no);
        }
    }
    // Peer claims are checked (and contact noted) only past the token check,
    // and never for public paths: a token-less request keeps no peer alive.
    if is_public(req.uri().path()) {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let caller = super::extract::caller_of(&parts)
        .and_then(|caller| {
            s.broker.admit(&caller).map_err(ApiError::from)?;
            Ok(caller)
        })
        .map_err(IntoResponse::into_response)?;
    // The handler's CallerInfo takes it from here instead of reading the
    // headers (and formatting the address) again.
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, body))
}

/// How a request is refused.
enum Refused {
    /// Answer at once.
    Now(Response),
    /// A wrong token while the brake is on: answer after waiting in its queue.
    AfterBrake(Response),
}

/// The answer refusing a request, or `None` to let it pass. Synchronous, so
/// the per-request future stays small: ten thousand parked long-polls each
/// hold one.
fn refusal(s: &AppState, addr: SocketAddr, req: &Request) -> Option<Refused> {
    refusal_now(s, addr, req)
        .map(Refused::Now)
        .or_else(|| auth_refusal(s, addr, req))
}

/// Every check but the token's.
fn refusal_now(s: &AppState, addr: SocketAddr, req: &Request) -> Option<Response> {
    let path = req.uri().path();
    let sec = &s.security;

    // MCP clients probe OAuth discovery; a plain 404 tells them there is none.
    if path.starts_with("/.well-known/") {
        return Some(StatusCode::NOT_FOUND.into_response());
    }
    if let Some(q) = req.uri().query() {
        // Decoded and case-folded, so `?TOKEN=` and `?%74oken=` count too.
        let leaks = form_urlencoded::parse(q.as_bytes()).any(|(k, _)| {
            matches!(
                k.to_ascii_lowercase().as_str(),
                "token" | "access_token" | "cipc_token"
            )
        });
        if leaks {
            return Some(ApiError::new(
                ErrorCode::TokenInUrl,
                "never put the token in the URL (it leaks into logs and history); send it as the header Authorization: Bearer <token> or X-Cipc-Token: <token>",
            )
            .into_response());
        }
    }
    if let Some(no) = host_refusal(sec, req) {
        tracing::warn!(address = %addr, "refused a request for a foreign or malformed Host (DNS rebinding?)");
        return Some(no.into_response());
    }
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let own = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(|h| format!("http://{h}"));
        let forwarded_https = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(|h| format!("https://{h}"));
        if Some(origin) != own.as_deref() && Some(origin) != forwarded_https.as_deref() {
            tracing::warn!(%origin, address = %addr, "refused a cross-origin browser request");
            return Some(ApiError::new(ErrorCode::ForeignOrigin, format!(
                "requests from the web origin {origin:?} are refused; open the dashboard from the broker's own address instead"
            ))
            .into_response());
        }
    } else if let Some(no) = fetch_site_refusal(req) {
        tracing::warn!(address = %addr, "refused a cross-site browser request without Origin");
        return Some(no.into_response());
    }
    None
}

/// The token check: a right token always passes; a wrong one counts
/// towards the brake.
fn auth_refusal(s: &AppState, addr: SocketAddr, req: &Request) -> Option<Refused> {
    let path = req.uri().path();
    let sec = &s.security;
    let headers = req.headers();
    if sec.token.is_none() || is_public(path) {
        return None;
    }
    if sec.authorized(headers, &s.broker) {
        return None;
    }
    if sec.record_failure(addr.ip()) {
        return Some(Refused::AfterBrake(Security::braked().into_response()));
    }
    let what = if presented_token(headers).is_some() {
        "the token is wrong"
    } else {
        "this broker needs a token"
    };
    Some(Refused::Now(if is_mcp(path) {
        // 401 would send MCP clients into an OAuth flow that drops the header.
        ApiError::in_class(ErrorClass::Forbidden, ErrorCode::BadToken, format!(
            "{what}: add \"headers\": {{\"X-Cipc-Token\": \"<token>\"}} to the server's entry in .mcp.json"
        ))
        .into_response()
    } else {
        ApiError::new(
            ErrorCode::BadToken,
            format!("{what}: send Authorization: Bearer <token> (the cipc CLI reads CIPC_TOKEN)"),
        )
        .into_response()
    }))
}
