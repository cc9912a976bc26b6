//! The one reader of the store, for live history, exports, the demo and the test harness:
//! committed files only ([`files::committed_files`]), partitions pruned by date, rows filtered
//! by `window_start` range, agent, labels and metric ([`Query`]).
//!
//! - [`Scan`]: one table as Arrow batches, every batch conformed to one schema — the union of
//!   the files' schemas, so `windows` files written before a label appeared get null columns
//!   instead of failing or dropping data. A scan of `windows` is the wide view ([`super::pivot`]): each
//!   row also carries its `stats` rows as `<metric>__<stat>` columns. Union column order
//!   (stable, documented in README): the fixed columns in the order of the first file, then
//!   `label_<key>` columns by key, then `<metric>__<stat>` columns by metric and in
//!   [`schema::STAT_NAMES`] order.
//! - [`windows`]: whole windows rebuilt as snapshots — host attributes, labels, exact stats and
//!   downsampled series — with their lineage (`seq`, payload SHA-256, encoding, commit time).
//!   They carry no process records and no raw payload (the store keeps decoded values).

use super::files::committed_files;
use super::pivot::Pivot;
use super::schema::{self, Table};
use anyhow::{bail, Context, Result};
use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Float64Array, StringArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use fleetset_proto::{Point, Snapshot, WindowStats};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A batch read and the `stats` rows committed with its file (empty but for `windows`).
type WithStats = (RecordBatch, Arc<Vec<RecordBatch>>);

/// Rows per batch read from Parquet.
const BATCH_ROWS: usize = 64 * 1024;

/// Which rows of the store to read. The default reads everything.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Inclusive lower bound on `window_start`, Unix ms UTC.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on `window_start`, Unix ms UTC.
    pub to_ms: Option<i64>,
    /// Only these agent ids (as stored); empty = all.
    pub agents: Vec<String>,
    /// Only windows carrying every one of these `(key, value)` labels; empty = all. Applies to
    /// the `windows` table (the only one with label columns) and to [`windows`].
    pub labels: Vec<(String, String)>,
    /// Only these metrics (`series` and `stats` rows; `windows` statistics columns); empty =
    /// all.
    pub metrics: Vec<String>,
}

/// The column `name` of `b` downcast to `T`, if present with that type.
pub fn column<'a, T: Array + 'static>(b: &'a RecordBatch, name: &str) -> Option<&'a T> {
    b.column_by_name(name)?.as_any().downcast_ref::<T>()
}

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
    query: Query,
    agents: HashSet<String>,
    metrics: HashSet<String>,
    /// The statistics pivoted into a `windows` scan (`None` for other tables).
    pivot: Option<Pivot>,
    data_dir: PathBuf,
}

/// Sort key of a union column: fixed, then labels, then statistics by metric and stat order.
fn column_rank(name: &str, first_seen: usize) -> (u8, String, usize) {
    if let Some((metric, stat)) = schema::parse_stat_column(name) {
        return (2, metric.to_string(), stat);
    }
    if schema::label_key(name).is_some() {
        return (1, name.to_string(), 0);
    }
    (0, String::new(), first_seen)
}

