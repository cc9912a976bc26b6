//! The OpAMP server side (HTTP transport, per the OpAMP specification): one `AgentToServer`
//! per `POST /v1/opamp` (`application/x-protobuf`), one `ServerToAgent` in the answer.
//!
//! - The agent id is the identifying attribute `service.instance.id` of the agent's
//!   description; later messages without a description are matched by `instance_uid`, and an
//!   unknown instance is asked for its full state (`ReportFullState`).
//! - With mTLS or a token file, the caller must prove that id: the agent URI SAN of its client
//!   certificate, or a token with scope `agent` for that `agent_id`; else HTTP 403 (401
//!   without any credential). Without either (loopback only, see `security::exposure`) the
//!   claim is taken as is.
//! - The description gives the version (`service.version`) and labels (non-identifying
//!   attributes `fleetset.label.<key>`); health, effective configuration (its SHA-256) and the
//!   remote configuration's status go to the inventory; custom message
//!   `io.fleetset.status`/`spool` (JSON `{"spool_frames":…, "spool_dropped_frames":…}`) gives
//!   the spool.
//! - The answer carries the agent's assigned generation (`AgentRemoteConfig`, one file
//!   `fleetset.toml`, `application/toml`, hash = SHA-256 of the body) whenever the hash the
//!   agent last reported differs from it.

use super::ControlPlane;
use crate::counters::Counters;
use fleetset_proto::opamp::{
    any_value, AgentConfigFile, AgentConfigMap, AgentRemoteConfig, AgentToServer, AnyValue,
    KeyValue, ServerErrorResponse, ServerErrorResponseType, ServerToAgent,
};
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The custom capability of fleetset agents' status messages.
pub const STATUS_CAPABILITY: &str = "io.fleetset.status";
/// The name of the remote configuration file in `AgentConfigMap`.
pub const CONFIG_FILE: &str = "fleetset.toml";
/// Label attributes in the description: `fleetset.label.<key>`.
pub const LABEL_PREFIX: &str = "fleetset.label.";

/// Labels kept per agent from its description (the rest are dropped).
pub const MAX_REPORTED_LABELS: usize = 64;
/// Characters kept of a reported version or label value; of an error text, four times this.
pub const MAX_REPORTED_CHARS: usize = 256;

/// The first `n` characters of `s` (what an agent reports is bounded before it is kept).
fn bounded(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

const CAP_ACCEPTS_REMOTE_CONFIG: u64 = 0x2;
const SERVER_CAPABILITIES: u64 = 0x1 | 0x2 | 0x4; // AcceptsStatus, OffersRemoteConfig, AcceptsEffectiveConfig
const FLAG_REPORT_FULL_STATE: u64 = 0x1;

/// Who the caller proved to be.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The agent id of its mTLS client certificate.
    pub cert_agent_id: Option<String>,
    /// Its `authorization` header.
    pub authorization: Option<Vec<u8>>,
}

/// An HTTP answer: status and protobuf body.
pub type Answer = (u16, Vec<u8>);

fn error(status: u16, kind: ServerErrorResponseType, uid: Vec<u8>, why: String) -> Answer {
    let msg = ServerToAgent {
        instance_uid: uid,
        error_response: Some(ServerErrorResponse {
            r#type: kind as i32,
            error_message: why,
            details: None,
        }),
        ..Default::default()
    };
    (status, msg.encode_to_vec())
}

fn text(v: &Option<AnyValue>) -> Option<String> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(&kv.value))
}

/// The spool figures of a fleetset status message.
#[derive(serde::Deserialize)]
struct SpoolStatus {
    #[serde(default)]
    spool_frames: u64,
    #[serde(default)]
    spool_dropped_frames: u64,
}

