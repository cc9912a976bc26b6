//! The aggregator's HTTP routes beside `/metrics` and `/healthz`, on the same listener
//! (`telemetry.listen`, with its TLS and connection bounds): the WebSocket stream of live
//! windows ([`stream`], `/v1/stream`) and the web console ([`console`], `/`).

pub mod console;
pub mod stream;

use crate::control::ControlPlane;
use crate::counters::Counters;
use crate::live::subscription::Subscriptions;
use crate::security::tokens::Tokens;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the HTTP routes read from (cheap to clone).
#[derive(Clone)]
pub struct WebState {
    /// Live subscriptions: the hub, `since` history, the `live.max_subscribers` permits shared
    /// with gRPC `Subscribe`, tokens.
    pub live: Subscriptions,
    /// The listener's `telemetry.idle_timeout`: a connection that sends nothing for this long
    /// is closed, so the stream pings its clients more often (their pongs are traffic).
    pub idle_timeout: Duration,
    /// The store's data directory (history, console charts).
    pub data_dir: PathBuf,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Bearer tokens (the stream needs scope `subscribe`).
    pub tokens: Arc<Tokens>,
    /// The fleet inventory, when the control plane is on.
    pub control: Option<Arc<ControlPlane>>,
}

/// Every route of this module.
pub fn routes(state: WebState) -> axum::Router {
    stream::routes(state.clone()).merge(console::routes(state))
}
