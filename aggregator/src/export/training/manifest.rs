//! `manifest.json` of a training set: what it holds, how it was made, and from what.
//!
//! Keys: `format` (`fleetset-training-set/1`), `created_at`, `fleetset_version`; `source` (time
//! range of the windows read, agents — hashed when anonymized —, the store files read with
//! their sizes); `selection`; `label` (the rule, its column or file, classes); `split`
//! (fraction, cutoff, seed, balancing, row counts: windows, labelled, unlabelled, train, test,
//! purged, balanced_away); `class_histogram` per split; `features` (name, unit, source);
//! `columns` (every column of the Parquet files); `validation` (the report);
//! `anonymization`; `files` (path, split, site, agent, rows, bytes, sha256 of every file
//! written). The salt is never written.

use super::features::Feature;
use super::labels::LabelRule;
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
    /// Train/test cutoff, Unix ms.
    pub cutoff: Option<i64>,
    /// `--split`.
    pub split_fraction: f64,
    /// Row counts.
    pub rows: RowCounts,
    /// Class histogram per split.
    pub histograms: BTreeMap<&'static str, BTreeMap<String, usize>>,
    /// `--seed`.
    pub seed: u64,
    /// `--balance-classes`.
    pub balance: bool,
    /// `--lags`.
    pub lags: usize,
    /// Files written.
    pub files: &'a [FileEntry],
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
        columns.push(
            json!({"name": "is_outlier", "meaning": "an IQR outlier in some <metric>__mean"}),
        );
        columns.push(json!({"name": "label", "meaning": "target class name"}));
        columns
            .push(json!({"name": "label_id", "meaning": "target class index into label.classes"}));
        let doc = json!({
            "format": "fleetset-training-set/1",
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
                "fraction": self.split_fraction,
                "cutoff": iso(self.cutoff),
                "rule": "train rows and their label windows end at or before the cutoff; test rows start at or after it; rows in between are purged",
                "seed": self.seed,
                "balance_classes": self.balance,
                "rows": self.rows,
            },
            "class_histogram": self.histograms,
            "lags": self.lags,
            "features": self.features.iter().map(|f| json!({"name": f.name, "unit": f.unit, "source": f.source})).collect::<Vec<_>>(),
            "columns": columns,
            "validation": self.report,
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
