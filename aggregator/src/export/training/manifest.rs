//! `manifest.json` of a training set: what it holds, how it was made, and from what.
//!
//! Keys: `format` (`fleetset-training-set/2`), `created_at`, `fleetset_version`; `source` (time
//! range of the windows read, agents — hashed when anonymized —, the store files read with
//! their sizes); `selection`; `label` (the rule, its column or file, classes); `split` (`by`
//! (`time` or `agent`), fraction, `cutoff` (`by: time`) or `cutoffs` per agent (`by: agent`),
//! the rule, seed, balancing, `max_agent_share`, row counts: windows, labelled, unlabelled,
//! train, test, purged, balanced_away); `class_histogram` per split; `baselines` (see
//! [`super::baseline`]: `definition`, `majority_class`, and per split `rows`,
//! `classes_present`, `accuracy`, `balanced_accuracy`); `features` (name, unit, source);
//! `columns` (every column of the Parquet files); `validation` (the report, with
//! `outliers_by`); `warnings` (`code`, `message`, `fails_strict` each; see
//! [`super::validate::Code`]); `anonymization`; `files` (path, split, site, agent, rows,
//! bytes, sha256 of every file written); `skipped_files` (path, split, site, agent, reason of
//! every shard file not written because it would hold no rows). The salt is never written.
//!
//! Format 2 (this one) moved `validation.warnings` (strings) to `warnings` (objects) and added
//! `split.by`, `split.cutoffs`, `split.max_agent_share`, `baselines`, `validation.outliers_by`
//! and `skipped_files`; shard files with no rows are no longer written.

use super::baseline::Baseline;
use super::features::Feature;
use super::labels::LabelRule;
use super::split::SplitBy;
use super::validate::Report;
use crate::export::anonymize::Anonymizer;
use crate::export::Query;
use crate::store::schema;
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One file of the training set.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// Path relative to the training-set directory.
    pub path: String,
    /// `train` or `test`.
    pub split: String,
    /// Shard site, for shard files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Shard agent, for shard files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Rows.
    pub rows: usize,
    /// Size, bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// SHA-256 of a file's bytes, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl FileEntry {
    /// Describes the written file `path` (known as `rel` in the manifest).
    pub fn of(
        path: &Path,
        rel: &str,
        rows: usize,
        split: &str,
        shard: Option<(&str, &str)>,
    ) -> Result<FileEntry> {
        Ok(FileEntry {
            path: rel.to_string(),
            split: split.to_string(),
            site: shard.map(|s| s.0.to_string()),
            agent: shard.map(|s| s.1.to_string()),
            rows,
            bytes: std::fs::metadata(path)?.len(),
            sha256: sha256_file(path)?,
        })
    }
}

/// A shard file not written (`skipped_files`).
#[derive(Debug, Clone, Serialize)]
pub struct SkippedFile {
    /// The path it would have had, relative to the training-set directory.
    pub path: String,
    /// `train` or `test`.
    pub split: String,
    /// Shard site.
    pub site: String,
    /// Shard agent (as written: hashed when anonymized).
    pub agent: String,
    /// Why: `no rows`.
    pub reason: &'static str,
}

/// The baselines of the splits (`baselines`; see [`super::baseline`]).
#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    /// How the figures are defined.
    pub definition: &'static str,
    /// The train split's majority class, the baseline's constant prediction.
    pub majority_class: Option<String>,
    /// On the train split.
    pub train: Baseline,
    /// On the test split.
    pub test: Baseline,
}

/// How the rows were split.
#[derive(Debug, Clone)]
pub struct SplitInfo {
    /// `--split-by`.
    pub by: SplitBy,
    /// `--split`.
    pub fraction: f64,
    /// The fleet-wide cutoff (`by: time`), Unix ms.
    pub cutoff: Option<i64>,
    /// Each agent's cutoff (`by: agent`; ids as written), Unix ms.
    pub cutoffs: BTreeMap<String, Option<i64>>,
    /// `--max-agent-share`.
    pub max_agent_share: f64,
}

/// Row counts of a training set.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RowCounts {
    /// Windows after de-duplication.
    pub windows: usize,
    /// Rows with a label (a following window).
    pub labelled: usize,
    /// Rows without a following window (last window of an agent, or before a gap).
    pub unlabelled: usize,
    /// Train rows written.
    pub train: usize,
    /// Test rows written.
    pub test: usize,
    /// Rows dropped at the cutoff (label window in the test period).
    pub purged: usize,
    /// Train rows removed by class balancing.
    pub balanced_away: usize,
}

