//! One live subscription, whatever carries it (gRPC `Subscribe` in [`super::grpc`], the
//! WebSocket `/v1/stream` in `crate::web::stream`): admission (token scope `subscribe`, one
//! `live.max_subscribers` permit), the filter (the request's, restricted by the token's
//! selector), `since` history then live with no gap and no duplicate at the seam, and lag
//! accounting. The transport only turns [`Item`]s into its messages and [`End`] into its error.
//!
//! Each subscriber has the hub's ring plus a queue of [`QUEUE`] items towards its transport. If
//! it falls behind by more than the ring, it gets [`Item::Lag`] with the number of windows
//! skipped and continues (`live.subscriber_overflow = "lag"`, the default), or its stream ends
//! with [`End::Overflow`] (`disconnect`). Either way ingest and other subscribers never wait for
//! it, and it costs at most the ring (shared) plus [`QUEUE`] items plus its transport's buffer.
//!
//! With `since_ms`, the stream first replays stored windows ([`reader::windows`]) and then goes
//! live, with no gap and no duplicate at the seam: the live subscription starts first; then a
//! barrier goes through the store's channel and history is read once it is answered. Admission
//! hands a window to the store before publishing it, so a window handed over before the barrier
//! is in Parquet, and one handed over after it is published after the subscription started.
//! History is read and sent page by page ([`reader::window_pages`], `live.history_batch_windows`
//! windows a page), each page sent through the bounded queue before the next is read, so a
//! subscriber costs one page of memory however long the history. Windows committed after the
//! barrier was answered (`received_at` later) are left to the live stream; those committed while
//! it was pending may be in both and are remembered (one commit's worth) so their live copy is
//! skipped.
//!
//! At most `live.max_subscribers` subscriptions (gRPC and WebSocket together) are open at once;
//! one more is refused ([`Refused::Full`]) and counted (`live_subscribers_refused`). A
//! subscription ends — and frees its permit — when its transport drops the receiver, even if no
//! window matches its filter meanwhile.

use super::{Filter, Hub, LiveWindow};
use crate::counters::Counters;
use crate::security::tokens::{AuthError, Scope, Tokens};
use crate::store::reader::{self, StoredWindow};
use crate::store::schema;
use crate::store::StoreMsg;
use bytes::Bytes;
use fleetset_proto::pb;
use fleetset_proto::Snapshot;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast::error::RecvError, mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Items queued between a subscription and its transport (the per-subscriber queue).
pub const QUEUE: usize = 16;

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
    /// Send a lag notice with the count of skipped windows and go on.
    #[default]
    Lag,
    /// End the stream ([`End::Overflow`]: gRPC RESOURCE_EXHAUSTED, WebSocket close 1008).
    Disconnect,
}

/// The settings a subscription starts with; subscriptions already open keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberSettings {
    /// What a subscriber that falls behind gets (`live.subscriber_overflow`).
    pub overflow: Overflow,
    /// Windows per history page (`live.history_batch_windows`).
    pub history_batch_windows: usize,
}

/// One window as a subscriber gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The window, restricted to the requested metrics (history: series and stats, no
    /// processes).
    pub snapshot: Snapshot,
    /// True for windows replayed from the store (a `since` subscription).
    pub historical: bool,
    /// When the aggregator received the frame, Unix µs (0 for history).
    pub received_at_us: i64,
    /// SHA-256 of the frame payload the agent sent (32 bytes; empty if the store lost it).
    pub payload_sha256: Vec<u8>,
    /// Encoding of that payload.
    pub encoding: pb::Encoding,
    /// The payload exactly as the agent sent it; empty with a metric filter and for history.
    pub frame_payload: Bytes,
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A window matching the filter.
    Window(Box<Window>),
    /// The subscriber fell behind; this many windows were skipped.
    Lag(u64),
}

/// Why a subscription ended early (a normal end — shutdown, the hub closed — is the end of
/// the queue instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum End {
    /// `live.subscriber_overflow = "disconnect"` and the subscriber fell this far behind.
    #[error("subscriber fell {0} windows behind the live queue and was disconnected")]
    Overflow(u64),
    /// The store's history could not be read (the error text).
    #[error("reading history: {0}")]
    History(String),
    /// The store is stopping (no history barrier).
    #[error("the store is stopping")]
    StoreStopping,
    /// `export --stream`: the aggregator's stream it relays failed or ended (why).
    #[error("the aggregator's stream ended: {0}")]
    Upstream(String),
}

/// Why a subscription was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Token missing, unknown, or without scope `subscribe` (counted by [`Tokens::check`]).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `live.max_subscribers` subscriptions are open (counted `live_subscribers_refused`).
    #[error("live.max_subscribers live streams are open; retry later")]
    Full,
}

/// The queue a transport reads a subscription from; dropping it ends the subscription.
pub type Receiver = mpsc::Receiver<Result<Item, End>>;

