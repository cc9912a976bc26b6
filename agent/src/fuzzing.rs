//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from the docs, may change
//! with the targets): the spool's file reader and replay's CSV reader, exactly as the agent
//! runs them.

use crate::replay::{plan_names, read_file, ReplayFlags, ReplayReport};
use anyhow::{Context, Result};
use clap::Parser;
use fleetset_proto::pb;
use std::path::Path;

/// Reads and verifies one spool file as [`crate::spool`] does on open: the frame and its
/// window start (Unix ms). Errors: what is wrong with the file (it would be quarantined).
pub fn spool_file(path: &Path, seq: u64) -> Result<(pb::Frame, i64)> {
    crate::spool::load_verified(path, seq)
}

#[derive(Parser)]
struct Replay {
    #[command(flatten)]
    flags: ReplayFlags,
}

/// `fleetset-agent replay` flags parsed from `args` (without the program name; at least one
/// file). Errors: the arguments do not parse.
pub fn replay_flags(args: &[&str]) -> Result<ReplayFlags> {
    let argv = std::iter::once("replay").chain(args.iter().copied());
    Ok(Replay::try_parse_from(argv).context("replay flags")?.flags)
}

/// What replay read from its CSV files.
#[derive(Debug, Default)]
pub struct CsvRead {
    /// The report of the rows read.
    pub report: ReplayReport,
    /// Metric names, indexed by the samples' metric index.
    pub metrics: Vec<String>,
    /// Samples `(ts_ms, metric index, value)` of every file, in file order.
    pub samples: Vec<(i64, usize, f64)>,
    /// The smallest median step of the files, ms.
    pub step_ms: i64,
}

/// Reads `flags.files` as `replay` does before windowing: names planned from the headers,
/// then every file's rows. Errors: a file has no header, timestamp column or value column,
/// or malformed CSV.
pub fn replay_csv(flags: &ReplayFlags) -> Result<CsvRead> {
    let names = plan_names(flags)?;
    let mut out = CsvRead {
        step_ms: i64::MAX,
        ..CsvRead::default()
    };
    for (path, names) in flags.files.iter().zip(&names) {
        let f = read_file(path, flags, names, &mut out.metrics, &mut out.report)?;
        out.step_ms = out.step_ms.min(f.median_step_ms);
        out.samples.extend(f.samples);
    }
    Ok(out)
}
