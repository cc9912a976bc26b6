//! The output stage of `export --training`: the output table of labelled rows, its time order,
//! per-site and per-agent shards (a shard's split with no rows is not written, and listed as
//! skipped), and the Parquet files with the entries `manifest.json` lists.

use super::super::anonymize::Anonymizer;
use super::{features, manifest, Rows};
use crate::store::files::writer_properties;
use crate::store::reader::column;
use crate::store::schema;
use anyhow::{Context, Result};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, StringArray,
    TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One output row per labelled row (index k of `labelled`): identity, labels, features, target.
pub(super) fn output_table(
    rows: &Rows,
    feats: &[features::Feature],
    outlier: &[bool],
    labelled: &[(usize, i32)],
    classes: &[&str],
    anon: Option<&Anonymizer>,
) -> Result<RecordBatch> {
    let idx: arrow::array::UInt32Array = labelled.iter().map(|(i, _)| *i as u32).collect();
    let mut fields: Vec<Field> = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let schema = rows.batch.schema();
    let identity = [
        schema::AGENT_ID,
        schema::WINDOW_START,
        schema::WINDOW_END,
        schema::SEQ,
        schema::PAYLOAD_SHA256,
    ];
    let operator_labels = schema
        .fields()
        .iter()
        .filter(|f| schema::label_key(f.name()).is_some())
        .map(|f| f.name().as_str());
    for name in identity.into_iter().chain(operator_labels) {
        if let Some(c) = rows.batch.column_by_name(name) {
            let f = schema.field_with_name(name)?;
            fields.push(f.clone());
            cols.push(take(c.as_ref(), &idx, None)?);
        }
    }
    for f in feats {
        let pick = labelled.iter().map(|(i, _)| features::get(&f.values, *i));
        if f.integer {
            fields.push(Field::new(&f.name, DataType::Int32, true));
            cols.push(Arc::new(
                pick.map(|v| v.map(|v| v as i32)).collect::<Int32Array>(),
            ));
        } else {
            fields.push(Field::new(&f.name, DataType::Float64, true));
            cols.push(Arc::new(pick.collect::<Float64Array>()));
        }
    }
    fields.push(Field::new("is_outlier", DataType::Boolean, false));
    cols.push(Arc::new(
        labelled
            .iter()
            .map(|(i, _)| Some(outlier[*i]))
            .collect::<BooleanArray>(),
    ));
    fields.push(Field::new("label", DataType::Utf8, false));
    cols.push(Arc::new(
        labelled
            .iter()
            .map(|(_, l)| Some(classes[*l as usize]))
            .collect::<StringArray>(),
    ));
    fields.push(Field::new("label_id", DataType::Int32, false));
    cols.push(Arc::new(
        labelled.iter().map(|(_, l)| *l).collect::<Int32Array>(),
    ));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    match anon {
        Some(a) => a.apply(&batch),
        None => Ok(batch),
    }
}

/// `ks` ordered by (window_start, agent_id) of `table`.
pub(super) fn time_order(table: &RecordBatch, ks: &[usize]) -> Result<Vec<usize>> {
    let starts = column::<TimestampMillisecondArray>(table, schema::WINDOW_START)
        .context(schema::WINDOW_START)?;
    let agents = column::<StringArray>(table, schema::AGENT_ID).context(schema::AGENT_ID)?;
    let mut out = ks.to_vec();
    out.sort_by(|a, b| {
        (starts.value(*a), agents.value(*a)).cmp(&(starts.value(*b), agents.value(*b)))
    });
    Ok(out)
}

/// Longest shard path component, bytes (see [`path_safe`]).
const MAX_COMPONENT_BYTES: usize = 64;

/// A path component from a label or id: `[A-Za-z0-9._-]`, others as `_`; empty or all dots →
/// `unknown`. Longer than [`MAX_COMPONENT_BYTES`]: its first 55 bytes, `-` and 8 hex digits of
/// SHA-256 of the original value, so distinct long values stay distinct.
fn path_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.len() > MAX_COMPONENT_BYTES {
        use sha2::Digest;
        // All ASCII now, so any byte index is a char boundary.
        out.truncate(MAX_COMPONENT_BYTES - 9);
        out.push('-');
        out.push_str(&hex::encode(&sha2::Sha256::digest(s.as_bytes())[..4]));
    }
    if out.is_empty() || out.chars().all(|c| c == '.') {
        "unknown".into()
    } else {
        out
    }
}

