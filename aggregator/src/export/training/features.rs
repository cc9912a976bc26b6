//! Feature columns of a training set, one row per (agent, window), from the exact window
//! statistics (not from the downsampled points, so they are exact):
//!
//! - `<metric>__{mean,min,max,std,first,last}`: the window's exact statistics;
//! - `<metric>__trend`: least-squares slope of the window's stored (MinMax-LTTB) points, in the
//!   metric's unit per minute (null with fewer than two points);
//! - `<metric>__mean_lag<k>` for k = 1..`--lags`: the mean of the same agent's window k windows
//!   earlier (null when that window is missing);
//! - `cpu_count`, `memory_total_mb`: host attributes;
//! - `time_of_day` (hour 0–23, UTC) and `day_of_week` (0 = Monday, UTC) of the window start;
//! - `minutes_since_last_window`: minutes from the end of the agent's previous window to the
//!   start of this one (0 when contiguous, null for the agent's first window).

use super::Rows;
use crate::store::reader::column;
use crate::store::schema::{self, STAT_NAMES};
use anyhow::Result;
use arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, Timelike};
use std::collections::{BTreeSet, HashMap};

/// Statistics used as features (all of [`STAT_NAMES`] but `count`).
pub const FEATURE_STATS: [&str; 6] = ["mean", "min", "max", "std", "first", "last"];

/// One feature column.
#[derive(Debug, Clone)]
pub struct Feature {
    /// Column name.
    pub name: String,
    /// Unit, e.g. `percent`, `MB`, `bytes/s`, `percent/min`.
    pub unit: String,
    /// What it is computed from.
    pub source: String,
    /// Whether the column is an integer (Int32) rather than a Float64.
    pub integer: bool,
    /// One value per row of [`Rows`] (a statistics column shares the windows batch's buffer).
    pub values: Float64Array,
}

/// The unit of a metric, from the naming convention of README "Metric names".
pub fn unit_of(metric: &str) -> &'static str {
    if metric.ends_with("_percent") {
        "percent"
    } else if metric.ends_with("_mb") || metric == "memory_mb" {
        "MB"
    } else if metric.ends_with("_bytes_per_sec") {
        "bytes/s"
    } else if metric.ends_with("_bytes") {
        "bytes"
    } else if metric.ends_with("_count") {
        "count"
    } else if metric.starts_with("load_avg") {
        "runnable tasks"
    } else if metric == "health_score" {
        "score (0-100)"
    } else {
        "unit of the source series"
    }
}

/// The metrics with statistics columns in `windows`, restricted to `selected` when not empty.
pub fn metrics_of(windows: &RecordBatch, selected: &[String]) -> Vec<String> {
    let all: BTreeSet<&str> = windows
        .schema_ref()
        .fields()
        .iter()
        .filter_map(|f| schema::parse_stat_column(f.name()).map(|(m, _)| m))
        .collect();
    all.into_iter()
        .filter(|m| selected.is_empty() || selected.iter().any(|s| s == m))
        .map(str::to_string)
        .collect()
}

/// A numeric windows column as Float64 (a Float64 column is shared, not copied; UInt64 and
/// UInt32 are cast); all null when absent or not numeric.
pub fn numbers(b: &RecordBatch, name: &str) -> Float64Array {
    if let Some(c) = column::<Float64Array>(b, name) {
        return c.clone();
    }
    b.column_by_name(name)
        .and_then(|c| arrow::compute::cast(c, &DataType::Float64).ok())
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        .unwrap_or_else(|| Float64Array::new_null(b.num_rows()))
}

/// Row `i` of `a`, `None` when null.
pub fn get(a: &Float64Array, i: usize) -> Option<f64> {
    a.is_valid(i).then(|| a.value(i))
}

/// Running sums of a least-squares fit of value on time (minutes from the window start).
#[derive(Debug, Default, Clone, Copy)]
struct Fit {
    n: f64,
    t: f64,
    x: f64,
    tt: f64,
    tx: f64,
}

impl Fit {
    fn add(&mut self, t: f64, x: f64) {
        self.n += 1.0;
        self.t += t;
        self.x += x;
        self.tt += t * t;
        self.tx += t * x;
    }

    fn slope(&self) -> Option<f64> {
        let den = self.n * self.tt - self.t * self.t;
        (self.n >= 2.0 && den.abs() > f64::EPSILON)
            .then(|| (self.n * self.tx - self.t * self.x) / den)
    }
}

