//! MCP: Claude Code sessions get native broker tools (`/mcp/sse`, `/mcp`).

use super::AppState;
use axum::Router;

/// The MCP routes.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new()
}
