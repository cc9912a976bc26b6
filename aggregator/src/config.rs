//! Aggregator configuration: defaults, then the TOML file (`--config`), then flags. Every flag
//! of `fleetset-aggregator serve` has a TOML key of the same name with `-` replaced by `_`.

use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The flags of `fleetset-aggregator serve`.
#[derive(Debug, Args, Serialize, Default)]
pub struct ServeFlags {
    /// TOML config file with the same keys as these flags.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory (Parquet partitions live under it).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// ZeroMQ ROUTER bind address for agents, e.g. tcp://0.0.0.0:5555.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zmq_bind: Option<String>,
    /// gRPC listen address for agents (`Ingest.Publish`), e.g. 0.0.0.0:50051.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<String>,
    /// ZeroMQ PUB bind address for live consumers, e.g. tcp://0.0.0.0:5556.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zmq_pub: Option<String>,
    /// Turn the ZeroMQ PUB socket off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_zmq_pub: Option<bool>,
    /// ZeroMQ PUB send high-water mark: windows queued per subscriber at most (newer are
    /// dropped for that subscriber), so a stalled subscriber costs at most this many messages.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zmq_pub_hwm: Option<i32>,
    /// Live windows buffered for subscribers; a subscriber further behind skips the oldest.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_queue: Option<usize>,
    /// What a gRPC subscriber that falls behind gets: `lag` (a Lag message, then on) or `disconnect`.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_overflow: Option<crate::live::grpc::Overflow>,
    /// Turn the ZeroMQ listener off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_zmq: Option<bool>,
    /// Turn the gRPC listener off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_grpc: Option<bool>,
    /// Commit buffered rows to Parquet at least this often (e.g. 5s).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_interval: Option<String>,
    /// Commit as soon as this many series rows are buffered.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_rows: Option<usize>,
    /// Largest accepted frame (header + payload), bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,
    /// Write the bound addresses as JSON to this file once listening (for scripts and tests).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_file: Option<PathBuf>,
    /// OTLP/gRPC metrics receiver address (OpenTelemetry Collector / SDK push), e.g. 0.0.0.0:4317.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_listen: Option<String>,
    /// Turn the OTLP receiver off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_otlp: Option<bool>,
    /// Window length for OTLP points (like an agent's --window), e.g. 5m.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_window: Option<String>,
    /// How long after its end an OTLP window waits for late points before it is closed.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_grace: Option<String>,
    /// Own telemetry: Prometheus text endpoint (`/metrics`, `/healthz`) address.
    #[arg(long, env = "FLEETSET_METRICS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Serve no `/metrics` endpoint.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_metrics: Option<bool>,
    /// Also export own telemetry over OTLP/gRPC to this collector, e.g. http://otel:4317.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_otlp: Option<String>,
}