impl Scan {
    /// Plans a read of `table` in `data_dir`: lists files, reads their footers and builds the
    /// union schema (restricted to `query.metrics` for windows statistics columns).
    /// Errors: an unreadable footer; one column with two different types across files; a label
    /// filter on a table other than `windows`.
    pub fn open(data_dir: &Path, table: Table, query: &Query) -> Result<Scan> {
        if !query.labels.is_empty() && table != Table::Windows {
            bail!(
                "label filters apply to the windows table, not {}",
                table.name()
            );
        }
        let files = committed_files(data_dir, table, query.from_ms, query.to_ms);
        let metrics: HashSet<String> = query.metrics.iter().cloned().collect();
        let mut fields: Vec<Field> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut add = |f: &Field, source: &Path| -> Result<()> {
            if table == Table::Windows && !metrics.is_empty() {
                if let Some((m, _)) = schema::parse_stat_column(f.name()) {
                    if !metrics.contains(m) {
                        return Ok(());
                    }
                }
            }
            match seen.get(f.name()).map(|&i| &fields[i]) {
                Some(g) if g.data_type() != f.data_type() => bail!(
                    "column {} is {} in {} but {} in an earlier file",
                    f.name(),
                    f.data_type(),
                    source.display(),
                    g.data_type()
                ),
                Some(_) => {}
                None => {
                    seen.insert(f.name().clone(), fields.len());
                    fields.push(f.clone().with_nullable(true));
                }
            }
            Ok(())
        };
        let mut file_rows = 0u64;
        for path in &files {
            let builder = ParquetRecordBatchReaderBuilder::try_new(
                File::open(path).with_context(|| format!("opening {}", path.display()))?,
            )
            .with_context(|| format!("reading the footer of {}", path.display()))?;
            file_rows += builder.metadata().file_metadata().num_rows().max(0) as u64;
            for f in builder.schema().fields() {
                add(f, path)?;
            }
        }
        let pivot = if table == Table::Windows {
            let p = Pivot::open(data_dir, &files, &metrics)?;
            for f in p.fields() {
                add(&f, &Table::Stats.dir(data_dir))?;
            }
            Some(p)
        } else {
            None
        };
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
            query: query.clone(),
            agents: query.agents.iter().cloned().collect(),
            metrics,
            pivot,
            data_dir: data_dir.to_path_buf(),
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
                // A windows file's stats rows are read once, for all its batches.
                let stats = match &self.pivot {
                    Some(p) => p.load(&self.data_dir, path).map(Arc::new),
                    None => Ok(Arc::default()),
                };
                let reader = stats.and_then(|stats| {
                    let r = File::open(path)
                        .map_err(anyhow::Error::from)
                        .and_then(|f| Ok(ParquetRecordBatchReaderBuilder::try_new(f)?))
                        .and_then(|b| Ok(b.with_batch_size(BATCH_ROWS).build()?))
                        .with_context(|| format!("reading {}", path.display()))?;
                    Ok((r, stats))
                });
                let batches: Box<dyn Iterator<Item = Result<WithStats>>> = match reader {
                    Ok((r, stats)) => Box::new(r.map(move |b| {
                        b.map(|b| (b, stats.clone()))
                            .with_context(|| format!("reading {}", path.display()))
                    })),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
                batches
            })
            .map(move |b| {
                let (b, stats) = b?;
                progress(b.num_rows() as u64);
                let b = self.filter(&b)?;
                let wide = match &self.pivot {
                    Some(p) if b.num_rows() > 0 => p.columns(&b, &stats)?,
                    _ => HashMap::new(),
                };
                self.conform(&b, wide)
            })
            .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
    }

    /// Every selected row as one batch (the union schema), for readers that need all rows at
    /// once (training sets). `None` when nothing matched.
    pub fn read_all(&self) -> Result<Option<RecordBatch>> {
        let batches: Vec<RecordBatch> = self.batches(|_| {}).collect::<Result<_>>()?;
        if batches.is_empty() {
            return Ok(None);
        }
        Ok(Some(arrow::compute::concat_batches(
            &self.schema,
            &batches,
        )?))
    }

    /// Keeps the rows inside the time range, of the selected agents, labels (windows) and
    /// metrics (series).
    fn filter(&self, b: &RecordBatch) -> Result<RecordBatch> {
        let q = &self.query;
        let starts = column::<TimestampMillisecondArray>(b, schema::WINDOW_START);
        let agents = column::<StringArray>(b, schema::AGENT_ID);
        let metrics = column::<StringArray>(b, schema::METRIC).filter(|_| {
            matches!(self.table, Table::Series | Table::Stats) && !self.metrics.is_empty()
        });
        let (Some(starts), Some(agents)) = (starts, agents) else {
            bail!(
                "a {} file lacks {} or {}",
                self.table.name(),
                schema::WINDOW_START,
                schema::AGENT_ID
            );
        };
        // A label column missing from a file: no row of it carries the label.
        let labels: Option<Vec<(&StringArray, &str)>> = q
            .labels
            .iter()
            .map(|(k, v)| {
                column::<StringArray>(b, &schema::label_column(k)).map(|c| (c, v.as_str()))
            })
            .collect();
        let Some(labels) = labels else {
            return Ok(b.slice(0, 0));
        };
        let keep: BooleanArray = (0..b.num_rows())
            .map(|i| {
                let t = starts.value(i);
                Some(
                    q.from_ms.is_none_or(|f| t >= f)
                        && q.to_ms.is_none_or(|to| t < to)
                        && (self.agents.is_empty() || self.agents.contains(agents.value(i)))
                        && metrics.is_none_or(|m| self.metrics.contains(m.value(i)))
                        && labels
                            .iter()
                            .all(|(c, v)| c.is_valid(i) && c.value(i) == *v),
                )
            })
            .collect();
        if keep.true_count() == b.num_rows() {
            return Ok(b.clone());
        }
        Ok(filter_record_batch(b, &keep)?)
    }

    /// `b` with the columns of [`Scan::schema`], taken from `wide` (the pivoted statistics)
    /// first, then `b`: missing ones as nulls, extra ones dropped.
    fn conform(&self, b: &RecordBatch, mut wide: HashMap<String, ArrayRef>) -> Result<RecordBatch> {
        let own = b.schema();
        let own: HashMap<&str, usize> = own
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().as_str(), i))
            .collect();
        let cols: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                wide.remove(f.name())
                    .or_else(|| own.get(f.name().as_str()).map(|&i| b.column(i).clone()))
                    .unwrap_or_else(|| new_null_array(f.data_type(), b.num_rows()))
            })
            .collect();
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

