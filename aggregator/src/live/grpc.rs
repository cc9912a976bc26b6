//! gRPC `fleetset.v1.Live/Subscribe`: a server stream of the live windows matching the request.
//!
//! Each subscriber has the hub's ring plus a small outgoing queue. If it falls behind by more
//! than the ring, it is sent a `Lag` message with the number of windows skipped and continues
//! (`live.subscriber_overflow = "lag"`, the default), or its stream ends with RESOURCE_EXHAUSTED
//! (`disconnect`). Either way ingest and other subscribers never wait for it.
//!
//! With `since_ms`, the stream first replays stored windows ([`crate::store::reader::windows`]) and then goes
//! live, with no gap and no duplicate at the seam: the live subscription starts first; then a
//! barrier goes through the store's channel and history is read once it is answered. Admission
//! hands a window to the store before publishing it, so a window handed over before the barrier
//! is in Parquet, and one handed over after it is published after the subscription started;
//! live windows already sent as history are skipped.

use super::{Filter, Hub, LiveWindow};
use crate::store::reader::{self, StoredWindow};
use crate::store::schema;
use crate::store::StoreMsg;
use fleetset_proto::pb::{self, live_server::Live, subscribe_response::Event};
use std::collections::HashSet;
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
    /// The store's data directory, for `since` history.
    pub data_dir: std::path::PathBuf,
    /// The store's channel, for the `since` barrier.
    pub store: mpsc::Sender<StoreMsg>,
}

/// A stored window as a `historical` response (series and stats, no processes, no payload).
fn history_response(w: StoredWindow) -> pb::SubscribeResponse {
    let encoding = schema::encoding_of(&w.encoding).unwrap_or(pb::Encoding::Msgpack);
    pb::SubscribeResponse {
        event: Some(Event::Snapshot(fleetset_proto::codec::to_pb(&w.snapshot))),
        payload_sha256: w.payload_sha256,
        encoding: encoding as i32,
        frame_payload: Vec::new(),
        historical: true,
        received_at_us: 0,
    }
}

/// Sends the stored windows since `since_ms`; returns the keys sent, or `None` if the client left
/// or the store could not be read (the client then gets an error status).
async fn send_history(
    (data_dir, store): (std::path::PathBuf, mpsc::Sender<StoreMsg>),
    since_ms: i64,
    filter: &Filter,
    tx: &mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
) -> Option<HashSet<(String, i64)>> {
    // Every window handed to the store before this barrier is committed when it is answered;
    // every window handed over after it was published after our live subscription started.
    let (done, committed) = tokio::sync::oneshot::channel();
    if store.send(StoreMsg::Barrier(done)).await.is_err() || committed.await.is_err() {
        let _ = tx
            .send(Err(Status::unavailable("the store is stopping")))
            .await;
        return None;
    }
    let query = filter.history_query(since_ms);
    let history =
        match tokio::task::spawn_blocking(move || reader::windows(&data_dir, &query)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let _ = tx
                    .send(Err(Status::internal(format!("reading history: {e:#}"))))
                    .await;
                return None;
            }
            Err(_) => return None,
        };
    let mut sent = HashSet::with_capacity(history.len());
    for w in history {
        sent.insert((w.snapshot.agent_id.clone(), w.snapshot.start));
        tx.send(Ok(history_response(w))).await.ok()?;
    }
    Some(sent)
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
        historical: false,
        received_at_us: w.received_at_us,
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
        let since_ms = request.get_ref().since_ms;
        // Live first, so nothing published while history is read is missed.
        let mut rx = self.hub.subscribe();
        let store = (self.data_dir.clone(), self.store.clone());
        let (tx, out) = mpsc::channel::<Result<pb::SubscribeResponse, Status>>(16);
        let (overflow, shutdown) = (self.overflow, self.shutdown.clone());
        info!(?filter, "subscriber connected");
        tokio::spawn(async move {
            let sent = if since_ms > 0 {
                match send_history(store, since_ms, &filter, &tx).await {
                    Some(sent) => sent,
                    None => return,
                }
            } else {
                HashSet::new()
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    n = rx.recv() => n,
                };
                let msg = match next {
                    Ok(w) if sent.contains(&(w.snapshot.agent_id.clone(), w.snapshot.start)) => {
                        continue
                    }
                    Ok(w) if filter.matches(&w.snapshot) => Ok(response(&w, &filter)),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) if overflow == Overflow::Lag => {
                        crate::telemetry::SUBSCRIBER_LAG.record(n, &[]);
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
