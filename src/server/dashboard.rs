//! The web dashboard (`GET /dashboard`): embedded static assets.

use super::AppState;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

/// The dashboard routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/dashboard", get(page))
}

async fn page() -> Html<&'static str> {
    Html("<!doctype html><title>cipc</title><p>The cipc dashboard is not built yet.</p>")
}
