//! `export --training`: a labelled, validated, time-split, sharded training set with a
//! manifest, from the store's windows (and series, for trends).
//!
//! Output in `--output DIR` (written to `DIR.tmp-…` and renamed into place when complete):
//! - `train.parquet`, `test.parquet`: every split row, in time order;
//! - `shards/site=<site>/agent=<agent>/{train,test}.parquet`: the same rows, one shard per site
//!   (operator label `site`, `unknown` when absent) and per agent, for federated clients; a
//!   shard file that would hold no rows is not written (manifest `skipped_files`);
//! - `manifest.json`: see [`manifest`].
//!
//! Stages: read and de-duplicate the windows ([`Rows`]) → [`features`] → [`validate`]
//! (`is_outlier` per agent or fleet-wide, `--outliers-by`) → [`labels`] → [`split`] (one
//! fleet-wide cutoff or one per agent, `--split-by`; class balancing) → the split-shape
//! warnings ([`validate::Report::check_split`], empty shards) and [`baseline`]s → `--strict`
//! refuses here, before anything is written → `output` → [`manifest`].
//!
//! Columns (a contract, README "Training sets"): `agent_id` (salted hash unless
//! `--no-anonymize`), `window_start`, `window_end` (timestamp ms UTC), `seq`, `payload_sha256`
//! (lineage: the frame each row came from), the operator labels `label_<key>`, the features of
//! [`features`], `is_outlier`, and the target: `label` (class name) and `label_id` (Int32).

pub mod baseline;
pub mod features;
pub mod labels;
pub mod manifest;
mod output;
pub mod split;
pub mod validate;

use super::anonymize::Anonymizer;
use super::{prepare_output, ExportFlags, Query, Table};
use crate::store::reader::{column, Scan};
use crate::store::schema;
use anyhow::{bail, Context, Result};
use arrow::array::{BooleanArray, Float64Array, StringArray, TimestampMillisecondArray};
use arrow::compute::{lexsort_to_indices, take_record_batch, SortColumn};
use arrow::record_batch::RecordBatch;
use clap::Args;
use labels::LabelRule;
use split::{Part, SplitBy};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use validate::OutliersBy;

/// Training-set flags of `export` (with `--training`).
#[derive(Debug, Args)]
pub struct TrainingFlags {
    /// Fraction of labelled rows (in time order) before the train/test cutoff.
    #[arg(long, default_value_t = 0.8)]
    pub split: f64,
    /// Where the cutoff is: one fleet-wide time (`time`), or each agent's own at --split of its
    /// rows (`agent`, for agents that cover different periods).
    #[arg(long, value_enum, default_value_t = SplitBy::Time)]
    pub split_by: SplitBy,
    /// IQR bounds of `is_outlier` per agent (`agent`) or over the whole selection (`fleet`).
    #[arg(long, value_enum, default_value_t = OutliersBy::Agent)]
    pub outliers_by: OutliersBy,
    /// Largest share (0-1) of a split's rows from one agent before an
    /// `agent_dominates_split` warning (when the set has several agents).
    #[arg(long, default_value_t = 0.5)]
    pub max_agent_share: f64,
    /// Lag features: the means of this many previous windows per metric (0 = none).
    #[arg(long, default_value_t = 1)]
    pub lags: usize,
    /// Column of the following window that the class rule reads.
    #[arg(long, default_value = "memory_used_percent__max")]
    pub label_column: String,
    /// Class boundaries of the default rule (ascending; percent for memory pressure).
    #[arg(long, value_delimiter = ',', default_value = "75,85,95")]
    pub class_thresholds: Vec<f64>,
    /// Binary labels from a threshold on the following window, e.g. `cpu_percent__mean>90`.
    #[arg(long, conflicts_with = "label_windows")]
    pub label_threshold: Option<String>,
    /// Binary labels from incident windows (JSON like NAB's combined_windows.json).
    #[arg(long)]
    pub label_windows: Option<PathBuf>,
    /// Undersample training rows so every class has as many as the smallest.
    #[arg(long)]
    pub balance_classes: bool,
    /// Seed of every random choice (class balancing), for reproducible exports.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fail, writing nothing, on any validation violation and on the split-shape warnings
    /// (agent_dominates_split, class_under_1_percent, empty_shard_split).
    #[arg(long)]
    pub strict: bool,
    /// Drop rows flagged as IQR outliers (default: keep and flag them).
    #[arg(long)]
    pub drop_outliers: bool,
    /// Largest tolerated fraction of missing values in a feature column.
    #[arg(long, default_value_t = 0.1)]
    pub max_missing: f64,
}

