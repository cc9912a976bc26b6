//! Parquet files of the store: atomic commit and crash recovery.
//!
//! Layout: `<data_dir>/<table>/date=YYYY-MM-DD/part-<batch>.parquet` for the tables `series`,
//! `processes` and `windows` (Hive partitioning, zstd, column statistics). `<batch>` is
//! `<commit Unix ms, 13 digits>-<16 hex random>`, so names sort by commit time.
//!
//! Commit protocol for one batch of one date: every file is written to
//! `.tmp-<batch>.parquet` in its partition (readers skip dot-files), fsynced, renamed to its
//! final name, and the partition directory fsynced; `series` and `processes` first, `windows`
//! last. The `windows` file is the batch's commit record: a `series`/`processes` file whose batch
//! has no `windows` file in the same partition is the remains of a crashed commit, never acked,
//! and [`recover`] deletes it (the agent resends those frames). So a partition never holds a
//! partial file, and every acked window is in the store exactly once.

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

/// The three tables, in commit order (`windows` last: it is the commit record).
pub const TABLES: [&str; 3] = ["series", "processes", "windows"];

/// `YYYY-MM-DD` (UTC) of a Unix ms timestamp.
pub fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "1970-01-01".into(), |d| d.format("%Y-%m-%d").to_string())
}

/// A fresh batch id: commit time (ms, 13 digits) and 64 random bits.
pub fn new_batch_id(now_ms: i64) -> String {
    format!("{now_ms:013}-{:016x}", rand::random::<u64>())
}

/// The partition directory of `table` for `date`.
pub fn partition_dir(data_dir: &Path, table: &str, date: &str) -> PathBuf {
    data_dir.join(table).join(format!("date={date}"))
}

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
    let tmp = dir.join(format!(".tmp-{batch_id}.parquet"));
    let path = dir.join(format!("part-{batch_id}.parquet"));
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
    /// Committed windows' keys.
    pub index: super::index::DedupIndex,
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
    table: &str,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Vec<PathBuf> {
    debug_assert!(TABLES.contains(&table));
    let from = from_ms.map(|ms| format!("date={}", date_of(ms)));
    let to = to_ms.map(|ms| format!("date={}", date_of(ms - 1)));
    let mut out: Vec<PathBuf> = list_files(&data_dir.join(table))
        .into_iter()
        .filter(|p| {
            let Some((part, _)) = batch_key(p) else {
                return false;
            };
            from.as_ref().is_none_or(|f| part >= *f) && to.as_ref().is_none_or(|t| part <= *t)
        })
        .collect();
    out.sort();
    out
}

/// `(partition dir name, batch id)` of a committed file `…/date=D/part-<batch>.parquet`.
fn batch_key(path: &Path) -> Option<(String, String)> {
    let name = path.file_name()?.to_str()?;
    let batch = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let part = path.parent()?.file_name()?.to_str()?;
    Some((part.to_string(), batch.to_string()))
}

fn quarantine(data_dir: &Path, path: &Path) -> Result<()> {
    let q = data_dir.join("quarantine");
    fs::create_dir_all(&q)?;
    let rel = path
        .strip_prefix(data_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('/', "__");
    fs::rename(path, q.join(rel))?;
    Ok(())
}

/// Reads `(agent_id, seq, window_start)` of every row of a `windows` file.
fn read_window_keys(path: &Path) -> Result<Vec<(String, u64, i64)>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let mask = ProjectionMask::columns(
        builder.parquet_schema(),
        ["agent_id", "seq", "window_start"],
    );
    let mut out = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .with_context(|| format!("{}: no column {name}", path.display()))
        };
        let agents = col("agent_id")?
            .as_any()
            .downcast_ref::<StringArray>()
            .context("agent_id is not utf8")?;
        let seqs = col("seq")?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .context("seq is not uint64")?;
        let starts = col("window_start")?
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .context("window_start is not a ms timestamp")?;
        for i in 0..batch.num_rows() {
            if !agents.is_null(i) {
                out.push((agents.value(i).to_string(), seqs.value(i), starts.value(i)));
            }
        }
    }
    Ok(out)
}

/// Brings a data directory to a consistent state after a crash and loads the de-duplication
/// index (see the module docs). Safe to run on an empty or missing directory.
pub fn recover(data_dir: &Path) -> Result<Recovery> {
    let mut r = Recovery::default();
    let mut committed: HashSet<(String, String)> = HashSet::new();
    for path in list_files(&data_dir.join("windows")) {
        let Some(key) = batch_key(&path) else {
            continue;
        };
        match read_window_keys(&path) {
            Ok(rows) => {
                for (agent, seq, start) in rows {
                    r.index.insert(&agent, seq, start);
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
    for table in TABLES {
        for path in list_files(&data_dir.join(table)) {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with(".tmp-") {
                fs::remove_file(&path)?;
                r.temp_files_removed += 1;
            } else if table != "windows"
                && batch_key(&path).is_some_and(|k| !committed.contains(&k))
            {
                warn!(file = %path.display(), "file of an unfinished commit removed (its frames were never acked)");
                fs::remove_file(&path)?;
                r.orphans_removed += 1;
            }
        }
    }
    info!(
        windows = r.index.windows(),
        agents = r.index.agents(),
        index_runs = r.index.runs(),
        temp_files_removed = r.temp_files_removed,
        orphans_removed = r.orphans_removed,
        quarantined = r.quarantined,
        "store recovered"
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_763_683_199_999), "2025-11-20");
        assert_eq!(date_of(1_763_683_200_000), "2025-11-21");
    }
}
