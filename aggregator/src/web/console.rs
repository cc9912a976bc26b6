//! The web console on the aggregator's HTTP listener (`telemetry.listen`): a page at `GET /`
//! showing the fleet, live windows as they arrive (the WebSocket stream `/v1/stream`) and, for
//! one agent and metric, a chart of the stored (downsampled) points over each window's exact
//! min–max band and mean from the statistics, so a person sees what downsampling kept.
//!
//! - Static assets (`assets/`: HTML, JavaScript, CSS, an SVG icon; hand-written, no framework,
//!   nothing fetched from elsewhere) are built into the binary with `include_str!` and served
//!   with their content type and a strict Content-Security-Policy ([`CSP`]): scripts, styles
//!   and connections from this origin only, no inline code, no frames.
//! - The JSON API the page reads ([`fleet`]: `GET /v1/console/agents`; [`series`]:
//!   `GET /v1/console/metrics`, `GET /v1/console/series`) reads the store off the async
//!   runtime (`spawn_blocking`), at most [`MAX_QUERIES`] reads at once, every answer bounded
//!   (the `MAX_*` constants).
//! - Security: with `security.tokens.file` set, the API needs a bearer token with scope
//!   `subscribe` (or `admin`) — the same scope as the live stream the page also opens, since
//!   the console shows windows and nothing more. A token's selector restricts the agents and
//!   windows shown to those carrying its labels. The page itself holds no data and is served
//!   to anyone; it asks for the token and keeps it in `sessionStorage` for the tab. Refusals:
//!   401 (no or unknown token, counted `auth_unauthenticated`), 403 (no such scope,
//!   `auth_permission_denied`). Without tokens the API is open, as the rest of the listener
//!   (which the secure-by-default check keeps on loopback unless TLS is configured).

mod fleet;
mod series;

use super::WebState;
use crate::counters::Counters;
use crate::security::tokens::{AuthError, Grant, Scope};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Agents per `/v1/console/agents` answer at most (by id; `truncated` says when more exist).
pub const MAX_AGENTS: usize = 1_000;
/// Windows per `/v1/console/series` answer at most: the newest of the range.
pub const MAX_WINDOWS: usize = 720;
/// Points per `/v1/console/series` answer at most: older windows are left out whole past it.
pub const MAX_POINTS: usize = 50_000;
/// Longest `from`–`to` range a console request may read, ms (31 days).
pub const MAX_RANGE_MS: i64 = 31 * 24 * 3_600_000;
/// The range read when a request gives no `from`: the hour before `to` (or now), ms.
pub const DEFAULT_RANGE_MS: i64 = 3_600_000;
/// Console store reads running at once; a request beyond them is answered 503 (with
/// `retry-after: 1`) and counted `console_requests_refused`.
pub const MAX_QUERIES: usize = 2;

/// What the page's `Content-Security-Policy` allows: this origin's scripts, styles, images and
/// connections (`fetch`, the WebSocket stream); nothing inline, no plugins, no frames, no forms.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The console's shared state: the web state and the store-read permits.
#[derive(Clone)]
struct Console {
    web: WebState,
    reads: Arc<Semaphore>,
}

/// The console's routes: the page and its assets, and the JSON API.
pub fn routes(state: WebState) -> axum::Router {
    let console = Console {
        web: state,
        reads: Arc::new(Semaphore::new(MAX_QUERIES)),
    };
    axum::Router::new()
        .route("/", get(|| async { asset(Asset::Html) }))
        .route("/console/console.js", get(|| async { asset(Asset::Js) }))
        .route("/console/console.css", get(|| async { asset(Asset::Css) }))
        .route("/console/icon.svg", get(|| async { asset(Asset::Icon) }))
        .route("/v1/console/agents", get(fleet::agents))
        .route("/v1/console/metrics", get(series::metrics))
        .route("/v1/console/series", get(series::series))
        .with_state(console)
}

/// The static files of `assets/`.
#[derive(Debug, Clone, Copy)]
enum Asset {
    Html,
    Js,
    Css,
    Icon,
}

impl Asset {
    /// The file's text and content type.
    fn file(self) -> (&'static str, &'static str) {
        match self {
            Asset::Html => (
                include_str!("console/assets/index.html"),
                "text/html; charset=utf-8",
            ),
            Asset::Js => (
                include_str!("console/assets/console.js"),
                "text/javascript; charset=utf-8",
            ),
            Asset::Css => (
                include_str!("console/assets/console.css"),
                "text/css; charset=utf-8",
            ),
            Asset::Icon => (include_str!("console/assets/icon.svg"), "image/svg+xml"),
        }
    }
}

