//! `GET /v1/stream`: live windows over WebSocket (seed 000's streaming API).

use super::WebState;

/// The stream's routes.
pub fn routes(_state: WebState) -> axum::Router {
    axum::Router::new()
}
