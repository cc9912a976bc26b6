//! `GET /`: the web console.

use super::WebState;

/// The console's routes.
pub fn routes(_state: WebState) -> axum::Router {
    axum::Router::new()
}