/// Everything a subscription reads from (cheap to clone; one per aggregator).
#[derive(Clone)]
pub struct Subscriptions {
    /// Where live windows come from.
    pub hub: Hub,
    /// What new subscriptions start with (`live.subscriber_overflow`,
    /// `live.history_batch_windows`); a configuration reload replaces it.
    pub settings: fleetset_core::config::reload::Live<SubscriberSettings>,
    /// Ends open subscriptions on shutdown.
    pub shutdown: CancellationToken,
    /// The store's data directory, for `since` history.
    pub data_dir: PathBuf,
    /// The store's channel, for the `since` barrier.
    pub store: mpsc::Sender<StoreMsg>,
    /// One permit per open subscription (`live.max_subscribers`).
    pub slots: Arc<Semaphore>,
    /// Shared counters (`live_subscribers_refused`).
    pub counters: Arc<Counters>,
    /// Bearer tokens: scope `subscribe`; a grant's selector restricts the filter.
    pub tokens: Arc<Tokens>,
}

impl Subscriptions {
    /// Opens a subscription for `request`, authorized by the `authorization` header value
    /// (`Bearer <token>`); `transport` names the caller in the log. Errors: [`Refused`].
    pub fn open(
        &self,
        authorization: Option<&[u8]>,
        request: &pb::SubscribeRequest,
        transport: &'static str,
    ) -> Result<Receiver, Refused> {
        let grant = self.tokens.check(authorization, Scope::Subscribe)?;
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            Counters::add(&self.counters.live_subscribers_refused, 1);
            return Err(Refused::Full);
        };
        let mut filter = Filter::from_request(request);
        filter.restrict(&grant.selector);
        let since_ms = request.since_ms;
        // Live first, so nothing published while history is read is missed.
        let mut rx = self.hub.subscribe();
        let settings = self.settings.get();
        let history = History {
            data_dir: self.data_dir.clone(),
            store: self.store.clone(),
            per_page: settings.history_batch_windows,
        };
        let (tx, out) = mpsc::channel(QUEUE);
        let (overflow, shutdown) = (settings.overflow, self.shutdown.clone());
        info!(transport, ?filter, token = %grant.name, "subscriber connected");
        tokio::spawn(async move {
            let _slot = slot; // held while the subscription runs
            let run = async {
                let sent = if since_ms > 0 {
                    match history.send(since_ms, &filter, &tx).await {
                        Some(sent) => sent,
                        None => return,
                    }
                } else {
                    HashSet::new()
                };
                loop {
                    let msg = match rx.recv().await {
                        Ok(w)
                            if sent.contains(&(w.snapshot.agent_id.clone(), w.snapshot.start)) =>
                        {
                            continue
                        }
                        Ok(w) if filter.matches(&w.snapshot) => Ok(live_item(&w, &filter)),
                        Ok(_) => continue,
                        Err(RecvError::Lagged(n)) if overflow == Overflow::Lag => {
                            crate::telemetry::SUBSCRIBER_LAG.record(n, &[]);
                            Ok(Item::Lag(n))
                        }
                        Err(RecvError::Lagged(n)) => Err(End::Overflow(n)),
                        Err(RecvError::Closed) => break,
                    };
                    let end = msg.is_err();
                    if tx.send(msg).await.is_err() || end {
                        break;
                    }
                }
            };
            tokio::select! {
                _ = run => {}
                _ = shutdown.cancelled() => {}
                _ = tx.closed() => {}
            }
            debug!(transport, "subscriber gone");
        });
        Ok(out)
    }
}

/// A live window under `filter`.
fn live_item(w: &LiveWindow, filter: &Filter) -> Item {
    Item::Window(Box::new(Window {
        snapshot: filter.project(&w.snapshot),
        historical: false,
        received_at_us: w.received_at_us,
        payload_sha256: w.header.payload_sha256.clone(),
        encoding: pb::Encoding::try_from(w.header.encoding).unwrap_or(pb::Encoding::Msgpack),
        frame_payload: if filter.filters_metrics() {
            Bytes::new()
        } else {
            w.payload.clone()
        },
    }))
}

/// A stored window as a historical item (series and stats, no processes, no payload).
fn history_item(w: StoredWindow) -> Item {
    Item::Window(Box::new(Window {
        snapshot: w.snapshot,
        historical: true,
        received_at_us: 0,
        payload_sha256: w.payload_sha256,
        encoding: schema::encoding_of(&w.encoding).unwrap_or(pb::Encoding::Msgpack),
        frame_payload: Bytes::new(),
    }))
}

/// Where `since` history is read from.
struct History {
    data_dir: PathBuf,
    store: mpsc::Sender<StoreMsg>,
    /// Windows per page.
    per_page: usize,
}

/// Runs a blocking store read; its error goes to the subscriber as [`End::History`] (then None).
async fn read<T: Send + 'static>(
    tx: &mpsc::Sender<Result<Item, End>>,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            let _ = tx.send(Err(End::History(format!("{e:#}")))).await;
            None
        }
        Err(_) => None,
    }
}