impl ControlPlane {
    /// Processes one OpAMP request body from `caller` at `now_ms` (see the module doc).
    pub fn opamp(&self, body: &[u8], caller: &Caller, now_ms: i64) -> Answer {
        let refuse = |status, kind, uid, why: String| {
            Counters::add(&self.counters.control_requests_refused, 1);
            error(status, kind, uid, why)
        };
        let Ok(msg) = AgentToServer::decode(body) else {
            return refuse(
                400,
                ServerErrorResponseType::BadRequest,
                Vec::new(),
                "not an OpAMP AgentToServer message".into(),
            );
        };
        let uid = msg.instance_uid.clone();
        if uid.len() != 16 {
            return refuse(
                400,
                ServerErrorResponseType::BadRequest,
                uid,
                "instance_uid must be 16 bytes".into(),
            );
        }
        let described = msg
            .agent_description
            .as_ref()
            .and_then(|d| attr(&d.identifying_attributes, "service.instance.id"));
        let agent_id = match described.or_else(|| self.instance_agent(&uid)) {
            Some(id) => id,
            None => {
                // An instance we do not know (e.g. this server restarted): ask for everything.
                let msg = ServerToAgent {
                    instance_uid: uid,
                    flags: FLAG_REPORT_FULL_STATE,
                    capabilities: SERVER_CAPABILITIES,
                    ..Default::default()
                };
                return (200, msg.encode_to_vec());
            }
        };
        if !fleetset_proto::contract::is_valid_agent_id(&agent_id) {
            return refuse(
                400,
                ServerErrorResponseType::BadRequest,
                uid,
                format!(
                    "service.instance.id {} is not a valid agent id",
                    fleetset_proto::contract::shown(&agent_id)
                ),
            );
        }
        if let Err((status, why)) = self.authorize(&agent_id, caller) {
            Counters::add(&self.counters.control_identity_refused, 1);
            return error(status, ServerErrorResponseType::BadRequest, uid, why);
        }
        Counters::add(&self.counters.control_reports, 1);
        let recorded = self
            .inventory
            .update(&agent_id, now_ms, |r| record(r, &msg, now_ms));
        if let Err(full) = recorded {
            Counters::add(&self.counters.control_agents_untracked, 1);
            return error(
                503,
                ServerErrorResponseType::Unavailable,
                uid,
                full.to_string(),
            );
        }
        self.remember_instance(&uid, &agent_id);
        let (generation, body, hash) = self.registry().target(&agent_id);
        let reported = self
            .inventory
            .update(&agent_id, now_ms, |r| {
                if r.remote_config_status == "APPLIED" && r.config_hash == hash {
                    r.config_generation = generation;
                }
                r.config_hash.clone()
            })
            .unwrap_or_default();
        let mut answer = ServerToAgent {
            instance_uid: uid,
            capabilities: SERVER_CAPABILITIES,
            ..Default::default()
        };
        let has_remote = !reported.is_empty() && reported != super::registry::body_hash("");
        let offer = msg.capabilities & CAP_ACCEPTS_REMOTE_CONFIG != 0
            && reported != hash
            && (generation != 0 || has_remote);
        if offer {
            Counters::add(&self.counters.control_configs_offered, 1);
            let file = AgentConfigFile {
                body: body.into_bytes(),
                content_type: "application/toml".into(),
            };
            answer.remote_config = Some(AgentRemoteConfig {
                config: Some(AgentConfigMap {
                    config_map: BTreeMap::from([(CONFIG_FILE.to_string(), file)])
                        .into_iter()
                        .collect(),
                }),
                config_hash: hex::decode(&hash).unwrap_or_default(),
            });
        }
        (200, answer.encode_to_vec())
    }

    /// Whether `caller` may speak for `agent_id`: `Err((HTTP status, why))` if not.
    fn authorize(&self, agent_id: &str, caller: &Caller) -> Result<(), (u16, String)> {
        if let Some(id) = &caller.cert_agent_id {
            return match id == agent_id {
                true => Ok(()),
                false => Err((
                    403,
                    format!("the client certificate is for agent {id}, not {agent_id}"),
                )),
            };
        }
        if !self.tokens.enabled() && !self.mtls {
            return Ok(());
        }
        if self.mtls && !self.tokens.enabled() {
            return Err((
                401,
                "a client certificate naming the agent is required".into(),
            ));
        }
        let grant = self
            .tokens
            .check(
                caller.authorization.as_deref(),
                crate::security::tokens::Scope::Agent,
            )
            .map_err(|e| {
                (
                    match e {
                        crate::security::tokens::AuthError::Unauthenticated => 401,
                        _ => 403,
                    },
                    e.to_string(),
                )
            })?;
        match grant.agent_id.as_deref() {
            Some(id) if id == agent_id => Ok(()),
            Some(id) => Err((
                403,
                format!("token {:?} is for agent {id}, not {agent_id}", grant.name),
            )),
            None => Err((403, format!("token {:?} names no agent_id", grant.name))),
        }
    }
}

