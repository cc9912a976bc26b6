//! Reading the Parquet store back, with the aggregator's own reader
//! (`fleetset_aggregator::store::reader`): tables as Arrow batches, typed column access, and the
//! stored windows of one agent.

use anyhow::{Context, Result};
use arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::record_batch::RecordBatch;
use fleetset_aggregator::store::files;
use fleetset_aggregator::store::reader::{self, Query, Scan};
use fleetset_aggregator::store::schema::Table;
use std::path::Path;

/// Every record batch of one table (`series`, `windows`, `processes`) under `data_dir`, read
/// with the store's own reader (committed files, one union schema); fails on any unreadable
/// file and on any file in a partition that is not a committed file.
pub fn read_table(data_dir: &Path, table: &str) -> Result<Vec<RecordBatch>> {
    let table = Table::from_name(table).with_context(|| format!("no table {table}"))?;
    let stray = files::uncommitted_files(data_dir, table);
    anyhow::ensure!(
        stray.is_empty(),
        "unexpected files in a partition: {stray:?}"
    );
    Scan::open(data_dir, table, &Query::default())?
        .batches(|_| {})
        .collect()
}

/// Column `name` of `b` as strings.
pub fn str_col<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .unwrap_or_else(|| panic!("utf8 column {name}"))
}

/// Column `name` of `b` as UTC ms timestamps.
pub fn ts_col<'a>(b: &'a RecordBatch, name: &str) -> &'a TimestampMillisecondArray {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .unwrap_or_else(|| panic!("timestamp column {name}"))
}

/// Column `name` of `b` as f64, if present.
pub fn f64_col<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Float64Array> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
}

/// Column `name` of `b` as u64, if present.
pub fn u64_col<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a UInt64Array> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
}

/// Value `i` of an optional f64 column, `None` if absent or null.
pub fn f64_at(col: Option<&Float64Array>, i: usize) -> Option<f64> {
    col.filter(|c| !c.is_null(i)).map(|c| c.value(i))
}

/// `(window_start ms, seq)` of every stored window of `agent_id`, sorted.
pub fn stored_windows(data_dir: &Path, agent_id: &str) -> Result<Vec<(i64, u64)>> {
    let query = Query {
        agents: vec![agent_id.to_string()],
        ..Default::default()
    };
    let mut out: Vec<(i64, u64)> = reader::windows(data_dir, &query)?
        .iter()
        .map(|w| (w.snapshot.start, w.snapshot.seq))
        .collect();
    out.sort();
    Ok(out)
}
