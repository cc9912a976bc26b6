//! The snapshot contract: what a frame must satisfy before anything of it is stored, echoed or
//! logged (README "Snapshot contract"). [`Contract::check_key`] checks a frame header's key
//! fields (agent id, seq, window) before the payload is even hashed; [`Contract::check`] the
//! whole decoded [`Snapshot`]. Every limit that is not a fixed shape is a field of [`Contract`]
//! (the aggregator's `[ingest]` keys).
//!
//! Names, and why they cannot collide in the store's `windows` columns (fixed columns,
//! `label_<key>`, `<metric>__<stat>`):
//! - agent id: 1–[`MAX_AGENT_ID_LEN`] bytes of `[A-Za-z0-9._:-]`, not starting with `.`
//!   (fits `<hostname>-<8 hex>` and `otel-<host>-<8 hex>`);
//! - metric name: 1–128 bytes of `[a-z0-9_.]` starting with a letter
//!   ([`crate::model::is_valid_metric_name`]);
//! - label key: 1–[`MAX_LABEL_KEY_LEN`] bytes of `[a-z0-9_]` starting with a letter and without
//!   `__` ([`is_valid_label_key`]). So a `label_<key>` column never contains `__`, while every
//!   statistics column does, and no fixed column has either shape: no name of one kind can
//!   produce a column of another.
//!
//! Unchecked strings are only ever shown through [`shown`] (escaped, at most
//! [`SHOWN_CHARS`] characters).

use crate::model::{is_valid_metric_name, Snapshot, WindowStats};

/// Longest accepted agent id, bytes.
pub const MAX_AGENT_ID_LEN: usize = 128;
/// Longest accepted label key, bytes.
pub const MAX_LABEL_KEY_LEN: usize = 64;
/// Longest `name_hash` of a process record, bytes.
pub const MAX_NAME_HASH_LEN: usize = 64;
/// Largest accepted `seq`: seqs are 1 ≤ seq < 2^63, so they fit an i64 everywhere.
pub const MAX_SEQ: u64 = i64::MAX as u64;
/// Latest accepted window end, Unix ms: 9999-12-31T23:59:59.999Z (what every export can print).
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Largest accepted statistics `count`: 2^53 (exact as f64, fits i64 and SQLite INTEGER).
pub const MAX_STATS_COUNT: u64 = 1 << 53;
/// Characters of an unchecked string that errors, acks and logs show (see [`shown`]).
pub const SHOWN_CHARS: usize = 64;

/// The limits of the contract. Window starts must lie in `[now − max_age, now + max_skew]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// Longest window (`end − start`), ms; the shortest is 1 ms.
    pub max_window_ms: i64,
    /// How far past the receiver's clock a window may start, ms.
    pub max_skew_ms: i64,
    /// How far before the receiver's clock a window may start, ms; `None`: no bound (replays of
    /// old data), only the Unix epoch.
    pub max_age_ms: Option<i64>,
    /// Metrics (`data` entries) per snapshot.
    pub max_metrics: usize,
    /// Operator labels per snapshot.
    pub max_labels: usize,
    /// Process records per snapshot.
    pub max_processes: usize,
    /// Longest label value, bytes.
    pub max_label_value_bytes: usize,
    /// Longest host string (hostname, os, kernel, agent version) and process name, bytes.
    pub max_string_bytes: usize,
}

impl Default for Contract {
    /// 1 day windows, 10 min skew, no age bound, 1000 metrics, 32 labels, 100 processes,
    /// 256-byte label values and strings.
    fn default() -> Self {
        Contract {
            max_window_ms: 86_400_000,
            max_skew_ms: 600_000,
            max_age_ms: None,
            max_metrics: 1000,
            max_labels: 32,
            max_processes: 100,
            max_label_value_bytes: 256,
            max_string_bytes: 256,
        }
    }
}

/// A broken contract: the first violation found, its text bounded (see [`shown`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A shape, name, size or value is wrong.
    Invalid(String),
    /// The window starts too far from the receiver's clock (`max_skew`, `max_age`).
    OutOfRange(String),
}

