//! Agent configuration: defaults, then the TOML file (`--config`), then flags.
//!
//! Every flag of `fleetset-agent run` has a TOML key of the same name with `-` replaced by `_`
//! (e.g. `--sample-interval 1s` ↔ `sample_interval = "1s"`); labels are a table
//! (`[labels] site = "eu-1"`). Durations are humantime strings ("250ms", "5m").

use clap::{Args, ValueEnum};
use fleetset_core::names::parse_label;
use fleetset_proto::{Compression, Encoding};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Payload encoding of the frames the agent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportArg {
    /// ZeroMQ DEALER connecting to the aggregator's ROUTER (`tcp://host:5555`).
    #[default]
    Zmq,
    /// gRPC bidirectional stream `Ingest.Publish` (`http://host:50051`).
    Grpc,
    /// OTLP/gRPC `MetricsService/Export` to an OpenTelemetry Collector or a fleetset
    /// aggregator's OTLP receiver (`http://host:4317`; `--otlp-endpoint`, else `--aggregator`).
    Otlp,
}

/// Where samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceArg {
    /// This host's metrics (sysinfo and /proc).
    #[default]
    Host,
    /// Deterministic values that are a pure function of the sample time (tests, demos).
    Synthetic,
}

/// The flags of `fleetset-agent run`; each overrides the config file's key of the same name.
#[derive(Debug, Args, Serialize, Default)]
pub struct RunFlags {
    /// TOML config file with the same keys as these flags.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Stable agent id; default: derived once and persisted in the state directory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Directory for the persisted agent id, process-name salt and next seq.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Operator label `key=value` (repeatable), e.g. `--label site=eu-1`.
    #[arg(long = "label", value_parser = parse_label)]
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "labels_as_table"
    )]
    pub labels: Option<Vec<(String, String)>>,
    /// Aggregator endpoint: `tcp://host:5555` (zmq) or `http://host:50051` (grpc).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<String>,
    /// Transport to the aggregator.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportArg>,
    /// Payload encoding.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<EncodingArg>,
    /// Payload compression.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionArg>,
    /// Sample source.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceArg>,
    /// Host metric sample interval (e.g. 1s, 250ms).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_interval: Option<String>,
    /// Process scan interval (top-N processes), slower than sampling: a scan costs ~0.1 ms/process.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_interval: Option<String>,
    /// Window length; windows are aligned to wall-clock multiples of it.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// MinMax-LTTB output points per metric per window (>= 3).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lttb_threshold: Option<usize>,
    /// MinMax-LTTB preselection ratio (>= 2; tsdownsample's default 4).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lttb_ratio: Option<usize>,
    /// How many processes (by RSS) each window reports.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_processes: Option<usize>,
    /// Frames sent but not yet acked, at most.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Time without an ack (while frames are in flight) after which the link is recreated.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_timeout: Option<String>,
    /// Spool directory (default: `<state-dir>/spool`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    /// Spool bound in bytes; when full the oldest frames are dropped (and counted).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_max_bytes: Option<u64>,
    /// When spool writes are fsynced: `always` (before sending) or `never`.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_fsync: Option<crate::spool::FsyncPolicy>,
    /// Debugging aid: write each window's raw samples as JSON into this directory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_dump_dir: Option<PathBuf>,
    /// Own telemetry: Prometheus text endpoint (`/metrics`, `/healthz`) address. If it cannot
    /// be bound (e.g. an aggregator on the same host holds 9464) the agent warns and goes on.
    #[arg(long, env = "FLEETSET_METRICS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Serve no `/metrics` endpoint.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_metrics: bool,
    /// Also export own telemetry over OTLP/gRPC to this collector, e.g. `http://otel:4317`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_otlp: Option<String>,
    /// Also export each window's metrics as OTLP to this collector (`http://host:4317`);
    /// with `--transport otlp` the only destination.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Append delivery events (framed, spooled, sent, acked, dropped, link) to this file as
    /// JSON Lines (see `fleetset_agent::events`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<PathBuf>,
}

