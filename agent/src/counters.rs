//! Agent counters, logged periodically and at shutdown (`agent counters` log line).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Monotonic counters of the agent's data flow; all start at 0.
        #[derive(Debug, Default)]
        pub struct Counters { $($(#[$doc])* pub $name: AtomicU64,)* }

        impl Counters {
            /// `(name, value)` of every counter, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Sample times collected.
    samples,
    /// Windows closed into snapshots.
    windows,
    /// Frames sent (first sends and resends).
    frames_sent,
    /// Frames sent again after a reconnect.
    frames_resent,
    /// Payload bytes of the frames sent (resends included).
    bytes_sent,
    /// Frames acked COMMITTED.
    frames_committed,
    /// Frames acked DUPLICATE (already stored).
    frames_duplicate,
    /// Frames acked REJECTED (never resent).
    frames_rejected,
    /// Frames dropped because the spool was full (oldest first).
    frames_dropped_spool_full,
    /// Corrupt spool files moved to quarantine at start.
    spool_quarantined,
    /// Windows exported to `--otlp-endpoint` (besides the main transport).
    otlp_exported,
    /// Windows that could not be exported to `--otlp-endpoint` (best-effort; not retried).
    otlp_export_failures,
    /// Frames in the spool now (gauge).
    spool_frames,
    /// Bytes in the spool now (gauge).
    spool_bytes,
    /// Frames still unacked when the agent stopped.
    frames_unacked_at_exit,
    /// Links recreated (connect failures, ack timeouts, send errors).
    reconnects,
    /// Non-finite samples dropped before stats and downsampling.
    samples_non_finite,
    /// Samples left out of LTTB input for a repeated timestamp.
    samples_repeated_ts,
    /// Samples lost to full ring buffers.
    samples_overwritten,
    /// Process scans run.
    process_scans,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as one `name=value …` string for log lines.
    pub fn summary(&self) -> String {
        self.snapshot()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
