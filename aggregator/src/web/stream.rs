//! `GET /v1/stream`: live windows over WebSocket (RFC 6455; seed 000's streaming API), the same
//! subscription as gRPC `Subscribe` ([`crate::live::subscription`]: filters, the token's
//! selector, `since` history then live with no gap and no duplicate, the per-subscriber queue,
//! lag, one of the `live.max_subscribers` permits).
//!
//! Query (README "Streaming windows (WebSocket, FIFO)"): `format=jsonlines|msgpack|protobuf`
//! (default `jsonlines`; [`crate::live::format`] gives each message's shape), `agent=ID`
//! (repeatable or comma-separated), `label=KEY:VALUE` (or `KEY=VALUE`; repeatable, all must
//! match), `metric=NAME` (repeatable or comma-separated), `since=<Unix ms | RFC 3339>`. An
//! unknown parameter or a bad value is answered 400 naming it (counted `stream_bad_requests`).
//!
//! Tokens (when `security.tokens.file` is set): scope `subscribe`, as `Authorization: Bearer T`
//! or — browsers cannot set headers on a WebSocket — as the subprotocol list
//! `Sec-WebSocket-Protocol: fleetset.v1, bearer.T`, answered with subprotocol `fleetset.v1`.
//! Missing or unknown: 401; without the scope: 403; `live.max_subscribers` streams open: 503
//! with `Retry-After: 1` (counted `live_subscribers_refused`). The token is never logged.
//!
//! The connection: the listener closes a connection that sends nothing for
//! `telemetry.idle_timeout`, so the server pings every third of it and a healthy client's pongs
//! keep it open however quiet the fleet; a client that stops reading stops answering, and a send
//! not taken within `telemetry.idle_timeout` closes it too. Memory per client is bounded by the
//! subscription's queue plus one message; what it could not take meanwhile arrives as a lag
//! notice. Client messages are read (pongs) and ignored, at most [`MAX_CLIENT_MESSAGE_BYTES`]
//! each. The stream ends with a close frame: 1008 disconnected for falling behind
//! (`live.subscriber_overflow = "disconnect"`), 1011 history unreadable (or, from
//! `export --stream`, its upstream failed), 1001 shutdown.

use super::WebState;
use crate::counters::Counters;
use crate::live::format::{Format, Message};
use crate::live::subscription::{End, Receiver, Refused};
use crate::security::tokens::AuthError;
use axum::extract::ws::{self, CloseFrame, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fleetset_proto::pb;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tracing::warn;

/// The subprotocol a client names with `bearer.<token>` (and the one the server answers).
pub const SUBPROTOCOL: &str = "fleetset.v1";

/// Largest message (and frame) a client may send; it has nothing to say but pongs.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 << 10;

/// The stream's routes.
pub fn routes(state: WebState) -> axum::Router {
    axum::Router::new()
        .route("/v1/stream", axum::routing::get(stream))
        .with_state(state)
}

/// A parsed `/v1/stream` query.
#[derive(Debug, Default, PartialEq)]
pub struct StreamQuery {
    /// Message format, if `format=` was given.
    pub format: Option<Format>,
    /// The subscription it asks for (agents, labels, metrics, since).
    pub request: pb::SubscribeRequest,
}

/// Parses a `/v1/stream` query string (module docs). Errors name the parameter and the value.
pub fn parse_query(query: &str) -> Result<StreamQuery, String> {
    let mut q = StreamQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let list = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        match key.as_ref() {
            "format" if q.format.is_some() => return Err("format is given twice".into()),
            "format" => q.format = Some(value.parse()?),
            "agent" => q.request.agent_ids.extend(list()),
            "metric" => q.request.metrics.extend(list()),
            "label" => {
                let (k, v) = value
                    .split_once([':', '='])
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("label {value:?} is not KEY:VALUE"))?;
                if let Some(old) = q.request.labels.insert(k.to_string(), v.to_string()) {
                    if old != v {
                        return Err(format!("label {k:?} is given twice ({old:?} and {v:?})"));
                    }
                }
            }
            "since" => q.request.since_ms = crate::live::subscription::parse_since(&value)?,
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (known: format, agent, label, metric, since)"
                ))
            }
        }
    }
    Ok(q)
}

/// The token a request presents: `Authorization` as is, else `bearer.<token>` of
/// `Sec-WebSocket-Protocol` as `Bearer <token>`. Errors: a `bearer.` subprotocol without
/// [`SUBPROTOCOL`] beside it (a browser would then fail the handshake).
fn authorization(headers: &HeaderMap) -> Result<Option<Vec<u8>>, String> {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        return Ok(Some(h.as_bytes().to_vec()));
    }
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(token) = offered.iter().find_map(|p| p.strip_prefix("bearer.")) else {
        return Ok(None);
    };
    if !offered.contains(&SUBPROTOCOL) {
        return Err(format!(
            "a bearer.<token> subprotocol needs {SUBPROTOCOL:?} in the same list"
        ));
    }
    Ok(Some(format!("Bearer {token}").into_bytes()))
}

/// An error answer: `status` with `{"error": why}`.
fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