/// `s` as errors, acks and logs may show an unchecked string: Rust-escaped (no control
/// characters), cut to [`SHOWN_CHARS`] characters with `…(N bytes)` when longer.
pub fn shown(s: &str) -> String {
    cut(s, SHOWN_CHARS)
}

/// Longest error text an ack or log line carries, characters (see [`detail`]).
pub const MAX_DETAIL_CHARS: usize = 512;

/// An error text as acks and logs carry it: escaped and cut like [`shown`], at
/// [`MAX_DETAIL_CHARS`] (decoder errors may quote the input).
pub fn detail(s: &str) -> String {
    cut(s, MAX_DETAIL_CHARS)
}

fn cut(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).flat_map(char::escape_debug).collect();
    if s.chars().nth(n).is_some() {
        out.push_str(&format!("…({} bytes)", s.len()));
    }
    out
}

/// Whether `id` is a valid agent id (see the module docs).
pub fn is_valid_agent_id(id: &str) -> bool {
    (1..=MAX_AGENT_ID_LEN).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Whether `key` is a valid label key: 1–64 bytes of `[a-z0-9_]`, starting with a letter, no
/// `__` (see the module docs).
pub fn is_valid_label_key(key: &str) -> bool {
    key.len() <= MAX_LABEL_KEY_LEN
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && !key.contains("__")
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn invalid(msg: String) -> Result<(), Violation> {
    Err(Violation::Invalid(msg))
}

/// A string of at most `max` bytes without control characters.
fn check_text(what: &str, s: &str, max: usize) -> Result<(), Violation> {
    if s.len() > max {
        return invalid(format!("{what} is {} bytes, limit {max}", s.len()));
    }
    if s.chars().any(char::is_control) {
        return invalid(format!("{what} {} holds a control character", shown(s)));
    }
    Ok(())
}

/// Whether `a ≤ b` up to rounding (relative 1e-9): Welford's mean may sit an ulp outside.
fn le(a: f64, b: f64) -> bool {
    a <= b || (a - b) <= 1e-9 * a.abs().max(b.abs())
}

fn check_stats(metric: &str, s: &WindowStats) -> Result<(), Violation> {
    if s.count == 0 || s.count > MAX_STATS_COUNT {
        return invalid(format!("{metric}: stats count {} not in 1..=2^53", s.count));
    }
    let values = [s.min, s.max, s.mean, s.first, s.last, s.std.unwrap_or(0.0)];
    if !values.iter().all(|v| v.is_finite()) {
        return invalid(format!("{metric}: non-finite stats"));
    }
    if !(s.min <= s.max
        && le(s.min, s.mean)
        && le(s.mean, s.max)
        && (s.min..=s.max).contains(&s.first)
        && (s.min..=s.max).contains(&s.last))
    {
        return invalid(format!(
            "{metric}: stats inconsistent (need min ≤ mean ≤ max, first and last in [min, max])"
        ));
    }
    if s.std.is_some_and(|v| v < 0.0) {
        return invalid(format!("{metric}: negative std"));
    }
    Ok(())
}

impl Contract {
    /// Checks a frame's key fields against the receiver's clock `now_ms` (Unix ms): agent id,
    /// `1 ≤ seq < 2^63`, `0 ≤ start < end ≤` [`MAX_TIME_MS`], `end − start` at most
    /// `max_window_ms`, `start` within `[now − max_age, now + max_skew]`.
    pub fn check_key(
        &self,
        agent_id: &str,
        seq: u64,
        start: i64,
        end: i64,
        now_ms: i64,
    ) -> Result<(), Violation> {
        if !is_valid_agent_id(agent_id) {
            return invalid(format!(
                "agent_id {} ({} bytes) is not 1..={MAX_AGENT_ID_LEN} bytes of [A-Za-z0-9._:-] \
                 not starting with '.'",
                shown(agent_id),
                agent_id.len()
            ));
        }
        if !(1..=MAX_SEQ).contains(&seq) {
            return invalid(format!("seq {seq} not in 1..2^63"));
        }
        if !(0 <= start && start < end && end <= MAX_TIME_MS) {
            return invalid(format!(
                "window [{start}, {end}) is not 0 ≤ start < end ≤ {MAX_TIME_MS}"
            ));
        }
        // Both within [0, MAX_TIME_MS]: no overflow.
        if end - start > self.max_window_ms {
            return invalid(format!(
                "window of {} ms is longer than {} ms",
                end - start,
                self.max_window_ms
            ));
        }
        if start > now_ms.saturating_add(self.max_skew_ms) {
            return Err(Violation::OutOfRange(format!(
                "window start {start} is more than {} ms after now ({now_ms})",
                self.max_skew_ms
            )));
        }
        if let Some(age) = self.max_age_ms {
            if start < now_ms.saturating_sub(age) {
                return Err(Violation::OutOfRange(format!(
                    "window start {start} is more than {age} ms before now ({now_ms})"
                )));
            }
        }
        Ok(())
    }

    /// Checks the whole snapshot: [`Contract::check_key`], then caps, names, string sizes,
    /// points (inside `[start, end)`, strictly increasing, finite) and stats (every key in
    /// `data`, count in 1..=2^53, finite, min ≤ mean ≤ max, first and last in [min, max],
    /// std ≥ 0 or none).
    pub fn check(&self, s: &Snapshot, now_ms: i64) -> Result<(), Violation> {
        self.check_key(&s.agent_id, s.seq, s.start, s.end, now_ms)?;
        let caps = [
            ("metrics", s.data.len(), self.max_metrics),
            ("labels", s.host.labels.len(), self.max_labels),
            ("processes", s.processes.len(), self.max_processes),
        ];
        for (what, n, max) in caps {
            if n > max {
                return invalid(format!("{n} {what}, limit {max}"));
            }
        }
        let h = &s.host;
        for (what, v) in [
            ("hostname", &h.hostname),
            ("os", &h.os),
            ("kernel", &h.kernel),
            ("agent_version", &h.agent_version),
        ] {
            check_text(what, v, self.max_string_bytes)?;
        }
        for (k, v) in &h.labels {
            if !is_valid_label_key(k) {
                return invalid(format!(
                    "label key {} is not 1..={MAX_LABEL_KEY_LEN} bytes of [a-z0-9_] starting \
                     with a letter, without \"__\"",
                    shown(k)
                ));
            }
            check_text(&format!("label {k}"), v, self.max_label_value_bytes)?;
        }
        for p in &s.processes {
            if p.name_hash.len() > MAX_NAME_HASH_LEN || p.name.len() > self.max_string_bytes {
                return invalid(format!(
                    "process {}: name_hash or name longer than {MAX_NAME_HASH_LEN} / {} bytes",
                    p.pid, self.max_string_bytes
                ));
            }
        }
        for (metric, points) in &s.data {
            if !is_valid_metric_name(metric) {
                return invalid(format!(
                    "metric name {} is not [a-z][a-z0-9_.]* of at most 128 bytes",
                    shown(metric)
                ));
            }
            let mut prev: Option<i64> = None;
            for p in points {
                if p.ts_ms < s.start || p.ts_ms >= s.end {
                    return invalid(format!(
                        "{metric}: point at {} outside window [{}, {})",
                        p.ts_ms, s.start, s.end
                    ));
                }
                if prev.is_some_and(|q| p.ts_ms <= q) {
                    return invalid(format!(
                        "{metric}: timestamps not strictly increasing at {}",
                        p.ts_ms
                    ));
                }
                if !p.value.is_finite() {
                    return invalid(format!("{metric}: non-finite value at {}", p.ts_ms));
                }
                prev = Some(p.ts_ms);
            }
        }
        for (metric, st) in &s.stats {
            if !s.data.contains_key(metric) {
                return invalid(format!("stats for {} without a data entry", shown(metric)));
            }
            check_stats(metric, st)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
