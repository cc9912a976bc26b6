//! Aggregator counters: frames received, committed, duplicate, rejected by reason, rows and
//! files written, commit failures. Logged periodically and at shutdown.

use fleetset_proto::RejectReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Monotonic counters of the aggregator's data flow.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames received on any transport.
    pub frames_received: AtomicU64,
    /// Payload bytes of the frames received.
    pub bytes_received: AtomicU64,
    /// Frames whose rows were committed.
    pub frames_committed: AtomicU64,
    /// Frames acked DUPLICATE.
    pub frames_duplicate: AtomicU64,
    /// Rows written to `series/`.
    pub series_rows: AtomicU64,
    /// Rows written to `windows/`.
    pub window_rows: AtomicU64,
    /// Rows written to `processes/`.
    pub process_rows: AtomicU64,
    /// Parquet files committed.
    pub files_committed: AtomicU64,
    /// Commits that failed (frames not acked; agents resend).
    pub commit_failures: AtomicU64,
    /// Acks that could not be delivered (peer gone).
    pub acks_undeliverable: AtomicU64,
    /// OTLP data points accepted into windows.
    pub otlp_points_received: AtomicU64,
    /// OTLP data points rejected (malformed, no identity, late).
    pub otlp_points_rejected: AtomicU64,
    /// Windows built from OTLP points and handed to the store.
    pub otlp_windows: AtomicU64,
    /// Torn or corrupt OTLP WAL records skipped at start.
    pub otlp_wal_torn: AtomicU64,
    /// OTLP WAL records replayed into open windows at start.
    pub otlp_wal_replayed: AtomicU64,
    /// OTLP data points refused: series name invalid or over 128 bytes with its attributes.
    pub otlp_refused_name: AtomicU64,
    /// OTLP data points refused: more than `otlp.max_attributes` attributes.
    pub otlp_refused_attributes: AtomicU64,
    /// OTLP data points refused: more than `otlp.max_buckets` buckets or quantiles.
    pub otlp_refused_buckets: AtomicU64,
    /// OTLP data points refused: past `otlp.max_request_points` series points in one request.
    pub otlp_refused_request_points: AtomicU64,
    /// OTLP data points refused: later than now + `otlp.max_skew` or older than now − `otlp.max_age`.
    pub otlp_refused_time: AtomicU64,
    /// OTLP data points refused: for a window already closed.
    pub otlp_refused_late: AtomicU64,
    /// OTLP data points refused: would open more than `otlp.max_open_windows` windows.
    pub otlp_refused_open_windows: AtomicU64,
    /// OTLP data points refused: more than `otlp.max_series` series in a window.
    pub otlp_refused_series: AtomicU64,
    /// OTLP data points refused: the window's frame would exceed `ingest.max_frame_bytes`.
    pub otlp_refused_frame_bytes: AtomicU64,
    /// OTLP Exports answered UNAVAILABLE because the WAL would exceed `otlp.max_wal_bytes`.
    pub otlp_wal_full: AtomicU64,
    /// OTLP Exports answered UNAVAILABLE because a WAL append failed (truncated back).
    pub otlp_wal_write_failures: AtomicU64,
    rejected: Mutex<Vec<(RejectReason, u64)>>,
}

impl Counters {
    /// Adds `n` to `c`.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Counts one frame rejected for `reason`.
    pub fn reject(&self, reason: RejectReason) {
        let mut r = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        match r.iter_mut().find(|(k, _)| *k == reason) {
            Some((_, n)) => *n += 1,
            None => r.push((reason, 1)),
        }
    }

    /// Frames rejected for `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        let r = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().find(|(k, _)| *k == reason).map_or(0, |(_, n)| *n)
    }

    /// All counters as `(name, value)`, rejections as `rejected_<reason>`.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.summary()
            .split(' ')
            .filter_map(|kv| {
                kv.split_once('=')
                    .and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            })
            .collect()
    }

    /// All counters as `name=value …`, rejections as `rejected_<reason>=n`.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!("frames_received={}", self.frames_received.load(Relaxed)),
            format!("bytes_received={}", self.bytes_received.load(Relaxed)),
            format!("frames_committed={}", self.frames_committed.load(Relaxed)),
            format!("frames_duplicate={}", self.frames_duplicate.load(Relaxed)),
            format!("series_rows={}", self.series_rows.load(Relaxed)),
            format!("window_rows={}", self.window_rows.load(Relaxed)),
            format!("process_rows={}", self.process_rows.load(Relaxed)),
            format!("files_committed={}", self.files_committed.load(Relaxed)),
            format!("commit_failures={}", self.commit_failures.load(Relaxed)),
            format!(
                "acks_undeliverable={}",
                self.acks_undeliverable.load(Relaxed)
            ),
            format!(
                "otlp_points_received={}",
                self.otlp_points_received.load(Relaxed)
            ),
            format!(
                "otlp_points_rejected={}",
                self.otlp_points_rejected.load(Relaxed)
            ),
            format!("otlp_windows={}", self.otlp_windows.load(Relaxed)),
            format!("otlp_wal_torn={}", self.otlp_wal_torn.load(Relaxed)),
            format!("otlp_wal_replayed={}", self.otlp_wal_replayed.load(Relaxed)),
            format!("otlp_refused_name={}", self.otlp_refused_name.load(Relaxed)),
            format!(
                "otlp_refused_attributes={}",
                self.otlp_refused_attributes.load(Relaxed)
            ),
            format!(
                "otlp_refused_buckets={}",
                self.otlp_refused_buckets.load(Relaxed)
            ),
            format!(
                "otlp_refused_request_points={}",
                self.otlp_refused_request_points.load(Relaxed)
            ),
            format!("otlp_refused_time={}", self.otlp_refused_time.load(Relaxed)),
            format!("otlp_refused_late={}", self.otlp_refused_late.load(Relaxed)),
            format!(
                "otlp_refused_open_windows={}",
                self.otlp_refused_open_windows.load(Relaxed)
            ),
            format!(
                "otlp_refused_series={}",
                self.otlp_refused_series.load(Relaxed)
            ),
            format!(
                "otlp_refused_frame_bytes={}",
                self.otlp_refused_frame_bytes.load(Relaxed)
            ),
            format!("otlp_wal_full={}", self.otlp_wal_full.load(Relaxed)),
            format!(
                "otlp_wal_write_failures={}",
                self.otlp_wal_write_failures.load(Relaxed)
            ),
        ];
        let r = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        parts.extend(r.iter().map(|(k, n)| {
            format!(
                "rejected_{}={n}",
                k.as_str_name()
                    .trim_start_matches("REJECT_REASON_")
                    .to_lowercase()
            )
        }));
        parts.join(" ")
    }
}
