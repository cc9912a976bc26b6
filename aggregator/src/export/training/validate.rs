//! Validation and cleaning of a training set, after seed 001 ("Data Quality Checks": required
//! columns, value ranges, missing values, duplicates, IQR outliers, sufficient samples, class
//! balance).
//!
//! Rules that are *violations* (`--strict` fails the export on any): a required column missing,
//! a statistic outside its metric's physical range, a feature column with more than
//! `--max-missing` (default 10 %) of its values missing. Duplicates of (agent, window) are
//! always dropped and counted (the store never holds any; an export over copied files could).
//! IQR outliers (outside `[Q1 − 1.5·IQR, Q3 + 1.5·IQR]` of a `<metric>__mean` column) are
//! flagged in the `is_outlier` column and counted, and dropped only with `--drop-outliers`. The
//! quartiles are computed **per agent** by default (`--outliers-by agent`: each agent's rows
//! against its own bounds, so a host that simply runs at another scale is not an outlier), or
//! over the whole selection (`--outliers-by fleet`); a group (agent or fleet) with fewer than 4
//! values or an IQR of 0 in a column is skipped for that column.
//!
//! Warnings ([`Warning`], each with a [`Code`]): few rows, a class absent or under 5 % of the
//! labelled rows, agents missing from an incidents file — and the shape checks of a split, which
//! `--strict` turns into errors ([`Code::fails_strict`]): one agent holding more than
//! `--max-agent-share` of a split's rows while the set has several agents, a class of the set
//! under 1 % of a split, an agent shard with no rows in a split that has rows.

use super::features::{numbers, Feature};
use super::Rows;
use crate::store::schema;
use arrow::array::{Array, Float64Array};
use clap::ValueEnum;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;

/// Columns every training set needs from the store.
pub const REQUIRED_COLUMNS: [&str; 4] = [
    schema::AGENT_ID,
    schema::SEQ,
    schema::WINDOW_START,
    schema::WINDOW_END,
];

/// Fewer labelled rows than this is a warning (seed 001 asks ≥ 10,000 for its model; windows
/// are coarser, so fleetset warns below 100).
pub const MIN_ROWS: usize = 100;

/// A class under this share of a split (present elsewhere in the set) is a
/// [`Code::ClassUnder1Percent`] warning: 1 %.
pub const MIN_SPLIT_CLASS_SHARE: f64 = 0.01;

/// Over which rows the IQR bounds of `is_outlier` are computed (`--outliers-by`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutliersBy {
    /// Each agent's own rows: bounds per agent per `<metric>__mean`.
    #[default]
    Agent,
    /// All selected rows together: one set of bounds per `<metric>__mean`.
    Fleet,
}

/// What a warning is about (`code` in the manifest's `warnings`, as [`Code::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Fewer than [`MIN_ROWS`] labelled rows.
    FewRows,
    /// A class of the rule has no labelled row at all.
    AbsentClass,
    /// A class holds under 5 % of the labelled rows.
    ClassUnder5Percent,
    /// Agents without an entry in the incidents file (all their rows are `Negative`).
    AgentsWithoutIncidents,
    /// One agent holds more than `--max-agent-share` of a split's rows (the set has several).
    AgentDominatesSplit,
    /// A class present in the set holds under [`MIN_SPLIT_CLASS_SHARE`] of a split.
    ClassUnder1Percent,
    /// Agent shards with no rows in a split that has rows (their file is not written).
    EmptyShardSplit,
}

