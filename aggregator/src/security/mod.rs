//! Security of the aggregator's listeners: the `[security]` section ([`config`]), TLS/mTLS with
//! certificates reloaded from disk on every gRPC listener and `/metrics` ([`tls`]), the agent
//! identity in a verified client certificate ([`identity`]), scoped bearer tokens for consumers
//! and senders ([`tokens`]), ZeroMQ CURVE with an allow file of client keys ([`curve`]) checked
//! by a ZAP handler ([`zap`]) and the secure-by-default start check ([`exposure`]). See
//! docs/security.md for the threat model.

pub mod config;
pub mod curve;
pub mod exposure;
pub mod identity;
pub mod tls;
pub mod tokens;
pub mod zap;

pub use config::{SecurityConfig, TlsConfig};