fn labels_as_table<S: serde::Serializer>(
    labels: &Option<Vec<(String, String)>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let map: BTreeMap<&str, &str> = labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    map.serialize(s)
}

/// The agent's effective configuration (see the module docs for how it is layered).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Stable agent id; `None`: derived once and persisted in `state_dir`.
    pub agent_id: Option<String>,
    /// Directory for persisted state.
    pub state_dir: PathBuf,
    /// Operator labels.
    pub labels: BTreeMap<String, String>,
    /// Aggregator endpoint.
    pub aggregator: String,
    /// Transport.
    pub transport: TransportArg,
    /// Payload encoding.
    pub encoding: EncodingArg,
    /// Payload compression.
    pub compression: CompressionArg,
    /// Sample source.
    pub source: SourceArg,
    /// Sample interval.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// Process scan interval.
    #[serde(with = "humantime_serde")]
    pub process_interval: Duration,
    /// Window length.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// MinMax-LTTB output points per metric per window.
    pub lttb_threshold: usize,
    /// MinMax-LTTB preselection ratio.
    pub lttb_ratio: usize,
    /// Top-N processes per window.
    pub top_processes: usize,
    /// Send clear process names (default false: only salted hashes leave the host).
    pub send_process_names: bool,
    /// Salt for process-name hashes; `None`: generated once and persisted in `state_dir`.
    pub process_name_salt: Option<String>,
    /// Fleet key (hex) for HMAC-SHA256 frame signatures; `None`: unsigned frames.
    pub hmac_key_hex: Option<String>,
    /// Frames in flight, at most.
    pub max_in_flight: usize,
    /// Spool directory; `None`: `state_dir/spool`.
    pub spool_dir: Option<PathBuf>,
    /// Spool bound, bytes.
    pub spool_max_bytes: u64,
    /// Spool fsync policy.
    pub spool_fsync: crate::spool::FsyncPolicy,
    /// Ack timeout.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Raw-sample dump directory (debugging aid).
    pub raw_dump_dir: Option<PathBuf>,
    /// Prometheus text endpoint address (own telemetry).
    pub metrics_listen: String,
    /// No `/metrics` endpoint.
    pub no_metrics: bool,
    /// OTLP/gRPC collector for own telemetry.
    pub telemetry_otlp: Option<String>,
    /// OTLP/gRPC collector that also (or, with transport otlp, only) gets each window.
    pub otlp_endpoint: Option<String>,
    /// JSON Lines file of delivery events; `None`: none written.
    pub events: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            agent_id: None,
            state_dir: PathBuf::from("/var/lib/fleetset-agent"),
            labels: BTreeMap::new(),
            aggregator: "tcp://127.0.0.1:5555".into(),
            transport: TransportArg::Zmq,
            encoding: EncodingArg::Msgpack,
            compression: CompressionArg::None,
            source: SourceArg::Host,
            sample_interval: Duration::from_secs(1),
            process_interval: Duration::from_secs(15),
            window: Duration::from_secs(300),
            lttb_threshold: 60,
            lttb_ratio: 4,
            top_processes: 10,
            send_process_names: false,
            process_name_salt: None,
            hmac_key_hex: None,
            max_in_flight: 64,
            spool_dir: None,
            // ~25 KB per default frame × 288 windows a day ≈ 7 MB/day: 64 MiB holds over a week.
            spool_max_bytes: 64 << 20,
            spool_fsync: crate::spool::FsyncPolicy::Always,
            ack_timeout: Duration::from_secs(10),
            raw_dump_dir: None,
            metrics_listen: "0.0.0.0:9464".into(),
            no_metrics: false,
            telemetry_otlp: None,
            otlp_endpoint: None,
            events: None,
        }
    }
}