impl History {
    /// Sends the stored windows since `since_ms`, page by page (module docs); returns the keys
    /// of the windows sent that were committed while the barrier was pending (their live copies
    /// are skipped), or `None` if the subscriber left or the store could not be read (the
    /// subscriber then gets an [`End`]).
    async fn send(
        &self,
        since_ms: i64,
        filter: &Filter,
        tx: &mpsc::Sender<Result<Item, End>>,
    ) -> Option<HashSet<(String, i64)>> {
        // Every window handed to the store before this barrier is committed when it is
        // answered; every window handed over after it was published after our live
        // subscription started.
        let asked_ms = fleetset_core::time::now_ms();
        let (done, committed) = tokio::sync::oneshot::channel();
        if self.store.send(StoreMsg::Barrier(done)).await.is_err() || committed.await.is_err() {
            let _ = tx.send(Err(End::StoreStopping)).await;
            return None;
        }
        let answered_ms = fleetset_core::time::now_ms();
        let query = filter.history_query(since_ms);
        let pages = {
            let (dir, q, n) = (self.data_dir.clone(), query.clone(), self.per_page);
            read(tx, move || reader::window_pages(&dir, &q, n)).await?
        };
        let mut seam = HashSet::new();
        for (from, to) in pages {
            let (dir, q) = (
                self.data_dir.clone(),
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
                tx.send(Ok(history_item(w))).await.ok()?;
            }
        }
        Some(seam)
    }
}

impl Item {
    /// The `fleetset.v1.SubscribeResponse` of this item (what gRPC `Subscribe` sends).
    pub fn to_pb(&self) -> pb::SubscribeResponse {
        use pb::subscribe_response::Event;
        match self {
            Item::Lag(n) => pb::SubscribeResponse {
                event: Some(Event::Lag(pb::Lag {
                    skipped_windows: *n,
                })),
                ..Default::default()
            },
            Item::Window(w) => pb::SubscribeResponse {
                event: Some(Event::Snapshot(fleetset_proto::codec::to_pb(&w.snapshot))),
                payload_sha256: w.payload_sha256.clone(),
                encoding: w.encoding as i32,
                frame_payload: w.frame_payload.to_vec(),
                historical: w.historical,
                received_at_us: w.received_at_us,
            },
        }
    }

    /// The item of a `SubscribeResponse` received from an aggregator (`export --stream`).
    /// Errors: no event, or a snapshot that does not decode (names the problem).
    pub fn from_pb(r: pb::SubscribeResponse) -> anyhow::Result<Item> {
        use pb::subscribe_response::Event;
        match r.event {
            Some(Event::Lag(l)) => Ok(Item::Lag(l.skipped_windows)),
            Some(Event::Snapshot(s)) => Ok(Item::Window(Box::new(Window {
                snapshot: fleetset_proto::codec::from_pb(s)
                    .map_err(|e| anyhow::anyhow!("a Subscribe snapshot does not decode: {e}"))?,
                historical: r.historical,
                received_at_us: r.received_at_us,
                payload_sha256: r.payload_sha256,
                encoding: pb::Encoding::try_from(r.encoding).unwrap_or(pb::Encoding::Msgpack),
                frame_payload: Bytes::from(r.frame_payload),
            }))),
            None => anyhow::bail!("a Subscribe message without an event"),
        }
    }
}

/// A `since` value: Unix ms (digits) or a time [`fleetset_core::time::parse_time`] reads
/// (RFC 3339, `YYYY-MM-DD[ HH:MM:SS]` UTC). Errors name the value.
pub fn parse_since(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .map_err(|_| format!("since {s:?} is out of range for Unix milliseconds"));
    }
    fleetset_core::time::parse_time(s).map_err(|e| format!("since: {e} (or Unix ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_unix_ms_or_rfc3339() {
        assert_eq!(parse_since("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_since("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_since("99999999999999999999").is_err());
        assert!(parse_since("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn items_round_trip_through_subscribe_responses() {
        let mut s = Snapshot {
            agent_id: "a1".into(),
            seq: 7,
            start: 60_000,
            end: 120_000,
            ..Default::default()
        };
        s.host.labels.insert("site".into(), "eu-1".into());
        let w = Item::Window(Box::new(Window {
            snapshot: s,
            historical: true,
            received_at_us: 5,
            payload_sha256: vec![1; 32],
            encoding: pb::Encoding::Protobuf,
            frame_payload: Bytes::from_static(b"x"),
        }));
        assert_eq!(Item::from_pb(w.to_pb()).unwrap(), w);
        assert_eq!(Item::from_pb(Item::Lag(3).to_pb()).unwrap(), Item::Lag(3));
        assert!(Item::from_pb(pb::SubscribeResponse::default()).is_err());
    }
}
