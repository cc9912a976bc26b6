//! The agent's configuration, declared once (`fleetset_core::config`): a few top-level keys
//! and the sections `[collect]`, `[window]` (with `[window.lttb]`), `[transport]`, `[spool]`,
//! `[telemetry]`, `[security]` and `[control]`. The TOML file (`--config`), the environment (`FLEETSET_<SECTION>_<KEY>`), the
//! common flags and `--set section.key=value` all resolve through these declarations;
//! `fleetset-agent print-config` shows every key with its default, `validate` checks a file.
//! Durations are humantime strings ("250ms", "5m").

pub use crate::transport::zmq_config::{CurveConfig, ZmqConfig};
use fleetset_core::config::{ConfigCommand, ConfigError, Section};
use fleetset_core::downsample::Downsampler;
use fleetset_core::telemetry::TelemetryConfig;
use fleetset_proto::{Compression, Encoding};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Payload encoding of the frames the agent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncodingArg {
    /// MessagePack with named fields (seed 004's layout plus fleetset fields).
    #[default]
    Msgpack,
    /// Protobuf `fleetset.v1.Snapshot`.
    Protobuf,
}

impl From<EncodingArg> for Encoding {
    fn from(e: EncodingArg) -> Encoding {
        match e {
            EncodingArg::Msgpack => Encoding::Msgpack,
            EncodingArg::Protobuf => Encoding::Protobuf,
        }
    }
}

/// Payload compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    /// No compression.
    #[default]
    None,
    /// zstd level 3.
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// Transport to the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportArg {
    /// ZeroMQ DEALER connecting to the aggregator's ROUTER (`tcp://host:5555`).
    #[default]
    Zmq,
    /// gRPC bidirectional stream `Ingest.Publish` (`http://host:50051`).
    Grpc,
    /// OTLP/gRPC `MetricsService/Export` to an OpenTelemetry Collector or a fleetset
    /// aggregator's OTLP receiver (`http://host:4317`; `transport.otlp_endpoint`, else
    /// `transport.aggregator`).
    Otlp,
}

/// Where samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceArg {
    /// This host's metrics (sysinfo and /proc).
    #[default]
    Host,
    /// Deterministic values that are a pure function of the sample time (tests, demos).
    Synthetic,
}

/// `[collect]`: what is sampled and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct CollectConfig {
    /// Sample source: `host` (this host's metrics) or `synthetic` (deterministic, for tests and demos).
    #[key(flag = "source")]
    pub source: SourceArg,
    /// Host metric sample interval.
    #[key(default = Duration::from_secs(1), unit = "duration", min = Duration::from_millis(10), flag = "sample-interval", live)]
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// Top-N process scan interval (a scan costs ~0.05 ms per process).
    #[key(default = Duration::from_secs(15), unit = "duration", min = Duration::from_millis(10), live)]
    #[serde(with = "humantime_serde")]
    pub process_interval: Duration,
    /// Processes (by RSS) each window reports.
    #[key(default = 10, unit = "processes", max = 1000, live)]
    pub top_processes: usize,
    /// Send clear process names (default: only salted hashes leave the host).
    #[key(default = false, live)]
    pub send_process_names: bool,
    /// Salt for process-name hashes (default: 32 random bytes created once in the state directory).
    #[key(secret)]
    pub process_name_salt: Option<String>,
    /// Debugging aid: write each window's raw samples as JSON into this directory.
    pub raw_dump_dir: Option<PathBuf>,
}

/// `[window]`: window length and downsampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length; windows start at multiples of it (UTC) and hold a multiple of the sample interval.
    #[key(default = Duration::from_secs(300), unit = "duration", flag = "window")]
    #[serde(with = "humantime_serde")]
    pub length: Duration,
    /// MinMax-LTTB downsampling of each series per window.
    #[key(section)]
    pub lttb: Downsampler,
}

