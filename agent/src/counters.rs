//! Agent counters, logged periodically and at shutdown (`agent counters` log line), written to
//! `status.json` and observed as OpenTelemetry metrics (`fleetset.agent.<name with its first
//! `_` made `.`>`, see [`fleetset_core::telemetry`]): every counter declared here is all three.

use fleetset_core::window::WindowQuality;
use std::sync::atomic::{AtomicU64, Ordering};

fleetset_core::counters! {
    /// Monotonic counters of the agent's data flow; all start at 0.
    pub struct Counters {
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
        /// Acks ignored because they did not verify with this agent's HMAC key and the frame's
        /// sha256 (unsigned, wrong MAC, or for another frame): nothing deleted, the frame is resent.
        acks_unverified,
        /// Frames dropped because the spool was full (oldest first).
        frames_dropped_spool_full,
        /// Frames dropped because the disk was full: the oldest spooled frames deleted to make room
        /// for a newer frame or for `next_seq`, and held frames beyond `spool.memory_bytes`.
        frames_dropped_disk_full,
        /// Spool writes that failed (disk full or another I/O error); the frame stayed in memory.
        spool_write_failures,
        /// Frames held in memory now because they could not be written to the spool (gauge).
        spool_held_frames,
        /// Corrupt spool files moved to quarantine at start.
        spool_quarantined,
        /// Oldest files deleted from `spool/quarantine/` beyond `spool.keep_quarantined`.
        quarantine_pruned,
        /// Oldest files deleted from `spool/rejected/` beyond `spool.keep_rejected`.
        rejected_pruned,
        /// State-file writes (`next_seq`, `last_window`, `status.json`) that failed, e.g. on a full
        /// disk; retried with the next window (the status every 5 s).
        state_write_failures,
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
        /// Series (one metric of one window) whose samples arrived out of time order and were
        /// sorted before stats and downsampling (a clock stepped back; nothing is lost).
        series_reordered,
        /// Series where the MinMax-LTTB crate failed on cleaned input and evenly spaced samples were
        /// kept instead (should stay 0; non-zero means a downsampling defect to report).
        lttb_fallbacks,
        /// Samples lost to full ring buffers.
        samples_overwritten,
        /// Process scans run.
        process_scans,
        /// Configuration reloads (SIGHUP, `--watch-config`) that applied changed live keys.
        config_reloads,
        /// Configuration reloads refused because the new configuration was invalid (the running
        /// one stayed; the error is on `/healthz?verbose` and in the log).
        config_reload_failures,
        /// The configuration generation running now: 1 at start, +1 per applied reload (gauge).
        config_generation,
        /// `/metrics` `/healthz` connections closed because `telemetry.max_connections` were open (the oldest, for a new one).
        metrics_connections_refused,
        /// `/metrics` `/healthz` connections closed after `telemetry.idle_timeout` without a byte received.
        metrics_connections_idle_closed,
        /// `/metrics` TLS handshakes that failed or timed out (`security.tls.handshake_timeout`; e.g. a client without a trusted client certificate with `security.tls.client_ca_file` set).
        tls_handshake_failures,
        /// `/metrics` TLS certificate, key or client CA files reloaded after they changed on disk.
        tls_reloads,
        /// Changed `/metrics` TLS files that could not be loaded (the previous certificates stay in use).
        tls_reload_failures,
        /// OpAMP exchanges with the control plane that succeeded (`control.endpoint`).
        control_reports,
        /// OpAMP exchanges that failed (connect, TLS, timeout, HTTP status, an answer over `control.max_response_bytes` or not OpAMP, a server error); retried at the next poll.
        control_errors,
        /// Remote configurations applied (at a window boundary).
        remote_configs_applied,
        /// Remote configurations refused (invalid over the local file, a restart key, failed before): reported FAILED, the running configuration stays.
        remote_configs_failed,
        /// Starts on the last known good configuration because the agent stopped uncleanly while a remote configuration was on trial.
        remote_configs_fallback,
        /// `/metrics` requests refused 401: no `authorization: Bearer` token, or not the one whose digest is `security.metrics_token_sha256`.
        auth_unauthenticated,
    }
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one window's data-quality counts (every field of [`WindowQuality`]).
    pub fn add_quality(&self, q: &WindowQuality) {
        let WindowQuality {
            non_finite,
            repeated_ts,
            reordered,
            fallbacks,
        } = *q;
        for (counter, n) in [
            (&self.samples_non_finite, non_finite),
            (&self.samples_repeated_ts, repeated_ts),
            (&self.series_reordered, reordered),
            (&self.lttb_fallbacks, fallbacks),
        ] {
            Counters::add(counter, n as u64);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use fleetset_core::downsample::Downsampler;
    use fleetset_core::window::{build_snapshot, ProcessNaming, WindowAssembler};

    /// A window whose samples arrive out of time order (a clock step back inside the window)
    /// shows in `series_reordered`, beside the non-finite and repeated-timestamp drops.
    #[test]
    fn window_quality_reaches_the_counters() {
        let mut w = WindowAssembler::new(60_000, 60, 0);
        w.push(5_000, [("cpu_percent", 2.0), ("load_avg", f64::NAN)]);
        w.push(3_000, [("cpu_percent", 1.0), ("load_avg", 1.0)]);
        w.push(3_000, [("cpu_percent", 1.5), ("load_avg", 1.0)]);
        let naming = ProcessNaming {
            salt: String::new(),
            send_names: false,
        };
        let ds = Downsampler::default();
        let (_, q) = build_snapshot(w.close().unwrap(), &ds, &naming);
        let c = Counters::default();
        c.add_quality(&q);
        c.add_quality(&WindowQuality {
            fallbacks: 1,
            ..WindowQuality::default()
        });
        let got: std::collections::BTreeMap<_, _> = c.snapshot().into_iter().collect();
        // cpu_percent only: load_avg's one late-stamped sample was the NaN, dropped first.
        assert_eq!(got["series_reordered"], 1, "{got:?}");
        assert_eq!(got["samples_non_finite"], 1, "{got:?}");
        assert_eq!(got["samples_repeated_ts"], 2, "{got:?}");
        assert_eq!(got["lttb_fallbacks"], 1, "{got:?}");

        // Observed the way the pipeline observes every counter, they reach /metrics under the
        // names README.md documents.
        let t = fleetset_core::telemetry::Telemetry::start(
            "agent",
            "test",
            None,
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let names: Vec<String> = got.keys().map(|k| k.to_string()).collect();
        let c = std::sync::Arc::new(c);
        t.observe_counters(&names, &[], move || {
            c.snapshot()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        });
        let text = t.render_prometheus();
        for line in [
            "fleetset_agent_series_reordered_total 1",
            "fleetset_agent_lttb_fallbacks_total 1",
            "fleetset_agent_samples_non_finite_total 1",
            "fleetset_agent_samples_repeated_ts_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
