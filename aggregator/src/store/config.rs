//! The `[store]` section.

use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[store]`: where and how often rows are committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Data directory: the Parquet store, its status file, the OTLP write-ahead log and salts.
    #[key(default = PathBuf::from("/var/lib/fleetset"), flag = "data-dir")]
    pub data_dir: PathBuf,
    /// Commit buffered rows at least this often (a frame is acked only once committed).
    #[key(default = Duration::from_secs(5), unit = "duration", min = Duration::from_millis(10), flag = "commit-interval")]
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// …or as soon as this many series rows are buffered.
    #[key(default = 500_000, unit = "rows", min = 1)]
    pub commit_rows: usize,
    /// …or as soon as this many windows are buffered: a backfill (`fleetset-agent replay`, thousands of frames in flight) is committed in batches of this size instead of waiting for the interval, so its acks are not held back (a live fleet stays on the interval). Below `ingest.zmq.max_in_flight_per_peer`, so one agent's frames in flight fill a batch.
    #[key(default = 512, unit = "windows", min = 1)]
    pub commit_windows: usize,
    /// Distinct agents the store accepts; a frame of a new agent beyond it is rejected
    /// (CARDINALITY_LIMIT), known agents keep working.
    #[key(
        default = 100_000,
        unit = "agents",
        min = 1,
        limit = "rejected_cardinality_limit"
    )]
    pub max_agents: usize,
    /// Distinct metric names the store accepts; a frame adding a new one beyond it is rejected
    /// (CARDINALITY_LIMIT).
    #[key(
        default = 10_000,
        unit = "metrics",
        min = 1,
        limit = "rejected_cardinality_limit"
    )]
    pub max_metric_names: usize,
    /// Distinct label keys the store accepts; a frame adding a new one beyond it is rejected
    /// (CARDINALITY_LIMIT).
    #[key(default = 1_000, unit = "labels", limit = "rejected_cardinality_limit")]
    pub max_label_keys: usize,
}

impl StoreConfig {
    /// The fleet-wide caps of this section.
    pub fn caps(&self) -> super::cardinality::Caps {
        super::cardinality::Caps {
            agents: self.max_agents,
            metric_names: self.max_metric_names,
            label_keys: self.max_label_keys,
        }
    }
}
