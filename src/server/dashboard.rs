//! The web dashboard (`GET /dashboard`): embedded static assets and the token
//! login that turns a token typed into a form into a session cookie.
//!
//! The page, its script and its stylesheet are compiled into the binary with
//! `include_str!`, so the broker works offline and needs no build step. The
//! page is served with a strict Content-Security-Policy (no inline script, no
//! third-party anything), and the script renders everything that came from
//! peers with DOM text APIs, never as markup.
//!
//! The page itself is public (see `auth::is_public`), but shows and changes
//! nothing until it is authorised: `GET /dashboard/login` only says whether a
//! token is required and whether this request is already authorised, and
//! `POST /dashboard/login` exchanges the token for an `HttpOnly`,
//! `SameSite=Strict` cookie that the event stream and the REST calls then use.

use super::auth::{cookie, SESSION_COOKIE, SESSION_TTL};
use super::error::ApiError;
use super::extract::JsonBody;
use super::AppState;
use crate::error_code::ErrorCode;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../../dashboard/style.css");
const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#4f46e5"/><circle cx="10" cy="16" r="3.2" fill="#fff"/><circle cx="22" cy="10" r="3.2" fill="#fff"/><circle cx="22" cy="22" r="3.2" fill="#fff"/><path d="M10 16L22 10M10 16L22 22" stroke="#fff" stroke-width="2"/></svg>"##;

/// The page's Content-Security-Policy: only our own script and stylesheet,
/// fetches to our own origin, no inline script, no frames, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// The dashboard routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/assets/app.js", get(app_js))
        .route("/dashboard/assets/style.css", get(style_css))
        .route("/dashboard/assets/icon.svg", get(icon_svg))
        // The login is public: it reads at most a token's worth of body.
        .route(
            "/dashboard/login",
            get(session)
                .post(login)
                .layer(DefaultBodyLimit::max(LOGIN_MAX_BODY)),
        )
        .route("/dashboard/logout", axum::routing::post(logout))
}

/// Builds a static asset answer with the headers every dashboard file carries.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn page() -> Response {
    let mut res = asset("text/html; charset=utf-8", INDEX_HTML);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn icon_svg() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

/// What `GET /dashboard/login` tells the page. Public, so it says nothing
/// beyond these two facts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionInfo {
    /// The broker was started with a token.
    token_required: bool,
    /// This request is already authorised (no token configured, a valid
    /// session cookie, or the token in a header).
    authorized: bool,
}

fn authorized(s: &AppState, headers: &HeaderMap) -> bool {
    s.security.authorized(headers, &s.broker)
}

async fn session(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let info = SessionInfo {
        token_required: s.security.token.is_some(),
        authorized: authorized(&s, &headers),
    };
    let mut res = Json(info).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The most a login body may hold: `{"token": "..."}` with a long token.
const LOGIN_MAX_BODY: usize = 4096;

/// Body of `POST /dashboard/login`.
#[derive(Debug, Deserialize)]
struct LoginRequest {
    /// The broker's token, as typed by the person.
    #[serde(default)]
    token: String,
}

async fn login(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    if s.security.token.is_none() {
        // Nothing to unlock; say so rather than hand out a useless session.
        return Ok(Json(serde_json::json!({"ok": true, "tokenRequired": false})).into_response());
    }
    // The public login shares the guard's brake on wrong tokens.
    s.security.login(&req.token, addr.ip()).await?;
    let id = s.broker.open_session(SESSION_TTL).await?;
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut res = Json(serde_json::json!({"ok": true, "tokenRequired": true})).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| {
            ApiError::new(ErrorCode::Internal, "could not build the session cookie")
        })?,
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Forgets this browser's session (not public: it needs the session itself).
async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        if let Err(e) = s.broker.end_session(id).await {
            return ApiError::from(e).into_response();
        }
    }
    let mut res = Json(serde_json::json!({"ok": true})).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("")),
    );
    res
}
