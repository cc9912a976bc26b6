//! What the processes report about themselves, read back for assertions: an agent's delivery
//! events (`--events`, JSON Lines; schema in `fleetset_agent::events` and the README's
//! "Counters and status") and an aggregator's counters (its `status.json`). Tests decide
//! delivery and behaviour from these, never from log text.

use crate::{wait_for, Proc};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One line of an agent's `--events` file; fields a kind does not have are empty / `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// `framed`, `spooled`, `held`, `sent`, `acked`, `dropped`, `link` or `telemetry`.
    pub event: String,
    /// Frame seq (frame events).
    pub seq: Option<u64>,
    /// Window start, Unix ms (frame events).
    pub window_start: Option<i64>,
    /// `acked`: `COMMITTED`, `DUPLICATE` or `REJECTED`.
    pub status: String,
    /// `acked`: the reject reason (e.g. `CHECKSUM_MISMATCH`); `dropped`: `spool_full`,
    /// `disk_full`, `rejected`, `unreadable`; `link`: the error text.
    pub reason: String,
    /// `link`: `connected`, `connect_failed`, `send_failed`, `recv_failed`, `ack_timeout`.
    pub what: String,
    /// `sent`: whether it is a resend.
    pub resend: bool,
    /// `telemetry`: the agent's `/metrics` address, `host:port`.
    pub addr: String,
}

/// A frame acked COMMITTED or DUPLICATE (delivered).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acked {
    /// Frame seq.
    pub seq: u64,
    /// Window start, Unix ms.
    pub window_start: i64,
}

/// The events file of the agent whose stderr log is `log` (`dir/<id>.log` →
/// `dir/<id>.events.jsonl`), as the harness's agent launcher passes it with `--events`.
pub fn events_path(log: &Path) -> PathBuf {
    log.with_extension("events.jsonl")
}

/// The events in `path`, in order; none if it does not exist yet. A last line without its
/// newline (being written right now) is left for the next read; any other line that is not an
/// event object panics, naming it.
pub fn read_events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad event line {line:?}: {e}", path.display()));
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Event {
                event: s("event"),
                seq: v["seq"].as_u64(),
                window_start: v["window_start"].as_i64(),
                status: s("status"),
                reason: s("reason"),
                what: s("what"),
                resend: v["resend"].as_bool().unwrap_or(false),
                addr: s("addr"),
            }
        })
        .collect()
}

/// The frames acked COMMITTED or DUPLICATE, in event order.
pub fn acked(events: &[Event]) -> Vec<Acked> {
    events
        .iter()
        .filter(|e| e.event == "acked" && (e.status == "COMMITTED" || e.status == "DUPLICATE"))
        .filter_map(|e| {
            Some(Acked {
                seq: e.seq?,
                window_start: e.window_start?,
            })
        })
        .collect()
}

/// The events of kind `event` (and, for `link`, `what`), e.g. `of_kind(&ev, "link", "ack_timeout")`;
/// `what` empty matches any.
pub fn of_kind<'a>(events: &'a [Event], event: &str, what: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.event == event && (what.is_empty() || e.what == what))
        .collect()
}

impl Proc {
    /// This agent's delivery events so far (empty for a process that writes none).
    pub fn events(&self) -> Vec<Event> {
        read_events(&events_path(&self.log))
    }

    /// This agent's delivered frames so far ([`acked`] of [`Proc::events`]).
    pub fn acked(&self) -> Vec<Acked> {
        acked(&self.events())
    }

    /// Waits up to `timeout` until at least `n` frames are delivered; returns them.
    pub fn wait_acked(&self, n: usize, timeout: Duration) -> Result<Vec<Acked>> {
        wait_for(&format!("{n} acked frames"), timeout, || {
            let a = self.acked();
            (a.len() >= n).then_some(a)
        })
    }
}

/// The counters of the aggregator using `data_dir`, from its `status.json` (written every 5 s
/// and at exit); `None` before the first write.
pub fn aggregator_counters(data_dir: &Path) -> Option<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("status.json")).ok()?).ok()?;
    Some(v["counters"].clone())
}