/// Slopes per (row, metric), from the `series` batches of the selected windows.
#[derive(Debug)]
pub struct Trends {
    /// One fit per (row, metric), row-major: `fits[row * metrics + metric]`.
    fits: Vec<Fit>,
    metrics: usize,
}

impl Trends {
    /// Empty fits for `rows` windows × `metrics` metrics.
    pub fn new(rows: usize, metrics: usize) -> Trends {
        Trends {
            fits: vec![Fit::default(); rows * metrics],
            metrics,
        }
    }

    /// Accumulates one `series` batch; points of windows or metrics not in `rows`/`metrics`
    /// are ignored. Series rows come grouped by window and metric, so each lookup is reused
    /// while they repeat.
    pub fn add_series(&mut self, rows: &Rows, metrics: &[String], b: &RecordBatch) -> Result<()> {
        let metric_index: HashMap<&str, usize> = metrics
            .iter()
            .enumerate()
            .map(|(i, m)| (m.as_str(), i))
            .collect();
        let (Some(agent), Some(wstart), Some(metric), Some(ts), Some(value)) = (
            column::<StringArray>(b, schema::AGENT_ID),
            column::<TimestampMillisecondArray>(b, schema::WINDOW_START),
            column::<StringArray>(b, schema::METRIC),
            column::<TimestampMillisecondArray>(b, schema::TS),
            column::<Float64Array>(b, schema::VALUE),
        ) else {
            anyhow::bail!("a series file lacks agent_id, window_start, metric, ts or value");
        };
        let mut last_metric: Option<(&str, Option<usize>)> = None;
        let mut last_window: Option<(&str, i64, Option<usize>)> = None;
        for i in 0..b.num_rows() {
            let name = metric.value(i);
            let m = match last_metric {
                Some((n, m)) if n == name => m,
                _ => {
                    let m = metric_index.get(name).copied();
                    last_metric = Some((name, m));
                    m
                }
            };
            let (a, w) = (agent.value(i), wstart.value(i));
            let row = match last_window {
                Some((la, lw, row)) if lw == w && la == a => row,
                _ => {
                    let row = rows.find(a, w);
                    last_window = Some((a, w, row));
                    row
                }
            };
            let (Some(m), Some(row)) = (m, row) else {
                continue;
            };
            let t = (ts.value(i) - w) as f64 / 60_000.0;
            self.fits[row * self.metrics + m].add(t, value.value(i));
        }
        Ok(())
    }

    fn slope(&self, row: usize, metric: usize) -> Option<f64> {
        self.fits
            .get(row * self.metrics + metric)
            .and_then(Fit::slope)
    }
}