/// A stored window: the snapshot rebuilt from `windows` and `series` (no process records), and
/// its lineage.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    /// Agent id, seq, window bounds, host attributes, labels, stats and downsampled points
    /// (each series in time order; a metric with stats but no stored points has an empty one).
    pub snapshot: Snapshot,
    /// SHA-256 of the frame payload the window arrived in (32 bytes; empty if unreadable).
    pub payload_sha256: Vec<u8>,
    /// Encoding of that payload as stored: `msgpack`, `protobuf` or `unknown`.
    pub encoding: String,
    /// When the aggregator committed the window, Unix ms UTC (0 if absent).
    pub received_at_ms: i64,
}

fn string(b: &RecordBatch, name: &str, i: usize) -> Option<String> {
    column::<StringArray>(b, name)
        .filter(|c| c.is_valid(i))
        .map(|c| c.value(i).to_string())
}

/// The wide statistics columns of `b` by metric: `(metric, column index per STAT_NAMES)`.
fn stat_columns(b: &RecordBatch) -> Vec<(String, [Option<usize>; 7])> {
    let mut by_metric: std::collections::BTreeMap<String, [Option<usize>; 7]> = Default::default();
    for (c, f) in b.schema().fields().iter().enumerate() {
        if let Some((metric, k)) = schema::parse_stat_column(f.name()) {
            by_metric.entry(metric.to_string()).or_default()[k] = Some(c);
        }
    }
    by_metric.into_iter().collect()
}