impl Code {
    /// The code as the manifest and the terminal show it, e.g. `agent_dominates_split`.
    pub fn name(self) -> &'static str {
        match self {
            Code::FewRows => "few_rows",
            Code::AbsentClass => "absent_class",
            Code::ClassUnder5Percent => "class_under_5_percent",
            Code::AgentsWithoutIncidents => "agents_without_incidents",
            Code::AgentDominatesSplit => "agent_dominates_split",
            Code::ClassUnder1Percent => "class_under_1_percent",
            Code::EmptyShardSplit => "empty_shard_split",
        }
    }

    /// Whether `--strict` makes this warning an error: the shape checks of a split.
    pub fn fails_strict(self) -> bool {
        matches!(
            self,
            Code::AgentDominatesSplit | Code::ClassUnder1Percent | Code::EmptyShardSplit
        )
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One warning: `{"code", "message", "fails_strict"}` in the manifest's `warnings`.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    /// What it is about.
    pub code: Code,
    /// What was found and what to do, for a person.
    pub message: String,
    /// Whether `--strict` fails on it ([`Code::fails_strict`]).
    pub fails_strict: bool,
}

/// The validation report (in the manifest and on the terminal).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Windows read.
    pub rows_read: usize,
    /// Duplicate (agent, window) rows dropped.
    pub duplicates_dropped: usize,
    /// Required columns absent from the store.
    pub missing_required_columns: Vec<String>,
    /// Feature column → fraction of rows missing (only columns with any).
    pub missing_fraction: BTreeMap<String, f64>,
    /// Statistics column → rows outside the metric's range.
    pub out_of_range: BTreeMap<String, usize>,
    /// Over which rows the IQR bounds were computed.
    pub outliers_by: OutliersBy,
    /// `<metric>__mean` column → rows flagged as IQR outliers.
    pub outliers: BTreeMap<String, usize>,
    /// Rows flagged in `is_outlier`.
    pub outlier_rows: usize,
    /// Rows dropped as outliers (`--drop-outliers`).
    pub outliers_dropped: usize,
    /// Rule violations (`--strict` fails on any).
    pub violations: Vec<String>,
    /// Warnings (the manifest lists them at its top level, `warnings`).
    #[serde(skip)]
    pub warnings: Vec<Warning>,
}

/// The physical range of a metric's values, by naming convention; `None` = unknown.
pub fn metric_range(metric: &str) -> Option<(f64, f64)> {
    if metric.ends_with("_percent") || metric == "health_score" {
        Some((0.0, 100.0))
    } else if metric.ends_with("_mb")
        || metric == "memory_mb"
        || metric.contains("bytes")
        || metric.ends_with("_count")
        || metric.starts_with("load_avg")
    {
        Some((0.0, f64::INFINITY))
    } else {
        None
    }
}

/// First and third quartile of the non-null `values` (`None` with fewer than 4).
fn quartiles(values: &Float64Array) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().flatten().collect();
    if v.len() < 4 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    // Linear interpolation between closest ranks (pandas' default quantile).
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    Some((q(0.25), q(0.75)))
}

/// Flags the rows `range` of `values` outside that range's own IQR bounds; returns how many.
fn flag_iqr(values: &Float64Array, range: Range<usize>, flags: &mut [bool]) -> usize {
    let part = values.slice(range.start, range.len());
    let Some((q1, q3)) = quartiles(&part) else {
        return 0;
    };
    let iqr = q3 - q1;
    if iqr <= 0.0 {
        return 0;
    }
    let (lo, hi) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
    let mut count = 0;
    for (i, v) in part.iter().enumerate() {
        if v.is_some_and(|v| v < lo || v > hi) {
            flags[range.start + i] = true;
            count += 1;
        }
    }
    count
}

impl Report {
    /// Adds a warning.
    pub fn warn(&mut self, code: Code, message: String) {
        self.warnings.push(Warning {
            code,
            message,
            fails_strict: code.fails_strict(),
        });
    }

    /// What `--strict` fails on: every violation and every warning that
    /// [`Code::fails_strict`], as `violation: …` / `warning <code>: …` lines.
    pub fn strict_errors(&self) -> Vec<String> {
        let violations = self.violations.iter().map(|v| format!("violation: {v}"));
        let warnings = self
            .warnings
            .iter()
            .filter(|w| w.fails_strict)
            .map(|w| format!("warning {}: {}", w.code.name(), w.message));
        violations.chain(warnings).collect()
    }

