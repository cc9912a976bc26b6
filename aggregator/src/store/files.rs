//! Parquet files of the store: atomic commit and crash recovery, on the layout of [`schema`]
//! (Hive partitioning, zstd, column statistics).
//!
//! Commit protocol for one batch of one date: every file is written to
//! `.tmp-<batch>.parquet` in its partition (readers skip dot-files), fsynced, renamed to its
//! final name, and the partition directory fsynced; `series`, `processes` and `stats` first,
//! `windows` last. The `windows` file is the batch's commit record: a `series`/`processes`/`stats`
//! file whose batch
//! has no `windows` file in the same partition is the remains of a crashed commit, never acked,
//! and [`recover`] deletes it (the agent resends those frames). So a partition never holds a
//! partial file, and every acked window is in the store exactly once.

use super::schema::{self, Table, COMMIT_ORDER, COMMIT_RECORD};
use anyhow::{Context, Result};
use arrow::array::{Array, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?
        .sync_all()
        .with_context(|| format!("fsync {}", dir.display()))
}

/// zstd level 3 with page statistics; timestamp columns delta-encoded (DELTA_BINARY_PACKED:
/// regular sample times cost a few bits each) and float columns BYTE_STREAM_SPLIT (which lets
/// zstd find the repeated exponent and high mantissa bytes of slowly varying metrics).
/// Shared by the store and Parquet exports.
pub fn writer_properties(schema: &Schema) -> Result<WriterProperties> {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_statistics_enabled(EnabledStatistics::Page);
    for field in schema.fields() {
        let col = ColumnPath::from(field.name().as_str());
        match field.data_type() {
            DataType::Timestamp(..) => {
                b = b
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_encoding(col, Encoding::DELTA_BINARY_PACKED);
            }
            DataType::Float64 => {
                b = b
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_encoding(col, Encoding::BYTE_STREAM_SPLIT);
            }
            _ => {}
        }
    }
    Ok(b.build())
}

/// Writes `batch` as `part-<batch_id>.parquet` in `dir` through a temporary file; returns the
/// final path. On error the temporary file is removed.
pub fn write_parquet(dir: &Path, batch_id: &str, batch: &RecordBatch) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(schema::temp_file_name(batch_id));
    let path = dir.join(schema::part_file_name(batch_id));
    let props = writer_properties(&batch.schema())?;
    let write = || -> Result<()> {
        let file = File::create(&tmp)?;
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
        w.write(batch)?;
        w.finish()?;
        let file = w.inner_mut();
        file.flush()?;
        file.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", tmp.display())));
    }
    fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    sync_dir(dir)?;
    Ok(path)
}

/// What [`recover`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Temporary files of interrupted writes, removed.
    pub temp_files_removed: usize,
    /// Files of batches whose commit never finished (no `windows` file), removed.
    pub orphans_removed: usize,
    /// Unreadable Parquet files moved to `<data_dir>/quarantine/`.
    pub quarantined: usize,
    /// Window keys `(agent_id, window_start)` found in more than one committed row (e.g. in two
    /// partitions, by a store written before the contract): indexed once, the rows kept.
    pub duplicate_keys: u64,
    /// Committed windows' keys.
    pub index: super::index::DedupIndex,
    /// Distinct metric names (committed `stats` files) and label keys (committed `windows`
    /// files' label columns), for the fleet-wide caps.
    pub names: super::cardinality::Names,
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(parts) = fs::read_dir(dir) else {
        return out;
    };
    for part in parts.flatten() {
        if let Ok(files) = fs::read_dir(part.path()) {
            out.extend(files.flatten().map(|f| f.path()).filter(|p| p.is_file()));
        }
    }
    out
}

/// Committed Parquet files (`part-*.parquet`, no temp files) of `table` in partitions whose
/// date lies in `[date_of(from_ms), date_of(to_ms)]` (either bound optional; `to_ms` exclusive,
/// so its own date counts only when it is not midnight), sorted by path (date, then commit time).
pub fn committed_files(
    data_dir: &Path,
    table: Table,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Vec<PathBuf> {
    let from = from_ms.map(|ms| schema::partition_name(&schema::date_of(ms)));
    let to = to_ms.map(|ms| schema::partition_name(&schema::date_of(ms.saturating_sub(1))));
    let mut out: Vec<PathBuf> = list_files(&table.dir(data_dir))
        .into_iter()
        .filter(|p| {
            let Some((part, _)) = schema::part_file_key(p) else {
                return false;
            };
            from.as_ref().is_none_or(|f| part >= *f) && to.as_ref().is_none_or(|t| part <= *t)
        })
        .collect();
    out.sort();
    out
}

/// Files in `table`'s partitions that do not have a committed file's name (temporary files of
/// a write in progress or interrupted; anything else put there): readers never read them.
pub fn uncommitted_files(data_dir: &Path, table: Table) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = list_files(&table.dir(data_dir))
        .into_iter()
        .filter(|p| schema::part_file_key(p).is_none())
        .collect();
    out.sort();
    out
}

