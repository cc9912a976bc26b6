//! Live fan-out: every verified window is published as soon as it is handed to the store —
//! before its Parquet commit, and without waiting for one — to gRPC subscribers ([`grpc`]) and
//! the ZeroMQ PUB socket ([`zmq_pub`]); gRPC and the WebSocket stream (`crate::web::stream`)
//! share one [`subscription`] model (admission, filters, `since` history, lag). The hub drops a window whose `(agent_id, window_start)`
//! it published recently (the last [`RECENT_KEYS`] windows), so an agent's ordinary resends do
//! not repeat in the live stream.
//!
//! The [`Hub`] is a `tokio::sync::broadcast` ring of `queue` windows shared by all receivers:
//! publishing never waits for a subscriber, and memory is bounded by the ring (plus each
//! subscriber's small outgoing queue). A receiver that falls more than `queue` windows behind
//! skips the oldest and learns how many it skipped.
//!
//! Delivery is at-least-once: after an aggregator restart (or for a resend older than the recent
//! set) a window may be published again; consumers de-duplicate by `(agent_id, seq)` or the
//! payload SHA-256.

pub mod config;
pub mod format;
pub mod grpc;
pub mod subscription;
pub mod zmq_pub;

use crate::store::reader::Query;
use bytes::Bytes;
use fleetset_proto::pb;
use fleetset_proto::Snapshot;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// One accepted window as it travels to live consumers.
#[derive(Debug)]
pub struct LiveWindow {
    /// The decoded, verified snapshot.
    pub snapshot: Snapshot,
    /// The frame header the agent sent.
    pub header: pb::FrameHeader,
    /// The frame payload exactly as the agent sent it.
    pub payload: Bytes,
    /// When the aggregator received the frame, Unix µs.
    pub received_at_us: i64,
}

/// How many recently published `(agent_id, window_start)` keys the hub remembers.
pub const RECENT_KEYS: usize = 65_536;

#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<(String, i64)>,
    keys: HashSet<(String, i64)>,
}

/// The live fan-out point (cheap to clone).
#[derive(Clone, Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<LiveWindow>>,
    recent: Arc<Mutex<Recent>>,
}

impl Hub {
    /// A hub whose ring holds `queue` windows (at least 1).
    pub fn new(queue: usize) -> Hub {
        Hub {
            tx: broadcast::channel(queue.max(1)).0,
            recent: Arc::default(),
        }
    }

    /// Whether anyone listens (publishing is skipped otherwise, saving a snapshot copy).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes a window to every current subscriber, unless it was published recently;
    /// never waits.
    pub fn publish(&self, w: LiveWindow) {
        let key = (w.snapshot.agent_id.clone(), w.snapshot.start);
        {
            let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if !r.keys.insert(key.clone()) {
                return;
            }
            r.order.push_back(key);
            if r.order.len() > RECENT_KEYS {
                if let Some(old) = r.order.pop_front() {
                    r.keys.remove(&old);
                }
            }
        }
        let _ = self.tx.send(Arc::new(w));
    }

    /// A new subscription, starting with the next published window.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveWindow>> {
        self.tx.subscribe()
    }
}

/// What a subscriber selected (see `pb::SubscribeRequest`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    agents: Vec<String>,
    labels: Vec<(String, String)>,
    metrics: Vec<String>,
}

impl Filter {
    /// The filter of a Subscribe request.
    pub fn from_request(r: &pb::SubscribeRequest) -> Filter {
        Filter {
            agents: r.agent_ids.clone(),
            labels: r
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            metrics: r.metrics.clone(),
        }
    }

    /// Restricts the filter to windows that also carry every `selector` label (a token's
    /// grant): a request asking for another value of the same label then matches nothing.
    pub fn restrict(&mut self, selector: &[(String, String)]) {
        self.labels.extend(selector.iter().cloned());
    }

    /// Whether the window's agent and labels match.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.agents.is_empty() || self.agents.contains(&s.agent_id))
            && self
                .labels
                .iter()
                .all(|(k, v)| s.host.labels.get(k) == Some(v))
    }

    /// The store query for the stored windows starting at or after `since_ms` that this filter
    /// selects (the history of a `since` subscription).
    pub fn history_query(&self, since_ms: i64) -> Query {
        Query {
            from_ms: Some(since_ms),
            to_ms: None,
            agents: self.agents.clone(),
            labels: self.labels.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Whether a metric filter is set (then snapshots are subsets).
    pub fn filters_metrics(&self) -> bool {
        !self.metrics.is_empty()
    }

    /// The snapshot restricted to the selected metrics.
    pub fn project(&self, s: &Snapshot) -> Snapshot {
        let mut out = s.clone();
        if self.filters_metrics() {
            out.data.retain(|m, _| self.metrics.contains(m));
            out.stats.retain(|m, _| self.metrics.contains(m));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_agents_labels_and_metrics() {
        let mut s = Snapshot {
            agent_id: "a1".into(),
            ..Default::default()
        };
        s.host.labels.insert("site".into(), "eu-1".into());
        s.data.insert("cpu_percent".into(), vec![]);
        s.data.insert("fd_count".into(), vec![]);
        let f = |agents: &[&str], labels: &[(&str, &str)], metrics: &[&str]| {
            Filter::from_request(&pb::SubscribeRequest {
                agent_ids: agents.iter().map(|a| a.to_string()).collect(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                metrics: metrics.iter().map(|m| m.to_string()).collect(),
                ..Default::default()
            })
        };
        assert!(f(&[], &[], &[]).matches(&s));
        assert!(f(&["a1"], &[("site", "eu-1")], &[]).matches(&s));
        assert!(!f(&["a2"], &[], &[]).matches(&s));
        assert!(!f(&[], &[("site", "us-1")], &[]).matches(&s));
        let p = f(&[], &[], &["fd_count"]).project(&s);
        assert_eq!(p.data.keys().collect::<Vec<_>>(), vec!["fd_count"]);
    }

    #[tokio::test]
    async fn a_slow_receiver_lags_without_blocking_the_publisher() {
        let hub = Hub::new(4);
        let mut slow = hub.subscribe();
        for start in 0..10 {
            hub.publish(LiveWindow {
                snapshot: Snapshot {
                    start,
                    ..Default::default()
                },
                header: Default::default(),
                payload: Bytes::new(),
                received_at_us: 0,
            });
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(6))
        ));
        assert!(slow.recv().await.is_ok());
        // A repeat of a recent window is not published again.
        let mut fresh = hub.subscribe();
        hub.publish(LiveWindow {
            snapshot: Snapshot {
                start: 3,
                ..Default::default()
            },
            header: Default::default(),
            payload: Bytes::new(),
            received_at_us: 0,
        });
        assert!(fresh.try_recv().is_err());
    }
}