/// `[transport]`: how frames reach the aggregator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// `zmq` (DEALER → ROUTER), `grpc` (`Ingest.Publish` stream) or `otlp` (OTLP/gRPC Export per window).
    #[key(flag = "transport")]
    pub protocol: TransportArg,
    /// Aggregator endpoint: `tcp://host:port` or `ipc://path` (zmq), `http://host:port` (grpc, otlp).
    #[key(default = "tcp://127.0.0.1:5555".into(), flag = "aggregator")]
    pub aggregator: String,
    /// Payload encoding: `msgpack` or `protobuf`.
    #[key(flag = "encoding")]
    pub encoding: EncodingArg,
    /// Payload compression (before the checksum): `none` or `zstd`.
    pub compression: CompressionArg,
    /// Frame format version to seal: the current one, or the previous one while the aggregators are older than this agent (README "Version skew").
    #[key(default = fleetset_proto::FRAME_VERSION, min = fleetset_proto::OLDEST_FRAME_VERSION, max = fleetset_proto::FRAME_VERSION)]
    pub frame_version: u32,
    /// Frames sent and not yet acked, at most.
    #[key(default = 64, unit = "frames", min = 1, max = 65_536, limit = "-")]
    pub max_in_flight: usize,
    /// A frame unacked this long after it was sent (each frame's own clock) → recreate the link and resend.
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(10))]
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// This agent's HMAC key (hex): `pki issue-agent`'s `hmac.key` (derived from the master key the aggregator has as `ingest.hmac_master_key_file`) or the fleet-wide shared `ingest.hmac_key_hex`. Frames are signed with it and every ack (gRPC, ZeroMQ) must verify with it: an ack that does not is ignored (`acks_unverified`) and the frame resent.
    #[key(secret)]
    pub hmac_key_hex: Option<String>,
    /// Also export each window as OTLP to this collector (`http://host:4317`, best-effort); with protocol `otlp` the destination.
    #[key(flag = "otlp-endpoint")]
    pub otlp_endpoint: Option<String>,
    /// TLS of the gRPC and OTLP clients.
    #[key(section)]
    pub tls: ClientTlsConfig,
    /// The ZeroMQ link's libzmq limits and timers.
    #[key(section)]
    pub zmq: ZmqConfig,
    /// CURVE on the ZeroMQ link.
    #[key(section)]
    pub curve: CurveConfig,
}

/// `[transport.tls]`: TLS (and mTLS) of the gRPC Ingest client and the OTLP exporter. Set
/// `ca_file` → TLS, and the endpoints must be `https://host:port`; the files are read at every
/// (re)connect, so rotated certificates are picked up without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// CA certificates (PEM) the aggregator's (or collector's) certificate must chain to; set → TLS.
    pub ca_file: Option<PathBuf>,
    /// This agent's client certificate (PEM) for mTLS, with the URI SAN `spiffe://fleetset/agent/<agent_id>`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Name the server certificate must carry (and SNI); default: the endpoint's host.
    pub server_name: Option<String>,
}

/// `[security]`: protection of the agent's own `/metrics` (TLS in `[security.tls]`, a bearer
/// token) and the secure-by-default start check: `/metrics` on a non-loopback address needs
/// `security.tls.cert_file`, `security.tls.key_file` and `security.metrics_token_sha256` unless
/// `allow_insecure` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Start even with `/metrics` on a non-loopback address without TLS and a token; a warning naming the missing keys is logged at every start.
    #[key(default = false)]
    pub allow_insecure: bool,
    /// SHA-256 (64 hex digits) of the bearer token `/metrics` requires (`authorization: Bearer <token>`; missing or wrong: 401, counted `auth_unauthenticated`; `/healthz` stays open). The digest of a `pki issue-token --scope metrics` token is its `sha256` in the token file; or `printf %s TOKEN | sha256sum`.
    #[key(secret)]
    pub metrics_token_sha256: Option<String>,
    /// TLS of `/metrics` `/healthz`.
    #[key(section)]
    pub tls: fleetset_core::tls::TlsConfig,
}

impl SecurityConfig {
    /// The keys `/metrics` on `listen` still lacks to be served off loopback (empty: secured,
    /// or `listen` is loopback).
    pub fn metrics_missing(&self, listen: &str) -> Vec<&'static str> {
        if fleetset_core::net::is_loopback_addr(listen) {
            return Vec::new();
        }
        let mut missing = Vec::new();
        if self.tls.cert_file.is_none() {
            missing.push("security.tls.cert_file");
        }
        if self.tls.key_file.is_none() {
            missing.push("security.tls.key_file");
        }
        if self.metrics_token_sha256.is_none() {
            missing.push("security.metrics_token_sha256");
        }
        missing
    }
}

