//! `fleetset-agent replay`: timestamped measurements from CSV files, cut into windows of
//! `--window` on the files' own time axis, sent through the same pipeline as live samples
//! (stats + MinMax-LTTB → seal → spool → send). It is the load generator for the fault tests and
//! the way to backfill history. It exits once every frame is acked.
//!
//! Input: a header row; a timestamp column (`--timestamp-column`, default `timestamp`) and one or
//! more value columns (`--value-columns`, default every other column). Timestamps: a
//! `--timestamp-format` (chrono strftime, taken as UTC), or by default RFC 3339,
//! `YYYY-MM-DD HH:MM:SS[.f]`, `YYYY-MM-DDTHH:MM:SS[.f]`, or a number in `--timestamp-unit`
//! (default `s`). The Numenta Anomaly Benchmark files (`timestamp,value`) work as they are.
//!
//! Metric names: `--metric-map COLUMN=NAME`, else the column name made a valid metric name
//! (lower case, `[a-z0-9_.]`); with several files, a column name used by more than one file is
//! prefixed by its file's stem so the series stay apart.
//!
//! Real-data defects are handled and reported, never fatal: rows whose timestamp does not parse
//! are skipped; values that do not parse become NaN (dropped before stats, counted by the
//! pipeline); rows out of time order are sorted (counted); repeated timestamps are kept for
//! stats, and the latest reading wins in the downsampled series (counted); gaps longer than 3×
//! the median step are counted and simply leave windows out.