/// The feature columns of `rows` (see the module documentation), in output order.
pub fn build(rows: &Rows, metrics: &[String], trends: &Trends, lags: usize) -> Vec<Feature> {
    let b = &rows.batch;
    let n = b.num_rows();
    let mut out = Vec::new();
    for (mi, m) in metrics.iter().enumerate() {
        let unit = unit_of(m);
        for stat in FEATURE_STATS {
            debug_assert!(STAT_NAMES.contains(&stat));
            let name = format!("{m}__{stat}");
            out.push(Feature {
                values: numbers(b, &name),
                source: format!("exact {stat} of {m} over the window"),
                unit: unit.to_string(),
                integer: false,
                name,
            });
        }
        out.push(Feature {
            name: format!("{m}__trend"),
            unit: format!("{unit}/min"),
            source: format!("least-squares slope of the window's stored {m} points"),
            integer: false,
            values: (0..n).map(|i| trends.slope(i, mi)).collect(),
        });
    }
    for k in 1..=lags {
        for m in metrics {
            let mean = numbers(b, &format!("{m}__mean"));
            out.push(Feature {
                name: format!("{m}__mean_lag{k}"),
                unit: unit_of(m).to_string(),
                source: format!("{m}__mean of the agent's window {k} window(s) earlier"),
                integer: false,
                values: (0..n)
                    .map(|i| rows.back(i, k).and_then(|j| get(&mean, j)))
                    .collect(),
            });
        }
    }
    for (name, unit) in [
        (schema::CPU_COUNT, "count"),
        (schema::MEMORY_TOTAL_MB, "MB"),
    ] {
        out.push(Feature {
            name: name.into(),
            unit: unit.into(),
            source: "host attribute".into(),
            integer: false,
            values: numbers(b, name),
        });
    }
    let when = |i: usize| chrono::DateTime::from_timestamp_millis(rows.start[i]);
    out.push(Feature {
        name: "time_of_day".into(),
        unit: "hour (0-23, UTC)".into(),
        source: "window start".into(),
        integer: true,
        values: (0..n).map(|i| when(i).map(|t| t.hour() as f64)).collect(),
    });
    out.push(Feature {
        name: "day_of_week".into(),
        unit: "day (0 = Monday, UTC)".into(),
        source: "window start".into(),
        integer: true,
        values: (0..n)
            .map(|i| when(i).map(|t| t.weekday().num_days_from_monday() as f64))
            .collect(),
    });
    out.push(Feature {
        name: "minutes_since_last_window".into(),
        unit: "min".into(),
        source: "end of the agent's previous window to this window's start".into(),
        integer: false,
        values: (0..n)
            .map(|i| {
                rows.previous(i)
                    .map(|j| (rows.start[i] - rows.end[j]) as f64 / 60_000.0)
            })
            .collect(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn ts(v: Vec<i64>) -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(v))
    }

    fn strings(v: Vec<&str>) -> ArrayRef {
        Arc::new(StringArray::from(v))
    }

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, c)| Field::new(*n, c.data_type().clone(), false))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, c)| c).collect(),
        )
        .unwrap()
    }

    #[test]
    fn trends_are_least_squares_slopes_per_window_and_metric_in_units_per_minute() {
        let w = 300_000i64;
        let (rows, _) = Rows::new(batch(vec![
            (schema::AGENT_ID, strings(vec!["b", "a", "a"])),
            (schema::WINDOW_START, ts(vec![0, w, 0])),
            (schema::WINDOW_END, ts(vec![w, 2 * w, w])),
        ]))
        .unwrap();
        // Agent a, window 0: cpu rises 2 per minute (points at 0, 1, 2, 4 min), mem is flat;
        // agent a, window 1: cpu falls 0.5 per minute; agent b: one point (no slope); a point of
        // an unselected metric and one of an unknown window are ignored.
        let pts: Vec<(&str, i64, &str, i64, f64)> = vec![
            ("a", 0, "cpu", 0, 10.0),
            ("a", 0, "cpu", 60_000, 12.0),
            ("a", 0, "cpu", 120_000, 14.0),
            ("a", 0, "cpu", 240_000, 18.0),
            ("a", 0, "mem", 0, 5.0),
            ("a", 0, "mem", 240_000, 5.0),
            ("a", 0, "disk", 0, 1.0),
            ("a", w, "cpu", w, 3.0),
            ("a", w, "cpu", w + 120_000, 2.0),
            ("b", 0, "cpu", 0, 1.0),
            ("c", 0, "cpu", 0, 1.0),
        ];
        let series = batch(vec![
            (schema::AGENT_ID, strings(pts.iter().map(|p| p.0).collect())),
            (schema::WINDOW_START, ts(pts.iter().map(|p| p.1).collect())),
            (schema::METRIC, strings(pts.iter().map(|p| p.2).collect())),
            (schema::TS, ts(pts.iter().map(|p| p.3).collect())),
            (
                schema::VALUE,
                Arc::new(Float64Array::from(
                    pts.iter().map(|p| p.4).collect::<Vec<_>>(),
                )),
            ),
        ]);
        let metrics = vec!["cpu".to_string(), "mem".to_string()];
        let mut trends = Trends::new(rows.agent.len(), metrics.len());
        // Two batches, split mid-window: fits accumulate across batches.
        trends
            .add_series(&rows, &metrics, &series.slice(0, 2))
            .unwrap();
        trends
            .add_series(&rows, &metrics, &series.slice(2, pts.len() - 2))
            .unwrap();
        let (a0, a1, b0) = (
            rows.find("a", 0).unwrap(),
            rows.find("a", w).unwrap(),
            rows.find("b", 0).unwrap(),
        );
        let close = |got: Option<f64>, want: f64| {
            assert!(
                got.is_some_and(|g| (g - want).abs() < 1e-12),
                "{got:?} vs {want}"
            )
        };
        close(trends.slope(a0, 0), 2.0);
        close(trends.slope(a0, 1), 0.0);
        close(trends.slope(a1, 0), -0.5);
        assert_eq!(trends.slope(b0, 0), None, "one point has no slope");
        assert_eq!(trends.slope(a1, 1), None, "no points");
    }
}
