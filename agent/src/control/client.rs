//! The OpAMP client (HTTP transport, per the OpAMP specification, open-telemetry/opamp-spec):
//! every `control.poll_interval` — and at once when the run loop has news — one
//! `AgentToServer` is POSTed (`application/x-protobuf`) to `control.endpoint` and the
//! `ServerToAgent` answer read (at most `control.max_response_bytes`, within
//! `control.timeout`).
//!
//! What it reports:
//! - the description, on the first message, when labels change and when the server asks
//!   (`ReportFullState`): identifying `service.instance.id` (the agent id), `service.name`,
//!   `service.version`; non-identifying `host.name`, `os.type` and `fleetset.label.<key>`;
//! - the effective configuration (`fleetset.toml`, the TOML `print-config` shows, secrets
//!   masked), on the same occasions and whenever it changes;
//! - health (unhealthy while frames are being rejected or dropped since the last report);
//! - the remote configuration status (hash, APPLIED / APPLYING / FAILED with the error);
//! - the spool as custom message `io.fleetset.status`/`spool`.
//!
//! A remote configuration in an answer is handed to the run loop ([`Offer`]); a failed
//! exchange is counted (`control_errors`) and retried at the next poll. The bearer token
//! (`control.token_file`) and the TLS files (`[transport.tls]`) are read at every exchange, so
//! rotated ones are used without a restart.

use super::remote::{Phase, Status};
use crate::config::AgentConfig;
use crate::counters::Counters;
use anyhow::{anyhow, bail, Context, Result};
use fleetset_core::http::{ClientTls, HttpClient};
use fleetset_proto::opamp::{
    any_value, AgentConfigFile, AgentConfigMap, AgentDescription, AgentToServer, AnyValue,
    ComponentHealth, CustomCapabilities, CustomMessage, EffectiveConfig, KeyValue,
    RemoteConfigStatus, RemoteConfigStatuses, ServerToAgent,
};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// The custom capability of the status message (the aggregator reads it).
pub const STATUS_CAPABILITY: &str = "io.fleetset.status";
/// The configuration file's name in OpAMP config maps.
pub const CONFIG_FILE: &str = "fleetset.toml";

// AgentCapabilities: ReportsStatus, AcceptsRemoteConfig, ReportsEffectiveConfig, ReportsHealth,
// ReportsRemoteConfig.
const CAPABILITIES: u64 = 0x1 | 0x2 | 0x4 | 0x800 | 0x1000;
const FLAG_REPORT_FULL_STATE: u64 = 0x1;

/// A remote configuration the server offered: its hash (hex) and the body of `fleetset.toml`
/// (empty: no remote configuration), or why it cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// `config_hash`, hex.
    pub hash: String,
    /// The TOML body, or what is wrong with the offer (no `fleetset.toml`, not UTF-8).
    pub body: Result<String, String>,
}

/// What the run loop tells the client to report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Labels of the running configuration.
    pub labels: BTreeMap<String, String>,
    /// The effective configuration as TOML (secrets masked).
    pub effective: String,
    /// The remote configuration status.
    pub remote: Status,
}

/// The run loop's side of the client.
pub struct Handle {
    /// Offers, newest only.
    pub offers: watch::Receiver<Option<Offer>>,
    report: Arc<Mutex<Report>>,
    wake: Arc<Notify>,
}

