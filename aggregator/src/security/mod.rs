//! Security of the aggregator's listeners: the `[security]` section ([`config`]), TLS/mTLS with
//! certificates reloaded from disk on every gRPC listener and `/metrics` ([`tls`]), the agent identity in a
//! verified client certificate ([`identity`]) and the secure-by-default start check
//! ([`exposure`]).

pub mod config;
pub mod exposure;
pub mod identity;
pub mod tls;

pub use config::{SecurityConfig, TlsConfig};