use crate::config::RunFlags;
use crate::pipeline::Pipeline;
use crate::run::{resolve_agent_id, AGENT_VERSION};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use fleetset_core::names::metric_name;
use fleetset_core::window::{window_start, ClosedWindow};
use fleetset_proto::HostInfo;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Unit of numeric timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimestampUnit {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

/// Flags of `fleetset-agent replay` (plus every flag of `run`; sampling flags do not apply).
#[derive(Debug, Args)]
pub struct ReplayFlags {
    /// CSV files to replay.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Name of the timestamp column.
    #[arg(long, default_value = "timestamp")]
    pub timestamp_column: String,
    /// Value columns, comma-separated (default: every column but the timestamp).
    #[arg(long, value_delimiter = ',')]
    pub value_columns: Vec<String>,
    /// Field separator (one byte).
    #[arg(long, default_value = ",")]
    pub separator: char,
    /// chrono strftime format of the timestamps, taken as UTC (default: automatic).
    #[arg(long)]
    pub timestamp_format: Option<String>,
    /// Unit of numeric timestamps.
    #[arg(long, value_enum, default_value = "s")]
    pub timestamp_unit: TimestampUnit,
    /// Rename a column's metric: `COLUMN=NAME` (repeatable).
    #[arg(long = "metric-map", value_parser = parse_map)]
    pub metric_map: Vec<(String, String)>,
    /// Frames per second at most (default: as fast as acks allow).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Frames spooled ahead of the acks, at most (flow control; the spool bound still applies).
    #[arg(long, default_value_t = 1000)]
    pub max_ahead: usize,
    /// The usual agent flags: aggregator, transport, encoding, window, LTTB, state and spool.
    #[command(flatten)]
    pub agent: RunFlags,
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not COLUMN=NAME"))?;
    if !fleetset_proto::model::is_valid_metric_name(v) {
        return Err(format!(
            "{v:?} is not a valid metric name ([a-z][a-z0-9_.]*)"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// What replay found in the input and did about it.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Data rows read.
    pub rows: u64,
    /// Rows skipped because the timestamp did not parse, or lies outside what the frame
    /// contract accepts (`0 ≤ ts <` `fleetset_proto::contract::MAX_TIME_MS`, i.e. before 1970
    /// or after 9999).
    pub bad_timestamps: u64,
    /// Values that did not parse (replayed as NaN, dropped before stats).
    pub bad_values: u64,
    /// Rows whose timestamp is before the previous row's (sorted into place).
    pub out_of_order: u64,
    /// Rows whose timestamp equals the previous row's.
    pub repeated_timestamps: u64,
    /// Steps longer than 3× the file's median step.
    pub gaps: u64,
    /// Windows framed and spooled.
    pub windows: u64,
    /// Windows skipped because they were framed by an earlier (interrupted) replay.
    pub windows_already_sent: u64,
}

/// Parses one timestamp to Unix ms; None when it does not parse or lies outside
/// `[0, MAX_TIME_MS)` (no window of it could pass the frame contract, and windowing it could
/// overflow i64).
fn parse_ts(s: &str, format: Option<&str>, unit: TimestampUnit) -> Option<i64> {
    parse_any_ts(s, format, unit)
        .filter(|ts| (0..fleetset_proto::contract::MAX_TIME_MS).contains(ts))
}

/// [`parse_ts`] without the range check.
fn parse_any_ts(s: &str, format: Option<&str>, unit: TimestampUnit) -> Option<i64> {
    let s = s.trim();
    if let Some(f) = format {
        return chrono::NaiveDateTime::parse_from_str(s, f)
            .ok()
            .map(|t| t.and_utc().timestamp_millis());
    }
    if let Ok(n) = s.parse::<f64>() {
        let ms = match unit {
            TimestampUnit::S => n * 1e3,
            TimestampUnit::Ms => n,
            TimestampUnit::Us => n / 1e3,
            TimestampUnit::Ns => n / 1e6,
        };
        return ms.is_finite().then(|| ms.round() as i64);
    }
    fleetset_core::time::parse_time(s).ok()
}

/// Samples of one file: `(ts_ms, metric, value)` in file order, and the file's median step (ms).
struct FileSamples {
    samples: Vec<(i64, usize, f64)>,
    median_step_ms: i64,
}

fn read_file(
    input: impl Read,
    path: &Path,
    flags: &ReplayFlags,
    names: &HashMap<String, String>,
    metrics: &mut Vec<String>,
    report: &mut ReplayReport,
) -> Result<FileSamples> {
    let sep = u8::try_from(flags.separator)
        .ok()
        .filter(u8::is_ascii)
        .context("--separator must be one ASCII character")?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(sep)
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .clone();
    let ts_col = headers
        .iter()
        .position(|h| h.trim() == flags.timestamp_column)
        .with_context(|| {
            format!(
                "{}: no column {:?} (columns: {:?})",
                path.display(),
                flags.timestamp_column,
                headers.iter().collect::<Vec<_>>()
            )
        })?;
    let value_cols: Vec<(usize, usize)> = headers
        .iter()
        .enumerate()
        .filter(|(i, h)| {
            *i != ts_col
                && (flags.value_columns.is_empty()
                    || flags.value_columns.iter().any(|c| c == h.trim()))
        })
        .map(|(i, h)| {
            let metric = names
                .get(h.trim())
                .cloned()
                .unwrap_or_else(|| metric_name(h));
            let idx = metrics
                .iter()
                .position(|m| *m == metric)
                .unwrap_or_else(|| {
                    metrics.push(metric);
                    metrics.len() - 1
                });
            (i, idx)
        })
        .collect();
    if value_cols.is_empty() {
        bail!(
            "{}: no value columns (asked for {:?})",
            path.display(),
            flags.value_columns
        );
    }
    let mut out = Vec::new();
    let (mut prev, mut steps) = (None::<i64>, Vec::new());
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        report.rows += 1;
        let Some(ts) = record
            .get(ts_col)
            .and_then(|s| parse_ts(s, flags.timestamp_format.as_deref(), flags.timestamp_unit))
        else {
            report.bad_timestamps += 1;
            continue;
        };
        if let Some(p) = prev {
            match ts.cmp(&p) {
                std::cmp::Ordering::Less => report.out_of_order += 1,
                std::cmp::Ordering::Equal => report.repeated_timestamps += 1,
                // Timestamps span all of i64 (`1e300` saturates): the step saturates too.
                std::cmp::Ordering::Greater => steps.push(ts.saturating_sub(p)),
            }
        }
        prev = Some(ts);
        for &(col, metric) in &value_cols {
            let v = record.get(col).and_then(|s| s.trim().parse::<f64>().ok());
            if v.is_none() {
                report.bad_values += 1;
            }
            out.push((ts, metric, v.unwrap_or(f64::NAN)));
        }
    }
    steps.sort_unstable();
    let median = steps.get(steps.len() / 2).copied().unwrap_or(1000);
    report.gaps += steps
        .iter()
        .filter(|&&s| s > median.saturating_mul(3))
        .count() as u64;
    Ok(FileSamples {
        samples: out,
        median_step_ms: median,
    })
}

/// Metric name of every value column, per file (in `flags.files` order): column → metric.
fn plan_names(flags: &ReplayFlags, open: &Opener) -> Result<Vec<HashMap<String, String>>> {
    let sep = u8::try_from(flags.separator).unwrap_or(b',');
    let mut per_file = Vec::new();
    let mut uses: HashMap<String, usize> = HashMap::new();
    for path in &flags.files {
        let mut r = csv::ReaderBuilder::new()
            .delimiter(sep)
            .from_reader(open(path)?);
        let cols: Vec<String> = r
            .headers()?
            .iter()
            .map(|h| h.trim().to_string())
            .filter(|h| *h != flags.timestamp_column)
            .collect();
        for c in &cols {
            *uses.entry(c.clone()).or_default() += 1;
        }
        per_file.push(cols);
    }
    let map: HashMap<&str, &str> = flags
        .metric_map
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Ok(flags
        .files
        .iter()
        .zip(per_file)
        .map(|(path, cols)| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            cols.into_iter()
                .map(|c| {
                    let metric = match map.get(c.as_str()) {
                        Some(m) => m.to_string(),
                        None if uses[&c] > 1 => metric_name(&format!("{stem}_{c}")),
                        None => metric_name(&c),
                    };
                    (c, metric)
                })
                .collect()
        })
        .collect())
}

/// Opens one input of `flags.files` for reading (a file, or bytes in the fuzz target).
pub(crate) type Opener<'a> = dyn Fn(&Path) -> Result<Box<dyn Read + 'a>> + 'a;

/// Opens `path` as a file (unbuffered: the csv reader buffers). Errors: it cannot be opened
/// (named).
fn open_file(path: &Path) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(f))
}