/// `[spool]`: the durable queue of unacked frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Spool directory (default: `<state_dir>/spool`).
    pub dir: Option<PathBuf>,
    /// Spool bound; the oldest frames are dropped (and counted) beyond it. 64 MiB ≈ a week of default frames.
    #[key(default = 64 << 20, unit = "bytes", min = 4096, limit = "frames_dropped_spool_full")]
    pub max_bytes: u64,
    /// `always` (fsync before sending; survives power loss) or `never` (survives a process crash).
    pub fsync: crate::spool::FsyncPolicy,
    /// Frames that cannot be written (disk full, I/O error) are held in memory up to this many bytes (oldest dropped beyond it, counted), sent from there and written once there is room.
    #[key(default = 4 << 20, unit = "bytes", max = 1 << 30, limit = "frames_dropped_disk_full")]
    pub memory_bytes: u64,
    /// Files kept in `spool/rejected/` (frames the aggregator rejected); the oldest are deleted beyond it (counted).
    #[key(
        default = 100,
        unit = "files",
        max = 1_000_000,
        limit = "rejected_pruned"
    )]
    pub keep_rejected: usize,
    /// Files kept in `spool/quarantine/` (corrupt spool files); the oldest are deleted beyond it (counted).
    #[key(
        default = 100,
        unit = "files",
        max = 1_000_000,
        limit = "quarantine_pruned"
    )]
    pub keep_quarantined: usize,
}

/// The agent's effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Stable agent id (default: `<hostname>-<8 hex>`, created once and kept in the state directory).
    #[key(flag = "agent-id")]
    pub agent_id: Option<String>,
    /// Agent id, process-name salt, next `seq`, last window framed, status.
    #[key(default = PathBuf::from("/var/lib/fleetset-agent"), flag = "state-dir")]
    pub state_dir: PathBuf,
    /// Operator labels, stored as `label_<k>` columns (`--label site=eu-1`, repeatable).
    #[key(map, flag = "label", live)]
    pub labels: BTreeMap<String, String>,
    /// Append what the agent framed, spooled, sent, had acked and dropped to this JSON Lines file (one short line per event, about six per window; never rotated). See README "Counters and status".
    #[key(flag = "events")]
    pub events: Option<PathBuf>,
    /// Sampling.
    #[key(section)]
    pub collect: CollectConfig,
    /// Windows and downsampling.
    #[key(section)]
    pub window: WindowConfig,
    /// Delivery to the aggregator.
    #[key(section)]
    pub transport: TransportConfig,
    /// The spool of unacked frames.
    #[key(section)]
    pub spool: SpoolConfig,
    /// Own telemetry.
    #[key(section)]
    pub telemetry: TelemetryConfig,
    /// Protection of own `/metrics`.
    #[key(section)]
    pub security: SecurityConfig,
    /// The fleet control plane (OpAMP).
    #[key(section)]
    pub control: crate::control::ControlConfig,
}

impl ConfigCommand for AgentConfig {
    const TITLE: &'static str =
        "fleetset-agent configuration (`fleetset-agent run --config FILE`).\n\
        Every key with its default; generated by `fleetset-agent print-config`.\n\
        Environment: FLEETSET_<SECTION>_<KEY>; command line: `--set section.key=value`.";

