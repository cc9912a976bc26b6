//! The snapshot model: one agent, one window.
//!
//! Its MessagePack form (named fields, see [`crate::codec`]) keeps seed 004's `MetricsSnapshot`
//! layout — `agent_id`, `start`, `end` (Unix ms) and `data{metric: [[ts_ms, value], …]}` with
//! both elements of a pair encoded as f64 — and adds `seq`, `host`, `sample_interval_ms`,
//! `stats` and `processes`. Seed-004 consumers that ignore unknown fields keep working.
//!
//! Metric naming convention: lower snake case, ending in the unit (`_percent`, `_mb`,
//! `_bytes_per_sec`, `_count`) or a plain dimensionless name (`load_avg_1`, `health_score`).

use crate::contract::{Contract, Violation};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Largest timestamp (ms) that is exactly representable as f64 (2^53).
const MAX_EXACT_TS_MS: f64 = 9_007_199_254_740_992.0;

/// One downsampled point: timestamp (Unix ms, UTC) and value.
///
/// Serialized as the pair `[ts_ms as f64, value]` (seed 004's `[f64; 2]`); deserializing a
/// timestamp that is not an integer number of milliseconds is an error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix milliseconds, UTC.
    pub ts_ms: i64,
    /// The sample value, in the metric's unit.
    pub value: f64,
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.ts_ms as f64, self.value].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let [ts, value] = <[f64; 2]>::deserialize(d)?;
        if !(ts.is_finite() && ts.fract() == 0.0 && ts.abs() <= MAX_EXACT_TS_MS) {
            return Err(serde::de::Error::custom(format!(
                "point timestamp {ts} is not an integer number of milliseconds"
            )));
        }
        Ok(Point {
            ts_ms: ts as i64,
            value,
        })
    }
}

/// Exact statistics of one metric over a window's raw samples, computed before downsampling.
///
/// `std` is the sample standard deviation (ddof = 1, like pandas' `Series.std`); it is `None`
/// when `count < 2` (undefined; pandas gives NaN). All values are in the metric's unit.
///
/// On the wire (unchanged from earlier versions, so older peers interoperate): MessagePack
/// carries `std` as a float64, 0 when `count < 2`; Protobuf's `optional double std` is absent
/// then (which proto3 also did for the 0 older encoders wrote). Decoding either way gives
/// `None` when `count < 2` whatever the wire holds, and `Some` otherwise (an absent Protobuf
/// field or a MessagePack nil then reads as 0: older encoders omitted a zero). See
/// [`wire_std`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(from = "WireStats", into = "WireStats")]
pub struct WindowStats {
    /// Number of finite raw samples in the window.
    pub count: u64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); `None` when `count < 2`.
    pub std: Option<f64>,
    /// Value of the earliest sample.
    pub first: f64,
    /// Value of the latest sample.
    pub last: f64,
}

impl WindowStats {
    /// Exact statistics of `values` in time order; `None` when `values` is empty.
    ///
    /// Mean and variance use Welford's online algorithm (Welford 1962, Knuth TAOCP vol. 2
    /// §4.2.2), which is numerically stable for large offsets such as memory in MB.
    pub fn from_values(values: &[f64]) -> Option<WindowStats> {
        let (&first, &last) = (values.first()?, values.last()?);
        let (mut mean, mut m2) = (0.0f64, 0.0f64);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for (i, &v) in values.iter().enumerate() {
            let delta = v - mean;
            mean += delta / (i + 1) as f64;
            m2 += delta * (v - mean);
            min = min.min(v);
            max = max.max(v);
        }
        let n = values.len();
        let std = (n >= 2).then(|| (m2 / (n - 1) as f64).sqrt());
        Some(WindowStats {
            count: n as u64,
            min,
            max,
            mean,
            std,
            first,
            last,
        })
    }
}

/// The standard deviation a decoder reports for a window of `count` samples whose wire form
/// held `std` (`None`: absent or nil): `None` when `count < 2`, else the value, an absent one
/// being 0 (proto3 encoders before `optional` omitted zeros).
pub fn wire_std(count: u64, std: Option<f64>) -> Option<f64> {
    (count >= 2).then(|| std.unwrap_or(0.0))
}

/// The MessagePack (serde) form of [`WindowStats`]: every field a number, as it always was.
#[derive(Serialize, Deserialize)]
struct WireStats {
    count: u64,
    min: f64,
    max: f64,
    mean: f64,
    /// 0 when undefined; a nil is accepted on input.
    #[serde(default)]
    std: Option<f64>,
    first: f64,
    last: f64,
}

impl From<WireStats> for WindowStats {
    fn from(w: WireStats) -> Self {
        WindowStats {
            count: w.count,
            min: w.min,
            max: w.max,
            mean: w.mean,
            std: wire_std(w.count, w.std),
            first: w.first,
            last: w.last,
        }
    }
}

