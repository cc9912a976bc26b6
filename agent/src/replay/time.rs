//! The time axis of a replayed file: parsing timestamps to Unix ms, the synthetic axis of
//! `--start T --step D` (row index × step), and the sanity check that refuses an axis that is
//! not one — timestamps before 1990 or more than a day ahead (unless `--allow-any-time`), or a
//! "timestamp" column whose steps go back and forth like a value column's.

use anyhow::{bail, Result};
use clap::ValueEnum;
use std::path::Path;

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

impl TimestampUnit {
    /// Milliseconds per unit.
    fn ms(self) -> f64 {
        match self {
            TimestampUnit::S => 1e3,
            TimestampUnit::Ms => 1.0,
            TimestampUnit::Us => 1e-3,
            TimestampUnit::Ns => 1e-6,
        }
    }

    /// The flag value (`s`, `ms`, `us`, `ns`).
    fn flag(self) -> &'static str {
        match self {
            TimestampUnit::S => "s",
            TimestampUnit::Ms => "ms",
            TimestampUnit::Us => "us",
            TimestampUnit::Ns => "ns",
        }
    }

    /// The unit in words, for errors.
    fn words(self) -> &'static str {
        match self {
            TimestampUnit::S => "seconds",
            TimestampUnit::Ms => "milliseconds",
            TimestampUnit::Us => "microseconds",
            TimestampUnit::Ns => "nanoseconds",
        }
    }
}

/// 1990-01-01T00:00:00Z, Unix ms: earlier timestamps are refused without `--allow-any-time`.
pub const EARLIEST_PLAUSIBLE_MS: i64 = 631_152_000_000;

/// How far after now (ms) a timestamp may lie without `--allow-any-time`: one day.
pub const FUTURE_SLACK_MS: i64 = 86_400_000;

/// Fewer steps than this are too few to judge whether a column is a time axis.
const MIN_STEPS_TO_JUDGE: u64 = 8;

/// How a timestamp text is read: a strftime format, or the automatic shapes with numbers in
/// `unit`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeParse<'a> {
    /// `--timestamp-format` (chrono strftime, UTC).
    pub format: Option<&'a str>,
    /// `--timestamp-unit`.
    pub unit: TimestampUnit,
}

/// A timestamp read from a file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Parsed {
    /// Unix ms, saturating at the ends of i64 (`1e300` s is `i64::MAX`).
    pub ms: i64,
    /// The number as written, when the text was a number (for the unit hint).
    pub number: Option<f64>,
}

impl TimeParse<'_> {
    /// Parses one timestamp: with a format, by it (UTC); else a number in the unit, RFC 3339,
    /// `YYYY-MM-DD HH:MM:SS[.f]`, `YYYY-MM-DDTHH:MM:SS[.f]` or `YYYY-MM-DD` (UTC). `None` when it
    /// does not parse (or is a non-finite number).
    pub fn parse(&self, s: &str) -> Option<Parsed> {
        let s = s.trim();
        if let Some(f) = self.format {
            return chrono::NaiveDateTime::parse_from_str(s, f)
                .ok()
                .map(|t| Parsed {
                    ms: t.and_utc().timestamp_millis(),
                    number: None,
                });
        }
        if let Ok(n) = s.parse::<f64>() {
            let ms = n * self.unit.ms();
            // `as` saturates: ±1e300 s are i64::MIN/MAX, outside every range below.
            return ms.is_finite().then(|| Parsed {
                ms: ms.round() as i64,
                number: Some(n),
            });
        }
        fleetset_core::time::parse_time(s)
            .ok()
            .map(|ms| Parsed { ms, number: None })
    }
}

/// `ms` lies where a window of it can pass the frame contract (`0 ≤ ms <` `MAX_TIME_MS`, i.e.
/// 1970 to 9999), so windowing it cannot overflow.
pub(crate) fn storable(ms: i64) -> bool {
    (0..fleetset_proto::contract::MAX_TIME_MS).contains(&ms)
}

