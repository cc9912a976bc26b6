//! `[control]`: the control plane's listener (OpAMP over HTTP, the fleet admin API) and the
//! inventory's bounds.

use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[control]`: OpAMP server (`POST /v1/opamp`) and fleet admin API (`/v1/fleet/…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Serve the control plane.
    #[key(default = true)]
    pub enabled: bool,
    /// Listen address (HTTP/1.1; TLS with `security.tls`, like every listener).
    #[key(default = "0.0.0.0:4320".into(), flag = "control-listen")]
    pub listen: String,
    /// An agent not heard from (OpAMP report or frame) for this long is shown `stale`.
    #[key(default = Duration::from_secs(90), unit = "duration", min = Duration::from_secs(1), live)]
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Largest OpAMP or admin request body read; a larger one is refused (HTTP 413) and counted.
    #[key(default = 1 << 20, unit = "bytes", min = 1024, limit = "control_requests_refused")]
    pub max_request_bytes: usize,
    /// Largest promoted configuration body.
    #[key(default = 256 << 10, unit = "bytes", min = 1, limit = "control_requests_refused")]
    pub max_config_bytes: usize,
    /// Agents tracked in the inventory at most; reports of further agents are refused
    /// (HTTP 503 for OpAMP) and counted, their frames still stored.
    #[key(
        default = 100_000,
        unit = "agents",
        min = 1,
        limit = "control_agents_untracked"
    )]
    pub max_agents: usize,
    /// Generations kept in the promotion history (the oldest beyond it are dropped; the
    /// current one never is).
    #[key(default = 1000, unit = "generations", min = 2, limit = "-")]
    pub max_history: usize,
    /// Connections open at once; further ones are closed at accept (`control_connections_refused`).
    #[key(
        default = 20_000,
        unit = "connections",
        min = 1,
        limit = "control_connections_refused"
    )]
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    #[key(default = Duration::from_secs(60), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl ControlConfig {
    /// The listener bounds.
    pub fn limits(&self) -> fleetset_core::net::ConnLimits {
        fleetset_core::net::ConnLimits {
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            tcp_keepalive: Some(Duration::from_secs(30)),
            evict_oldest: false,
        }
    }
}