impl Handle {
    /// Replaces what is reported and reports it now.
    pub fn report(&self, change: impl FnOnce(&mut Report)) {
        change(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
        self.wake.notify_one();
    }
}

/// The effective configuration as reported: `print-config`'s TOML (secrets masked).
pub fn effective_toml(cfg: &AgentConfig) -> String {
    fleetset_core::config::render_toml(cfg, "effective configuration")
}

/// Starts the client for `cfg.control.endpoint` (the caller checked it is set) as `agent_id`;
/// it runs until `shutdown`. `instance_uid`: 16 bytes, kept in the state directory.
pub fn start(
    cfg: &AgentConfig,
    agent_id: String,
    instance_uid: [u8; 16],
    report: Report,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) -> Handle {
    let (tx, rx) = watch::channel(None);
    let report = Arc::new(Mutex::new(report));
    let wake = Arc::new(Notify::new());
    let exchange = Exchange {
        cfg: cfg.clone(),
        agent_id,
        instance_uid,
        sequence: 0,
        sent: None,
        full_state: true,
        counters: counters.clone(),
        last_problems: problems(&counters),
        offered: None,
    };
    tokio::spawn(poll(exchange, report.clone(), wake.clone(), tx, shutdown));
    Handle {
        offers: rx,
        report,
        wake,
    }
}

async fn poll(
    mut x: Exchange,
    report: Arc<Mutex<Report>>,
    wake: Arc<Notify>,
    offers: watch::Sender<Option<Offer>>,
    shutdown: CancellationToken,
) {
    loop {
        let now = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match x.once(&now).await {
            Ok(Some(offer)) => {
                let _ = offers.send(Some(offer));
            }
            Ok(None) => {}
            Err(e) => {
                Counters::add(&x.counters.control_errors, 1);
                tracing::warn!(error = format!("{e:#}"), "control plane exchange failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(x.cfg.control.poll_interval) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Rejected and dropped frames so far (the health signal).
fn problems(c: &Counters) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    [
        &c.frames_rejected,
        &c.frames_dropped_spool_full,
        &c.frames_dropped_disk_full,
    ]
    .iter()
    .map(|a| a.load(Relaxed))
    .fold(0, u64::saturating_add)
}

struct Exchange {
    cfg: AgentConfig,
    agent_id: String,
    instance_uid: [u8; 16],
    sequence: u64,
    /// Labels and effective configuration last sent.
    sent: Option<(BTreeMap<String, String>, String)>,
    /// Send the description and effective configuration in the next message.
    full_state: bool,
    counters: Arc<Counters>,
    last_problems: u64,
    /// The hash of the last offer handed on.
    offered: Option<String>,
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

impl Exchange {
    /// One report and its answer; `Ok(Some)` when the answer offers a configuration not
    /// handed on yet.
    async fn once(&mut self, report: &Report) -> Result<Option<Offer>> {
        let msg = self.message(report);
        let answer = self.post(msg.encode_to_vec()).await?;
        self.sent = Some((report.labels.clone(), report.effective.clone()));
        self.full_state = answer.flags & FLAG_REPORT_FULL_STATE != 0;
        Counters::add(&self.counters.control_reports, 1);
        if let Some(e) = &answer.error_response {
            bail!("the server answered an error: {}", e.error_message);
        }
        let Some(remote) = answer.remote_config else {
            return Ok(None);
        };
        let hash = hex::encode(&remote.config_hash);
        if self.offered.as_deref() == Some(hash.as_str()) {
            return Ok(None);
        }
        self.offered = Some(hash.clone());
        let files = remote.config.map(|m| m.config_map).unwrap_or_default();
        let body = match files.get(CONFIG_FILE) {
            Some(f) => String::from_utf8(f.body.clone())
                .map_err(|_| format!("{CONFIG_FILE} in the remote configuration is not UTF-8")),
            None if files.is_empty() => Ok(String::new()),
            None => Err(format!(
                "the remote configuration has no {CONFIG_FILE} (files: {:?})",
                files.keys().collect::<Vec<_>>()
            )),
        };
        Ok(Some(Offer { hash, body }))
    }

    fn message(&mut self, report: &Report) -> AgentToServer {
        self.sequence = self.sequence.saturating_add(1);
        let changed = self.sent.as_ref().is_none_or(|(labels, effective)| {
            labels != &report.labels || effective != &report.effective
        });
        let full = self.full_state || changed;
        let problems = problems(&self.counters);
        let new_problems = problems.saturating_sub(self.last_problems);
        self.last_problems = problems;
        let healthy = new_problems == 0;
        let spool = serde_json::json!({
            "spool_frames": self.counters.spool_frames.load(std::sync::atomic::Ordering::Relaxed),
            "spool_dropped_frames": self.counters.frames_dropped_spool_full.load(std::sync::atomic::Ordering::Relaxed)
                .saturating_add(self.counters.frames_dropped_disk_full.load(std::sync::atomic::Ordering::Relaxed)),
        });
        let status = match report.remote.phase {
            Phase::Unset => RemoteConfigStatuses::Unset,
            Phase::Applied => RemoteConfigStatuses::Applied,
            Phase::Applying => RemoteConfigStatuses::Applying,
            Phase::Failed => RemoteConfigStatuses::Failed,
        };
        AgentToServer {
            instance_uid: self.instance_uid.to_vec(),
            sequence_num: self.sequence,
            capabilities: CAPABILITIES,
            agent_description: full.then(|| self.description(report)),
            effective_config: full.then(|| EffectiveConfig {
                config_map: Some(AgentConfigMap {
                    config_map: [(
                        CONFIG_FILE.to_string(),
                        AgentConfigFile {
                            body: report.effective.clone().into_bytes(),
                            content_type: "application/toml".into(),
                        },
                    )]
                    .into_iter()
                    .collect(),
                }),
            }),
            health: Some(ComponentHealth {
                healthy,
                last_error: match healthy {
                    true => String::new(),
                    false => {
                        format!("{new_problems} frames rejected or dropped since the last report")
                    }
                },
                status: if healthy { "running" } else { "degraded" }.into(),
                ..Default::default()
            }),
            remote_config_status: Some(RemoteConfigStatus {
                last_remote_config_hash: hex::decode(&report.remote.hash).unwrap_or_default(),
                status: status as i32,
                error_message: report.remote.error.clone(),
            }),
            custom_capabilities: full.then(|| CustomCapabilities {
                capabilities: vec![STATUS_CAPABILITY.into()],
            }),
            custom_message: Some(CustomMessage {
                capability: STATUS_CAPABILITY.into(),
                r#type: "spool".into(),
                data: spool.to_string().into_bytes(),
            }),
            ..Default::default()
        }
    }

    fn description(&self, report: &Report) -> AgentDescription {
        let host = sysinfo::System::host_name().unwrap_or_default();
        let mut non_identifying = vec![
            string("host.name", &host),
            string("os.type", std::env::consts::OS),
        ];
        non_identifying.extend(
            report
                .labels
                .iter()
                .map(|(k, v)| string(&format!("fleetset.label.{k}"), v)),
        );
        AgentDescription {
            identifying_attributes: vec![
                string("service.instance.id", &self.agent_id),
                string("service.name", "fleetset-agent"),
                string("service.version", crate::run::AGENT_VERSION),
            ],
            non_identifying_attributes: non_identifying,
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<ServerToAgent> {
        let c = &self.cfg.control;
        let url = c
            .endpoint
            .as_deref()
            .ok_or_else(|| anyhow!("control.endpoint is not set"))?;
        let t = &self.cfg.transport.tls;
        let tls = match &t.ca_file {
            None => None,
            Some(ca) => Some(ClientTls::load(
                ca,
                t.cert_file.as_deref().zip(t.key_file.as_deref()),
                t.server_name.clone(),
            )?),
        };
        let token = match &c.token_file {
            None => None,
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading control.token_file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
        };
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/x-protobuf")];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        let client = HttpClient {
            tls,
            timeout: c.timeout,
            max_response_bytes: c.max_response_bytes,
        };
        let answer = client.request("POST", url, &headers, body).await?;
        let msg = ServerToAgent::decode(answer.body.as_slice());
        match (answer.status, msg) {
            (200, Ok(msg)) => Ok(msg),
            (200, Err(_)) => bail!("{url}: the answer is not an OpAMP ServerToAgent message"),
            (
                status,
                Ok(ServerToAgent {
                    error_response: Some(e),
                    ..
                }),
            ) => bail!("{url}: HTTP {status}: {}", e.error_message),
            (status, _) => bail!("{url}: HTTP {status}"),
        }
    }
}