/// What one file's time axis looked like, for [`Axis::check`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Axis {
    /// Steps (between consecutive parsed timestamps) that go back in time.
    pub back: u64,
    /// Steps of zero.
    pub same: u64,
    /// Steps forward.
    pub forward: u64,
    /// Timestamps outside [1990, now + 1 day].
    pub implausible: u64,
    /// The first of them: data row (1-based), text, Unix ms, the number as written.
    pub first_implausible: Option<(u64, String, i64, Option<f64>)>,
    /// The previous parsed timestamp.
    prev: Option<i64>,
}

impl Axis {
    /// Records the timestamp `t` (text `text`) of data row `row`; `now_ms` is the clock.
    pub fn record(&mut self, row: u64, text: &str, t: Parsed, now_ms: i64) {
        if let Some(p) = self.prev {
            match t.ms.cmp(&p) {
                std::cmp::Ordering::Less => self.back += 1,
                std::cmp::Ordering::Equal => self.same += 1,
                std::cmp::Ordering::Greater => self.forward += 1,
            }
        }
        self.prev = Some(t.ms);
        if !plausible(t.ms, now_ms) {
            self.implausible += 1;
            if self.first_implausible.is_none() {
                self.first_implausible = Some((row, text.trim().to_string(), t.ms, t.number));
            }
        }
    }

    /// Refuses an axis that is not one (see the module docs). `column`: the timestamp column
    /// (`None`: the `--start`/`--step` axis, whose steps are not judged). Errors name the file,
    /// the column, what is wrong and the likely fix.
    pub fn check(
        &self,
        path: &Path,
        column: Option<&str>,
        unit: TimestampUnit,
        allow_any_time: bool,
        now_ms: i64,
    ) -> Result<()> {
        let path = path.display();
        let steps = self.back + self.same + self.forward;
        if let (Some(col), true) = (column, steps >= MIN_STEPS_TO_JUDGE) {
            let fix = "name the timestamp column with --timestamp-column, or give --start T \
                       --step D for a file without one";
            // A newest-first file (nearly every step back) is a time axis; it is sorted.
            if self.back * 10 > steps && self.back * 10 < steps * 9 {
                bail!(
                    "{path}: column {col:?} is not a time axis: {} of {steps} steps go back in \
                     time (a value column?); {fix}",
                    self.back
                );
            }
            if self.same * 2 > steps {
                bail!(
                    "{path}: column {col:?} is not a time axis: {} of {steps} steps repeat the \
                     previous row's time (a value column?); {fix}",
                    self.same
                );
            }
        }
        let Some((row, text, ms, number)) = &self.first_implausible else {
            return Ok(());
        };
        if allow_any_time {
            return Ok(());
        }
        let hint = match number {
            Some(n) => match guess_unit(*n, now_ms) {
                Some(u) if u != unit => format!(
                    "timestamps look like {}: pass --timestamp-unit {}",
                    u.words(),
                    u.flag()
                ),
                _ => "they are no epoch times in any --timestamp-unit; for a row index or \
                      relative times give --start T --step D"
                    .to_string(),
            },
            None => "check --timestamp-format".to_string(),
        };
        let column = column.map_or("--start/--step".to_string(), |c| format!("column {c:?}"));
        let shown = match text.is_empty() {
            true => show_ms(*ms),
            false => format!("{text:?} read as {}", show_ms(*ms)),
        };
        bail!(
            "{path}: {} timestamps of {column} lie before 1990 or more than a day in the future \
             (data row {row}: {shown}); {hint}; or pass --allow-any-time to replay them as they \
             are",
            self.implausible,
        )
    }
}

/// `ms` lies in [1990-01-01, now + 1 day].
fn plausible(ms: i64, now_ms: i64) -> bool {
    ms >= EARLIEST_PLAUSIBLE_MS && ms <= now_ms.saturating_add(FUTURE_SLACK_MS)
}

