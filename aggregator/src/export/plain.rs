//! Plain export: one table of the store, selected rows, anonymized, into one file of the chosen
//! format. Reading and decoding Parquet runs on its own thread, feeding the writer through a
//! bounded channel of batches, so both cores work. A progress bar shows on a terminal; the
//! final line gives records, bytes and records/s.

use super::anonymize::Anonymizer;
use super::sink::Sink;
use super::{prepare_output, ExportFlags, FormatFlag, Query, Table};
use crate::store::reader::{column, Scan};
use crate::store::schema;
use anyhow::{Context, Result};
use arrow::array::{BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::Instant;

/// Batches in flight between the reading thread and the writer.
const PIPELINE_DEPTH: usize = 4;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportStats {
    /// Rows written.
    pub records: u64,
    /// Size of the output, bytes.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl ExportStats {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {human_pos}/{human_len} rows read ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Runs a plain export of `flags.table` to `flags.output` and prints the summary line.
pub fn run(flags: &ExportFlags, selection: &Query, anon: Option<&Anonymizer>) -> Result<()> {
    let format = FormatFlag::file(flags.format)?;
    prepare_output(&flags.output, flags.overwrite)?;
    let scan = Scan::open(&flags.data_dir, flags.table, selection)?;
    let k_allowed = match (anon.and_then(|a| a.k), flags.table) {
        (Some(k), Table::Processes) => Some(k_anonymous_processes(&scan, k)?),
        _ => None,
    };
    let bar = progress_bar(scan.file_rows, &format!("exporting {}", flags.table.name()));
    let started = Instant::now();
    let mut sink = Sink::create(format, &flags.output, &scan.schema, flags.table.name())?;
    let mut records = 0u64;
    let written: Result<u64> = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<RecordBatch>>(PIPELINE_DEPTH);
        let scan = &scan;
        let bar = &bar;
        let k_allowed = k_allowed.as_ref();
        // The reading thread: decode, filter, k-anonymity, anonymize; returns rows suppressed.
        let reader = s.spawn(move || {
            let mut suppressed = 0u64;
            for b in scan.batches(|n| bar.inc(n)) {
                let b = b.and_then(|b| {
                    let b = match k_allowed {
                        Some(allowed) => {
                            let (b, dropped) = keep_k_anonymous(&b, allowed)?;
                            suppressed += dropped;
                            b
                        }
                        None => b,
                    };
                    match anon {
                        Some(a) => a.apply(&b),
                        None => Ok(b),
                    }
                });
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    break;
                }
            }
            suppressed
        });
        for b in rx {
            let b = b?;
            records += b.num_rows() as u64;
            sink.write(&b)?;
        }
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("export reader thread panicked"))
    });
    bar.finish_and_clear();
    let suppressed = match written {
        Ok(n) => n,
        Err(e) => {
            sink.abandon();
            return Err(e);
        }
    };
    let bytes = sink.finish()?;
    let stats = ExportStats {
        records,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(k) = anon.and_then(|a| a.k) {
        println!(
            "k-anonymity (k={k}): {suppressed} process records of processes seen on fewer than {k} agents dropped"
        );
    }
    println!(
        "exported {} records, {} bytes in {:.2} s ({:.0} records/s) to {}{}",
        stats.records,
        stats.bytes,
        stats.seconds,
        stats.rate(),
        flags.output.display(),
        if anon.is_some() {
            " (anonymized)"
        } else {
            " (NOT anonymized)"
        }
    );
    Ok(())
}

/// Name hashes of the processes seen on at least `k` distinct agents in the selection.
fn k_anonymous_processes(scan: &Scan, k: usize) -> Result<HashSet<String>> {
    let mut agents_of: HashMap<String, HashSet<String>> = HashMap::new();
    for b in scan.batches(|_| {}) {
        let b = b?;
        let (Some(hashes), Some(agents)) = (
            column::<StringArray>(&b, schema::NAME_HASH),
            column::<StringArray>(&b, schema::AGENT_ID),
        ) else {
            continue;
        };
        for (h, a) in hashes.iter().zip(agents.iter()) {
            if let (Some(h), Some(a)) = (h, a) {
                agents_of
                    .entry(h.to_string())
                    .or_default()
                    .insert(a.to_string());
            }
        }
    }
    Ok(agents_of
        .into_iter()
        .filter(|(_, agents)| agents.len() >= k)
        .map(|(h, _)| h)
        .collect())
}

/// `b` without the process records whose name hash is not in `allowed`, and how many went.
fn keep_k_anonymous(b: &RecordBatch, allowed: &HashSet<String>) -> Result<(RecordBatch, u64)> {
    let hashes = column::<StringArray>(b, schema::NAME_HASH).context("processes lack name_hash")?;
    let keep: BooleanArray = hashes
        .iter()
        .map(|h| Some(h.is_some_and(|h| allowed.contains(h))))
        .collect();
    let dropped = (b.num_rows() - keep.true_count()) as u64;
    Ok((filter_record_batch(b, &keep)?, dropped))
}