impl TrainingFlags {
    fn rule(&self) -> Result<LabelRule> {
        if let Some(path) = &self.label_windows {
            LabelRule::incidents(path)
        } else if let Some(expr) = &self.label_threshold {
            LabelRule::threshold(expr)
        } else {
            LabelRule::classes(&self.label_column, &self.class_thresholds)
        }
    }
}

/// The selected windows, sorted by (agent, window start) and de-duplicated, with the lookups
/// features and labels need.
#[derive(Debug)]
pub struct Rows {
    /// The windows rows (union schema).
    pub batch: RecordBatch,
    /// `agent_id` per row, as stored.
    pub agent: Vec<String>,
    /// `window_start` per row, Unix ms.
    pub start: Vec<i64>,
    /// `window_end` per row, Unix ms.
    pub end: Vec<i64>,
    groups: HashMap<String, Range<usize>>,
}

impl Rows {
    /// Sorts and de-duplicates `batch`; returns the rows and the duplicates dropped.
    fn new(batch: RecordBatch) -> Result<(Rows, usize)> {
        let sort = |name: &str| -> Result<SortColumn> {
            Ok(SortColumn {
                values: batch
                    .column_by_name(name)
                    .with_context(|| format!("the windows table lacks {name}"))?
                    .clone(),
                options: None,
            })
        };
        let order = lexsort_to_indices(
            &[sort(schema::AGENT_ID)?, sort(schema::WINDOW_START)?],
            None,
        )?;
        let sorted = take_record_batch(&batch, &order)?;
        let agents =
            column::<StringArray>(&sorted, schema::AGENT_ID).context("agent_id is not text")?;
        let starts = column::<TimestampMillisecondArray>(&sorted, schema::WINDOW_START)
            .context("window_start is not a timestamp")?;
        let keep: BooleanArray = (0..sorted.num_rows())
            .map(|i| {
                Some(
                    i == 0
                        || agents.value(i) != agents.value(i - 1)
                        || starts.value(i) != starts.value(i - 1),
                )
            })
            .collect();
        let duplicates = sorted.num_rows() - keep.true_count();
        let batch = arrow::compute::filter_record_batch(&sorted, &keep)?;
        let agent: Vec<String> = column::<StringArray>(&batch, schema::AGENT_ID)
            .context(schema::AGENT_ID)?
            .iter()
            .map(|a| a.unwrap_or_default().to_string())
            .collect();
        let ts = |name| -> Result<Vec<i64>> {
            Ok(column::<TimestampMillisecondArray>(&batch, name)
                .with_context(|| format!("the windows table lacks {name}"))?
                .values()
                .to_vec())
        };
        let (start, end) = (ts(schema::WINDOW_START)?, ts(schema::WINDOW_END)?);
        let mut groups: HashMap<String, Range<usize>> = HashMap::new();
        for (i, a) in agent.iter().enumerate() {
            groups.entry(a.clone()).or_insert(i..i).end = i + 1;
        }
        Ok((
            Rows {
                batch,
                agent,
                start,
                end,
                groups,
            },
            duplicates,
        ))
    }

    /// The row of `agent`'s window starting at `start`.
    pub fn find(&self, agent: &str, start: i64) -> Option<usize> {
        let g = self.groups.get(agent)?;
        self.start[g.clone()]
            .binary_search(&start)
            .ok()
            .map(|i| g.start + i)
    }

    /// The agent's previous window (any gap), if any.
    pub fn previous(&self, i: usize) -> Option<usize> {
        (i > 0 && self.agent[i - 1] == self.agent[i]).then(|| i - 1)
    }

    /// The agent's window exactly `k` windows before row `i` (contiguous), if stored.
    pub fn back(&self, i: usize, k: usize) -> Option<usize> {
        let len = self.end[i] - self.start[i];
        self.find(&self.agent[i], self.start[i] - k as i64 * len)
    }

    /// The agent's following window (starting where row `i` ends), if stored.
    pub fn next(&self, i: usize) -> Option<usize> {
        self.find(&self.agent[i], self.end[i])
    }
}

