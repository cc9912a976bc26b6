//! TLS on the aggregator's gRPC listeners and `/metrics`: the shared [`fleetset_core::tls`]
//! server (certificates reloaded from disk, TLS >= 1.2, optional client CA) with its events
//! counted in the aggregator's counters, and [`serve`] for a tonic router.

use super::config::TlsConfig;
use crate::counters::Counters;
use anyhow::Result;
use fleetset_core::net::BoundedListener;
use fleetset_core::tls::{OnTlsEvent, TlsEvent};
pub use fleetset_core::tls::{TlsListener, TlsServer};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Loads `[security.tls]` (None: TLS not configured), its events counted `tls_reloads`,
/// `tls_reload_failures` and `tls_handshake_failures`. Errors: see [`TlsServer::load`].
pub fn load(cfg: &TlsConfig, counters: Arc<Counters>) -> Result<Option<Arc<TlsServer>>> {
    let on_event: OnTlsEvent = Arc::new(move |e| {
        let counter = match e {
            TlsEvent::Reloaded => &counters.tls_reloads,
            TlsEvent::ReloadFailed => &counters.tls_reload_failures,
            TlsEvent::HandshakeFailed => &counters.tls_handshake_failures,
        };
        Counters::add(counter, 1);
    });
    TlsServer::load(cfg, "security.tls", on_event)
}

/// Serves `router` on `listener` until `stop`: over TLS with `tls` (whose [`TlsServer::watch`]
/// the caller runs once for all listeners), else plaintext.
pub async fn serve(
    router: tonic::transport::server::Router,
    listener: BoundedListener,
    tls: Option<Arc<TlsServer>>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    match tls {
        None => {
            router
                .serve_with_incoming_shutdown(listener.into_stream(), stop.cancelled_owned())
                .await
        }
        Some(tls) => {
            let incoming = tls.incoming(listener, stop.clone());
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        }
    }
}
