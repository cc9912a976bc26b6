//! The agent's delivery events (`--events FILE`): what it framed, spooled, sent, had acked and
//! dropped, and what happened to its link, as JSON Lines — one JSON object per line, appended
//! and written out (one `write(2)`, no fsync) as each event happens. Tests and operators observe
//! exactly-once delivery from this file instead of parsing log text, whose wording may change.
//!
//! Cost: one small append per event, about six per window (framed, spooled, sent, acked, plus
//! resends and link changes); nothing is buffered in memory. Without `--events` nothing is
//! written. The file is never truncated or rotated by the agent; a restarted agent appends.
//!
//! Every line has `"event"` (the kind) and `"ts_ms"` (Unix ms, when it was written), plus:
//!
//! | `event` | fields |
//! |---|---|
//! | `framed` | `seq`, `window_start` (ms), `bytes` (payload bytes) — a window sealed into a frame |
//! | `spooled` | `seq`, `window_start`, `bytes` (spool file bytes) — durable in the spool, about to be sent |
//! | `sent` | `seq`, `window_start`, `bytes` (payload), `resend` (bool: sent before on an earlier link or run) |
//! | `acked` | `seq`, `window_start`, `status` (`COMMITTED` \| `DUPLICATE` \| `REJECTED` \| `UNSPECIFIED`), `reason` (`RejectReason` name, e.g. `CHECKSUM_MISMATCH`; empty unless rejected), `detail` (the aggregator's text) |
//! | `held` | `seq`, `window_start`, `bytes`, `error` — could not be written to the spool (disk full, I/O error): kept in memory (up to `spool.memory_bytes`), sent from there, written (`spooled`) once there is room |
//! | `dropped` | `seq`, `window_start`, `reason`: `spool_full` (oldest frame dropped, window lost), `disk_full` (oldest frame deleted to make room on a full disk, or held in memory beyond `spool.memory_bytes`; window lost), `rejected` (moved to `spool/rejected/`, never resent) or `unreadable` (spool file unreadable, skipped) |
//! | `link` | `what`: `connected`, `connect_failed`, `send_failed`, `recv_failed` or `ack_timeout`; `reason` (error text, empty for `connected`); `requeued` (frames in flight put back to be resent in seq order) |
//! | `telemetry` | `addr` — the own `/metrics` endpoint is bound at `host:port` |
//!
//! A window is delivered when an `acked` line with `COMMITTED` or `DUPLICATE` carries its seq.

use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing::warn;

/// Why a frame was dropped (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The spool was full: the oldest frame was dropped, its window is lost.
    SpoolFull,
    /// The disk was full: the oldest frame was deleted to make room (or a frame held in memory
    /// exceeded `spool.memory_bytes`); its window is lost.
    DiskFull,
    /// The aggregator rejected the frame; it is kept in `spool/rejected/` and never resent.
    Rejected,
    /// The spooled file could not be read back; the frame is skipped.
    Unreadable,
}

/// What happened to the link (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkWhat {
    /// A link is up.
    Connected,
    /// Connecting failed; retried after a backoff.
    ConnectFailed,
    /// Sending a frame failed; the link is recreated.
    SendFailed,
    /// The link failed or closed while waiting for acks; it is recreated.
    RecvFailed,
    /// No ack for `transport.ack_timeout` with frames in flight; the link is recreated (Lazy Pirate).
    AckTimeout,
}

/// One event; serialized as `{"event": "<kind>", "ts_ms": …, <fields>}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A window sealed into frame `seq`; `bytes`: payload bytes.
    Framed {
        /// Frame seq.
        seq: u64,
        /// Window start, Unix ms.
        window_start: i64,
        /// Payload bytes.
        bytes: u64,
    },
    /// Frame `seq` is durable in the spool; `bytes`: spool file bytes.
    Spooled {
        /// Frame seq.
        seq: u64,
        /// Window start, Unix ms.
        window_start: i64,
        /// Spool file bytes.
        bytes: u64,
    },
    /// Frame `seq` could not be written to the spool; it is held in memory and retried.
    Held {
        /// Frame seq.
        seq: u64,
        /// Window start, Unix ms.
        window_start: i64,
        /// Frame bytes held.
        bytes: u64,
        /// The write error.
        error: String,
    },
    /// Frame `seq` handed to the link.
    Sent {
        /// Frame seq.
        seq: u64,
        /// Window start, Unix ms.
        window_start: i64,
        /// Payload bytes.
        bytes: u64,
        /// Sent before (an earlier link or an earlier run of the agent).
        resend: bool,
    },
    /// The aggregator's ack of frame `seq`.
    Acked {
        /// Frame seq.
        seq: u64,
        /// Window start, Unix ms.
        window_start: i64,
        /// `COMMITTED`, `DUPLICATE`, `REJECTED` or `UNSPECIFIED`.
        status: String,
        /// The `RejectReason` name without its prefix (e.g. `CHECKSUM_MISMATCH`); empty unless
        /// rejected.
        reason: String,
        /// The aggregator's detail text.
        detail: String,
    },
    /// Frame `seq` will never be sent (again).
    Dropped {
        /// Frame seq.
        seq: u64,
        /// Window start, Unix ms.
        window_start: i64,
        /// Why.
        reason: DropReason,
    },
    /// The link changed.
    Link {
        /// What happened.
        what: LinkWhat,
        /// The error, empty for `connected`.
        reason: String,
        /// In-flight frames put back to be resent, in seq order.
        requeued: u64,
    },
    /// The own `/metrics` endpoint is bound.
    Telemetry {
        /// `host:port`.
        addr: String,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a Event,
    ts_ms: i64,
}