    /// Relations between keys and values that a type cannot say.
    fn check(&self) -> Result<(), ConfigError> {
        let (window, sample) = (self.window.length, self.collect.sample_interval);
        let human = |d: Duration| humantime::format_duration(d).to_string();
        if window < sample * 2 || !window.as_millis().is_multiple_of(sample.as_millis()) {
            return Err(ConfigError::invalid(
                "window.length",
                human(window),
                format!(
                    "a multiple of collect.sample_interval ({}) holding at least two samples",
                    human(sample)
                ),
            ));
        }
        // What the aggregator's contract (fleetset_proto::contract) would reject on every frame
        // is refused here, at start, naming the key.
        if let Some(id) = self.agent_id.as_deref() {
            if !fleetset_proto::contract::is_valid_agent_id(id) {
                return Err(ConfigError::invalid(
                    "agent_id",
                    fleetset_proto::contract::shown(id),
                    "1–128 bytes of [A-Za-z0-9._:-], not starting with '.'",
                ));
            }
        }
        if let Some(key) = self
            .labels
            .keys()
            .find(|k| !fleetset_proto::contract::is_valid_label_key(k))
        {
            return Err(ConfigError::invalid(
                &format!("labels.{}", fleetset_proto::contract::shown(key)),
                "(key)",
                "label keys of 1–64 bytes of [a-z0-9_], starting with a letter, without `__`",
            ));
        }
        let t = &self.transport;
        if let Some(key) = &t.hmac_key_hex {
            if hex::decode(key).map(|k| k.is_empty()).unwrap_or(true) {
                return Err(ConfigError::invalid(
                    "transport.hmac_key_hex",
                    "***",
                    "non-empty hex",
                ));
            }
        }
        if let Some(d) = &self.security.metrics_token_sha256 {
            if hex::decode(d).map(|b| b.len() != 32).unwrap_or(true) {
                return Err(ConfigError::invalid(
                    "security.metrics_token_sha256",
                    "***",
                    "64 hex digits (the SHA-256 of the token)",
                ));
            }
        }
        let st = &self.security.tls;
        if st.cert_file.is_some() != st.key_file.is_some() {
            return Err(ConfigError::invalid(
                "security.tls.cert_file",
                format!("{:?}", st.cert_file),
                "set with security.tls.key_file",
            ));
        }
        if !matches!(st.min_version.as_str(), "1.2" | "1.3") {
            return Err(ConfigError::invalid(
                "security.tls.min_version",
                format!("{:?}", st.min_version),
                "\"1.2\" or \"1.3\"",
            ));
        }
        let tls = t.tls.ca_file.is_some();
        let (scheme, http) = match tls {
            true => (
                "https://",
                "https://host:port (transport.tls.ca_file is set)",
            ),
            false => (
                "http://",
                "http://host:port (https:// needs transport.tls.ca_file)",
            ),
        };
        if t.tls.cert_file.is_some() != t.tls.key_file.is_some()
            || (t.tls.cert_file.is_some() && !tls)
        {
            return Err(ConfigError::invalid(
                "transport.tls.cert_file",
                format!("{:?}", t.tls.cert_file),
                "set with transport.tls.key_file and transport.tls.ca_file",
            ));
        }
        for (key, url) in [
            ("transport.otlp_endpoint", &t.otlp_endpoint),
            ("control.endpoint", &self.control.endpoint),
        ] {
            if let Some(url) = url {
                if !url.starts_with(scheme) {
                    return Err(ConfigError::invalid(key, format!("{url:?}"), http));
                }
            }
        }
        if let (Some(url), Some(_)) = (&self.control.endpoint, &self.control.token_file) {
            let host = url.strip_prefix("http://").map(|rest| {
                let authority = rest.split('/').next().unwrap_or(rest);
                authority.rsplit_once(':').map_or(authority, |(h, _)| h)
            });
            if host.is_some_and(|h| !fleetset_core::net::is_loopback_host(h))
                && !self.security.allow_insecure
            {
                return Err(ConfigError::invalid(
                    "control.endpoint",
                    format!("{url:?}"),
                    "https:// (transport.tls.ca_file) when control.token_file is sent to a \
                     non-loopback host, or security.allow_insecure = true",
                ));
            }
        }
        if let Some(key) = t.curve.incomplete() {
            return Err(ConfigError::invalid(
                &format!("transport.curve.{key}"),
                "(unset or set twice)",
                "with transport.curve on, each key set once: as <key>_file or inline",
            ));
        }
        let (scheme_ok, allowed) = match t.protocol {
            TransportArg::Zmq => (
                t.aggregator.starts_with("tcp://") || t.aggregator.starts_with("ipc://"),
                "tcp://host:port or ipc://path with protocol zmq",
            ),
            TransportArg::Grpc => (t.aggregator.starts_with(scheme), http),
            TransportArg::Otlp => (
                t.otlp_endpoint
                    .as_deref()
                    .unwrap_or(&t.aggregator)
                    .starts_with(scheme),
                http,
            ),
        };
        if !scheme_ok {
            return Err(ConfigError::invalid(
                "transport.aggregator",
                format!("{:?}", t.aggregator),
                format!("{allowed} with protocol {:?}", t.protocol),
            ));
        }
        Ok(())
    }
}

impl AgentConfig {
    /// The spool directory: `spool.dir`, else `<state_dir>/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("spool"))
    }
}

