//! Arrow record batches for the four tables of the store (names and types from [`schema`],
//! a contract documented in README.md "Store layout"):
//!
//! - `series`: one row per downsampled point — `agent_id`, `window_start`, `metric`, `ts`,
//!   `value` (timestamps: UTC millisecond timestamps).
//! - `stats`: one row per (agent, window, metric) — `agent_id`, `seq`, `window_start`,
//!   `metric`, `count`, `min`, `max`, `mean`, `std`, `first`, `last` (`std` null when the window
//!   had fewer than 2 samples of the metric). A fixed schema whatever the metrics.
//! - `windows`: one row per (agent, window) — header fields, host attributes and one
//!   `label_<key>` column per operator label (a label that appears later adds a column in the
//!   files written from then on; older files simply lack it: read with schema unification).
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
use fleetset_proto::Snapshot;
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

/// The `stats` batch of `subs` (long format, one row per window and metric, metrics in name
/// order).
pub fn stats_batch(subs: &[&Submission]) -> Result<RecordBatch, ArrowError> {
    let n: usize = subs.iter().map(|s| s.snapshot.stats.len()).sum();
    let (mut agent, mut seq, mut wstart, mut metric) = (
        StringBuilder::new(),
        UInt64Builder::with_capacity(n),
        ts_builder(n),
        StringBuilder::new(),
    );
    let mut count = UInt64Builder::with_capacity(n);
    let mut values: Vec<Float64Builder> = (1..STAT_NAMES.len())
        .map(|_| Float64Builder::with_capacity(n))
        .collect();
    for s in subs {
        let snap = &s.snapshot;
        for (name, st) in &snap.stats {
            agent.append_value(&snap.agent_id);
            seq.append_value(snap.seq);
            wstart.append_value(snap.start);
            metric.append_value(name);
            count.append_value(st.count);
            for (b, v) in values.iter_mut().zip([
                Some(st.min),
                Some(st.max),
                Some(st.mean),
                st.std,
                Some(st.first),
                Some(st.last),
            ]) {
                b.append_option(v);
            }
        }
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(agent.finish()),
        Arc::new(seq.finish()),
        Arc::new(wstart.finish()),
        Arc::new(metric.finish()),
        Arc::new(count.finish()),
    ];
    cols.extend(values.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(Arc::new(schema::stats_schema()), cols)
}

/// The `windows` batch of `subs`: fixed columns, then a `label_<key>` column per label key of
/// `subs` (sorted, null where a window lacks the label). No statistics: they are [`stats_batch`].
pub fn windows_batch(subs: &[&Submission], received_at_ms: i64) -> Result<RecordBatch, ArrowError> {
    let n = subs.len();
    let labels: BTreeSet<&str> = subs
        .iter()
        .flat_map(|s| s.snapshot.host.labels.keys().map(String::as_str))
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
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}
