//! `fleetset-aggregator export`: the store's tables as CSV, JSON Lines, Parquet, Arrow IPC or
//! SQLite ([`plain`]), and labelled, split, sharded training sets with a manifest
//! ([`training`]) — anonymized by default ([`anonymize`]). The CLI and formats follow seed 000
//! (ADR-010, "Data Export & Training Pipeline"); validation and cleaning follow seed 001
//! ("Data Quality Checks").
//!
//! `export --stream` ([`stream`]) is seed 000's streaming export instead: live windows from a
//! running aggregator to a named pipe, stdout or WebSocket clients.
//!
//! Data flow: [`crate::store::reader::Scan`] (committed Parquet files of one table, date-pruned,
//! rows filtered by time, agent and metric, conformed to one schema) → [`anonymize`] → [`sink`] (one output file,
//! written to a temporary name and renamed into place when complete).

pub mod anonymize;
pub mod plain;
pub mod sink;
pub mod stream;
pub mod training;

use anyhow::{bail, Context, Result};
use clap::builder::TypedValueParser as _;
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
    /// Output file (plain export) or directory (`--training`); not with `--stream`.
    #[arg(
        long,
        required_unless_present = "stream",
        conflicts_with = "stream",
        value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from),
        default_value_os_t = PathBuf::new(),
        hide_default_value = true
    )]
    pub output: PathBuf,
    /// Replace an existing output instead of refusing.
    #[arg(long)]
    pub overwrite: bool,
    /// Output format: of a plain export `csv`, `jsonl` (or `jsonlines`), `parquet` (default),
    /// `arrow`, `sqlite`; of `--stream` `jsonlines` (default), `msgpack`, `protobuf`.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<FormatFlag>,
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
    /// Stream live windows from a running aggregator (seed 000's `export --stream`) instead of
    /// exporting the store: to `--fifo`, `--listen`/`--port` WebSocket clients, or stdout.
    #[arg(long, conflicts_with_all = ["training", "hours", "from", "to", "overwrite"])]
    pub stream: bool,
    /// Streaming options (with `--stream`).
    #[command(flatten)]
    pub streaming: stream::StreamFlags,
}

/// A `--format` value: a plain export's file format or a stream's message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatFlag {
    /// A file format (plain export).
    File(sink::Format),
    /// A message format (`--stream`).
    Stream(crate::live::format::Format),
}

/// Parses `--format`: a file format or a stream format (`jsonlines` is both). Errors list the
/// formats.
pub fn parse_format(s: &str) -> Result<FormatFlag, String> {
    if let Ok(f) = s.parse::<crate::live::format::Format>() {
        return Ok(FormatFlag::Stream(f));
    }
    <sink::Format as clap::ValueEnum>::from_str(s, true)
        .map(FormatFlag::File)
        .map_err(|_| {
            format!("format {s:?} is not csv, jsonl, parquet, arrow, sqlite (plain export) or jsonlines, msgpack, protobuf (--stream)")
        })
}

impl FormatFlag {
    /// The file format of a plain export (default Parquet). Errors: a stream-only format.
    pub fn file(f: Option<FormatFlag>) -> Result<sink::Format> {
        use crate::live::format::Format as S;
        match f {
            None => Ok(sink::Format::Parquet),
            Some(FormatFlag::File(f)) => Ok(f),
            Some(FormatFlag::Stream(S::Jsonlines)) => Ok(sink::Format::Jsonl),
            Some(FormatFlag::Stream(other)) => {
                bail!("--format {} is a --stream format; a plain export writes csv, jsonl, parquet, arrow or sqlite", value_name(other))
            }
        }
    }

    /// The message format of `--stream` (default JSON Lines). Errors: a file-only format.
    pub fn stream(f: Option<FormatFlag>) -> Result<crate::live::format::Format> {
        use crate::live::format::Format as S;
        match f {
            None | Some(FormatFlag::File(sink::Format::Jsonl)) => Ok(S::Jsonlines),
            Some(FormatFlag::Stream(f)) => Ok(f),
            Some(FormatFlag::File(other)) => {
                bail!(
                    "--format {} is a file format; --stream sends jsonlines, msgpack or protobuf",
                    value_name(other)
                )
            }
        }
    }
}

/// A value's name as given on the command line.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
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

/// Runs `export`: live windows with `--stream`, a training set with `--training`, else a plain
/// export.
pub fn run(flags: &ExportFlags) -> Result<()> {
    if flags.stream {
        return stream::run(flags);
    }
    if flags.output.as_os_str().is_empty() {
        bail!("--output is required (the file or directory to write)");
    }
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
