//! The `[security]` section: `allow_insecure`, `[security.tls]`, `[security.tokens]` and
//! `[security.curve]`.

pub use super::curve::CurveConfig;
pub use super::tokens::TokensConfig;
use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[security.tls]`: one TLS configuration for every gRPC listener (Ingest, Live, health,
/// reflection and the OTLP receiver) and `/metrics` `/healthz` (HTTP/1.1 over TLS). TLS is on
/// when `cert_file` and `key_file` are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM, leaf first); with `key_file`, the gRPC, OTLP and `/metrics` listeners speak TLS only.
    pub cert_file: Option<PathBuf>,
    /// The server certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; set → mTLS required (a client without a valid certificate fails the handshake).
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `1.2` or `1.3`.
    #[key(default = "1.2".into())]
    pub min_version: String,
    /// The files are re-read this often and the new certificates used for new connections when their content changed (a bad new file is counted `tls_reload_failures`; the old ones stay).
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// A TLS handshake not finished within this is dropped and counted (`tls_handshake_failures`).
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(100), limit = "tls_handshake_failures")]
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl TlsConfig {
    /// Whether TLS is configured (certificate and key both set).
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

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