/// Headers every console answer carries: the CSP, no MIME sniffing, no referrer, no framing.
fn guarded(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// One static asset (revalidated on every load: a new binary may serve new files).
fn asset(a: Asset) -> Response {
    let (body, content_type) = a.file();
    guarded(
        ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        "no-cache",
    )
}

/// A JSON answer of the API (never cached).
fn json(status: StatusCode, body: impl serde::Serialize) -> Response {
    guarded((status, Json(body)).into_response(), "no-store")
}

/// An API error: `status` and `{"error": why}`.
fn fail(status: StatusCode, why: impl std::fmt::Display) -> Response {
    json(status, serde_json::json!({ "error": why.to_string() }))
}

impl Console {
    /// The grant of the request's bearer token for scope `subscribe`, or the refusal to send
    /// (401 with `www-authenticate: Bearer`, or 403).
    #[allow(clippy::result_large_err)] // a refusal, built once per refused request
    fn grant(&self, headers: &HeaderMap) -> Result<Grant, Response> {
        let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        self.web
            .tokens
            .check(auth, Scope::Subscribe)
            .map_err(|e| match e {
                AuthError::Unauthenticated => {
                    let mut r = fail(StatusCode::UNAUTHORIZED, &e);
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    r
                }
                AuthError::PermissionDenied { .. } => fail(StatusCode::FORBIDDEN, e),
            })
    }

    /// A 400 for a bad parameter, counted `console_requests_refused`.
    fn bad_request(&self, why: impl std::fmt::Display) -> Response {
        Counters::add(&self.web.counters.console_requests_refused, 1);
        fail(StatusCode::BAD_REQUEST, why)
    }

    /// Runs `read` (a store read) on a blocking thread while holding one of the
    /// [`MAX_QUERIES`] permits; its value as JSON, or 503 when every permit is taken (counted
    /// `console_requests_refused`), or 500 naming the store error.
    async fn read<T, F>(&self, read: F) -> Response
    where
        T: serde::Serialize + Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let Ok(permit) = self.reads.clone().try_acquire_owned() else {
            Counters::add(&self.web.counters.console_requests_refused, 1);
            let mut r = fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_QUERIES} console store reads are running; retry"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        };
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            read()
        })
        .await;
        match joined {
            Ok(Ok(body)) => json(StatusCode::OK, body),
            Ok(Err(e)) => {
                tracing::warn!(error = format!("{e:#}"), "console: store read failed");
                fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the store: {e:#}"),
                )
            }
            Err(e) => fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store read task: {e}"),
            ),
        }
    }
}

/// The `[from, to)` range (Unix ms, on `window_start`) of a request: `to` defaults to none
/// (everything up to now and beyond), `from` to [`DEFAULT_RANGE_MS`] before `to` (or now).
/// Errors: `from` not before `to`, or a range over [`MAX_RANGE_MS`].
fn range(from: Option<i64>, to: Option<i64>, now_ms: i64) -> Result<(i64, Option<i64>), String> {
    let end = to.unwrap_or(now_ms);
    let from = from.unwrap_or_else(|| end.saturating_sub(DEFAULT_RANGE_MS));
    if let Some(to) = to {
        if from >= to {
            return Err(format!("from = {from} is not before to = {to} (Unix ms)"));
        }
    }
    if end.saturating_sub(from) > MAX_RANGE_MS {
        return Err(format!(
            "the range from {from} to {end} is over {} days (the console's bound)",
            MAX_RANGE_MS / 86_400_000
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_and_are_bounded() {
        let now = 10 * DEFAULT_RANGE_MS;
        assert_eq!(range(None, None, now), Ok((now - DEFAULT_RANGE_MS, None)));
        assert_eq!(range(Some(5), Some(9), now), Ok((5, Some(9))));
        assert!(range(Some(9), Some(9), now)
            .unwrap_err()
            .contains("not before"));
        assert!(range(Some(0), Some(MAX_RANGE_MS + 1), now)
            .unwrap_err()
            .contains("days"));
        assert!(range(Some(i64::MIN), None, now).is_err());
    }
}