/// A bad request: counted, answered 400 naming the problem.
fn bad_request(counters: &Counters, why: &str) -> Response {
    Counters::add(&counters.stream_bad_requests, 1);
    refuse(StatusCode::BAD_REQUEST, why)
}

async fn stream(
    State(state): State<WebState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let counters = &state.counters;
    let q = match parse_query(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(why) => return bad_request(counters, &why),
    };
    let auth = match authorization(&headers) {
        Ok(a) => a,
        Err(why) => return bad_request(counters, &why),
    };
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => {
            Counters::add(&counters.stream_bad_requests, 1);
            return rejection.into_response();
        }
    };
    let items = match state.live.open(auth.as_deref(), &q.request, "websocket") {
        Ok(items) => items,
        Err(r) => return refused(r),
    };
    let idle = state.idle_timeout;
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, items, q.format.unwrap_or_default(), idle))
}

/// The HTTP answer of a refused subscription (module docs).
fn refused(r: Refused) -> Response {
    let why = r.to_string();
    match r {
        Refused::Auth(AuthError::Unauthenticated) => {
            let mut resp = refuse(StatusCode::UNAUTHORIZED, &why);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            resp
        }
        Refused::Auth(AuthError::PermissionDenied { .. }) => refuse(StatusCode::FORBIDDEN, &why),
        Refused::Full => {
            let mut resp = refuse(StatusCode::SERVICE_UNAVAILABLE, &why);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        }
    }
}

/// The close frame ending a stream early.
fn close_frame(end: &End) -> CloseFrame {
    let code = match end {
        End::Overflow(_) => 1008,
        End::History(_) | End::Upstream(_) => 1011,
        End::StoreStopping => 1001,
    };
    // A close reason is at most 123 bytes.
    let mut reason = end.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Sends the subscription's items to `socket` in `format` until either side ends (module docs;
/// `idle`: the connection's idle timeout — pings every third of it, a send may take that long).
pub(crate) async fn serve(socket: WebSocket, mut items: Receiver, format: Format, idle: Duration) {
    let (mut out, mut incoming) = socket.split();
    let mut ping = tokio::time::interval((idle / 3).max(Duration::from_millis(10)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            item = items.recv() => match item {
                Some(Ok(item)) => match format.encode(&item) {
                    Ok(Message::Text(t)) => ws::Message::Text(t.into()),
                    Ok(Message::Binary(b)) => ws::Message::Binary(b.into()),
                    Err(e) => {
                        warn!(error = %e, "a window could not be encoded; skipped");
                        continue;
                    }
                },
                Some(Err(end)) => ws::Message::Close(Some(close_frame(&end))),
                None => ws::Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: "the aggregator is stopping".into(),
                })),
            },
            m = incoming.next() => match m {
                Some(Ok(ws::Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue, // pongs: traffic for the idle timeout
            },
            _ = ping.tick() => ws::Message::Ping(Default::default()),
        };
        let closing = matches!(msg, ws::Message::Close(_));
        match tokio::time::timeout(idle, out.send(msg)).await {
            Ok(Ok(())) if !closing => {}
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_take_repeated_and_comma_separated_filters() {
        let q = parse_query(
            "format=msgpack&agent=a1,a2&agent=a3&label=site:eu-1&label=rack%3Dr7&metric=cpu_percent&since=1700000000000",
        )
        .unwrap();
        assert_eq!(q.format, Some(Format::Msgpack));
        assert_eq!(q.request.agent_ids, vec!["a1", "a2", "a3"]);
        assert_eq!(q.request.labels.len(), 2);
        assert_eq!(q.request.labels["rack"], "r7");
        assert_eq!(q.request.metrics, vec!["cpu_percent"]);
        assert_eq!(q.request.since_ms, 1_700_000_000_000);
        assert_eq!(
            parse_query("since=2023-11-14T22:13:20Z")
                .unwrap()
                .request
                .since_ms,
            1_700_000_000_000
        );
        assert_eq!(parse_query("").unwrap(), StreamQuery::default());
        for (bad, named) in [
            ("format=xml", "xml"),
            ("agents=a1", "agents"),
            ("label=site", "site"),
            ("since=later", "later"),
            ("label=site:a&label=site:b", "site"),
        ] {
            let e = parse_query(bad).unwrap_err();
            assert!(e.contains(named), "{bad}: {e}");
        }
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_subprotocol_list() {
        let mut h = HeaderMap::new();
        assert_eq!(authorization(&h), Ok(None));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "fleetset.v1, bearer.fst_abc".parse().unwrap(),
        );
        assert_eq!(authorization(&h), Ok(Some(b"Bearer fst_abc".to_vec())));
        h.insert(header::AUTHORIZATION, "Bearer fst_hdr".parse().unwrap());
        assert_eq!(authorization(&h), Ok(Some(b"Bearer fst_hdr".to_vec())));
        let mut only = HeaderMap::new();
        only.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "bearer.fst_abc".parse().unwrap(),
        );
        let e = authorization(&only).unwrap_err();
        assert!(e.contains("fleetset.v1") && !e.contains("fst_abc"), "{e}");
    }
}