    /// Checks `rows` and the `features` built from them; returns the per-row outlier flags,
    /// with IQR bounds per agent or fleet-wide (`outliers_by`).
    pub fn check(
        &mut self,
        rows: &Rows,
        metrics: &[String],
        features: &[Feature],
        max_missing: f64,
        outliers_by: OutliersBy,
    ) -> Vec<bool> {
        let schema = rows.batch.schema();
        for c in REQUIRED_COLUMNS {
            if schema.field_with_name(c).is_err() {
                self.missing_required_columns.push(c.to_string());
                self.violations
                    .push(format!("required column {c} is missing"));
            }
        }
        let n = rows.batch.num_rows();
        for f in features.iter().filter(|f| !f.name.contains("__mean_lag")) {
            let missing = f.values.null_count();
            let skip = f.name == "minutes_since_last_window" || f.name.ends_with("__trend");
            if missing > 0 && n > 0 && !skip {
                let frac = missing as f64 / n as f64;
                self.missing_fraction.insert(f.name.clone(), frac);
                if frac > max_missing {
                    self.violations.push(format!(
                        "{} is missing in {:.1} % of rows (more than --max-missing {:.1} %)",
                        f.name,
                        frac * 100.0,
                        max_missing * 100.0
                    ));
                }
            }
        }
        for m in metrics {
            let Some((lo, hi)) = metric_range(m) else {
                continue;
            };
            for stat in ["min", "max", "mean", "first", "last"] {
                let name = format!("{m}__{stat}");
                let bad = numbers(&rows.batch, &name)
                    .iter()
                    .flatten()
                    .filter(|v| *v < lo || *v > hi)
                    .count();
                if bad > 0 {
                    self.out_of_range.insert(name.clone(), bad);
                    self.violations.push(format!(
                        "{name}: {bad} value(s) outside the range of {m} [{lo}, {hi}]"
                    ));
                }
            }
        }
        self.outliers_by = outliers_by;
        // Rows are sorted by agent, so each agent's rows are one range.
        let groups: Vec<Range<usize>> = match outliers_by {
            OutliersBy::Agent => rows.groups.values().cloned().collect(),
            OutliersBy::Fleet => std::iter::once(0..n).collect(),
        };
        let mut flags = vec![false; n];
        for f in features.iter().filter(|f| f.name.ends_with("__mean")) {
            let count: usize = groups
                .iter()
                .map(|g| flag_iqr(&f.values, g.clone(), &mut flags))
                .sum();
            if count > 0 {
                self.outliers.insert(f.name.clone(), count);
            }
        }
        self.outlier_rows = flags.iter().filter(|f| **f).count();
        flags
    }