impl From<WindowStats> for WireStats {
    fn from(s: WindowStats) -> Self {
        WireStats {
            count: s.count,
            min: s.min,
            max: s.max,
            mean: s.mean,
            std: Some(s.std.unwrap_or(0.0)),
            first: s.first,
            last: s.last,
        }
    }
}

/// One process of a window's top-N (seed 000's `ProcessRecord`), aggregated over the process
/// scans inside the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProcessRecord {
    /// Process id on the host.
    pub pid: u32,
    /// First 16 hex chars of SHA-256(salt || name); the salt never leaves the host.
    pub name_hash: String,
    /// Largest resident set size seen in the window, bytes.
    pub rss_bytes: u64,
    /// Largest virtual memory size seen in the window, bytes.
    pub virtual_memory_bytes: u64,
    /// Mean CPU usage over the window's scans, percent of one core.
    pub cpu_percent: f64,
    /// Bytes read from storage during the window.
    pub disk_read_bytes: u64,
    /// Bytes written to storage during the window.
    pub disk_write_bytes: u64,
    /// Clear process name: empty unless the agent is configured to send names.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Host attributes carried by every snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostInfo {
    /// Host name as the OS reports it (anonymized at export time, not here).
    pub hostname: String,
    /// OS name and version, e.g. "Debian GNU/Linux 12".
    pub os: String,
    /// Kernel version, e.g. "6.1.0-18-amd64".
    pub kernel: String,
    /// Logical CPU count.
    pub cpu_count: u32,
    /// Total physical memory, MB (2^20 bytes).
    pub memory_total_mb: u64,
    /// fleetset-agent version that produced the snapshot.
    pub agent_version: String,
    /// Operator-set labels such as `site=eu-1`.
    pub labels: BTreeMap<String, String>,
}

/// One agent, one window: downsampled series, exact stats, top-N processes, host attributes.
///
/// Invariants checked by [`Snapshot::validate`]: the snapshot contract of [`crate::contract`]
/// (names, `seq`, window, caps, points, stats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Stable per host.
    pub agent_id: String,
    /// Window start, Unix ms UTC (inclusive), a multiple of the window length.
    pub start: i64,
    /// Window end, Unix ms UTC (exclusive).
    pub end: i64,
    /// Downsampled series per metric: `[[ts_ms, value], …]` (seed 004 layout).
    pub data: BTreeMap<String, Vec<Point>>,
    /// Per agent, strictly increasing from 1.
    #[serde(default)]
    pub seq: u64,
    /// Host attributes.
    #[serde(default)]
    pub host: HostInfo,
    /// Raw sample interval, ms.
    #[serde(default)]
    pub sample_interval_ms: u64,
    /// Exact statistics per metric on the raw samples.
    #[serde(default)]
    pub stats: BTreeMap<String, WindowStats>,
    /// Top-N processes of the window.
    #[serde(default)]
    pub processes: Vec<ProcessRecord>,
}

pub use crate::contract::MAX_AGENT_ID_LEN;
/// Longest accepted metric name, bytes.
pub const MAX_METRIC_NAME_LEN: usize = 128;

/// Whether `name` follows the metric naming convention: 1–128 chars of `[a-z0-9_.]`,
/// starting with a letter.
pub fn is_valid_metric_name(name: &str) -> bool {
    name.len() <= MAX_METRIC_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

impl Snapshot {
    /// Checks the snapshot against `contract` at the receiver's clock `now_ms` (Unix ms): see
    /// [`Contract::check`]. The error names the first violation, showing unchecked strings
    /// only bounded and escaped.
    pub fn validate(&self, contract: &Contract, now_ms: i64) -> Result<(), Violation> {
        contract.check(self, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_textbook_values() {
        let s = WindowStats::from_values(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!((s.count, s.min, s.max, s.mean), (8, 2.0, 9.0, 5.0));
        assert!((s.std.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!((s.first, s.last), (2.0, 9.0));
        assert_eq!(WindowStats::from_values(&[3.5]).unwrap().std, None);
        assert_eq!(
            WindowStats::from_values(&[3.5, 3.5]).unwrap().std,
            Some(0.0)
        );
        assert!(WindowStats::from_values(&[]).is_none());
    }

    #[test]
    fn validate_names_the_problem() {
        let mut s = Snapshot {
            agent_id: "a".into(),
            seq: 1,
            start: 0,
            end: 1000,
            ..Default::default()
        };
        let err = |s: &Snapshot| match s.validate(&Contract::default(), 0).unwrap_err() {
            Violation::Invalid(e) | Violation::OutOfRange(e) => e,
        };
        s.data.insert(
            "cpu_percent".into(),
            vec![Point {
                ts_ms: 1000,
                value: 1.0,
            }],
        );
        assert!(err(&s).contains("outside window"));
        s.data.insert(
            "cpu_percent".into(),
            vec![Point {
                ts_ms: 5,
                value: f64::NAN,
            }],
        );
        assert!(err(&s).contains("non-finite"));
        s.data.clear();
        s.data.insert("CPU".into(), vec![]);
        assert!(err(&s).contains("metric name"));
    }
}
