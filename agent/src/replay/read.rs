//! Reading replay's CSV files: the separator (one byte through the `csv` crate, with quoting;
//! a longer one by splitting each line on it, without quoting), the header, the timestamp and
//! value columns, and every value classified (number, NaN, ±∞, empty, unparseable) into the
//! report. Fields are trimmed of spaces and tabs, so `;` also reads a `;\t`-separated file.

use super::naming::plan_names;
use super::report::Counts;
use super::time::{storable, Axis, FixedStep, TimeParse};
use super::ReplayFlags;
use anyhow::{bail, Context, Result};
use csv::StringRecord;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Longest line a multi-character separator is split on, bytes (longer: an error naming the
/// line). The one-byte path is bounded by the `csv` crate's record buffer.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Opens one input for reading (a file, or bytes in the fuzz target).
pub(crate) type Opener<'a> = dyn Fn(&Path) -> Result<Box<dyn Read + 'a>> + 'a;

/// Opens `path` as a file (unbuffered: the readers buffer). Errors: it cannot be opened
/// (named).
pub(crate) fn open_file(path: &Path) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(f))
}

/// `--separator` as given: `\t` (backslash, t) is a TAB and `\\` a backslash; anything else is
/// taken as written. Errors: empty, a line break or a quote, or another backslash escape.
pub fn parse_separator(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                other => {
                    return Err(format!(
                        "--separator {s:?}: unknown escape \\{} (\\t is a TAB, \\\\ a backslash)",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            },
            ('\n' | '\r' | '"', _) => {
                return Err(format!("--separator {s:?}: no line breaks or quotes"))
            }
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return Err("--separator is empty".into());
    }
    Ok(out)
}

/// The records of one input, header first.
enum Rows<'a> {
    /// One-byte separator: the `csv` crate (quoting, flexible record lengths, trimmed fields).
    Csv(csv::StringRecordsIntoIter<Box<dyn Read + 'a>>),
    /// Longer separator: lines split on it, fields trimmed.
    Lines {
        input: BufReader<Box<dyn Read + 'a>>,
        separator: String,
        line: u64,
    },
}

impl<'a> Rows<'a> {
    fn new(input: Box<dyn Read + 'a>, separator: &str) -> Rows<'a> {
        match separator.as_bytes() {
            [b] => Rows::Csv(
                csv::ReaderBuilder::new()
                    .delimiter(*b)
                    .has_headers(false)
                    .flexible(true)
                    .trim(csv::Trim::All)
                    .from_reader(input)
                    .into_records(),
            ),
            _ => Rows::Lines {
                input: BufReader::new(input),
                separator: separator.to_string(),
                line: 0,
            },
        }
    }

    /// The next record; `None` at the end. Errors: malformed CSV, a line over
    /// [`MAX_LINE_BYTES`] or not UTF-8 (the line named).
    fn next_record(&mut self) -> Option<Result<StringRecord>> {
        match self {
            Rows::Csv(records) => records.next().map(|r| r.context("malformed CSV")),
            Rows::Lines {
                input,
                separator,
                line,
            } => {
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    let limit = (MAX_LINE_BYTES + 1) as u64;
                    let n = match input.by_ref().take(limit).read_until(b'\n', &mut buf) {
                        Ok(n) => n,
                        Err(e) => return Some(Err(e.into())),
                    };
                    if n == 0 {
                        return None;
                    }
                    *line += 1;
                    if buf.len() > MAX_LINE_BYTES {
                        return Some(Err(anyhow::anyhow!(
                            "line {line} is longer than {MAX_LINE_BYTES} bytes"
                        )));
                    }
                    let text = match std::str::from_utf8(&buf) {
                        Ok(t) => t.trim_end_matches(['\n', '\r']),
                        Err(_) => return Some(Err(anyhow::anyhow!("line {line} is not UTF-8"))),
                    };
                    if text.trim().is_empty() {
                        continue; // blank lines, as the csv crate skips them
                    }
                    let fields: Vec<&str> = text.split(separator.as_str()).map(str::trim).collect();
                    return Some(Ok(StringRecord::from(fields)));
                }
            }
        }
    }
}

/// The header row of `path` (fields trimmed). Errors: no header (named), malformed CSV.
pub(crate) fn read_header(
    input: Box<dyn Read + '_>,
    path: &Path,
    sep: &str,
) -> Result<Vec<String>> {
    let mut rows = Rows::new(input, sep);
    match rows.next_record() {
        Some(r) => Ok(r
            .with_context(|| format!("{}: header", path.display()))?
            .iter()
            .map(str::to_string)
            .collect()),
        None => bail!("{}: no header row", path.display()),
    }
}

/// The index of the timestamp column `wanted` in `headers`: the header equal to it, else the
/// first whose name without a trailing unit (`Timestamp [ms]`) equals it ignoring case.
pub(crate) fn timestamp_index(headers: &[String], wanted: &str) -> Option<usize> {
    headers.iter().position(|h| h == wanted).or_else(|| {
        headers.iter().position(|h| {
            fleetset_core::names::split_unit(h)
                .0
                .eq_ignore_ascii_case(wanted.trim())
        })
    })
}

/// What replay read from the inputs of one agent, before windowing.
#[derive(Debug, Default)]
pub struct CsvRead {
    /// The counts of the rows read.
    pub report: Counts,
    /// Metric names, indexed by the samples' metric index.
    pub metrics: Vec<String>,
    /// Samples `(ts_ms, metric index, value)` of every input, in input order.
    pub samples: Vec<(i64, usize, f64)>,
    /// The smallest median step of the inputs, ms (`i64::MAX` with no steps at all).
    pub step_ms: i64,
    /// Each input's time axis, for the sanity check: `(path, timestamp column, axis)`.
    pub(crate) axes: Vec<(PathBuf, Option<String>, Axis)>,
}

/// One value cell classified into `report`; the value to replay (NaN for anything that is no
/// finite number: the pipeline drops it before stats).
fn value(cell: Option<&str>, report: &mut Counts) -> f64 {
    let text = cell.unwrap_or("");
    if text.is_empty() {
        report.empty_values += 1;
        return f64::NAN;
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_nan() => report.nan_values += 1,
        Ok(v) if v.is_infinite() => report.infinite_values += 1,
        Ok(v) => return v,
        Err(_) => report.unparseable_values += 1,
    }
    f64::NAN
}

/// Reads one input: rows → samples of the metrics in `names` (column → metric, indexed in
/// `metrics`), counted into `report`. Returns the file's median step (ms).
fn read_file(
    input: Box<dyn Read + '_>,
    path: &Path,
    flags: &ReplayFlags,
    names: &HashMap<String, String>,
    out: &mut CsvRead,
) -> Result<i64> {
    let mut rows = Rows::new(input, &flags.separator);
    let Some(headers) = rows.next_record() else {
        bail!("{}: no header row", path.display());
    };
    let headers: Vec<String> = headers
        .with_context(|| format!("{}: header", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let fixed = flags.fixed_step();
    let ts_col = match fixed {
        Some(_) => None,
        None => Some(
            timestamp_index(&headers, &flags.timestamp_column).with_context(|| {
                format!(
                    "{}: no column {:?} (columns: {headers:?}); name the timestamp column with \
                     --timestamp-column, or give --start T --step D for a file without one",
                    path.display(),
                    flags.timestamp_column,
                )
            })?,
        ),
    };
    let value_cols: Vec<(usize, usize)> = headers
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != ts_col)
        .filter_map(|(i, h)| {
            let metric = names.get(h)?;
            let idx = out
                .metrics
                .iter()
                .position(|m| m == metric)
                .unwrap_or_else(|| {
                    out.metrics.push(metric.clone());
                    out.metrics.len() - 1
                });
            Some((i, idx))
        })
        .collect();
    if value_cols.is_empty() {
        bail!(
            "{}: no value columns (asked for {:?}; columns: {headers:?})",
            path.display(),
            flags.value_columns
        );
    }
    let parse = TimeParse {
        format: flags.timestamp_format.as_deref(),
        unit: flags.timestamp_unit,
    };
    let now = fleetset_core::time::now_ms();
    let report = &mut out.report;
    let mut axis = Axis::default();
    let (mut prev, mut steps) = (None::<i64>, Vec::new());
    let mut row = 0u64;
    while let Some(record) = rows.next_record() {
        let record = record.with_context(|| format!("{}: data row {}", path.display(), row + 1))?;
        row += 1;
        report.rows += 1;
        let (text, parsed) = match (fixed, ts_col) {
            (Some(f), _) => (
                "",
                Some(super::time::Parsed {
                    ms: f.at(row - 1),
                    number: None,
                }),
            ),
            (None, c) => {
                let text = c.and_then(|c| record.get(c)).unwrap_or("");
                (text, parse.parse(text))
            }
        };
        let Some(parsed) = parsed else {
            report.bad_timestamps += 1;
            continue;
        };
        axis.record(row, text, parsed, now);
        let ts = parsed.ms;
        if !storable(ts) {
            report.bad_timestamps += 1;
            continue;
        }
        if let Some(p) = prev {
            match ts.cmp(&p) {
                std::cmp::Ordering::Less => report.out_of_order += 1,
                std::cmp::Ordering::Equal => report.repeated_timestamps += 1,
                std::cmp::Ordering::Greater => steps.push(ts - p),
            }
        }
        prev = Some(ts);
        for &(col, metric) in &value_cols {
            let v = value(record.get(col), report);
            out.samples.push((ts, metric, v));
        }
    }
    steps.sort_unstable();
    let median = steps.get(steps.len() / 2).copied().unwrap_or(1000);
    report.gaps += steps
        .iter()
        .filter(|&&s| s > median.saturating_mul(3))
        .count() as u64;
    let column = ts_col.map(|c| headers[c].clone());
    out.axes.push((path.to_path_buf(), column, axis));
    Ok(median)
}

/// Reads `files` as the inputs of one agent through `open` (each is opened twice: headers to
/// plan the metric names, then rows). With several files, a series fed by more than one of them
/// (the same metric name) has its timestamps checked across files: those another file already
/// gave count as `repeated_across_files`. Errors: an input cannot be opened, has no header,
/// timestamp column or value column, or holds malformed CSV (file and row named).
pub(crate) fn read_agent(flags: &ReplayFlags, files: &[PathBuf], open: &Opener) -> Result<CsvRead> {
    let names = plan_names(flags, files, open)?;
    let mut out = CsvRead {
        step_ms: i64::MAX,
        ..CsvRead::default()
    };
    let mut first_of_file = Vec::new();
    for (path, names) in files.iter().zip(&names) {
        first_of_file.push(out.samples.len());
        let input = open(path)?;
        let median = read_file(input, path, flags, names, &mut out)?;
        out.step_ms = out.step_ms.min(median);
    }
    if files.len() > 1 {
        out.report.repeated_across_files = repeated_across_files(&out.samples, &first_of_file);
    }
    Ok(out)
}

/// Samples whose `(metric, ts)` an earlier file already had (`starts`: each file's first
/// sample index).
fn repeated_across_files(samples: &[(i64, usize, f64)], starts: &[usize]) -> u64 {
    let mut seen: HashMap<(usize, i64), usize> = HashMap::new();
    let mut file = 0;
    let mut n = 0;
    for (i, &(ts, m, _)) in samples.iter().enumerate() {
        while file + 1 < starts.len() && i >= starts[file + 1] {
            file += 1;
        }
        match seen.get(&(m, ts)) {
            Some(&f) if f != file => n += 1,
            Some(_) => {}
            None => {
                seen.insert((m, ts), file);
            }
        }
    }
    n
}

/// Every input of `flags.files` read as one agent's ([`read_agent`]; the fuzz target's entry).
pub(crate) fn read_inputs(flags: &ReplayFlags, open: &Opener) -> Result<CsvRead> {
    read_agent(flags, &flags.files, open)
}

/// [`FixedStep`] helpers on the flags.
impl ReplayFlags {
    /// The `--start`/`--step` axis, when given.
    pub(crate) fn fixed_step(&self) -> Option<FixedStep> {
        Some(FixedStep {
            start_ms: self.start?,
            step_ms: self.step?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_with_escapes() {
        assert_eq!(parse_separator(";\\t").unwrap(), ";\t");
        assert_eq!(parse_separator(";\t").unwrap(), ";\t");
        assert_eq!(parse_separator("\\t").unwrap(), "\t");
        assert_eq!(parse_separator("\\\\").unwrap(), "\\");
        assert_eq!(parse_separator("||").unwrap(), "||");
        assert!(parse_separator("").is_err());
        assert!(parse_separator("\\n")
            .unwrap_err()
            .contains("unknown escape"));
        assert!(parse_separator("\"").is_err());
    }

    fn records(text: &'static str, sep: &str) -> Vec<Vec<String>> {
        let mut rows = Rows::new(Box::new(text.as_bytes()), sep);
        let mut out = Vec::new();
        while let Some(r) = rows.next_record() {
            out.push(r.unwrap().iter().map(str::to_string).collect());
        }
        out
    }

    /// Bitbrains' per-VM files: `;\t` between fields.
    #[test]
    fn multi_character_separators_split_lines_and_trim() {
        let text = "Timestamp [ms];\tCPU cores;\tCPU usage [%]\r\n1376314846;\t4;\t0.5\n\n1376315146;\t4;\t\n";
        let want = vec![
            vec!["Timestamp [ms]", "CPU cores", "CPU usage [%]"],
            vec!["1376314846", "4", "0.5"],
            vec!["1376315146", "4", ""],
        ];
        assert_eq!(records(text, ";\t"), want);
        // One byte: the same file through the csv crate, trimmed.
        assert_eq!(records(text, ";"), want);
        assert_eq!(records("a,\"b,c\"\n", ","), vec![vec!["a", "b,c"]]);
    }

    #[test]
    fn an_overlong_line_is_an_error() {
        let long: &'static str =
            Box::leak(format!("a||b\n{}\n", "x".repeat(MAX_LINE_BYTES + 5)).into_boxed_str());
        let mut rows = Rows::new(Box::new(long.as_bytes()), "||");
        assert!(rows.next_record().unwrap().is_ok());
        let e = rows.next_record().unwrap().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("longer"), "{e}");
    }

    #[test]
    fn values_are_classified() {
        let mut c = Counts::default();
        assert_eq!(value(Some("1.5"), &mut c), 1.5);
        for cell in [
            Some("nan"),
            Some("NaN"),
            Some(""),
            None,
            Some("n/a"),
            Some("inf"),
            Some("-Infinity"),
        ] {
            assert!(value(cell, &mut c).is_nan());
        }
        assert_eq!(
            (
                c.nan_values,
                c.empty_values,
                c.unparseable_values,
                c.infinite_values
            ),
            (2, 2, 1, 2)
        );
    }

    #[test]
    fn the_timestamp_column_matches_without_its_unit() {
        let h: Vec<String> = ["Timestamp [ms]", "CPU cores"].map(String::from).into();
        assert_eq!(timestamp_index(&h, "timestamp"), Some(0));
        assert_eq!(timestamp_index(&h, "Timestamp [ms]"), Some(0));
        assert_eq!(timestamp_index(&h, "epoch"), None);
    }

    #[test]
    fn repeats_across_files_are_counted() {
        // File 0: metric 0 at 1, 2; file 1: metric 0 at 2, 3 and metric 1 at 1.
        let s = [
            (1, 0, 0.0),
            (2, 0, 0.0),
            (2, 0, 0.0),
            (3, 0, 0.0),
            (1, 1, 0.0),
        ];
        assert_eq!(repeated_across_files(&s, &[0, 2]), 1);
        assert_eq!(repeated_across_files(&s, &[0]), 0);
    }
}