    /// Warnings about the labelled rows: too few, or a class under 5 %.
    pub fn check_classes(&mut self, histogram: &BTreeMap<String, usize>) {
        let total: usize = histogram.values().sum();
        if total < MIN_ROWS {
            self.warn(
                Code::FewRows,
                format!("only {total} labelled rows (fewer than {MIN_ROWS}); export more history"),
            );
        }
        let absent: Vec<&str> = histogram
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(c, _)| c.as_str())
            .collect();
        if !absent.is_empty() {
            self.warn(
                Code::AbsentClass,
                format!("no rows of class(es) {}", absent.join(", ")),
            );
        }
        for (class, count) in histogram.iter().filter(|(_, n)| **n > 0) {
            if (*count as f64) < 0.05 * total as f64 {
                self.warn(
                    Code::ClassUnder5Percent,
                    format!(
                        "class {class} has {count} of {total} rows (under 5 %); consider --balance-classes"
                    ),
                );
            }
        }
    }

    /// The shape checks of one split (`name`, e.g. `test`) with `rows` rows: its rows per agent
    /// (`per_agent`, ids as written), its class histogram, and the histogram of the whole
    /// labelled set (`all`). Warns when one agent holds more than `max_agent_share` of the rows
    /// while the set has several agents, and when a class of the set is under
    /// [`MIN_SPLIT_CLASS_SHARE`] of the split. An empty split is not checked.
    pub fn check_split(
        &mut self,
        name: &str,
        per_agent: &BTreeMap<&str, usize>,
        histogram: &BTreeMap<String, usize>,
        all: &BTreeMap<String, usize>,
        (agents_in_set, max_agent_share): (usize, f64),
    ) {
        let rows: usize = per_agent.values().sum();
        if rows == 0 {
            return;
        }
        let pct = |n: usize| 100.0 * n as f64 / rows as f64;
        if let Some((agent, &most)) = per_agent
            .iter()
            .max_by_key(|(a, n)| (**n, std::cmp::Reverse(*a)))
        {
            if agents_in_set > 1 && most as f64 > max_agent_share * rows as f64 {
                self.warn(
                    Code::AgentDominatesSplit,
                    format!(
                        "{name} split: {most} of its {rows} rows ({:.1} %) come from agent {agent} (more than --max-agent-share {:.0} %; the set has {agents_in_set} agents): its scores describe that agent; consider --split-by agent",
                        pct(most),
                        max_agent_share * 100.0
                    ),
                );
            }
        }
        for (class, _) in all.iter().filter(|(_, n)| **n > 0) {
            let count = histogram.get(class).copied().unwrap_or(0);
            if (count as f64) < MIN_SPLIT_CLASS_SHARE * rows as f64 {
                self.warn(
                    Code::ClassUnder1Percent,
                    format!(
                        "{name} split: class {class} has {count} of {rows} rows ({:.2} %, under {:.0} %): accuracy there is close to the majority baseline whatever the model does",
                        pct(count),
                        MIN_SPLIT_CLASS_SHARE * 100.0
                    ),
                );
            }
        }
    }

    /// Prints the report to stderr.
    pub fn print(&self) {
        eprintln!(
            "validation: {} windows read, {} duplicates dropped, {} outlier rows flagged ({} dropped), {} violation(s), {} warning(s)",
            self.rows_read,
            self.duplicates_dropped,
            self.outlier_rows,
            self.outliers_dropped,
            self.violations.len(),
            self.warnings.len()
        );
        for v in &self.violations {
            eprintln!("  violation: {v}");
        }
        for w in &self.warnings {
            let strict = if w.fails_strict {
                " (an error with --strict)"
            } else {
                ""
            };
            eprintln!("  warning {}: {}{strict}", w.code.name(), w.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_like_pandas() {
        let v = Float64Array::from(vec![
            Some(1.0),
            Some(2.0),
            None,
            Some(3.0),
            Some(4.0),
            Some(100.0),
        ]);
        assert_eq!(quartiles(&v), Some((2.0, 4.0)), "nulls are skipped");
    }

    /// Rows of agents `a` (10 windows near 10, one at 30) and `b` (3 windows near 1000), with
    /// their `value__mean` feature.
    fn two_scales() -> (Rows, Vec<Feature>) {
        use arrow::array::{StringArray, TimestampMillisecondArray};
        use arrow::datatypes::{Field, Schema};
        use arrow::record_batch::RecordBatch;
        use std::sync::Arc;
        let mut agents = vec!["a"; 10];
        agents.extend(["b"; 3]);
        let starts: Vec<i64> = (0..13).map(|i| i * 60_000).collect();
        let ends: Vec<i64> = starts.iter().map(|s| s + 60_000).collect();
        let fields = [schema::AGENT_ID, schema::WINDOW_START, schema::WINDOW_END];
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new(fields[0], arrow::datatypes::DataType::Utf8, false),
                Field::new(
                    fields[1],
                    arrow::datatypes::DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Millisecond,
                        None,
                    ),
                    false,
                ),
                Field::new(
                    fields[2],
                    arrow::datatypes::DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Millisecond,
                        None,
                    ),
                    false,
                ),
            ])),
            vec![
                Arc::new(StringArray::from(agents)),
                Arc::new(TimestampMillisecondArray::from(starts)),
                Arc::new(TimestampMillisecondArray::from(ends)),
            ],
        )
        .unwrap();
        let (rows, _) = Rows::new(batch).unwrap();
        let values = vec![
            10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 11.0, 9.0, 10.0, 30.0, 1000.0, 1010.0, 990.0,
        ];
        let feature = Feature {
            name: "value__mean".into(),
            unit: String::new(),
            source: String::new(),
            integer: false,
            values: Float64Array::from(values),
        };
        (rows, vec![feature])
    }

    #[test]
    fn outlier_bounds_are_per_agent_unless_fleet_wide() {
        let (rows, features) = two_scales();
        let metrics = ["value".to_string()];
        let mut fleet = Report::default();
        let flags = fleet.check(&rows, &metrics, &features, 0.1, OutliersBy::Fleet);
        // Fleet-wide, b's three rows are far above a's quartiles; a's spike at 30 is not.
        assert_eq!(flags[10..], [true; 3]);
        assert!(!flags[9]);
        let mut agent = Report::default();
        let flags = agent.check(&rows, &metrics, &features, 0.1, OutliersBy::Agent);
        assert_eq!(flags.iter().filter(|f| **f).count(), 1);
        assert!(flags[9], "a's spike is an outlier among a's own rows");
        assert_eq!(agent.outlier_rows, 1);
        assert_eq!(agent.outliers_by, OutliersBy::Agent);
    }

    #[test]
    fn split_shape_warnings_fail_strict() {
        let counts = |v: &[(&str, usize)]| -> BTreeMap<String, usize> {
            v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        let agents = |v: &[(&'static str, usize)]| -> BTreeMap<&'static str, usize> {
            v.iter().copied().collect()
        };
        let mut r = Report::default();
        let all = counts(&[("Negative", 1000), ("Positive", 20)]);
        // 695 of 696 test rows from one agent, 1 positive: both warnings.
        r.check_split(
            "test",
            &agents(&[("vm-1", 695), ("vm-2", 1)]),
            &counts(&[("Negative", 695), ("Positive", 1)]),
            &all,
            (5, 0.5),
        );
        let codes: Vec<Code> = r.warnings.iter().map(|w| w.code).collect();
        assert_eq!(codes, [Code::AgentDominatesSplit, Code::ClassUnder1Percent]);
        assert!(
            r.warnings[0].message.contains("vm-1"),
            "{}",
            r.warnings[0].message
        );
        // Balanced agents, 2 % positives: nothing; one agent alone in the set: no dominance.
        let mut ok = Report::default();
        ok.check_split(
            "train",
            &agents(&[("vm-1", 50), ("vm-2", 50)]),
            &counts(&[("Negative", 98), ("Positive", 2)]),
            &all,
            (2, 0.5),
        );
        ok.check_split(
            "train",
            &agents(&[("vm-1", 100)]),
            &counts(&[("Negative", 98), ("Positive", 2)]),
            &all,
            (1, 0.5),
        );
        assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
        assert!(ok.strict_errors().is_empty());
        ok.warn(Code::FewRows, "few".into());
        assert!(
            ok.strict_errors().is_empty(),
            "advisory warnings do not fail --strict"
        );
        let errors = r.strict_errors();
        assert_eq!(errors.len(), 2);
        assert!(
            errors[0].starts_with("warning agent_dominates_split: "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn ranges_follow_metric_names() {
        assert_eq!(metric_range("cpu_percent"), Some((0.0, 100.0)));
        assert_eq!(metric_range("disk_read_bytes_per_sec").unwrap().0, 0.0);
        assert_eq!(metric_range("value"), None);
    }
}
