//! The wide view of `windows`: each `windows` row joined with its `stats` rows (same commit,
//! same partition: the `stats` file of the same batch), pivoted into the columns
//! `<metric>__<stat>` ([`schema::stat_column`]; `count` uint64, the others float64, null where
//! the window lacks the metric). Exports, training sets, live history and the demo read
//! windows through it ([`super::reader::Scan`] of [`Table::Windows`]); the store itself keeps
//! the fixed-schema long `stats` table.

use super::reader::column;
use super::schema::{self, Table, STAT_NAMES};
use anyhow::{Context, Result};
use arrow::array::{
    Array, ArrayRef, Float64Array, StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::Field;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One metric's wide columns while they are built: `count`, then the six float statistics,
/// one value per window row.
type Wide = (Vec<Option<u64>>, Vec<Vec<Option<f64>>>);

/// The metrics pivoted into wide columns, in name order.
#[derive(Debug, Default)]
pub struct Pivot {
    metrics: Vec<String>,
    index: HashMap<String, usize>,
}

/// The `stats` file committed with the `windows` file `windows_file` (same partition and batch).
fn stats_file_of(data_dir: &Path, windows_file: &Path) -> Option<PathBuf> {
    let (part, batch) = schema::part_file_key(windows_file)?;
    Some(
        Table::Stats
            .dir(data_dir)
            .join(part)
            .join(schema::part_file_name(&batch)),
    )
}

/// The `metric` column of `b`.
fn metrics_of(b: &RecordBatch) -> Result<&StringArray> {
    column::<StringArray>(b, schema::METRIC).context("a stats file lacks a utf8 metric column")
}

impl Pivot {
    /// The distinct metrics of the `stats` files of `windows_files` (only those in `only`,
    /// unless it is empty). Errors: an unreadable stats file.
    pub fn open(
        data_dir: &Path,
        windows_files: &[PathBuf],
        only: &HashSet<String>,
    ) -> Result<Pivot> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let stats_files = windows_files
            .iter()
            .filter_map(|w| stats_file_of(data_dir, w))
            .filter(|p| p.is_file());
        for path in stats_files {
            let builder = ParquetRecordBatchReaderBuilder::try_new(
                File::open(&path).with_context(|| format!("opening {}", path.display()))?,
            )?;
            let mask = ProjectionMask::columns(builder.parquet_schema(), [schema::METRIC]);
            for b in builder.with_projection(mask).build()? {
                let b = b.with_context(|| format!("reading {}", path.display()))?;
                for m in metrics_of(&b)?.iter().flatten() {
                    if (only.is_empty() || only.contains(m)) && !names.contains(m) {
                        names.insert(m.to_string());
                    }
                }
            }
        }
        let metrics: Vec<String> = names.into_iter().collect();
        let index = metrics
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i))
            .collect();
        Ok(Pivot { metrics, index })
    }

    /// The wide fields, by metric and in [`STAT_NAMES`] order.
    pub fn fields(&self) -> Vec<Field> {
        self.metrics
            .iter()
            .flat_map(|m| (0..STAT_NAMES.len()).map(move |i| schema::stat_field(m, i)))
            .collect()
    }

    /// The pivoted metrics' rows of the `stats` file committed with `windows_file` (none when
    /// it has no such file). Errors: an unreadable stats file.
    pub fn load(&self, data_dir: &Path, windows_file: &Path) -> Result<Vec<RecordBatch>> {
        let Some(path) = stats_file_of(data_dir, windows_file).filter(|p| p.is_file()) else {
            return Ok(Vec::new());
        };
        let read = || -> Result<Vec<RecordBatch>> {
            let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?;
            let mut out = Vec::new();
            for b in builder.build()? {
                let b = b?;
                let keep: arrow::array::BooleanArray = metrics_of(&b)?
                    .iter()
                    .map(|m| Some(m.is_some_and(|m| self.index.contains_key(m))))
                    .collect();
                let b = arrow::compute::filter_record_batch(&b, &keep)?;
                if b.num_rows() > 0 {
                    out.push(b);
                }
            }
            Ok(out)
        };
        read().with_context(|| format!("reading {}", path.display()))
    }

    /// The wide columns (by name) of the `windows` rows `w`, from `stats` (rows of the same
    /// commit); only metrics some row of `w` has. Errors: a stats batch lacking a column.
    pub fn columns(
        &self,
        w: &RecordBatch,
        stats: &[RecordBatch],
    ) -> Result<HashMap<String, ArrayRef>> {
        let n = w.num_rows();
        let (Some(agents), Some(starts)) = (
            column::<StringArray>(w, schema::AGENT_ID),
            column::<TimestampMillisecondArray>(w, schema::WINDOW_START),
        ) else {
            anyhow::bail!("a windows file lacks agent_id or window_start");
        };
        let mut rows: HashMap<(&str, i64), Vec<usize>> = HashMap::new();
        for i in 0..n {
            rows.entry((agents.value(i), starts.value(i)))
                .or_default()
                .push(i);
        }
        // Per metric present: count, then the six float statistics, one value per window row.
        let mut cols: HashMap<usize, Wide> = HashMap::new();
        for b in stats {
            let (Some(s_agents), Some(s_starts), Some(count)) = (
                column::<StringArray>(b, schema::AGENT_ID),
                column::<TimestampMillisecondArray>(b, schema::WINDOW_START),
                column::<UInt64Array>(b, STAT_NAMES[0]),
            ) else {
                anyhow::bail!("a stats file lacks agent_id, window_start or count");
            };
            let metrics = metrics_of(b)?;
            let floats: Vec<&Float64Array> = STAT_NAMES[1..]
                .iter()
                .map(|s| {
                    column::<Float64Array>(b, s).with_context(|| format!("a stats file lacks {s}"))
                })
                .collect::<Result<_>>()?;
            for r in 0..b.num_rows() {
                let Some(at) = rows.get(&(s_agents.value(r), s_starts.value(r))) else {
                    continue;
                };
                let Some(&m) = self.index.get(metrics.value(r)) else {
                    continue;
                };
                let (c, f) = cols
                    .entry(m)
                    .or_insert_with(|| (vec![None; n], vec![vec![None; n]; floats.len()]));
                for &i in at {
                    c[i] = count.is_valid(r).then(|| count.value(r));
                    for (k, a) in floats.iter().enumerate() {
                        f[k][i] = a.is_valid(r).then(|| a.value(r));
                    }
                }
            }
        }
        let mut out: HashMap<String, ArrayRef> = HashMap::new();
        for (m, (c, f)) in cols {
            let metric = &self.metrics[m];
            out.insert(
                schema::stat_column(metric, STAT_NAMES[0]),
                Arc::new(UInt64Array::from(c)),
            );
            for (k, v) in f.into_iter().enumerate() {
                out.insert(
                    schema::stat_column(metric, STAT_NAMES[k + 1]),
                    Arc::new(Float64Array::from(v)),
                );
            }
        }
        Ok(out)
    }
}
