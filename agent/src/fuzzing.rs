//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from the docs, may change
//! with the targets): the spool's file reader and replay's CSV reader, exactly as the agent
//! runs them.

pub use crate::replay::CsvRead;
use crate::replay::{read_inputs, ReplayFlags};
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

/// Reads `csv` as `replay` reads each of `flags.files` before windowing (every named file
/// reads as these bytes; nothing touches the filesystem): names planned from the header, then
/// the rows. Errors: no header, timestamp column or value column, or malformed CSV.
pub fn replay_csv(flags: &ReplayFlags, csv: &[u8]) -> Result<CsvRead> {
    read_inputs(flags, &|_| Ok(Box::new(csv)))
}