/// Takes what `msg` reports into the agent's record.
fn record(r: &mut super::inventory::AgentRecord, msg: &AgentToServer, now_ms: i64) {
    r.last_report_ms = now_ms;
    r.instance_uid = hex::encode(&msg.instance_uid);
    if let Some(d) = &msg.agent_description {
        if let Some(v) = attr(&d.identifying_attributes, "service.version") {
            r.version = bounded(&v, MAX_REPORTED_CHARS);
        }
        let labels: BTreeMap<String, String> = d
            .non_identifying_attributes
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.key.strip_prefix(LABEL_PREFIX)?.to_string(),
                    text(&kv.value)?,
                ))
            })
            .filter(|(k, _)| fleetset_proto::contract::is_valid_label_key(k))
            .map(|(k, v)| (k, bounded(&v, MAX_REPORTED_CHARS)))
            .take(MAX_REPORTED_LABELS)
            .collect();
        r.labels = labels;
    }
    if let Some(h) = &msg.health {
        r.healthy = Some(h.healthy);
        r.last_error = bounded(&h.last_error, 4 * MAX_REPORTED_CHARS);
    }
    if let Some(cfg) = msg
        .effective_config
        .as_ref()
        .and_then(|e| e.config_map.as_ref())
    {
        let mut h = Sha256::new();
        let mut files: Vec<_> = cfg.config_map.iter().collect();
        files.sort_by(|a, b| a.0.cmp(b.0));
        for (_, f) in files {
            h.update(&f.body);
        }
        r.effective_config_hash = hex::encode(h.finalize());
    }
    if let Some(s) = &msg.remote_config_status {
        r.config_hash = hex::encode(&s.last_remote_config_hash);
        r.remote_config_status = fleetset_proto::opamp::RemoteConfigStatuses::try_from(s.status)
            .map(|v| {
                v.as_str_name()
                    .trim_start_matches("RemoteConfigStatuses_")
                    .to_string()
            })
            .unwrap_or_else(|_| "UNSET".into());
        r.remote_config_error = bounded(&s.error_message, 4 * MAX_REPORTED_CHARS);
    }
    if let Some(c) = msg
        .custom_message
        .as_ref()
        .filter(|c| c.capability == STATUS_CAPABILITY && c.r#type == "spool")
    {
        if let Ok(s) = serde_json::from_slice::<SpoolStatus>(&c.data) {
            r.spool_frames = s.spool_frames;
            r.spool_dropped_frames = s.spool_dropped_frames;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetset_proto::opamp::AgentDescription;

    #[test]
    fn what_an_agent_reports_is_bounded_before_it_is_kept() {
        let big = "x".repeat(10_000);
        let string = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
        };
        let msg = AgentToServer {
            instance_uid: vec![1; 16],
            agent_description: Some(AgentDescription {
                identifying_attributes: vec![string("service.version", &big)],
                non_identifying_attributes: (0..1000)
                    .map(|i| string(&format!("{LABEL_PREFIX}l{i}"), &big))
                    .collect(),
            }),
            health: Some(fleetset_proto::opamp::ComponentHealth {
                last_error: big.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r = super::super::inventory::AgentRecord::default();
        record(&mut r, &msg, 1);
        assert_eq!(r.labels.len(), MAX_REPORTED_LABELS);
        assert!(r.labels.values().all(|v| v.len() == MAX_REPORTED_CHARS));
        assert_eq!(r.version.len(), MAX_REPORTED_CHARS);
        assert_eq!(r.last_error.len(), 4 * MAX_REPORTED_CHARS);
    }
}
