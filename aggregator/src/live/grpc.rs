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
//! is in Parquet, and one handed over after it is published after the subscription started.
//! History is read and sent page by page ([`reader::window_pages`], `live.history_batch_windows`
//! windows a page), each page sent through the bounded response queue before the next is read,
//! so a subscriber costs one page of memory however long the history. Windows committed after
//! the barrier was answered (`received_at` later) are left to the live stream; those committed
//! while it was pending may be in both and are remembered (one commit's worth) so their live
//! copy is skipped.
//!
//! At most `live.max_subscribers` Subscribe streams are open at once; one more is answered
//! RESOURCE_EXHAUSTED and counted (`live_subscribers_refused`).

use super::{Filter, Hub, LiveWindow};
use crate::counters::Counters;
use crate::security::tokens::{Scope, Tokens};
use crate::store::reader::{self, StoredWindow};
use crate::store::schema;
use crate::store::StoreMsg;
use fleetset_proto::pb::{self, live_server::Live, subscribe_response::Event};
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{broadcast::error::RecvError, mpsc, Semaphore};
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

/// The settings a Subscribe stream starts with; streams already open keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberSettings {
    /// What a subscriber that falls behind gets (`live.subscriber_overflow`).
    pub overflow: Overflow,
    /// Windows per history page (`live.history_batch_windows`).
    pub history_batch_windows: usize,
}

/// The `Live` service.
pub struct LiveService {
    /// Where live windows come from.
    pub hub: Hub,
    /// What new streams start with (`live.subscriber_overflow`, `live.history_batch_windows`);
    /// a configuration reload replaces it.
    pub settings: fleetset_core::config::reload::Live<SubscriberSettings>,
    /// Ends open streams on shutdown.
    pub shutdown: CancellationToken,
    /// The store's data directory, for `since` history.
    pub data_dir: std::path::PathBuf,
    /// The store's channel, for the `since` barrier.
    pub store: mpsc::Sender<StoreMsg>,
    /// One permit per open Subscribe stream (`live.max_subscribers`).
    pub slots: Arc<Semaphore>,
    /// Shared counters (`live_subscribers_refused`).
    pub counters: Arc<Counters>,
    /// Bearer tokens: Subscribe needs scope `subscribe`; a grant's selector restricts the filter.
    pub tokens: Arc<Tokens>,
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

/// What [`send_history`] reads from: the store's directory and channel, windows per page.
type HistorySource = (std::path::PathBuf, mpsc::Sender<StoreMsg>, usize);

/// Runs a blocking store read; its error goes to the client as INTERNAL (then None).
async fn read<T: Send + 'static>(
    tx: &mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            let _ = tx
                .send(Err(Status::internal(format!("reading history: {e:#}"))))
                .await;
            None
        }
        Err(_) => None,
    }
}

/// Sends the stored windows since `since_ms`, page by page (module docs); returns the keys of
/// the windows sent that were committed while the barrier was pending (their live copies are
/// skipped), or `None` if the client left or the store could not be read (the client then
/// gets an error status).
async fn send_history(
    (data_dir, store, per_page): HistorySource,
    since_ms: i64,
    filter: &Filter,
    tx: &mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
) -> Option<HashSet<(String, i64)>> {
    // Every window handed to the store before this barrier is committed when it is answered;
    // every window handed over after it was published after our live subscription started.
    let asked_ms = fleetset_core::time::now_ms();
    let (done, committed) = tokio::sync::oneshot::channel();
    if store.send(StoreMsg::Barrier(done)).await.is_err() || committed.await.is_err() {
        let _ = tx
            .send(Err(Status::unavailable("the store is stopping")))
            .await;
        return None;
    }
    let answered_ms = fleetset_core::time::now_ms();
    let query = filter.history_query(since_ms);
    let pages = {
        let (dir, q) = (data_dir.clone(), query.clone());
        read(tx, move || reader::window_pages(&dir, &q, per_page)).await?
    };
    let mut seam = HashSet::new();
    for (from, to) in pages {
        let (dir, q) = (
            data_dir.clone(),
            reader::Query {
                from_ms: Some(from.max(since_ms)),
                to_ms: Some(to),
                ..query.clone()
            },
        );
        let page = read(tx, move || reader::windows(&dir, &q)).await?;
        for w in page {
            if w.received_at_ms > answered_ms {
                continue; // committed after the barrier: published live after we subscribed
            }
            if w.received_at_ms >= asked_ms {
                seam.insert((w.snapshot.agent_id.clone(), w.snapshot.start));
            }
            tx.send(Ok(history_response(w))).await.ok()?;
        }
    }
    Some(seam)
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
        let grant = self.tokens.check_grpc(&request, Scope::Subscribe)?;
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            Counters::add(&self.counters.live_subscribers_refused, 1);
            return Err(Status::resource_exhausted(
                "live.max_subscribers Subscribe streams are open; retry later",
            ));
        };
        let mut filter = Filter::from_request(request.get_ref());
        filter.restrict(&grant.selector);
        let since_ms = request.get_ref().since_ms;
        // Live first, so nothing published while history is read is missed.
        let mut rx = self.hub.subscribe();
        let settings = self.settings.get();
        let store = (
            self.data_dir.clone(),
            self.store.clone(),
            settings.history_batch_windows,
        );
        let (tx, out) = mpsc::channel::<Result<pb::SubscribeResponse, Status>>(16);
        let (overflow, shutdown) = (settings.overflow, self.shutdown.clone());
        info!(?filter, token = %grant.name, "subscriber connected");
        tokio::spawn(async move {
            let _slot = slot; // held while the stream is served
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
