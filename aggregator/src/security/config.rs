//! The `[security]` section: `allow_insecure`, `[security.tls]`, `[security.tokens]` and
//! `[security.curve]`.

pub use super::curve::CurveConfig;
pub use super::tokens::TokensConfig;
use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};

/// `[security.tls]`: one TLS configuration for every gRPC listener (Ingest, Live, health,
/// reflection and the OTLP receiver) and `/metrics` `/healthz` (HTTP/1.1 over TLS), declared in
/// core because the agent's `/metrics` uses the same section.
pub use fleetset_core::tls::TlsConfig;

/// `[security]`: transport security and authentication of every listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Start even with listeners on non-loopback addresses that lack TLS and client authentication (gRPC, OTLP, `/metrics`) or CURVE (ZeroMQ); a warning naming them is logged at every start.
    #[key(default = false)]
    pub allow_insecure: bool,
    /// TLS on the gRPC listeners.
    #[key(section)]
    pub tls: TlsConfig,
    /// Scoped bearer tokens for Live Subscribe, OTLP Export and `/metrics`.
    #[key(section)]
    pub tokens: TokensConfig,
    /// ZeroMQ CURVE on the ingest ROUTER and the live PUB.
    #[key(section)]
    pub curve: CurveConfig,
}