/// Everything the manifest records.
pub struct Manifest<'a, I: Iterator<Item = &'a PathBuf>> {
    /// The rows selected.
    pub selection: &'a Query,
    /// The label rule.
    pub rule: &'a LabelRule,
    /// The validation report.
    pub report: &'a Report,
    /// Feature columns.
    pub features: &'a [Feature],
    /// The anonymizer, if anonymized.
    pub anonymized: Option<&'a Anonymizer>,
    /// Store files read.
    pub source_files: I,
    /// The store.
    pub data_dir: &'a Path,
    /// Agents in the set (hashed when anonymized).
    pub agents: Vec<String>,
    /// Earliest window start and latest window end read, Unix ms.
    pub time_range: (Option<i64>, Option<i64>),
    /// How the rows were split.
    pub split: SplitInfo,
    /// Row counts.
    pub rows: RowCounts,
    /// Class histogram per split.
    pub histograms: BTreeMap<&'static str, BTreeMap<String, usize>>,
    /// Baselines per split.
    pub baselines: &'a Baselines,
    /// `--seed`.
    pub seed: u64,
    /// `--balance-classes`.
    pub balance: bool,
    /// `--lags`.
    pub lags: usize,
    /// Files written.
    pub files: &'a [FileEntry],
    /// Shard files not written (no rows).
    pub skipped: &'a [SkippedFile],
}

fn iso(ms: Option<i64>) -> Option<String> {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

impl<'a, I: Iterator<Item = &'a PathBuf>> Manifest<'a, I> {
    /// Writes `dir/manifest.json` (fsynced).
    pub fn write(self, dir: &Path) -> Result<()> {
        let mut agents = self.agents;
        agents.sort();
        let sources: Vec<_> = self
            .source_files
            .map(|p| {
                json!({
                    "path": p.strip_prefix(self.data_dir).unwrap_or(p).display().to_string(),
                    "bytes": std::fs::metadata(p).map(|m| m.len()).ok(),
                })
            })
            .collect();
        let mut columns = vec![
            json!({"name": schema::AGENT_ID, "meaning": "agent id (salted hash when anonymized)"}),
            json!({"name": schema::WINDOW_START, "unit": "timestamp ms UTC"}),
            json!({"name": schema::WINDOW_END, "unit": "timestamp ms UTC (exclusive)"}),
            json!({"name": schema::SEQ, "meaning": "the agent's frame sequence number (lineage)"}),
            json!({"name": schema::PAYLOAD_SHA256, "meaning": "SHA-256 of the frame payload the row came from (lineage)"}),
            json!({"name": "label_<key>", "meaning": "operator labels of the agent"}),
        ];
        columns.extend(
            self.features
                .iter()
                .map(|f| json!({"name": f.name, "unit": f.unit, "source": f.source})),
        );
        columns.push(json!({
            "name": "is_outlier",
            "meaning": match self.report.outliers_by {
                super::validate::OutliersBy::Agent => "outside its agent's IQR bounds [Q1 - 1.5 IQR, Q3 + 1.5 IQR] in some <metric>__mean",
                super::validate::OutliersBy::Fleet => "outside the fleet-wide IQR bounds [Q1 - 1.5 IQR, Q3 + 1.5 IQR] in some <metric>__mean",
            },
        }));
        columns.push(json!({"name": "label", "meaning": "target class name"}));
        columns
            .push(json!({"name": "label_id", "meaning": "target class index into label.classes"}));
        let split = &self.split;
        let rule = match split.by {
            SplitBy::Time => "one fleet-wide cutoff: train rows and their label windows end at or before it; test rows start at or after it; rows in between are purged",
            SplitBy::Agent => "one cutoff per agent, at the fraction of its own rows: that agent's train rows and their label windows end at or before it, its test rows start at or after it, its rows in between are purged",
        };
        let cutoffs: BTreeMap<&String, Option<String>> =
            split.cutoffs.iter().map(|(a, c)| (a, iso(*c))).collect();
        let doc = json!({
            "format": "fleetset-training-set/2",
            "created_at": iso(Some(chrono::Utc::now().timestamp_millis())),
            "fleetset_version": env!("CARGO_PKG_VERSION"),
            "source": {
                "window_start_min": iso(self.time_range.0),
                "window_end_max": iso(self.time_range.1),
                "agents": agents,
                "files": sources,
            },
            "selection": {
                "from": iso(self.selection.from_ms),
                "to": iso(self.selection.to_ms),
                "agents_filtered": !self.selection.agents.is_empty(),
                "metrics": self.selection.metrics,
            },
            "label": self.rule.describe(),
            "split": {
                "by": split.by,
                "fraction": split.fraction,
                "cutoff": iso(split.cutoff),
                "cutoffs": cutoffs,
                "rule": rule,
                "max_agent_share": split.max_agent_share,
                "seed": self.seed,
                "balance_classes": self.balance,
                "rows": self.rows,
            },
            "class_histogram": self.histograms,
            "baselines": self.baselines,
            "lags": self.lags,
            "features": self.features.iter().map(|f| json!({"name": f.name, "unit": f.unit, "source": f.source})).collect::<Vec<_>>(),
            "columns": columns,
            "validation": self.report,
            "warnings": self.report.warnings,
            "anonymization": match self.anonymized {
                Some(a) => json!({
                    "enabled": true,
                    "hashed_columns": [schema::AGENT_ID, "shard agent directory names"],
                    "hash": "HMAC-SHA256(salt, value), first 64 bits, hex; the salt is not in this export",
                    "paths_stripped": true,
                    "generalize_time": a.grain,
                }),
                None => json!({"enabled": false}),
            },
            "files": self.files,
            "skipped_files": self.skipped,
        });
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&doc)?;
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        Ok(())
    }
}