/// Runs `export --training`.
pub fn run(flags: &ExportFlags, selection: &Query, anon: Option<&Anonymizer>) -> Result<()> {
    let t = &flags.train;
    if !(0.0..=1.0).contains(&t.split) {
        bail!("--split {} is not between 0 and 1", t.split);
    }
    if !(t.max_agent_share > 0.0 && t.max_agent_share <= 1.0) {
        bail!("--max-agent-share {} is not in (0, 1]", t.max_agent_share);
    }
    let rule = t.rule()?;
    prepare_output(&flags.output, flags.overwrite)?;
    let started = std::time::Instant::now();
    // Statistics columns of every metric: the label rule may read one that is not a feature.
    let all_metrics = Query {
        metrics: Vec::new(),
        ..selection.clone()
    };
    let windows_scan = Scan::open(&flags.data_dir, Table::Windows, &all_metrics)?;
    let batch = windows_scan.read_all()?;
    let Some(batch) = batch else {
        bail!(
            "no windows in {} match the selection; nothing to train on",
            flags.data_dir.display()
        );
    };
    check_memory(&batch)?;
    let mut report = validate::Report {
        rows_read: batch.num_rows(),
        ..Default::default()
    };
    let (mut rows, duplicates) = Rows::new(batch)?;
    report.duplicates_dropped = duplicates;
    let metrics = features::metrics_of(&rows.batch, &selection.metrics);
    if metrics.is_empty() {
        bail!(
            "the selected windows carry none of the metrics {:?}",
            selection.metrics
        );
    }
    if let Some(c) = rule.column() {
        if rows.batch.column_by_name(c).is_none() {
            bail!(
                "label column {c} is not in the store; label columns are <metric>__<stat>, metrics here: {}",
                features::metrics_of(&rows.batch, &[]).join(", ")
            );
        }
    }
    let mut trends = features::Trends::new(rows.agent.len(), metrics.len());
    let series_selection = Query {
        metrics: metrics.clone(),
        ..selection.clone()
    };
    let series_scan = Scan::open(&flags.data_dir, Table::Series, &series_selection)?;
    for b in series_scan.batches(|_| {}) {
        trends.add_series(&rows, &metrics, &b?)?;
    }
    let mut feats = features::build(&rows, &metrics, &trends, t.lags);
    drop(trends);
    let outlier = report.check(&rows, &metrics, &feats, t.max_missing, t.outliers_by);

    // Labels from the following window.
    let label_values = rule.column().map(|c| features::numbers(&rows.batch, c));
    let mut unlabelled = 0usize;
    let mut labelled: Vec<(usize, i32)> = Vec::new();
    for (i, &is_outlier) in outlier.iter().enumerate() {
        if t.drop_outliers && is_outlier {
            report.outliers_dropped += 1;
            continue;
        }
        let label = rows.next(i).and_then(|j| {
            let value = label_values.as_ref().and_then(|v| features::get(v, j));
            rule.label(&rows.agent[i], rows.start[j], rows.end[j], value)
        });
        match label {
            Some(l) => labelled.push((i, l)),
            None => unlabelled += 1,
        }
    }
    let unknown_agents: Vec<&String> = rows
        .groups
        .keys()
        .filter(|a| !rule.knows_agent(a))
        .collect();
    if !unknown_agents.is_empty() {
        report.warn(
            validate::Code::AgentsWithoutIncidents,
            format!(
                "{} agent(s) have no entry in the incidents file; all their rows are Negative",
                unknown_agents.len()
            ),
        );
    }

    // Time-ordered split.
    let mut split = assign(&rows, &labelled, t);
    let balanced_away = if t.balance_classes {
        split::balance(&mut split.train, |k| labelled[k].1, t.seed)
    } else {
        0
    };
    let (train, test) = (&split.train, &split.test);
    let classes = rule.class_names();
    let histogram = |ks: &[usize]| -> BTreeMap<String, usize> {
        let mut h: BTreeMap<String, usize> = classes.iter().map(|c| (c.to_string(), 0)).collect();
        for k in ks {
            *h.entry(classes[labelled[*k].1 as usize].to_string())
                .or_default() += 1;
        }
        h
    };
    let (train_hist, test_hist) = (histogram(train), histogram(test));
    let mut all_hist = train_hist.clone();
    for (c, n) in &test_hist {
        *all_hist.entry(c.clone()).or_default() += n;
    }
    report.check_classes(&all_hist);

    // The output table of all labelled rows (agent ids as written), its shards, and the checks
    // of the splits' shape.
    let table = output::output_table(&rows, &feats, &outlier, &labelled, classes, anon)?;
    let agent_of = column::<StringArray>(&table, schema::AGENT_ID).context(schema::AGENT_ID)?;
    let per_agent = |ks: &[usize]| -> BTreeMap<&str, usize> {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for &k in ks {
            *m.entry(agent_of.value(k)).or_default() += 1;
        }
        m
    };
    let agents_in_set = (0..table.num_rows())
        .map(|k| agent_of.value(k))
        .collect::<std::collections::HashSet<_>>()
        .len();
    for (name, ks, hist) in [("train", train, &train_hist), ("test", test, &test_hist)] {
        report.check_split(
            name,
            &per_agent(ks),
            hist,
            &all_hist,
            (agents_in_set, t.max_agent_share),
        );
    }
    let shards = output::shards(&table, train, test)?;
    let skipped = output::empty_shard_splits(&shards);
    // A split empty as a whole (`--split 1`) was asked for: only shards missing from a split
    // that has rows are a surprise.
    for (name, ks) in [("train", train), ("test", test)] {
        if ks.is_empty() {
            continue;
        }
        let empty: Vec<&str> = skipped
            .iter()
            .filter(|f| f.split == name)
            .map(|f| f.path.as_str())
            .collect();
        if !empty.is_empty() {
            report.warn(
                validate::Code::EmptyShardSplit,
                format!(
                    "{} agent shard(s) have no {name} rows; their {name}.parquet is not written: {}{}",
                    empty.len(),
                    empty[..empty.len().min(LISTED)].join(", "),
                    if empty.len() > LISTED { ", …" } else { "" }
                ),
            );
        }
    }
    report.print();
    let errors = report.strict_errors();
    if t.strict && !errors.is_empty() {
        bail!(
            "--strict: {} error(s), nothing written:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    let majority = baseline::majority(&train_hist, classes);
    let baselines = manifest::Baselines {
        definition: baseline::DEFINITION,
        majority_class: majority.clone(),
        train: baseline::of(&train_hist, majority.as_deref()),
        test: baseline::of(&test_hist, majority.as_deref()),
    };

    // The output table holds every value written from here on: free the inputs' columns.
    rows.batch = RecordBatch::new_empty(rows.batch.schema());
    for f in &mut feats {
        f.values = Float64Array::from(Vec::<f64>::new());
    }
    let tmp_dir = flags.output.with_file_name(format!(
        ".tmp-{:016x}-{}",
        rand::random::<u64>(),
        flags
            .output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let written = (|| -> Result<Vec<manifest::FileEntry>> {
        let mut files = Vec::new();
        for (name, ks) in [("train", train), ("test", test)] {
            let ordered = output::time_order(&table, ks)?;
            files.push(output::write_file(
                &tmp_dir,
                &format!("{name}.parquet"),
                &table,
                &ordered,
                name,
                None,
            )?);
        }
        for ((site, agent), (tr, te)) in &shards {
            for (name, ks) in [("train", tr), ("test", te)] {
                if ks.is_empty() {
                    continue; // listed in `skipped`
                }
                files.push(output::write_file(
                    &tmp_dir,
                    &output::shard_path(site, agent, name),
                    &table,
                    ks,
                    name,
                    Some((site, agent)),
                )?);
            }
        }
        Ok(files)
    })();
    let files = match written {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp_dir);
            return Err(e);
        }
    };
    let shown = |a: &str| anon.map_or_else(|| a.to_string(), |x| x.hash(a));
    let m = manifest::Manifest {
        selection,
        rule: &rule,
        report: &report,
        features: &feats,
        anonymized: anon,
        source_files: windows_scan.files.iter().chain(series_scan.files.iter()),
        data_dir: &flags.data_dir,
        agents: rows.groups.keys().map(|a| shown(a)).collect(),
        time_range: (
            rows.start.iter().min().copied(),
            rows.end.iter().max().copied(),
        ),
        split: manifest::SplitInfo {
            by: t.split_by,
            fraction: t.split,
            cutoff: split.cutoff,
            cutoffs: split.cutoffs.iter().map(|(a, c)| (shown(a), *c)).collect(),
            max_agent_share: t.max_agent_share,
        },
        rows: manifest::RowCounts {
            windows: rows.agent.len(),
            labelled: labelled.len(),
            unlabelled,
            train: train.len(),
            test: test.len(),
            purged: split.purged,
            balanced_away,
        },
        histograms: [("train", train_hist), ("test", test_hist)].into(),
        baselines: &baselines,
        seed: t.seed,
        balance: t.balance_classes,
        lags: t.lags,
        files: &files,
        skipped: &skipped,
    };
    m.write(&tmp_dir)?;
    std::fs::rename(&tmp_dir, &flags.output)
        .with_context(|| format!("renaming the training set into {}", flags.output.display()))?;
    let bytes: u64 = files.iter().map(|f| f.bytes).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "training set: {} train + {} test rows ({} purged at the cutoff, {} without a following window), {} features, {} files, {} bytes in {:.2} s ({:.0} records/s) to {}{}",
        train.len(),
        test.len(),
        split.purged,
        unlabelled,
        feats.len(),
        files.len() + 1,
        bytes,
        secs,
        (train.len() + test.len()) as f64 / secs.max(1e-9),
        flags.output.display(),
        if anon.is_some() { " (anonymized)" } else { " (NOT anonymized)" }
    );
    Ok(())
}

/// Shard paths named in one warning; the manifest's `skipped_files` lists them all.
const LISTED: usize = 5;

/// Where the labelled rows went: indices into `labelled`.
struct Assignment {
    /// The fleet-wide cutoff (`--split-by time`), Unix ms.
    cutoff: Option<i64>,
    /// Each agent's cutoff (`--split-by agent`; stored agent ids), Unix ms.
    cutoffs: BTreeMap<String, Option<i64>>,
    train: Vec<usize>,
    test: Vec<usize>,
    purged: usize,
}

/// Splits the `labelled` rows of `rows` by `--split-by` at `--split` (see [`split`]).
fn assign(rows: &Rows, labelled: &[(usize, i32)], t: &TrainingFlags) -> Assignment {
    let starts: Vec<i64> = labelled.iter().map(|(i, _)| rows.start[*i]).collect();
    // A row's label comes from the following window: it ends one window length after the row.
    let label_ends: Vec<i64> = labelled
        .iter()
        .map(|(i, _)| 2 * rows.end[*i] - rows.start[*i])
        .collect();
    let (cutoff, cutoffs, parts) = match t.split_by {
        SplitBy::Time => {
            let (cutoff, parts) = split::time_ordered(&starts, &label_ends, t.split);
            (cutoff, BTreeMap::new(), parts)
        }
        SplitBy::Agent => {
            let agents: Vec<&str> = labelled
                .iter()
                .map(|(i, _)| rows.agent[*i].as_str())
                .collect();
            let (cutoffs, parts) = split::per_agent(&agents, &starts, &label_ends, t.split);
            let cutoffs = cutoffs
                .into_iter()
                .map(|(a, c)| (a.to_string(), c))
                .collect();
            (None, cutoffs, parts)
        }
    };
    let mut out = Assignment {
        cutoff,
        cutoffs,
        train: Vec::new(),
        test: Vec::new(),
        purged: 0,
    };
    for (k, part) in parts.iter().enumerate() {
        match part {
            Part::Train => out.train.push(k),
            Part::Test => out.test.push(k),
            Part::Purged => out.purged += 1,
        }
    }
    out
}

/// Peak memory of a training export as a multiple of its windows batch (Arrow bytes): the
/// sorted rows (whose statistics columns the features share), the computed feature columns,
/// the trend fits and the output table. Measured: 3.7 KB per window at 1.2 KB of batch, 3.0×
/// (docs/benchmarks.md); 3.5× leaves room for the allocator.
const PEAK_PER_BATCH_BYTE: f64 = 3.5;

/// Refuses a selection whose estimated peak memory exceeds the memory available now, with a
/// message that says how to narrow it (the whole selection is held in memory; see README).
fn check_memory(batch: &RecordBatch) -> Result<()> {
    let Ok(mut sys) = sysinfo::System::new() else {
        return Ok(()); // no memory figures on this platform: nothing to check against
    };
    sys.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    fits_in_memory(
        batch.get_array_memory_size() as f64 * PEAK_PER_BATCH_BYTE,
        batch.num_rows(),
        sys.available_memory() as f64,
    )
}

/// Whether `need` bytes for `windows` windows fit in `available` bytes (0: unknown, fits).
fn fits_in_memory(need: f64, windows: usize, available: f64) -> Result<()> {
    if available > 0.0 && need > available {
        bail!(
            "this training set would need about {:.1} GiB of memory ({} windows, about {:.1} KB each), more than the {:.1} GiB available; narrow the selection with --from/--to (or --hours), --agents or --metrics",
            need / GIB,
            windows,
            need / windows.max(1) as f64 / 1000.0,
            available / GIB
        );
    }
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_larger_than_the_available_memory_is_refused_with_a_way_out() {
        let err = fits_in_memory(30.0 * GIB, 6_000_000, 24.0 * GIB)
            .unwrap_err()
            .to_string();
        assert!(err.contains("about 30.0 GiB"), "{err}");
        assert!(err.contains("6000000 windows"), "{err}");
        assert!(err.contains("24.0 GiB available"), "{err}");
        assert!(err.contains("--from/--to"), "{err}");
        assert!(fits_in_memory(1.0 * GIB, 1000, 24.0 * GIB).is_ok());
        assert!(
            fits_in_memory(30.0 * GIB, 1000, 0.0).is_ok(),
            "unknown: not refused"
        );
    }
}
