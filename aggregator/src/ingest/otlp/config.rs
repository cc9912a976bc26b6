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
    /// MinMax-LTTB downsampling of each OTLP series per window.
    #[key(section)]
    pub lttb: Downsampler,
}