/// One `windows` row (of the wide view; `stats` from [`stat_columns`]) as a stored window
/// without points; `None` if a key column is null.
fn window_row(
    b: &RecordBatch,
    stats: &[(String, [Option<usize>; 7])],
    i: usize,
) -> Option<StoredWindow> {
    let ts = |name| {
        column::<TimestampMillisecondArray>(b, name)
            .filter(|c| c.is_valid(i))
            .map(|c| c.value(i))
    };
    let u64v = |name| {
        column::<UInt64Array>(b, name)
            .filter(|c| c.is_valid(i))
            .map(|c| c.value(i))
    };
    let text = |name| string(b, name, i).unwrap_or_default();
    let mut s = Snapshot {
        agent_id: string(b, schema::AGENT_ID, i)?,
        start: ts(schema::WINDOW_START)?,
        end: ts(schema::WINDOW_END)?,
        seq: u64v(schema::SEQ)?,
        sample_interval_ms: u64v(schema::SAMPLE_INTERVAL_MS).unwrap_or(0),
        ..Default::default()
    };
    s.host.hostname = text(schema::HOSTNAME);
    s.host.os = text(schema::OS);
    s.host.kernel = text(schema::KERNEL);
    s.host.agent_version = text(schema::AGENT_VERSION);
    s.host.cpu_count = column::<UInt32Array>(b, schema::CPU_COUNT)
        .filter(|c| c.is_valid(i))
        .map_or(0, |c| c.value(i));
    s.host.memory_total_mb = u64v(schema::MEMORY_TOTAL_MB).unwrap_or(0);
    for field in b.schema().fields() {
        let name = field.name();
        if let Some(key) =
            schema::label_key(name).filter(|_| schema::parse_stat_column(name).is_none())
        {
            if let Some(v) = string(b, name, i) {
                s.host.labels.insert(key.to_string(), v);
            }
        }
    }
    for (metric, cols) in stats {
        let count = cols[0]
            .and_then(|c| b.column(c).as_any().downcast_ref::<UInt64Array>())
            .filter(|c| c.is_valid(i))
            .map(|c| c.value(i));
        let Some(count) = count else { continue };
        let stat = |c: Option<usize>| {
            c.and_then(|c| b.column(c).as_any().downcast_ref::<Float64Array>())
                .filter(|c| c.is_valid(i))
                .map(|c| c.value(i))
        };
        // `std` is null for a window with fewer than 2 samples; the others are always set.
        let [_, min, max, mean, std, first, last] = cols.map(stat);
        let [min, max, mean, first, last] =
            [min, max, mean, first, last].map(|v| v.unwrap_or(f64::NAN));
        s.stats.insert(
            metric.clone(),
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
        s.data.entry(metric.clone()).or_default();
    }
    Some(StoredWindow {
        snapshot: s,
        payload_sha256: hex::decode(text(schema::PAYLOAD_SHA256)).unwrap_or_default(),
        encoding: text(schema::ENCODING),
        received_at_ms: ts(schema::RECEIVED_AT).unwrap_or(0),
    })
}

/// `window_start` ranges `[from, to)` (Unix ms) that cut the windows matching `query` into
/// pages of at most `per_page` windows in start order — more only when one start alone has
/// more (a start is never split). For reading a long history page by page with [`windows`]
/// (live `since`): this pass keeps one count per distinct start, not the windows.
/// Errors: an unreadable committed file.
pub fn window_pages(data_dir: &Path, query: &Query, per_page: usize) -> Result<Vec<(i64, i64)>> {
    let mut starts: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
    for b in Scan::open(data_dir, Table::Windows, query)?.batches(|_| {}) {
        let b = b?;
        let Some(col) = column::<TimestampMillisecondArray>(&b, schema::WINDOW_START) else {
            bail!("a windows file lacks {}", schema::WINDOW_START);
        };
        for t in col.iter().flatten() {
            let n = starts.entry(t).or_default();
            *n = n.saturating_add(1);
        }
    }
    let mut pages = Vec::new();
    let mut page: Option<(i64, usize)> = None; // (first start, windows so far)
    for (&start, &n) in &starts {
        page = match page {
            Some((first, k)) if k.saturating_add(n) > per_page.max(1) => {
                pages.push((first, start));
                Some((start, n))
            }
            Some((first, k)) => Some((first, k.saturating_add(n))),
            None => Some((start, n)),
        };
    }
    if let (Some((first, _)), Some(&last)) = (page, starts.keys().next_back()) {
        pages.push((first, last.saturating_add(1)));
    }
    Ok(pages)
}

/// The stored windows matching `query` (time range on `window_start`, agents, labels; with
/// `metrics`, only those series and stats), with their series, sorted by (window_start,
/// agent_id, seq). Every `windows` row is one item: a window stored twice (which the store
/// never does) would show twice. Errors: an unreadable committed file.
pub fn windows(data_dir: &Path, query: &Query) -> Result<Vec<StoredWindow>> {
    let mut out: Vec<StoredWindow> = Vec::new();
    for b in Scan::open(data_dir, Table::Windows, query)?.batches(|_| {}) {
        let b = b?;
        let stats = stat_columns(&b);
        out.extend((0..b.num_rows()).filter_map(|i| window_row(&b, &stats, i)));
    }
    if out.is_empty() {
        return Ok(out);
    }
    // (agent_id, window_start) → positions in `out`.
    let mut by_key: HashMap<(String, i64), Vec<usize>> = HashMap::new();
    for (i, w) in out.iter().enumerate() {
        by_key
            .entry((w.snapshot.agent_id.clone(), w.snapshot.start))
            .or_default()
            .push(i);
    }
    let series_query = Query {
        labels: Vec::new(),
        ..query.clone()
    };
    for b in Scan::open(data_dir, Table::Series, &series_query)?.batches(|_| {}) {
        let b = b?;
        let (Some(agents), Some(starts), Some(metrics), Some(ts), Some(values)) = (
            column::<StringArray>(&b, schema::AGENT_ID),
            column::<TimestampMillisecondArray>(&b, schema::WINDOW_START),
            column::<StringArray>(&b, schema::METRIC),
            column::<TimestampMillisecondArray>(&b, schema::TS),
            column::<Float64Array>(&b, schema::VALUE),
        ) else {
            bail!("a series file lacks one of its columns");
        };
        for i in 0..b.num_rows() {
            let Some(at) = by_key.get(&(agents.value(i).to_string(), starts.value(i))) else {
                continue;
            };
            for &k in at {
                out[k]
                    .snapshot
                    .data
                    .entry(metrics.value(i).to_string())
                    .or_default()
                    .push(Point {
                        ts_ms: ts.value(i),
                        value: values.value(i),
                    });
            }
        }
    }
    for w in &mut out {
        for points in w.snapshot.data.values_mut() {
            points.sort_by_key(|p| p.ts_ms);
        }
    }
    out.sort_by(|a, b| {
        let (a, b) = (&a.snapshot, &b.snapshot);
        (a.start, &a.agent_id, a.seq).cmp(&(b.start, &b.agent_id, b.seq))
    });
    Ok(out)
}
