//! The `[live]` section: the live queue, slow subscribers and `[live.zmq]`.

use fleetset_core::config::Section;

impl LiveConfig {
    /// What new subscriptions (gRPC Subscribe, WebSocket) start with.
    pub fn subscriber_settings(&self) -> super::subscription::SubscriberSettings {
        super::subscription::SubscriberSettings {
            overflow: self.subscriber_overflow,
            history_batch_windows: self.history_batch_windows,
        }
    }
}
use serde::{Deserialize, Serialize};

/// `[live.zmq]`: the ZeroMQ PUB socket of live windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct LiveZmqConfig {
    /// Serve the ZeroMQ PUB socket.
    #[key(default = true)]
    pub enabled: bool,
    /// ZeroMQ PUB bind endpoint.
    #[key(default = "tcp://0.0.0.0:5556".into(), flag = "zmq-pub")]
    pub bind: String,
    /// Send high-water mark: windows queued per subscriber at most (newer ones are dropped for that subscriber), so a stalled subscriber costs at most this many messages.
    #[key(default = 1000, unit = "windows", min = 1)]
    pub hwm: i32,
}

/// `[live]`: windows streamed to subscribers as they are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Live windows buffered for subscribers; a subscriber further behind skips the oldest.
    #[key(default = 1024, unit = "windows", min = 1)]
    pub queue: usize,
    /// What a live subscriber (gRPC Subscribe, WebSocket `/v1/stream`) that falls behind gets: `lag` (a lag notice, then on) or `disconnect`.
    #[key(live)]
    pub subscriber_overflow: super::subscription::Overflow,
    /// Live streams open at once, gRPC Subscribe and WebSocket `/v1/stream` together; one more
    /// is answered RESOURCE_EXHAUSTED (gRPC) or HTTP 503 (WebSocket) and counted
    /// (`live_subscribers_refused`).
    #[key(
        default = 256,
        unit = "streams",
        min = 1,
        limit = "live_subscribers_refused"
    )]
    pub max_subscribers: usize,
    /// Windows read from the store and sent per page of a `since_ms` history (a page holds more
    /// only when more windows share one start); memory per subscriber is about one page.
    #[key(default = 1000, unit = "windows", min = 1, limit = "-", live)]
    pub history_batch_windows: usize,
    /// The ZeroMQ PUB socket.
    #[key(section)]
    pub zmq: LiveZmqConfig,
}