/// The unit in which the number `n` is a plausible epoch time, if one is.
fn guess_unit(n: f64, now_ms: i64) -> Option<TimestampUnit> {
    [
        TimestampUnit::S,
        TimestampUnit::Ms,
        TimestampUnit::Us,
        TimestampUnit::Ns,
    ]
    .into_iter()
    .find(|u| {
        let ms = n * u.ms();
        ms.is_finite() && plausible(ms as i64, now_ms)
    })
}

/// `ms` as RFC 3339 (UTC), or the number when chrono cannot show it.
fn show_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms since 1970"))
}

/// The synthetic axis of `--start T --step D`: row `i` (0-based) is at `start + i × step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedStep {
    /// `--start`, Unix ms.
    pub start_ms: i64,
    /// `--step`, ms (≥ 1).
    pub step_ms: i64,
}

impl FixedStep {
    /// The time of data row `i` (0-based), saturating (an overflow lies outside the contract
    /// and is counted as a bad timestamp).
    pub fn at(&self, i: u64) -> i64 {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        self.start_ms.saturating_add(i.saturating_mul(self.step_ms))
    }
}

/// Parses `--start`: RFC 3339, `YYYY-MM-DD[ HH:MM:SS]` (UTC) or Unix seconds.
pub(crate) fn parse_start(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.trim().parse::<i64>() {
        return n
            .checked_mul(1000)
            .ok_or_else(|| format!("--start {s:?} is out of range"));
    }
    fleetset_core::time::parse_time(s).map_err(|e| format!("--start: {e}, or Unix seconds"))
}

