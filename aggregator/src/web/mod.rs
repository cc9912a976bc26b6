//! The aggregator's HTTP routes beside `/metrics` and `/healthz`, on the same listener
//! (`telemetry.listen`, with its TLS and connection bounds): the WebSocket stream of live
//! windows ([`stream`], `/v1/stream`) and the web console ([`console`], `/`).

pub mod console;
pub mod stream;

use crate::control::ControlPlane;
use crate::counters::Counters;
use crate::live::grpc::SubscriberSettings;
use crate::live::Hub;
use crate::security::tokens::Tokens;
use crate::store::StoreMsg;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// What the HTTP routes read from (cheap to clone).
#[derive(Clone)]
#[allow(dead_code)] // the stream and the console are being built on it
pub struct WebState {
    /// Where live windows come from.
    pub hub: Hub,
    /// What new streams start with (`live.subscriber_overflow`, `live.history_batch_windows`).
    pub subscribers: fleetset_core::config::reload::Live<SubscriberSettings>,
    /// The store's data directory (history, console charts).
    pub data_dir: PathBuf,
    /// The store's channel, for the `since` barrier.
    pub store: mpsc::Sender<StoreMsg>,
    /// One permit per open live stream, gRPC `Subscribe` and WebSocket alike
    /// (`live.max_subscribers`).
    pub slots: Arc<Semaphore>,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Bearer tokens (the stream needs scope `subscribe`).
    pub tokens: Arc<Tokens>,
    /// The fleet inventory, when the control plane is on.
    pub control: Option<Arc<ControlPlane>>,
    /// Ends open streams on shutdown.
    pub shutdown: CancellationToken,
}

/// Every route of this module.
pub fn routes(state: WebState) -> axum::Router {
    stream::routes(state.clone()).merge(console::routes(state))
}
