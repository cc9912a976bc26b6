//! The `[security]` section.

pub use super::tokens::TokensConfig;
use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};

/// `[security]`: authentication of consumers and senders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Scoped bearer tokens for Live Subscribe, OTLP Export and `/metrics`.
    #[key(section)]
    pub tokens: TokensConfig,
}
