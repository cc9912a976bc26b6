//! `fleetset-aggregator export`: the store's tables as CSV, JSON Lines, Parquet, Arrow IPC or
//! SQLite ([`plain`]), and labelled, split, sharded training sets with a manifest
//! ([`training`]) — anonymized by default ([`anonymize`]). The CLI and formats follow seed 000
//! (ADR-010, "Data Export & Training Pipeline"); validation and cleaning follow seed 001
//! ("Data Quality Checks").
//!
//! Data flow: [`crate::store::reader::Scan`] (committed Parquet files of one table, date-pruned,
//! rows filtered by time, agent and metric, conformed to one schema) → [`anonymize`] → [`sink`] (one output file,
//! written to a temporary name and renamed into place when complete).

pub mod anonymize;
pub mod plain;
pub mod sink;
pub mod training;

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

pub use crate::store::reader::Query;
pub use crate::store::schema::Table;

/// Flags of `fleetset-aggregator export`.
#[derive(Debug, Args)]
pub struct ExportFlags {
    /// The aggregator's data directory (the store to read).
    #[arg(long, default_value = "/var/lib/fleetset")]
    pub data_dir: PathBuf,
    /// Output file (plain export) or directory (`--training`).
    #[arg(long)]
    pub output: PathBuf,
    /// Replace an existing output instead of refusing.
    #[arg(long)]
    pub overwrite: bool,
    /// Output format of a plain export.
    #[arg(long, value_enum, default_value_t = sink::Format::Parquet)]
    pub format: sink::Format,
    /// Table of a plain export.
    #[arg(long, value_enum, default_value_t = Table::Series)]
    pub table: Table,
    /// Only windows that started in the last N hours.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub hours: Option<f64>,
    /// Only windows starting at or after this time (RFC 3339, or `YYYY-MM-DD[ HH:MM:SS]` UTC).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Only windows starting before this time (same formats as `--from`).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<i64>,
    /// Only these agent ids (comma-separated, as the agents send them).
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<String>,
    /// Only these metrics (comma-separated): series rows, windows statistics columns, features.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Anonymization (on by default).
    #[command(flatten)]
    pub anonymize: anonymize::AnonymizeFlags,
    /// Build a training set in `--output` instead of a plain export.
    #[arg(long)]
    pub training: bool,
    /// Training-set options (with `--training`).
    #[command(flatten)]
    pub train: training::TrainingFlags,
}

impl ExportFlags {
    /// The rows selected by the time, agent and metric flags (`now_ms` for `--hours`).
    pub fn selection(&self, now_ms: i64) -> Query {
        let from_ms = match self.hours {
            Some(h) => Some(now_ms - (h * 3_600_000.0) as i64),
            None => self.from,
        };
        Query {
            from_ms,
            to_ms: self.to,
            agents: self.agents.clone(),
            labels: Vec::new(),
            metrics: self.metrics.clone(),
        }
    }
}

pub use fleetset_core::time::parse_time;

/// Runs `export`: a training set with `--training`, else a plain export.
pub fn run(flags: &ExportFlags) -> Result<()> {
    if !Table::Windows.dir(&flags.data_dir).is_dir() {
        bail!(
            "{} holds no store (no windows/ directory); pass the aggregator's --data-dir",
            flags.data_dir.display()
        );
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let selection = flags.selection(now_ms);
    let anonymizer = anonymize::Anonymizer::from_flags(&flags.anonymize, &flags.data_dir)?;
    if flags.training {
        training::run(flags, &selection, anonymizer.as_ref())
    } else {
        plain::run(flags, &selection, anonymizer.as_ref())
    }
}

/// Refuses an existing `output` unless `overwrite`; removes it when allowed.
pub fn prepare_output(output: &Path, overwrite: bool) -> Result<()> {
    if output.exists() {
        if !overwrite {
            bail!(
                "{} already exists; choose another --output or pass --overwrite",
                output.display()
            );
        }
        let removed = if output.is_dir() {
            std::fs::remove_dir_all(output)
        } else {
            std::fs::remove_file(output)
        };
        removed.with_context(|| format!("removing {}", output.display()))?;
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(())
}
