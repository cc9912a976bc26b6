//! gRPC `fleetset.v1.Live/Subscribe`: a server stream of the live windows matching the request.
//!
//! Each subscriber has the hub's ring plus a small outgoing queue. If it falls behind by more
//! than the ring, it is sent a `Lag` message with the number of windows skipped and continues
//! (`--subscriber-overflow lag`, the default), or its stream ends with RESOURCE_EXHAUSTED
//! (`disconnect`). Either way ingest and other subscribers never wait for it.

use super::{Filter, Hub, LiveWindow};
use fleetset_proto::pb::{self, live_server::Live, subscribe_response::Event};
use std::pin::Pin;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

/// What happens to a subscriber that falls behind by more than the live queue.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Send a `Lag` message with the count of skipped windows and go on.
    #[default]
    Lag,
    /// End the stream with RESOURCE_EXHAUSTED.
    Disconnect,
}

/// The `Live` service.
pub struct LiveService {
    /// Where live windows come from.
    pub hub: Hub,
    /// Overflow policy.
    pub overflow: Overflow,
    /// Ends open streams on shutdown.
    pub shutdown: CancellationToken,
}

/// The response message for one window under `filter`.
pub fn response(w: &LiveWindow, filter: &Filter) -> pb::SubscribeResponse {
    let snapshot = fleetset_proto::codec::to_pb(&filter.project(&w.snapshot));
    pb::SubscribeResponse {
        event: Some(Event::Snapshot(snapshot)),
        payload_sha256: w.header.payload_sha256.clone(),
        encoding: w.header.encoding,
        frame_payload: if filter.filters_metrics() {
            Vec::new()
        } else {
            w.payload.to_vec()
        },
    }
}

#[tonic::async_trait]
impl Live for LiveService {
    type SubscribeStream =
        Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = Filter::from_request(request.get_ref());
        let mut rx = self.hub.subscribe();
        let (tx, out) = mpsc::channel::<Result<pb::SubscribeResponse, Status>>(16);
        let (overflow, shutdown) = (self.overflow, self.shutdown.clone());
        info!(?filter, "subscriber connected");
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    n = rx.recv() => n,
                };
                let msg = match next {
                    Ok(w) if filter.matches(&w.snapshot) => Ok(response(&w, &filter)),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) if overflow == Overflow::Lag => {
                        Ok(pb::SubscribeResponse {
                            event: Some(Event::Lag(pb::Lag { skipped_windows: n })),
                            ..Default::default()
                        })
                    }
                    Err(RecvError::Lagged(n)) => Err(Status::resource_exhausted(format!(
                        "subscriber fell {n} windows behind the live queue and was disconnected"
                    ))),
                    Err(RecvError::Closed) => break,
                };
                let end = msg.is_err();
                if tx.send(msg).await.is_err() || end {
                    break;
                }
            }
            debug!("subscriber gone");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}
