//! Reading one table of the store for an export: committed files only, partitions pruned by
//! date, rows filtered by `window_start`, agent and metric, every batch conformed to one schema
//! — the union of the files' schemas, so windows files written before a metric or label appeared
//! get null columns instead of failing or dropping data.
//!
//! Union column order (stable, documented in README): the fixed columns in the order of the
//! first file, then `label_<key>` columns by key, then `<metric>__<stat>` columns by metric and
//! in [`STAT_NAMES`] order.

use super::{Selection, Table};
use crate::store::files::committed_files;
pub use crate::store::tables::column;
use crate::store::tables::STAT_NAMES;
use anyhow::{bail, Context, Result};
use arrow::array::TimestampMillisecondArray;
use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// Rows per batch read from Parquet.
const BATCH_ROWS: usize = 64 * 1024;

/// A planned read of one table.
#[derive(Debug)]
pub struct Scan {
    /// The table read.
    pub table: Table,
    /// Committed files read, in path (= date, commit) order.
    pub files: Vec<PathBuf>,
    /// The conformed schema of every batch.
    pub schema: SchemaRef,
    /// Rows in the files before filtering (for progress).
    pub file_rows: u64,
    selection: Selection,
    agents: HashSet<String>,
    metrics: HashSet<String>,
}

/// Sort key of a union column: fixed, then labels, then statistics by metric and stat order.
fn column_rank(name: &str, first_seen: usize) -> (u8, String, usize) {
    if let Some((metric, stat)) = name.rsplit_once("__") {
        if let Some(i) = STAT_NAMES.iter().position(|s| *s == stat) {
            return (2, metric.to_string(), i);
        }
    }
    if name.starts_with("label_") {
        return (1, name.to_string(), 0);
    }
    (0, String::new(), first_seen)
}

/// The metric of a windows statistics column `<metric>__<stat>`, if it is one.
pub fn stat_column_metric(name: &str) -> Option<&str> {
    let (metric, stat) = name.rsplit_once("__")?;
    STAT_NAMES.contains(&stat).then_some(metric)
}

impl Scan {
    /// Plans a read of `table` in `data_dir`: lists files, reads their footers and builds the
    /// union schema (restricted to `selection.metrics` for windows statistics columns).
    /// Errors: an unreadable footer, or one column with two different types across files.
    pub fn open(data_dir: &std::path::Path, table: Table, selection: &Selection) -> Result<Scan> {
        let files = committed_files(data_dir, table.name(), selection.from_ms, selection.to_ms);
        let metrics: HashSet<String> = selection.metrics.iter().cloned().collect();
        let mut fields: Vec<Field> = Vec::new();
        let mut file_rows = 0u64;
        for path in &files {
            let builder = ParquetRecordBatchReaderBuilder::try_new(
                File::open(path).with_context(|| format!("opening {}", path.display()))?,
            )
            .with_context(|| format!("reading the footer of {}", path.display()))?;
            file_rows += builder.metadata().file_metadata().num_rows().max(0) as u64;
            for f in builder.schema().fields() {
                if table == Table::Windows && !metrics.is_empty() {
                    if let Some(m) = stat_column_metric(f.name()) {
                        if !metrics.contains(m) {
                            continue;
                        }
                    }
                }
                match fields.iter().find(|g| g.name() == f.name()) {
                    Some(g) if g.data_type() != f.data_type() => bail!(
                        "column {} is {} in {} but {} in an earlier file",
                        f.name(),
                        f.data_type(),
                        path.display(),
                        g.data_type()
                    ),
                    Some(_) => {}
                    None => fields.push(f.as_ref().clone().with_nullable(true)),
                }
            }
        }
        let mut ranked: Vec<(usize, Field)> = fields.into_iter().enumerate().collect();
        ranked.sort_by_key(|(i, f)| column_rank(f.name(), *i));
        let schema = Arc::new(Schema::new(
            ranked.into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
        ));
        Ok(Scan {
            table,
            files,
            schema,
            file_rows,
            selection: selection.clone(),
            agents: selection.agents.iter().cloned().collect(),
            metrics,
        })
    }

    /// The selected rows, file by file, each batch conformed to [`Scan::schema`]. `progress`
    /// is called with the rows read from Parquet (before filtering) after each batch.
    pub fn batches<'a>(
        &'a self,
        mut progress: impl FnMut(u64) + 'a,
    ) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        self.files
            .iter()
            .flat_map(move |path| {
                let reader = File::open(path)
                    .map_err(anyhow::Error::from)
                    .and_then(|f| Ok(ParquetRecordBatchReaderBuilder::try_new(f)?))
                    .and_then(|b| Ok(b.with_batch_size(BATCH_ROWS).build()?))
                    .with_context(|| format!("reading {}", path.display()));
                let batches: Box<dyn Iterator<Item = Result<RecordBatch>>> = match reader {
                    Ok(r) => Box::new(
                        r.map(move |b| b.with_context(|| format!("reading {}", path.display()))),
                    ),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
                batches
            })
            .map(move |b| {
                let b = b?;
                progress(b.num_rows() as u64);
                self.conform(&self.filter(&b)?)
            })
            .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
    }

    /// Keeps the rows inside the time range, of the selected agents and (series) metrics.
    fn filter(&self, b: &RecordBatch) -> Result<RecordBatch> {
        let sel = &self.selection;
        let starts = b
            .column_by_name("window_start")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>());
        let agents = b
            .column_by_name("agent_id")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let metrics = b
            .column_by_name("metric")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .filter(|_| self.table == Table::Series && !self.metrics.is_empty());
        let (Some(starts), Some(agents)) = (starts, agents) else {
            bail!(
                "a {} file lacks window_start or agent_id",
                self.table.name()
            );
        };
        let keep: BooleanArray = (0..b.num_rows())
            .map(|i| {
                let t = starts.value(i);
                Some(
                    sel.from_ms.is_none_or(|f| t >= f)
                        && sel.to_ms.is_none_or(|to| t < to)
                        && (self.agents.is_empty() || self.agents.contains(agents.value(i)))
                        && metrics.is_none_or(|m| self.metrics.contains(m.value(i))),
                )
            })
            .collect();
        if keep.true_count() == b.num_rows() {
            return Ok(b.clone());
        }
        Ok(filter_record_batch(b, &keep)?)
    }

    /// `b` with the columns of [`Scan::schema`]: missing ones as nulls, extra ones dropped.
    fn conform(&self, b: &RecordBatch) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                b.column_by_name(f.name())
                    .cloned()
                    .unwrap_or_else(|| new_null_array(f.data_type(), b.num_rows()))
            })
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// Every selected row of `table` as one batch (the union schema), for exports that need all
/// rows at once (training sets). `None` when nothing matched.
pub fn read_all(
    data_dir: &std::path::Path,
    table: Table,
    selection: &Selection,
) -> Result<(Scan, Option<RecordBatch>)> {
    let scan = Scan::open(data_dir, table, selection)?;
    let batches: Vec<RecordBatch> = scan.batches(|_| {}).collect::<Result<_>>()?;
    let all = if batches.is_empty() {
        None
    } else {
        Some(arrow::compute::concat_batches(&scan.schema, &batches)?)
    };
    Ok((scan, all))
}
