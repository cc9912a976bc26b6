//! Arrow record batches for the three tables of the store (names and types from [`schema`],
//! a contract documented in README.md "Store layout"):
//!
//! - `series`: one row per downsampled point — `agent_id`, `window_start`, `metric`, `ts`,
//!   `value` (timestamps: UTC millisecond timestamps).
//! - `windows`: one row per (agent, window) — header fields, host attributes, one
//!   `label_<key>` column per operator label, and for every metric seven exact-statistics
//!   feature columns `<metric>__{count,min,max,mean,std,first,last}` (all null where the window
//!   lacks the metric; `std` null when it had fewer than 2 samples of it). A metric or label
//!   that appears later adds columns in the files written from then on; older files simply lack
//!   them (read with schema unification, see README).
//! - `processes`: top-N process records per window.

use crate::store::schema::{self, STAT_NAMES};
use crate::store::Submission;
use arrow::array::{
    ArrayRef, Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use fleetset_proto::{Snapshot, WindowStats};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The column `name` of `b` downcast to `T`, if present with that type.
pub fn column<'a, T: arrow::array::Array + 'static>(
    b: &'a RecordBatch,
    name: &str,
) -> Option<&'a T> {
    b.column_by_name(name)?.as_any().downcast_ref::<T>()
}

fn ts_builder(capacity: usize) -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC")
}

/// The `series` batch of `subs` (long format, one row per point).
pub fn series_batch(subs: &[&Submission]) -> Result<RecordBatch, ArrowError> {
    let n: usize = subs
        .iter()
        .map(|s| s.snapshot.data.values().map(Vec::len).sum::<usize>())
        .sum();
    let (mut agent, mut wstart, mut metric) =
        (StringBuilder::new(), ts_builder(n), StringBuilder::new());
    let (mut ts, mut value) = (ts_builder(n), Float64Builder::with_capacity(n));
    for s in subs {
        let snap = &s.snapshot;
        for (name, points) in &snap.data {
            for p in points {
                agent.append_value(&snap.agent_id);
                wstart.append_value(snap.start);
                metric.append_value(name);
                ts.append_value(p.ts_ms);
                value.append_value(p.value);
            }
        }
    }
    let schema = schema::series_schema();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(agent.finish()),
        Arc::new(wstart.finish()),
        Arc::new(metric.finish()),
        Arc::new(ts.finish()),
        Arc::new(value.finish()),
    ];
    RecordBatch::try_new(Arc::new(schema), cols)
}

/// The `processes` batch of `subs`; `None` when no snapshot carries processes.
pub fn processes_batch(subs: &[&Submission]) -> Result<Option<RecordBatch>, ArrowError> {
    let rows: Vec<(&Snapshot, &fleetset_proto::ProcessRecord)> = subs
        .iter()
        .flat_map(|s| s.snapshot.processes.iter().map(move |p| (&s.snapshot, p)))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let n = rows.len();
    let (mut agent, mut wstart, mut pid, mut hash) = (
        StringBuilder::new(),
        ts_builder(n),
        UInt32Builder::new(),
        StringBuilder::new(),
    );
    let (mut rss, mut vm, mut cpu) = (
        UInt64Builder::new(),
        UInt64Builder::new(),
        Float64Builder::new(),
    );
    let (mut read, mut write, mut name) = (
        UInt64Builder::new(),
        UInt64Builder::new(),
        StringBuilder::new(),
    );
    for (snap, p) in rows {
        agent.append_value(&snap.agent_id);
        wstart.append_value(snap.start);
        pid.append_value(p.pid);
        hash.append_value(&p.name_hash);
        rss.append_value(p.rss_bytes);
        vm.append_value(p.virtual_memory_bytes);
        cpu.append_value(p.cpu_percent);
        read.append_value(p.disk_read_bytes);
        write.append_value(p.disk_write_bytes);
        name.append_option((!p.name.is_empty()).then_some(p.name.as_str()));
    }
    let schema = schema::processes_schema();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(agent.finish()),
        Arc::new(wstart.finish()),
        Arc::new(pid.finish()),
        Arc::new(hash.finish()),
        Arc::new(rss.finish()),
        Arc::new(vm.finish()),
        Arc::new(cpu.finish()),
        Arc::new(read.finish()),
        Arc::new(write.finish()),
        Arc::new(name.finish()),
    ];
    RecordBatch::try_new(Arc::new(schema), cols).map(Some)
}

