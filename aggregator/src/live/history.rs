//! History for `since` subscriptions: snapshots rebuilt from the Parquet store — the `windows`
//! table (header fields, host attributes, labels, exact stats) and the `series` table
//! (downsampled points) — for windows starting at or after `since`, in time order.
//!
//! Rebuilt snapshots carry no process records and no raw payload (the store keeps decoded
//! values); their `payload_sha256` is the one the frame arrived with.

use super::Filter;
use crate::store::files::committed_files;
use crate::store::tables::{column, STAT_NAMES};
use anyhow::{Context, Result};
use arrow::array::{
    Array, Float64Array, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::record_batch::RecordBatch;
use fleetset_proto::{Point, Snapshot, WindowStats};
use std::collections::HashMap;
use std::path::Path;

/// A stored window: its snapshot, payload SHA-256 and encoding name.
pub type StoredWindow = (Snapshot, Vec<u8>, String);

fn batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path)?,
    )?
    .build()?;
    reader
        .map(|b| b.with_context(|| format!("reading {}", path.display())))
        .collect()
}

fn string(b: &RecordBatch, name: &str, i: usize) -> String {
    column::<StringArray>(b, name)
        .filter(|c| !c.is_null(i))
        .map(|c| c.value(i).to_string())
        .unwrap_or_default()
}

/// One `windows` row as a snapshot without points.
fn window_row(b: &RecordBatch, i: usize) -> Option<(Snapshot, Vec<u8>, String)> {
    let ts = |name| column::<TimestampMillisecondArray>(b, name).map(|c| c.value(i));
    let u64v = |name| {
        column::<UInt64Array>(b, name)
            .filter(|c| !c.is_null(i))
            .map(|c| c.value(i))
    };
    let mut s = Snapshot {
        agent_id: string(b, "agent_id", i),
        start: ts("window_start")?,
        end: ts("window_end")?,
        seq: u64v("seq")?,
        sample_interval_ms: u64v("sample_interval_ms").unwrap_or(0),
        ..Default::default()
    };
    s.host.hostname = string(b, "hostname", i);
    s.host.os = string(b, "os", i);
    s.host.kernel = string(b, "kernel", i);
    s.host.agent_version = string(b, "agent_version", i);
    s.host.cpu_count = column::<UInt32Array>(b, "cpu_count").map_or(0, |c| c.value(i));
    s.host.memory_total_mb = u64v("memory_total_mb").unwrap_or(0);
    for field in b.schema().fields() {
        let name = field.name();
        if let Some(key) = name.strip_prefix("label_") {
            let v = string(b, name, i);
            if column::<StringArray>(b, name).is_some_and(|c| !c.is_null(i)) {
                s.host.labels.insert(key.to_string(), v);
            }
        } else if let Some(metric) = name.strip_suffix("__count") {
            let Some(count) = u64v(name) else { continue };
            let stat = |k: &str| {
                column::<Float64Array>(b, &format!("{metric}__{k}"))
                    .filter(|c| !c.is_null(i))
                    .map(|c| c.value(i))
            };
            let [_, min, max, mean, std, first, last] =
                STAT_NAMES.map(|k| if k == "count" { None } else { stat(k) });
            let [min, max, mean, first, last] =
                [min, max, mean, first, last].map(|v| v.unwrap_or(f64::NAN));
            s.stats.insert(
                metric.to_string(),
                WindowStats {
                    count,
                    min,
                    max,
                    mean,
                    std,
                    first,
                    last,
                },
            );
            s.data.entry(metric.to_string()).or_default();
        }
    }
    let sha = hex::decode(string(b, "payload_sha256", i)).unwrap_or_default();
    Some((s, sha, string(b, "encoding", i)))
}

/// Stored windows with `window_start >= since_ms` matching `filter` (agents, labels; metrics
/// projected), sorted by (window_start, agent_id, seq).
pub fn read(data_dir: &Path, since_ms: i64, filter: &Filter) -> Result<Vec<StoredWindow>> {
    let mut wanted: HashMap<(String, i64), StoredWindow> = HashMap::new();
    for path in committed_files(data_dir, "windows", Some(since_ms), None) {
        for b in batches(&path)? {
            for i in 0..b.num_rows() {
                let Some((s, sha, enc)) = window_row(&b, i) else {
                    continue;
                };
                if s.start >= since_ms && filter.matches(&s) {
                    wanted.insert((s.agent_id.clone(), s.start), (s, sha, enc));
                }
            }
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    for path in committed_files(data_dir, "series", Some(since_ms), None) {
        for b in batches(&path)? {
            let (Some(agents), Some(starts), Some(metrics), Some(ts), Some(values)) = (
                column::<StringArray>(&b, "agent_id"),
                column::<TimestampMillisecondArray>(&b, "window_start"),
                column::<StringArray>(&b, "metric"),
                column::<TimestampMillisecondArray>(&b, "ts"),
                column::<Float64Array>(&b, "value"),
            ) else {
                continue;
            };
            for i in 0..b.num_rows() {
                if let Some((s, _, _)) =
                    wanted.get_mut(&(agents.value(i).to_string(), starts.value(i)))
                {
                    s.data
                        .entry(metrics.value(i).to_string())
                        .or_default()
                        .push(Point {
                            ts_ms: ts.value(i),
                            value: values.value(i),
                        });
                }
            }
        }
    }
    let mut out: Vec<StoredWindow> = wanted
        .into_values()
        .map(|(mut s, sha, enc)| {
            for points in s.data.values_mut() {
                points.sort_by_key(|p| p.ts_ms);
            }
            s = filter.project(&s);
            (s, sha, enc)
        })
        .collect();
    out.sort_by(|a, b| {
        (a.0.start, &a.0.agent_id, a.0.seq).cmp(&(b.0.start, &b.0.agent_id, b.0.seq))
    });
    Ok(out)
}