fn quarantine(data_dir: &Path, path: &Path) -> Result<()> {
    let q = data_dir.join(schema::QUARANTINE_DIR);
    fs::create_dir_all(&q)?;
    let rel = path
        .strip_prefix(data_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('/', "__");
    fs::rename(path, q.join(rel))?;
    Ok(())
}

/// `(agent_id, seq, window_start)` of every row of a `windows` file, and its label keys.
type WindowKeys = (Vec<(String, u64, i64)>, Vec<String>);

/// Reads the [`WindowKeys`] of a `windows` file.
fn read_window_keys(path: &Path) -> Result<WindowKeys> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let label_keys: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .filter_map(|f| schema::label_key(f.name()).map(str::to_string))
        .collect();
    let mask = ProjectionMask::columns(
        builder.parquet_schema(),
        [schema::AGENT_ID, schema::SEQ, schema::WINDOW_START],
    );
    let mut out = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .with_context(|| format!("{}: no column {name}", path.display()))
        };
        let agents = col(schema::AGENT_ID)?
            .as_any()
            .downcast_ref::<StringArray>()
            .with_context(|| format!("{}: {} is not utf8", path.display(), schema::AGENT_ID))?;
        let seqs = col(schema::SEQ)?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .with_context(|| format!("{}: {} is not uint64", path.display(), schema::SEQ))?;
        let starts = col(schema::WINDOW_START)?
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .with_context(|| {
                format!(
                    "{}: {} is not a ms timestamp",
                    path.display(),
                    schema::WINDOW_START
                )
            })?;
        for i in 0..batch.num_rows() {
            if !agents.is_null(i) {
                out.push((agents.value(i).to_string(), seqs.value(i), starts.value(i)));
            }
        }
    }
    Ok((out, label_keys))
}

/// Adds the `metric` values of a `stats` file to `names`.
fn read_metric_names(path: &Path, names: &mut super::cardinality::Names) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), [schema::METRIC]);
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let metrics = batch
            .column_by_name(schema::METRIC)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .context("no utf8 metric column")?;
        metrics.iter().flatten().for_each(|m| names.add_metric(m));
    }
    Ok(())
}

/// Brings a data directory to a consistent state after a crash and loads the de-duplication
/// index (see the module docs). Safe to run on an empty or missing directory.
pub fn recover(data_dir: &Path) -> Result<Recovery> {
    let mut r = Recovery::default();
    let mut committed: HashSet<(String, String)> = HashSet::new();
    for path in list_files(&COMMIT_RECORD.dir(data_dir)) {
        let Some(key) = schema::part_file_key(&path) else {
            continue;
        };
        match read_window_keys(&path) {
            Ok((rows, label_keys)) => {
                label_keys.iter().for_each(|k| r.names.add_label_key(k));
                for (agent, seq, start) in rows {
                    if !r.index.insert(&agent, seq, start) {
                        r.duplicate_keys += 1;
                    }
                }
                committed.insert(key);
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "unreadable windows file quarantined");
                quarantine(data_dir, &path)?;
                r.quarantined += 1;
            }
        }
    }
    for table in COMMIT_ORDER {
        for path in list_files(&table.dir(data_dir)) {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if schema::is_temp_file_name(name) {
                fs::remove_file(&path)?;
                r.temp_files_removed += 1;
            } else if table != COMMIT_RECORD
                && schema::part_file_key(&path).is_some_and(|k| !committed.contains(&k))
            {
                warn!(file = %path.display(), "file of an unfinished commit removed (its frames were never acked)");
                fs::remove_file(&path)?;
                r.orphans_removed += 1;
            }
        }
    }
    for path in list_files(&Table::Stats.dir(data_dir)) {
        if schema::part_file_key(&path).is_some() {
            read_metric_names(&path, &mut r.names)
                .with_context(|| format!("reading the metric names of {}", path.display()))?;
        }
    }
    info!(
        windows = r.index.windows(),
        metric_names = r.names.metrics(),
        label_keys = r.names.label_keys(),
        agents = r.index.agents(),
        index_runs = r.index.runs(),
        temp_files_removed = r.temp_files_removed,
        orphans_removed = r.orphans_removed,
        quarantined = r.quarantined,
        duplicate_keys = r.duplicate_keys,
        "store recovered"
    );
    Ok(r)
}