/// Parses `--step`: a humantime duration of at least 1 ms (`1m`, `30s`, `250ms`).
pub(crate) fn parse_step(s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("--step {s:?}: {e}"))?;
    match i64::try_from(d.as_millis()) {
        Ok(ms) if ms >= 1 => Ok(ms),
        _ => Err(format!("--step {s:?}: between 1 ms and 292 million years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000; // 2027-01-15

    fn ms(s: &str, format: Option<&str>, unit: TimestampUnit) -> Option<i64> {
        TimeParse { format, unit }.parse(s).map(|p| p.ms)
    }

    #[test]
    fn timestamps_in_the_usual_shapes() {
        let u = TimestampUnit::S;
        assert_eq!(ms("2014-02-14 14:30:00", None, u), Some(1_392_388_200_000));
        assert_eq!(
            ms("2014-02-14T14:30:00.250", None, u),
            Some(1_392_388_200_250)
        );
        assert_eq!(
            ms("2014-02-14T15:30:00+01:00", None, u),
            Some(1_392_388_200_000)
        );
        assert_eq!(ms("1392388200", None, u), Some(1_392_388_200_000));
        assert_eq!(
            ms("1392388200000", None, TimestampUnit::Ms),
            Some(1_392_388_200_000)
        );
        assert_eq!(
            ms("14/02/2014 14:30", Some("%d/%m/%Y %H:%M"), u),
            Some(1_392_388_200_000)
        );
        assert_eq!(ms("yesterday", None, u), None);
        assert_eq!(ms("nan", None, u), None);
    }

    fn axis(times: &[i64], unit: TimestampUnit) -> Axis {
        let mut a = Axis::default();
        for (i, &t) in times.iter().enumerate() {
            let text = t.to_string();
            let p = TimeParse { format: None, unit }.parse(&text).unwrap();
            a.record(i as u64 + 1, &text, p, NOW);
        }
        a
    }

    fn refusal(times: &[i64], unit: TimestampUnit, column: Option<&str>) -> String {
        axis(times, unit)
            .check(Path::new("f.csv"), column, unit, false, NOW)
            .unwrap_err()
            .to_string()
    }

    /// Bitbrains' `Timestamp [ms]` column holds epoch seconds.
    #[test]
    fn seconds_read_as_milliseconds_are_refused_naming_the_unit() {
        let secs: Vec<i64> = (0..20).map(|i| 1_376_314_846 + i * 300).collect();
        let e = refusal(&secs, TimestampUnit::Ms, Some("Timestamp [ms]"));
        assert!(
            e.contains("look like seconds: pass --timestamp-unit s") && e.contains("1970-01-16"),
            "{e}"
        );
        assert!(axis(&secs, TimestampUnit::S)
            .check(Path::new("f"), Some("t"), TimestampUnit::S, false, NOW)
            .is_ok());
        // Milliseconds read as seconds lie past 9999; nanoseconds read as microseconds too.
        let millis: Vec<i64> = secs.iter().map(|s| s * 1000).collect();
        let e = refusal(&millis, TimestampUnit::S, Some("t"));
        assert!(e.contains("--timestamp-unit ms"), "{e}");
        let nanos: Vec<i64> = secs.iter().map(|s| s * 1_000_000_000).collect();
        assert!(refusal(&nanos, TimestampUnit::Us, Some("t")).contains("--timestamp-unit ns"));
        // --allow-any-time lets them through.
        assert!(axis(&secs, TimestampUnit::Ms)
            .check(Path::new("f"), Some("t"), TimestampUnit::Ms, true, NOW)
            .is_ok());
    }

    #[test]
    fn the_future_and_row_indexes_are_refused() {
        let ahead: Vec<i64> = (0..10).map(|i| NOW / 1000 + 2 * 86_400 + i).collect();
        let e = refusal(&ahead, TimestampUnit::S, Some("t"));
        assert!(e.contains("more than a day in the future"), "{e}");
        let index: Vec<i64> = (0..10).collect();
        let e = refusal(&index, TimestampUnit::S, Some("t"));
        assert!(e.contains("--start T --step D"), "{e}");
    }

    /// A value column given as `--timestamp-column`: a CPU percentage in seconds.
    #[test]
    fn a_value_column_is_no_time_axis() {
        let cpu = [
            12, 80, 35, 4, 99, 51, 7, 66, 23, 90, 11, 45, 3, 78, 56, 9, 41, 70,
        ];
        let e = refusal(&cpu, TimestampUnit::S, Some("CPU usage [%]"));
        assert!(
            e.contains("column \"CPU usage [%]\" is not a time axis") && e.contains("go back"),
            "{e}"
        );
        let flat = [5; 12];
        assert!(refusal(&flat, TimestampUnit::S, Some("cores")).contains("repeat"));
        // A newest-first file and one out-of-order row are time axes.
        let base = 1_400_000_000;
        let newest_first: Vec<i64> = (0..20).rev().map(|i| base + i * 60).collect();
        assert!(axis(&newest_first, TimestampUnit::S)
            .check(Path::new("f"), Some("t"), TimestampUnit::S, false, NOW)
            .is_ok());
        let mut one_swap: Vec<i64> = (0..20).map(|i| base + i * 60).collect();
        one_swap.swap(5, 6);
        assert!(axis(&one_swap, TimestampUnit::S)
            .check(Path::new("f"), Some("t"), TimestampUnit::S, false, NOW)
            .is_ok());
    }

    #[test]
    fn start_and_step() {
        assert_eq!(parse_start("2011-12-01"), Ok(1_322_697_600_000));
        assert_eq!(parse_start("1322697600"), Ok(1_322_697_600_000));
        assert!(parse_start("soon").unwrap_err().contains("--start"));
        assert_eq!(parse_step("5m"), Ok(300_000));
        assert!(parse_step("0s").is_err());
        assert!(parse_step("often").unwrap_err().contains("--step"));
        let axis = FixedStep {
            start_ms: 1000,
            step_ms: 300_000,
        };
        assert_eq!(axis.at(2), 601_000);
        assert_eq!(axis.at(u64::MAX), i64::MAX);
    }
}
