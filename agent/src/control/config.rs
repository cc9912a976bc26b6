//! `[control]`: the agent's OpAMP client (off unless `endpoint` is set).

use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[control]`: reports to the fleet control plane and takes remote configuration from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// OpAMP server (HTTP transport): the aggregator's `control.listen` and `/v1/opamp`, e.g. `https://aggregator:4320/v1/opamp` (TLS from `[transport.tls]`, whose client certificate proves the agent id). Unset: no control plane.
    pub endpoint: Option<String>,
    /// How often the agent reports its state and asks for configuration.
    #[key(default = Duration::from_secs(30), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A remote configuration becomes the last known good after the agent has run it this long; an agent that stops uncleanly (crash, kill, OOM) sooner restarts on the last known good one and reports the new one FAILED.
    #[key(default = Duration::from_secs(600), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub confirm_after: Duration,
    /// File holding a bearer token with scope `agent` issued for this agent id (`fleetset-aggregator pki issue-token --scope agent --agent-id ID`); not needed with an agent certificate (`transport.tls.cert_file`).
    pub token_file: Option<PathBuf>,
    /// Give up on one exchange (connect, send, answer) after this long.
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest answer read from the server; a larger one is refused and counted.
    #[key(default = 1 << 20, unit = "bytes", min = 1024, max = 64 << 20, limit = "control_errors")]
    pub max_response_bytes: usize,
}
