//! The control plane's HTTP routes (OpAMP and the JSON admin API the `fleet` commands use) and
//! the `Fleet` gRPC service (the inventory, for programs).

use super::opamp::Caller;
use super::registry::{Generation, Policy, Request};
use super::ControlPlane;
use crate::counters::Counters;
use crate::security::tokens::{AuthError, Grant, Scope};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The agent id of the connection's mTLS client certificate, if any.
#[derive(Debug, Clone, Default)]
pub struct PeerAgent(pub Option<String>);

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, fleetset_core::net::BoundedListener>,
    > for PeerAgent
{
    fn connect_info(
        _: axum::serve::IncomingStream<'_, fleetset_core::net::BoundedListener>,
    ) -> Self {
        PeerAgent(None)
    }
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, fleetset_core::tls::TlsListener>,
    > for PeerAgent
{
    fn connect_info(s: axum::serve::IncomingStream<'_, fleetset_core::tls::TlsListener>) -> Self {
        let certs = s.io().get_ref().1.peer_certificates();
        PeerAgent(
            certs
                .and_then(|c| c.first())
                .and_then(|c| crate::security::identity::agent_id_of(c.as_ref())),
        )
    }
}

/// The routes of [`super`], bodies limited to `max_request_bytes`.
pub fn router(plane: Arc<ControlPlane>, max_request_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/v1/opamp", post(opamp))
        .route("/v1/fleet/agents", get(agents))
        .route("/v1/fleet/config/promote", post(promote))
        .route("/v1/fleet/config/rollback", post(rollback))
        .route("/v1/fleet/config/history", get(history))
        .route("/v1/fleet/config/status", get(status))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(plane)
}

async fn opamp(
    State(plane): State<Arc<ControlPlane>>,
    ConnectInfo(peer): ConnectInfo<PeerAgent>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let caller = Caller {
        cert_agent_id: peer.0,
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec()),
    };
    let (status, body) = plane.opamp(&body, &caller, fleetset_core::time::now_ms());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        body,
    )
        .into_response()
}

/// An admin error: HTTP status and a JSON `{"error": …}`.
fn fail(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": why.to_string() })),
    )
        .into_response()
}

/// The admin grant of the request, or the refusal to send.
#[allow(clippy::result_large_err)] // a refusal, built once per refused request
fn admin(plane: &ControlPlane, headers: &HeaderMap) -> Result<Grant, Response> {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    plane.tokens.check(auth, Scope::Admin).map_err(|e| match e {
        AuthError::Unauthenticated => fail(StatusCode::UNAUTHORIZED, e),
        AuthError::PermissionDenied { .. } => fail(StatusCode::FORBIDDEN, e),
    })
}

/// `selector=k=v,k=v`.
#[derive(Debug, Default, Deserialize)]
struct SelectorQuery {
    #[serde(default)]
    selector: String,
}

/// Parses `k=v,k=v`. Errors: an entry that is not `key=value`.
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| fleetset_core::names::parse_label(e.trim()))
        .collect()
}

async fn agents(
    State(plane): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(q): Query<SelectorQuery>,
) -> Response {
    if let Err(r) = admin(&plane, &headers) {
        return r;
    }
    match parse_selector(&q.selector) {
        Ok(selector) => Json(plane.agents(&selector)).into_response(),
        Err(why) => fail(StatusCode::BAD_REQUEST, format!("selector: {why}")),
    }
}

/// `POST /v1/fleet/config/promote`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// The configuration (TOML; only keys that reload live).
    pub body: String,
    /// Labels the agents must carry.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// The rollout policy.
    pub policy: Policy,
    /// Why.
    #[serde(default)]
    pub note: String,
}

/// `POST /v1/fleet/config/rollback`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// The generation to restore (default: the last complete one before the newest; 0: none).
    pub to: Option<u64>,
    /// Why.
    #[serde(default)]
    pub note: String,
}

fn refused(plane: &ControlPlane, why: impl std::fmt::Display) -> Response {
    Counters::add(&plane.counters.control_requests_refused, 1);
    fail(StatusCode::BAD_REQUEST, why)
}

