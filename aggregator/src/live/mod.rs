//! Live fan-out: every window the store accepts (verified, and not a duplicate of a stored or
//! buffered window) is published at once — before its Parquet commit — to gRPC subscribers
//! ([`grpc`]) and the ZeroMQ PUB socket ([`zmq_pub`]).
//!
//! The [`Hub`] is a `tokio::sync::broadcast` ring of `queue` windows shared by all receivers:
//! publishing never waits for a subscriber, and memory is bounded by the ring (plus each
//! subscriber's small outgoing queue). A receiver that falls more than `queue` windows behind
//! skips the oldest and learns how many it skipped.
//!
//! Delivery is at-least-once: after an aggregator crash an agent resends unacked windows, which
//! are published again; consumers de-duplicate by `(agent_id, seq)` or the payload SHA-256.

pub mod grpc;
pub mod history;
pub mod zmq_pub;

use bytes::Bytes;
use fleetset_proto::pb;
use fleetset_proto::Snapshot;
use std::sync::Arc;
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

/// The live fan-out point (cheap to clone).
#[derive(Clone, Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<LiveWindow>>,
}

impl Hub {
    /// A hub whose ring holds `queue` windows (at least 1).
    pub fn new(queue: usize) -> Hub {
        Hub {
            tx: broadcast::channel(queue.max(1)).0,
        }
    }

    /// Whether anyone listens (publishing is skipped otherwise, saving a snapshot copy).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes a window to every current subscriber; never waits.
    pub fn publish(&self, w: LiveWindow) {
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

    /// Whether the window's agent and labels match.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.agents.is_empty() || self.agents.contains(&s.agent_id))
            && self
                .labels
                .iter()
                .all(|(k, v)| s.host.labels.get(k) == Some(v))
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
        for _ in 0..10 {
            hub.publish(LiveWindow {
                snapshot: Snapshot::default(),
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
    }
}