/// What replay read from its CSV inputs, before windowing.
#[derive(Debug, Default)]
pub struct CsvRead {
    /// The report of the rows read.
    pub report: ReplayReport,
    /// Metric names, indexed by the samples' metric index.
    pub metrics: Vec<String>,
    /// Samples `(ts_ms, metric index, value)` of every input, in input order.
    pub samples: Vec<(i64, usize, f64)>,
    /// The smallest median step of the inputs, ms (`i64::MAX` with no steps at all).
    pub step_ms: i64,
}

/// Reads every input of `flags.files` through `open` (each is opened twice: headers to plan the
/// metric names, then rows). Errors: an input cannot be opened, has no header, timestamp
/// column or value column, or holds malformed CSV.
pub(crate) fn read_inputs(flags: &ReplayFlags, open: &Opener) -> Result<CsvRead> {
    let names = plan_names(flags, open)?;
    let mut out = CsvRead {
        step_ms: i64::MAX,
        ..CsvRead::default()
    };
    for (path, names) in flags.files.iter().zip(&names) {
        let input = open(path)?;
        let f = read_file(input, path, flags, names, &mut out.metrics, &mut out.report)?;
        out.step_ms = out.step_ms.min(f.median_step_ms);
        out.samples.extend(f.samples);
    }
    Ok(out)
}