/// The admin grant and the JSON request `T` (`what` names it in the refusal), or the refusal.
#[allow(clippy::result_large_err)] // a refusal, built once per refused request
fn admin_request<T: serde::de::DeserializeOwned>(
    plane: &ControlPlane,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> Result<(Grant, T), Response> {
    let grant = admin(plane, headers)?;
    let req = serde_json::from_slice(body)
        .map_err(|e| refused(plane, format!("not a {what} request: {e}")))?;
    Ok((grant, req))
}

/// A new generation as the answer, or 409 with why there is none.
fn answer_generation(g: anyhow::Result<Generation>) -> Response {
    match g {
        Ok(g) => Json(g).into_response(),
        Err(e) => fail(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

async fn promote(
    State(plane): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (grant, req): (Grant, PromoteRequest) =
        match admin_request(&plane, &headers, &body, "promote") {
            Ok(r) => r,
            Err(r) => return r,
        };
    let max = plane.config.get().max_config_bytes;
    if req.body.len() > max {
        return refused(
            &plane,
            format!(
                "the configuration is {} bytes, over control.max_config_bytes = {max}",
                req.body.len()
            ),
        );
    }
    if let Err(e) = toml::from_str::<toml::Table>(&req.body) {
        return refused(
            &plane,
            format!("the configuration is not TOML: {}", e.message()),
        );
    }
    let agents = plane.agents(&BTreeMap::new());
    let r = Request {
        body: req.body,
        selector: req.selector,
        policy: req.policy,
        promoted_by: grant.name,
        note: req.note,
    };
    answer_generation(
        plane
            .registry()
            .promote(r, &agents, fleetset_core::time::now_ms()),
    )
}

async fn rollback(
    State(plane): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (grant, req): (Grant, RollbackRequest) =
        match admin_request(&plane, &headers, &body, "rollback") {
            Ok(r) => r,
            Err(r) => return r,
        };
    let agents = plane.agents(&BTreeMap::new());
    let now = fleetset_core::time::now_ms();
    answer_generation(
        plane
            .registry()
            .rollback(req.to, grant.name, req.note, &agents, now),
    )
}

async fn history(State(plane): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&plane, &headers) {
        return r;
    }
    let h: Vec<Generation> = plane.registry().history().to_vec();
    Json(h).into_response()
}

/// `generation=N`.
#[derive(Debug, Default, Deserialize)]
struct GenerationQuery {
    generation: Option<u64>,
}

/// One generation's rollout status (`fleet config status`).
#[derive(Debug, Serialize, Deserialize)]
pub struct GenerationStatus {
    /// The generation.
    pub generation: Generation,
    /// Agents assigned it, and of those pending, applied, failed and healthy.
    pub counts: BTreeMap<String, usize>,
}

async fn status(
    State(plane): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(q): Query<GenerationQuery>,
) -> Response {
    if let Err(r) = admin(&plane, &headers) {
        return r;
    }
    let agents = plane.agents(&BTreeMap::new());
    let reg = plane.registry();
    let n = q
        .generation
        .or_else(|| reg.history().last().map(|g| g.generation));
    let Some(g) = n.and_then(|n| reg.generation(n)).cloned() else {
        return fail(StatusCode::NOT_FOUND, "no such generation");
    };
    let counts = reg
        .status_counts(g.generation, &agents)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Json(GenerationStatus {
        generation: g,
        counts,
    })
    .into_response()
}

/// The `Fleet` gRPC service: the inventory (scope `admin` with tokens on).
pub struct FleetService {
    /// The control plane.
    pub plane: Arc<ControlPlane>,
}

#[tonic::async_trait]
impl fleetset_proto::pb::fleet_server::Fleet for FleetService {
    async fn list_agents(
        &self,
        request: tonic::Request<fleetset_proto::pb::ListAgentsRequest>,
    ) -> Result<tonic::Response<fleetset_proto::pb::ListAgentsResponse>, tonic::Status> {
        self.plane.tokens.check_grpc(&request, Scope::Admin)?;
        let selector: BTreeMap<String, String> =
            request.into_inner().selector.into_iter().collect();
        let agents = self
            .plane
            .agents(&selector)
            .into_iter()
            .map(|a| fleetset_proto::pb::FleetAgent {
                agent_id: a.agent_id,
                version: a.version,
                labels: a.labels.into_iter().collect(),
                first_seen_ms: a.first_seen_ms,
                last_seen_ms: a.last_seen_ms,
                last_window_start_ms: a.last_window_start_ms,
                frames_per_second: a.frames_per_second,
                config_generation: a.config_generation,
                config_hash: a.config_hash,
                healthy: a.healthy.unwrap_or(false),
                state: a.state,
                spool_frames: a.spool_frames,
                spool_dropped_frames: a.spool_dropped_frames,
                rejects: a.rejects.into_iter().collect(),
                remote_config_status: a.remote_config_status,
                remote_config_error: a.remote_config_error,
                last_error: a.last_error,
            })
            .collect();
        Ok(tonic::Response::new(
            fleetset_proto::pb::ListAgentsResponse { agents },
        ))
    }
}