/// Statistic `i` (in [`STAT_NAMES`] order) of `st`; `None` for an undefined `std` (count < 2),
/// stored as null.
fn stat(st: &WindowStats, i: usize) -> Option<f64> {
    [
        Some(st.count as f64),
        Some(st.min),
        Some(st.max),
        Some(st.mean),
        st.std,
        Some(st.first),
        Some(st.last),
    ][i]
}

/// The `windows` batch of `subs`: fixed columns, `label_<key>` columns, then
/// `<metric>__<stat>` columns for the union of metrics in `subs` (null where a window lacks
/// the metric). `received_at_ms` is when the aggregator committed the row.
pub fn windows_batch(subs: &[&Submission], received_at_ms: i64) -> Result<RecordBatch, ArrowError> {
    let n = subs.len();
    let labels: BTreeSet<&str> = subs
        .iter()
        .flat_map(|s| s.snapshot.host.labels.keys().map(String::as_str))
        .collect();
    let metrics: BTreeSet<&str> = subs
        .iter()
        .flat_map(|s| s.snapshot.stats.keys().map(String::as_str))
        .collect();

    let strings = |get: &dyn Fn(&Snapshot) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        subs.iter().for_each(|s| b.append_option(get(&s.snapshot)));
        Arc::new(b.finish())
    };
    let u64s = |get: &dyn Fn(&Submission) -> u64| -> ArrayRef {
        Arc::new(
            subs.iter()
                .map(|s| get(s))
                .collect::<arrow::array::UInt64Array>(),
        )
    };
    let stamps = |get: &dyn Fn(&Snapshot) -> i64| -> ArrayRef {
        let mut b = ts_builder(n);
        subs.iter().for_each(|s| b.append_value(get(&s.snapshot)));
        Arc::new(b.finish())
    };

    // In the order of `schema::windows_fixed_fields`.
    let mut cols: Vec<ArrayRef> = vec![
        strings(&|s| Some(&s.agent_id)),
        u64s(&|s| s.snapshot.seq),
        stamps(&|s| s.start),
        stamps(&|s| s.end),
        stamps(&|_| received_at_ms),
        {
            let mut b = StringBuilder::new();
            subs.iter()
                .for_each(|s| b.append_value(schema::encoding_name(s.header.encoding)));
            Arc::new(b.finish())
        },
        {
            let mut b = StringBuilder::new();
            subs.iter()
                .for_each(|s| b.append_value(hex::encode(&s.header.payload_sha256)));
            Arc::new(b.finish())
        },
        u64s(&|s| s.snapshot.sample_interval_ms),
        strings(&|s| Some(&s.host.hostname)),
        strings(&|s| Some(&s.host.os)),
        strings(&|s| Some(&s.host.kernel)),
        Arc::new(
            subs.iter()
                .map(|s| s.snapshot.host.cpu_count)
                .collect::<arrow::array::UInt32Array>(),
        ),
        u64s(&|s| s.snapshot.host.memory_total_mb),
        strings(&|s| Some(&s.host.agent_version)),
    ];
    let mut fields: Vec<Field> = schema::windows_fixed_fields();
    debug_assert_eq!(fields.len(), cols.len());
    for key in &labels {
        fields.push(schema::label_field(key));
        cols.push(strings(&|s| s.host.labels.get(*key).map(String::as_str)));
    }
    for metric in &metrics {
        for i in 0..STAT_NAMES.len() {
            fields.push(schema::stat_field(metric, i));
            if i == 0 {
                let a: arrow::array::UInt64Array = subs
                    .iter()
                    .map(|s| s.snapshot.stats.get(*metric).map(|st| st.count))
                    .collect();
                cols.push(Arc::new(a));
            } else {
                let mut b = Float64Builder::with_capacity(n);
                subs.iter().for_each(|s| {
                    b.append_option(s.snapshot.stats.get(*metric).and_then(|st| stat(st, i)))
                });
                cols.push(Arc::new(b.finish()));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}
