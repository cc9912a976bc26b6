//! The `[otlp]` section: the OTLP/gRPC metrics receiver.

use fleetset_core::config::Section;
use fleetset_core::downsample::Downsampler;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[otlp]`: OTLP/gRPC `MetricsService/Export` from OpenTelemetry Collectors and SDKs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Serve the OTLP receiver.
    #[key(default = true)]
    pub enabled: bool,
    /// OTLP/gRPC listen address (`host:port`).
    #[key(default = "0.0.0.0:4317".into(), flag = "otlp-listen")]
    pub listen: String,
    /// Window length of OTLP points (like an agent's `window.length`).
    #[key(default = Duration::from_secs(300), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long after its end a window waits for late points before it is closed.
    #[key(default = Duration::from_secs(10), unit = "duration")]
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Points later than now plus this are refused (partial success): clocks ahead, or bad data.
    #[key(default = Duration::from_secs(600), unit = "duration", limit = "otlp_refused_time")]
    #[serde(with = "humantime_serde")]
    pub max_skew: Duration,
    /// Points older than now minus this are refused (partial success): OTLP is live data.
    #[key(default = Duration::from_secs(7 * 86_400), unit = "duration", limit = "otlp_refused_time")]
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Open windows (source × window) at once; points that would open another are refused.
    #[key(
        default = 4096,
        unit = "windows",
        min = 1,
        limit = "otlp_refused_open_windows"
    )]
    pub max_open_windows: usize,
    /// Total bytes of the write-ahead log; an Export that would exceed it is answered
    /// `UNAVAILABLE` whole (the exporter retries once windows have closed).
    #[key(default = 1 << 30, unit = "bytes", min = 4096, limit = "otlp_wal_full")]
    pub max_wal_bytes: u64,
    /// Attributes per data point; a point with more is refused (its series name would carry them all).
    #[key(default = 16, limit = "otlp_refused_attributes")]
    pub max_attributes: usize,
    /// Buckets per histogram point (explicit, or per side of an exponential one) and quantiles
    /// per summary point; a point with more is refused.
    #[key(default = 160, min = 1, limit = "otlp_refused_buckets")]
    pub max_buckets: usize,
    /// Series per source per window; points of further series are refused.
    #[key(
        default = 10_000,
        unit = "series",
        min = 1,
        limit = "otlp_refused_series"
    )]
    pub max_series: usize,
    /// Series points one Export may expand to (a histogram point is one per bucket plus count,
    /// sum, min, max); the data points past it are refused.
    #[key(
        default = 100_000,
        unit = "points",
        min = 1,
        limit = "otlp_refused_request_points"
    )]
    pub max_request_points: usize,
    /// Largest Export request (decoded gRPC message); a larger one is answered RESOURCE_EXHAUSTED.
    #[key(default = 16 << 20, unit = "bytes", min = 4096, limit = "-")]
    pub max_request_bytes: usize,
    /// Connection and stream bounds.
    #[key(section)]
    pub connections: crate::ingest::config::GrpcConnections,
    /// MinMax-LTTB downsampling of each OTLP series per window.
    #[key(section)]
    pub lttb: Downsampler,
}