/// A configuration that cannot work, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Building the layered config failed.
    #[error(transparent)]
    Layer(#[from] fleetset_proto::config::ConfigError),
    /// A value is out of range.
    #[error("invalid {key}: {why}")]
    Invalid {
        /// The config key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl AgentConfig {
    /// Layers defaults, the file named by `flags.config` and `flags`, then validates.
    pub fn load(flags: &RunFlags) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = fleetset_proto::config::layer(flags.config.as_deref(), flags)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, why: String| Err(ConfigError::Invalid { key, why });
        if self.sample_interval < Duration::from_millis(10) {
            return bad(
                "sample_interval",
                format!("{:?} is below 10ms", self.sample_interval),
            );
        }
        if self.window < self.sample_interval * 2 {
            return bad(
                "window",
                format!("{:?} must hold at least two samples", self.window),
            );
        }
        if !self
            .window
            .as_millis()
            .is_multiple_of(self.sample_interval.as_millis())
        {
            return bad("window", "must be a multiple of sample_interval".into());
        }
        if self.lttb_threshold < 3 {
            return bad(
                "lttb_threshold",
                format!(
                    "{} is below 3 (LTTB keeps first and last plus one point per bucket)",
                    self.lttb_threshold
                ),
            );
        }
        if self.lttb_ratio < 2 {
            return bad("lttb_ratio", format!("{} is below 2", self.lttb_ratio));
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be >= 1".into());
        }
        if self.spool_max_bytes < 4096 {
            return bad(
                "spool_max_bytes",
                format!("{} is below 4096", self.spool_max_bytes),
            );
        }
        if let Some(key) = &self.hmac_key_hex {
            if hex::decode(key).map(|k| k.is_empty()).unwrap_or(true) {
                return bad("hmac_key_hex", "must be non-empty hex".into());
            }
        }
        let scheme_ok = match self.transport {
            TransportArg::Zmq => {
                self.aggregator.starts_with("tcp://") || self.aggregator.starts_with("ipc://")
            }
            TransportArg::Grpc => self.aggregator.starts_with("http://"),
            TransportArg::Otlp => self
                .otlp_endpoint
                .as_deref()
                .unwrap_or(&self.aggregator)
                .starts_with("http://"),
        };
        if let Some(url) = &self.otlp_endpoint {
            if !url.starts_with("http://") {
                return bad("otlp_endpoint", format!("{url:?} is not http://host:port"));
            }
        }
        if !scheme_ok {
            return bad("aggregator", format!("{:?} does not fit transport {:?} (zmq: tcp://host:port or ipc://path, grpc and otlp: http://host:port; TLS is not built in, tunnel it)", self.aggregator, self.transport));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_labels_layer_over_defaults() {
        let flags = RunFlags {
            window: Some("10s".into()),
            sample_interval: Some("250ms".into()),
            labels: Some(vec![("site".into(), "eu-1".into())]),
            ..Default::default()
        };
        let c = AgentConfig::load(&flags).unwrap();
        assert_eq!(c.window, Duration::from_secs(10));
        assert_eq!(c.sample_interval, Duration::from_millis(250));
        assert_eq!(c.labels["site"], "eu-1");
        assert_eq!(c.lttb_threshold, 60);
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
        let c = AgentConfig::load(&RunFlags {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.labels["site"], "eu-1");
        assert_eq!(c.window, Duration::from_secs(300));
    }

    #[test]
    fn bad_values_are_named() {
        let flags = RunFlags {
            lttb_threshold: Some(2),
            ..Default::default()
        };
        assert!(AgentConfig::load(&flags)
            .unwrap_err()
            .to_string()
            .contains("lttb_threshold"));
        let flags = RunFlags {
            transport: Some(TransportArg::Grpc),
            ..Default::default()
        };
        assert!(AgentConfig::load(&flags)
            .unwrap_err()
            .to_string()
            .contains("aggregator"));
        assert!(parse_label("nokey").is_err());
    }
}
