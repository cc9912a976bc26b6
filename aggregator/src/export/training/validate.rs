//! Validation and cleaning of a training set, after seed 001 ("Data Quality Checks": required
//! columns, value ranges, missing values, duplicates, IQR outliers, sufficient samples, class
//! balance).
//!
//! Rules that are *violations* (`--strict` fails the export on any): a required column missing,
//! a statistic outside its metric's physical range, a feature column with more than
//! `--max-missing` (default 10 %) of its values missing. Duplicates of (agent, window) are
//! always dropped and counted (the store never holds any; an export over copied files could).
//! IQR outliers (outside `[Q1 − 1.5·IQR, Q3 + 1.5·IQR]` of a `<metric>__mean` column; columns
//! with IQR 0 are skipped) are flagged in the `is_outlier` column and counted, and dropped only
//! with `--drop-outliers`. Few rows and a class under 5 % are warnings.

use super::features::{numbers, Feature};
use super::Rows;
use crate::store::schema;
use arrow::array::{Array, Float64Array};
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// `<metric>__mean` column → rows flagged as IQR outliers.
    pub outliers: BTreeMap<String, usize>,
    /// Rows flagged in `is_outlier`.
    pub outlier_rows: usize,
    /// Rows dropped as outliers (`--drop-outliers`).
    pub outliers_dropped: usize,
    /// Rule violations (`--strict` fails on any).
    pub violations: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
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

impl Report {
    /// Checks `rows` and the `features` built from them; returns the per-row outlier flags.
    pub fn check(
        &mut self,
        rows: &Rows,
        metrics: &[String],
        features: &[Feature],
        max_missing: f64,
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
        let mut flags = vec![false; n];
        for f in features.iter().filter(|f| f.name.ends_with("__mean")) {
            let Some((q1, q3)) = quartiles(&f.values) else {
                continue;
            };
            let iqr = q3 - q1;
            if iqr <= 0.0 {
                continue;
            }
            let (lo, hi) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
            let mut count = 0;
            for (i, v) in f.values.iter().enumerate() {
                if v.is_some_and(|v| v < lo || v > hi) {
                    flags[i] = true;
                    count += 1;
                }
            }
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
            self.warnings.push(format!(
                "only {total} labelled rows (fewer than {MIN_ROWS}); export more history"
            ));
        }
        let absent: Vec<&str> = histogram
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(c, _)| c.as_str())
            .collect();
        if !absent.is_empty() {
            self.warnings
                .push(format!("no rows of class(es) {}", absent.join(", ")));
        }
        for (class, count) in histogram.iter().filter(|(_, n)| **n > 0) {
            if (*count as f64) < 0.05 * total as f64 {
                self.warnings.push(format!(
                    "class {class} has {count} of {total} rows (under 5 %); consider --balance-classes"
                ));
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
            eprintln!("  warning: {w}");
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

    #[test]
    fn ranges_follow_metric_names() {
        assert_eq!(metric_range("cpu_percent"), Some((0.0, 100.0)));
        assert_eq!(metric_range("disk_read_bytes_per_sec").unwrap().0, 0.0);
        assert_eq!(metric_range("value"), None);
    }
}