/// The event writer, shared by the pipeline, spool and send loop; a no-op without a file.
#[derive(Debug, Default)]
pub struct EventLog {
    file: Option<Mutex<File>>,
}

impl EventLog {
    /// Opens `path` for appending (creating it), or a no-op writer for `None`. Errors: the file
    /// cannot be opened.
    pub fn open(path: Option<&Path>) -> Result<Arc<EventLog>> {
        let file = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening --events {}", p.display()))
            })
            .transpose()?;
        Ok(Arc::new(EventLog {
            file: file.map(Mutex::new),
        }))
    }

    /// A writer that writes nothing.
    pub fn disabled() -> Arc<EventLog> {
        Arc::new(EventLog::default())
    }

    /// Appends `event` as one line. A failed write is logged, never fatal (events are an
    /// observation aid, not part of delivery).
    pub fn emit(&self, event: Event) {
        let Some(file) = &self.file else { return };
        let line = Line {
            event: &event,
            ts_ms: fleetset_core::time::now_ms(),
        };
        let mut text = match serde_json::to_string(&line) {
            Ok(t) => t,
            Err(e) => return warn!(error = %e, "could not encode an event"),
        };
        text.push('\n');
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        // One write of the whole line, so a reader never sees two events interleaved.
        if let Err(e) = f.write_all(text.as_bytes()) {
            warn!(error = %e, "could not write to the --events file");
        }
    }

    /// An `acked` event for `ack` of the frame `(seq, window_start)`.
    pub fn acked(&self, seq: u64, window_start: i64, ack: &fleetset_proto::pb::Ack) {
        let status = fleetset_proto::pb::AckStatus::try_from(ack.status)
            .unwrap_or(fleetset_proto::pb::AckStatus::Unspecified);
        let reason = if status == fleetset_proto::pb::AckStatus::Rejected {
            ack.reason()
                .as_str_name()
                .trim_start_matches("REJECT_REASON_")
                .to_string()
        } else {
            String::new()
        };
        self.emit(Event::Acked {
            seq,
            window_start,
            status: status
                .as_str_name()
                .trim_start_matches("ACK_STATUS_")
                .to_string(),
            reason,
            detail: ack.detail.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_json_object_per_line_with_the_documented_fields() {
        let path = std::env::temp_dir().join(format!("fleetset-events-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = EventLog::open(Some(&path)).unwrap();
        log.emit(Event::Framed {
            seq: 1,
            window_start: 60_000,
            bytes: 10,
        });
        log.acked(
            1,
            60_000,
            &fleetset_proto::pb::Ack {
                seq: 1,
                status: fleetset_proto::pb::AckStatus::Rejected as i32,
                reason: fleetset_proto::pb::RejectReason::ChecksumMismatch as i32,
                detail: "bad".into(),
                ..Default::default()
            },
        );
        log.emit(Event::Link {
            what: LinkWhat::AckTimeout,
            reason: "no ack".into(),
            requeued: 2,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["event"], "framed");
        assert_eq!(lines[0]["window_start"], 60_000);
        assert!(lines[0]["ts_ms"].as_i64().unwrap() > 0);
        assert_eq!(lines[1]["event"], "acked");
        assert_eq!(lines[1]["status"], "REJECTED");
        assert_eq!(lines[1]["reason"], "CHECKSUM_MISMATCH");
        assert_eq!(lines[2]["what"], "ack_timeout");
        assert_eq!(lines[2]["requeued"], 2);
        std::fs::remove_file(path).unwrap();
    }
}