/// Replays `flags.files` (see the module docs); returns what it found and did.
pub async fn replay(flags: ReplayFlags, shutdown: CancellationToken) -> Result<ReplayReport> {
    let cfg = flags.agent.load()?;
    let CsvRead {
        mut report,
        metrics,
        mut samples,
        step_ms: step,
    } = read_inputs(&flags, &open_file)?;
    samples.sort_by_key(|s| s.0); // stable: repeated timestamps keep file order
    let window_ms = cfg.window.length.as_millis() as i64;

    let agent_id = resolve_agent_id(&cfg)?;
    let host = HostInfo {
        hostname: "replay".into(),
        agent_version: AGENT_VERSION.into(),
        labels: cfg.labels.clone(),
        ..Default::default()
    };
    let mut pipeline = Pipeline::start(&cfg, agent_id, host, None)?;
    pipeline.set_sample_interval_ms(step.max(1) as u64);
    let pause = flags
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));

    let mut i = 0;
    while i < samples.len() {
        if shutdown.is_cancelled() {
            info!("replay interrupted; spooled frames are sent by the next run");
            return Ok(report);
        }
        let start = window_start(samples[i].0, window_ms);
        let mut raw: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        while i < samples.len() && window_start(samples[i].0, window_ms) == start {
            let (ts, m, v) = samples[i];
            raw.entry(metrics[m].clone()).or_default().push((ts, v));
            i += 1;
        }
        while pipeline.spooled() >= flags.max_ahead.max(1) && !shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let closed = ClosedWindow {
            start,
            end: start + window_ms,
            raw,
            processes: Vec::new(),
        };
        if pipeline.submit(closed)? {
            report.windows += 1;
        } else {
            report.windows_already_sent += 1;
        }
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
    }
    info!(?report, "replay input read; waiting for the last acks");
    tokio::select! {
        _ = pipeline.finish() => {}
        _ = shutdown.cancelled() => info!("replay interrupted while draining; unacked frames stay spooled"),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_the_usual_shapes() {
        let u = TimestampUnit::S;
        assert_eq!(
            parse_ts("2014-02-14 14:30:00", None, u),
            Some(1_392_388_200_000)
        );
        assert_eq!(
            parse_ts("2014-02-14T14:30:00.250", None, u),
            Some(1_392_388_200_250)
        );
        assert_eq!(
            parse_ts("2014-02-14T15:30:00+01:00", None, u),
            Some(1_392_388_200_000)
        );
        assert_eq!(parse_ts("1392388200", None, u), Some(1_392_388_200_000));
        assert_eq!(
            parse_ts("1392388200000", None, TimestampUnit::Ms),
            Some(1_392_388_200_000)
        );
        assert_eq!(
            parse_ts("14/02/2014 14:30", Some("%d/%m/%Y %H:%M"), u),
            Some(1_392_388_200_000)
        );
        assert_eq!(parse_ts("yesterday", None, u), None);
    }

    /// Timestamps at both ends of i64 (as the `replay_csv` fuzz target feeds them) overflowed the
    /// step (`ts - prev`), the gap threshold (`3 × median`) and, when windowed, `window_start`
    /// and `start + window_ms`. Outside the contract's `[0, MAX_TIME_MS)` they are now bad
    /// timestamps, counted and never windowed.
    #[test]
    fn timestamps_outside_the_contract_are_counted_and_never_windowed() {
        let dir =
            std::env::temp_dir().join(format!("fleetset-replay-extreme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("extreme.csv");
        let max_s = fleetset_proto::contract::MAX_TIME_MS / 1000;
        std::fs::write(
            &path,
            format!(
                "timestamp,value\n-1e300,1\n1e300,2\n0,3\n4e18,4\n-1,5\n{max_s},6\n{},7\n",
                max_s + 1
            ),
        )
        .unwrap();
        let flags = crate::fuzzing::replay_flags(&[path.to_str().unwrap()]).unwrap();
        let read = read_inputs(&flags, &open_file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read.report.rows, 7);
        assert_eq!(
            read.report.bad_timestamps, 5,
            "±1e300, 4e18, -1 and past 9999"
        );
        let kept: Vec<i64> = read.samples.iter().map(|s| s.0).collect();
        assert_eq!(kept, vec![0, max_s * 1000]);
    }

    #[test]
    fn names_become_valid_metrics() {
        assert_eq!(metric_name("CPU Util %"), "cpu_util__");
        assert_eq!(metric_name("5min"), "m_5min");
        assert!(fleetset_proto::model::is_valid_metric_name(&metric_name(
            "ec2_cpu_utilization_24ae8d_value"
        )));
    }
}