pub(super) type ShardMap = BTreeMap<(String, String), (Vec<usize>, Vec<usize>)>;

/// Train and test rows per (site, agent) in time order (agent ids as in `table`).
pub(super) fn shards(table: &RecordBatch, train: &[usize], test: &[usize]) -> Result<ShardMap> {
    let agents = column::<StringArray>(table, schema::AGENT_ID).context(schema::AGENT_ID)?;
    let sites = column::<StringArray>(table, &schema::label_column("site"));
    let key = |k: usize| {
        let site = sites
            .filter(|s| s.is_valid(k))
            .map_or("unknown", |s| s.value(k));
        (path_safe(site), path_safe(agents.value(k)))
    };
    let mut out = ShardMap::new();
    for &k in &time_order(table, train)? {
        out.entry(key(k)).or_default().0.push(k);
    }
    for &k in &time_order(table, test)? {
        out.entry(key(k)).or_default().1.push(k);
    }
    Ok(out)
}

/// The path of a shard's split file, relative to the training-set directory.
pub(super) fn shard_path(site: &str, agent: &str, split: &str) -> String {
    format!("shards/site={site}/agent={agent}/{split}.parquet")
}

/// The shard files not written: every (shard, split) with no rows. No shard file is ever
/// empty; the top-level `train.parquet` and `test.parquet` are always written.
pub(super) fn empty_shard_splits(shards: &ShardMap) -> Vec<manifest::SkippedFile> {
    let mut out = Vec::new();
    for ((site, agent), (tr, te)) in shards {
        for (split, ks) in [("train", tr), ("test", te)] {
            if ks.is_empty() {
                out.push(manifest::SkippedFile {
                    path: shard_path(site, agent, split),
                    split: split.to_string(),
                    site: site.clone(),
                    agent: agent.clone(),
                    reason: "no rows",
                });
            }
        }
    }
    out
}

/// Files with fewer rows than this (most per-agent shards) are written uncompressed: zstd gains
/// little on a few dozen values per column, and its per-column context setup made up a fifth of
/// a training export's time.
const COMPRESS_FROM_ROWS: usize = 1024;

/// The store's writer settings ([`writer_properties`]), uncompressed for small files.
fn file_properties(
    schema: &Schema,
    rows: usize,
) -> Result<parquet::file::properties::WriterProperties> {
    let props = writer_properties(schema)?;
    Ok(if rows < COMPRESS_FROM_ROWS {
        props
            .into_builder()
            .set_compression(parquet::basic::Compression::UNCOMPRESSED)
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .build()
    } else {
        props
    })
}

/// Rows taken from the output table per write, bounding the copy a split file needs.
const WRITE_CHUNK_ROWS: usize = 65_536;

/// Writes rows `ks` of `table` to `dir/rel` (Parquet; zstd from [`COMPRESS_FROM_ROWS`] rows) and
/// describes the file.
pub(super) fn write_file(
    dir: &Path,
    rel: &str,
    table: &RecordBatch,
    ks: &[usize],
    split: &str,
    shard: Option<(&str, &str)>,
) -> Result<manifest::FileEntry> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = ArrowWriter::try_new(
        file,
        table.schema(),
        Some(file_properties(&table.schema(), ks.len())?),
    )?;
    // In slices, so a split file never needs a second copy of the whole table.
    for chunk in ks.chunks(WRITE_CHUNK_ROWS) {
        let idx: UInt32Array = chunk.iter().map(|k| *k as u32).collect();
        w.write(&take_record_batch(table, &idx)?)?;
    }
    let file = w.into_inner()?;
    file.sync_all()?;
    manifest::FileEntry::of(&path, rel, ks.len(), split, shard)
}

#[cfg(test)]
mod tests {
    use super::path_safe;

    #[test]
    fn shard_components_are_safe_and_capped() {
        assert_eq!(path_safe("eu-1"), "eu-1");
        assert_eq!(path_safe("../../etc/x\n\0"), ".._.._etc_x__");
        assert_eq!(path_safe(".."), "unknown");
        assert_eq!(path_safe(""), "unknown");
        let (a, b) = (path_safe(&"s".repeat(300)), path_safe(&"s".repeat(301)));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b, "distinct long values stay distinct");
        assert!(path_safe(&"é".repeat(300)).len() <= 64);
    }
}
