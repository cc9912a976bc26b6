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
}