/// The command line of `run` and `replay`: `--config`, the common flags and `--set`.
pub type RunFlags = fleetset_core::config::ConfigArgs<AgentConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_match_the_declaration() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        fleetset_core::config::check_docs::<AgentConfig>(
            "agent",
            &root.join("README.md"),
            &root.join("deploy/agent.toml"),
            &root.join("docs/limits.md"),
            &crate::counters::Counters::default()
                .snapshot()
                .into_iter()
                .map(|(k, _)| k.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
    }

    fn load(sets: &[(&str, &str)]) -> Result<AgentConfig, ConfigError> {
        RunFlags::new(None, sets).load()
    }

    #[test]
    fn flags_and_labels_layer_over_defaults() {
        let c = load(&[
            ("window.length", "10s"),
            ("collect.sample_interval", "250ms"),
            ("labels.site", "eu-1"),
        ])
        .unwrap();
        assert_eq!(c.window.length, Duration::from_secs(10));
        assert_eq!(c.collect.sample_interval, Duration::from_millis(250));
        assert_eq!(c.labels["site"], "eu-1");
        assert_eq!(c.window.lttb.threshold, 60);
    }

    #[test]
    fn bad_values_are_named() {
        let e = load(&[("window.lttb.threshold", "2")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("window.lttb.threshold") && e.contains(">= 3"),
            "{e}"
        );
        let e = load(&[("window.length", "7s"), ("collect.sample_interval", "2s")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("window.length") && e.contains("7s"), "{e}");
        let e = load(&[("transport.protocol", "grpc")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("transport.aggregator") && e.contains("http://"),
            "{e}"
        );
        let e = load(&[("labels.Site", "eu")]).unwrap_err().to_string();
        assert!(e.contains("labels.Site") && e.contains("[a-z0-9_]"), "{e}");
        let e = load(&[("labels.a__count", "1")]).unwrap_err().to_string();
        assert!(e.contains("labels.a__count"), "{e}");
        let e = load(&[("agent_id", "../etc/x")]).unwrap_err().to_string();
        assert!(
            e.contains("agent_id") && e.contains("[A-Za-z0-9._:-]"),
            "{e}"
        );
        assert!(load(&[("labels.site_2", "eu"), ("agent_id", "web-01.example:a")]).is_ok());
        // TLS: `https://` exactly when `transport.tls.ca_file` is set.
        let e = load(&[
            ("transport.protocol", "grpc"),
            ("transport.aggregator", "https://agg:50051"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("transport.tls.ca_file"), "{e}");
        let tls = [
            ("transport.protocol", "grpc"),
            ("transport.aggregator", "http://agg:50051"),
            ("transport.tls.ca_file", "/ca.pem"),
        ];
        let e = load(&tls).unwrap_err().to_string();
        assert!(e.contains("https://"), "{e}");
        let c = load(&[
            ("transport.protocol", "grpc"),
            ("transport.aggregator", "https://agg:50051"),
            ("transport.tls.ca_file", "/ca.pem"),
            ("transport.tls.cert_file", "/a.pem"),
            ("transport.tls.key_file", "/a.key"),
        ])
        .unwrap();
        assert_eq!(c.transport.tls.server_name, None);
        let e = load(&[
            ("transport.protocol", "grpc"),
            ("transport.aggregator", "https://agg:50051"),
            ("transport.tls.ca_file", "/ca.pem"),
            ("transport.tls.cert_file", "/a.pem"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("transport.tls.key_file"), "{e}");
        let e = load(&[("transport.protocol", "carrier-pigeon")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("transport.protocol") && e.contains("zmq"), "{e}");
    }

    #[test]
    fn the_control_endpoint_follows_the_transport_tls_and_keeps_tokens_off_plain_networks() {
        let e = load(&[("control.endpoint", "https://agg:4320/v1/opamp")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("control.endpoint") && e.contains("ca_file"),
            "{e}"
        );
        let token = ("control.token_file", "/t");
        let e = load(&[("control.endpoint", "http://10.0.0.5:4320/v1/opamp"), token])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("control.endpoint") && e.contains("allow_insecure"),
            "{e}"
        );
        assert!(load(&[
            ("control.endpoint", "http://127.0.0.1:4320/v1/opamp"),
            token
        ])
        .is_ok());
        assert!(load(&[
            ("control.endpoint", "http://10.0.0.5:4320/v1/opamp"),
            token,
            ("security.allow_insecure", "true"),
        ])
        .is_ok());
        let c = load(&[
            ("control.endpoint", "https://agg:4320/v1/opamp"),
            ("transport.tls.ca_file", "/ca.pem"),
            ("transport.protocol", "grpc"),
            ("transport.aggregator", "https://agg:50051"),
            token,
        ])
        .unwrap();
        assert_eq!(c.control.poll_interval, Duration::from_secs(30));
    }
}