/// The aggregator's effective configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// ZeroMQ ROUTER bind address.
    pub zmq_bind: String,
    /// gRPC listen address.
    pub grpc_listen: String,
    /// ZeroMQ listener off.
    pub no_zmq: bool,
    /// ZeroMQ PUB bind address.
    pub zmq_pub: String,
    /// ZeroMQ PUB off.
    pub no_zmq_pub: bool,
    /// ZeroMQ PUB high-water mark, messages per subscriber.
    pub zmq_pub_hwm: i32,
    /// Live queue, windows.
    pub live_queue: usize,
    /// Slow gRPC subscriber policy.
    pub subscriber_overflow: crate::live::grpc::Overflow,
    /// gRPC listener off.
    pub no_grpc: bool,
    /// Commit interval.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Series-row budget that triggers a commit.
    pub commit_rows: usize,
    /// Largest accepted frame, bytes.
    pub max_frame_bytes: usize,
    /// Largest accepted decompressed payload, bytes.
    pub max_decompressed_bytes: usize,
    /// Fleet key (hex): when set, frames must carry a valid HMAC-SHA256.
    pub hmac_key_hex: Option<String>,
    /// Ready file.
    pub ready_file: Option<PathBuf>,
    /// OTLP receiver address.
    pub otlp_listen: String,
    /// OTLP receiver off.
    pub no_otlp: bool,
    /// OTLP window length.
    #[serde(with = "humantime_serde")]
    pub otlp_window: Duration,
    /// OTLP window grace period.
    #[serde(with = "humantime_serde")]
    pub otlp_grace: Duration,
    /// Prometheus endpoint address.
    pub metrics_listen: String,
    /// No Prometheus endpoint.
    pub no_metrics: bool,
    /// OTLP collector for own telemetry.
    pub telemetry_otlp: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("/var/lib/fleetset"),
            zmq_bind: "tcp://0.0.0.0:5555".into(),
            grpc_listen: "0.0.0.0:50051".into(),
            no_zmq: false,
            zmq_pub: "tcp://0.0.0.0:5556".into(),
            no_zmq_pub: false,
            zmq_pub_hwm: 1000,
            live_queue: 1024,
            subscriber_overflow: crate::live::grpc::Overflow::Lag,
            no_grpc: false,
            commit_interval: Duration::from_secs(5),
            commit_rows: 500_000,
            max_frame_bytes: fleetset_proto::frame::DEFAULT_MAX_FRAME_BYTES,
            max_decompressed_bytes: 4 * fleetset_proto::frame::DEFAULT_MAX_FRAME_BYTES,
            hmac_key_hex: None,
            ready_file: None,
            otlp_listen: "0.0.0.0:4317".into(),
            no_otlp: false,
            otlp_window: Duration::from_secs(300),
            otlp_grace: Duration::from_secs(10),
            metrics_listen: "0.0.0.0:9464".into(),
            no_metrics: false,
            telemetry_otlp: None,
        }
    }
}

impl ServerConfig {
    /// Layers defaults, the file named by `flags.config` and `flags`, then validates.
    pub fn load(flags: &ServeFlags) -> anyhow::Result<ServerConfig> {
        let c: ServerConfig = fleetset_proto::config::layer(flags.config.as_deref(), flags)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !(self.no_zmq && self.no_grpc),
            "no_zmq and no_grpc: at least one listener must be on"
        );
        anyhow::ensure!(
            self.commit_interval >= Duration::from_millis(10),
            "commit_interval: below 10ms"
        );
        anyhow::ensure!(self.commit_rows > 0, "commit_rows: must be >= 1");
        anyhow::ensure!(self.live_queue > 0, "live_queue: must be >= 1");
        anyhow::ensure!(self.zmq_pub_hwm > 0, "zmq_pub_hwm: must be >= 1");
        anyhow::ensure!(self.max_frame_bytes >= 1024, "max_frame_bytes: below 1024");
        if !self.no_grpc {
            self.grpc_listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow::anyhow!("grpc_listen {:?}: {e}", self.grpc_listen))?;
        }
        if !self.no_otlp {
            self.otlp_listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow::anyhow!("otlp_listen {:?}: {e}", self.otlp_listen))?;
        }
        anyhow::ensure!(
            self.otlp_window >= Duration::from_millis(100),
            "otlp_window: below 100ms"
        );
        if let Some(k) = &self.hmac_key_hex {
            anyhow::ensure!(
                hex::decode(k).is_ok_and(|k| !k.is_empty()),
                "hmac_key_hex: must be non-empty hex"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_loads_and_flags_override_it() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/aggregator.toml");
        let flags = ServeFlags {
            config: Some(path),
            commit_rows: Some(7),
            no_zmq: Some(true),
            ..Default::default()
        };
        let c = ServerConfig::load(&flags).unwrap();
        assert_eq!(
            (c.commit_rows, c.no_zmq, c.commit_interval),
            (7, true, Duration::from_secs(5))
        );
    }

    #[test]
    fn bad_values_are_named() {
        let flags = ServeFlags {
            no_zmq: Some(true),
            no_grpc: Some(true),
            ..Default::default()
        };
        assert!(ServerConfig::load(&flags)
            .unwrap_err()
            .to_string()
            .contains("no_grpc"));
        let flags = ServeFlags {
            grpc_listen: Some("nowhere".into()),
            ..Default::default()
        };
        assert!(ServerConfig::load(&flags)
            .unwrap_err()
            .to_string()
            .contains("grpc_listen"));
    }
}
