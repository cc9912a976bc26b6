//! Labels of a training row, always computed from the row's *following* window (the same
//! agent's window that starts where this one ends) — so a model learns to predict it.
//!
//! Rules:
//! - classes (default): seed 000's four `OptimizationLabel` classes from memory pressure —
//!   the following window's `memory_used_percent__max` (`--label-column`) against
//!   `--class-thresholds 75,85,95` (percent): below 75 `NoActionNeeded`, from 75
//!   `ShouldOptimize`, from 85 `ShouldOptimizeAggressive`, from 95 `Critical`;
//! - threshold (`--label-threshold 'cpu_percent__mean>90'`, operators `>`, `>=`, `<`, `<=`):
//!   `Positive` when the following window's column satisfies it, else `Negative`;
//! - incidents (`--label-windows FILE`, JSON shaped like NAB's `combined_windows.json`:
//!   `{"<key>": [["start", "end"], …]}`, times UTC): `Positive` when the following window
//!   `[end, end + length)` overlaps an incident of the row's agent, else `Negative`. A key
//!   belongs to the agent whose id equals the key's file stem (`realKnownCause/x_y.csv` → `x_y`),
//!   compared case-insensitively with `_` and `-` treated alike.

use super::super::parse_time;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// Seed 000's `OptimizationLabel` classes, in order of pressure.
pub const MEMORY_CLASSES: [&str; 4] = [
    "NoActionNeeded",
    "ShouldOptimize",
    "ShouldOptimizeAggressive",
    "Critical",
];

/// Classes of the binary rules.
pub const BINARY_CLASSES: [&str; 2] = ["Negative", "Positive"];

/// Comparison of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// How labels are computed.
#[derive(Debug)]
pub enum LabelRule {
    /// Classes by ascending thresholds on a column of the following window.
    Classes {
        /// A windows column, e.g. `memory_used_percent__max`.
        column: String,
        /// Ascending thresholds; class i when exactly i thresholds are ≤ the value.
        thresholds: Vec<f64>,
    },
    /// Positive when the following window's column compares true.
    Threshold {
        /// A windows column.
        column: String,
        /// The operator as written.
        op_text: String,
        /// The operator.
        op: Op,
        /// Threshold value.
        value: f64,
    },
    /// Positive when the following window overlaps an operator incident.
    Incidents {
        /// The file the incidents came from.
        file: String,
        /// Normalized agent key → incidents `[start, end]` in Unix ms (inclusive).
        windows: HashMap<String, Vec<(i64, i64)>>,
    },
}

/// The key under which an agent id or a file stem is matched.
pub fn agent_key(id: &str) -> String {
    let stem = id.rsplit(['/', '\\']).next().unwrap_or(id);
    let stem = stem.strip_suffix(".csv").unwrap_or(stem);
    stem.to_lowercase().replace('_', "-")
}

impl LabelRule {
    /// The seed 000 memory-pressure rule.
    pub fn classes(column: &str, thresholds: &[f64]) -> Result<LabelRule> {
        if thresholds.len() != MEMORY_CLASSES.len() - 1 {
            bail!(
                "--class-thresholds needs {} values (one per class boundary), got {}",
                MEMORY_CLASSES.len() - 1,
                thresholds.len()
            );
        }
        if thresholds.windows(2).any(|w| w[0] >= w[1]) || thresholds.iter().any(|t| !t.is_finite())
        {
            bail!("--class-thresholds must be finite and strictly ascending: {thresholds:?}");
        }
        Ok(LabelRule::Classes {
            column: column.to_string(),
            thresholds: thresholds.to_vec(),
        })
    }

    /// Parses `--label-threshold`, e.g. `cpu_percent__mean>90`.
    pub fn threshold(expr: &str) -> Result<LabelRule> {
        for (text, op) in [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)] {
            if let Some((column, value)) = expr.split_once(text) {
                let value: f64 = value.trim().parse().with_context(|| {
                    format!("--label-threshold {expr:?}: {value:?} is not a number")
                })?;
                let column = column.trim();
                if column.is_empty() {
                    bail!("--label-threshold {expr:?} names no column");
                }
                return Ok(LabelRule::Threshold {
                    column: column.to_string(),
                    op_text: text.to_string(),
                    op,
                    value,
                });
            }
        }
        bail!("--label-threshold {expr:?} is not COLUMN>VALUE (or >=, <, <=)")
    }

    /// Reads `--label-windows FILE`.
    pub fn incidents(path: &Path) -> Result<LabelRule> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --label-windows {}", path.display()))?;
        let doc: HashMap<String, Vec<Vec<String>>> =
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "--label-windows {}: expected {{\"key\": [[\"start\", \"end\"], …]}}",
                    path.display()
                )
            })?;
        let mut windows: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for (key, spans) in doc {
            let list = windows.entry(agent_key(&key)).or_default();
            for span in spans {
                let [a, b] = span.as_slice() else {
                    bail!("--label-windows: {key}: an incident is not [start, end]: {span:?}");
                };
                let (a, b) = (
                    parse_time(a).map_err(anyhow::Error::msg)?,
                    parse_time(b).map_err(anyhow::Error::msg)?,
                );
                if b < a {
                    bail!("--label-windows: {key}: incident ends before it starts: {span:?}");
                }
                list.push((a, b));
            }
        }
        Ok(LabelRule::Incidents {
            file: path.display().to_string(),
            windows,
        })
    }

    /// Class names, indexed by `label_id`.
    pub fn class_names(&self) -> &'static [&'static str] {
        match self {
            LabelRule::Classes { .. } => &MEMORY_CLASSES,
            _ => &BINARY_CLASSES,
        }
    }

    /// The windows column the rule reads, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            LabelRule::Classes { column, .. } | LabelRule::Threshold { column, .. } => Some(column),
            LabelRule::Incidents { .. } => None,
        }
    }

    /// Whether the incidents file has an entry for `agent_id` (always true for other rules).
    pub fn knows_agent(&self, agent_id: &str) -> bool {
        match self {
            LabelRule::Incidents { windows, .. } => windows.contains_key(&agent_key(agent_id)),
            _ => true,
        }
    }

    /// The `label_id` of a row whose following window is `[next_start, next_end)` with
    /// `value` in the rule's column; `None` when the value is missing.
    pub fn label(
        &self,
        agent_id: &str,
        next_start: i64,
        next_end: i64,
        value: Option<f64>,
    ) -> Option<i32> {
        match self {
            LabelRule::Classes { thresholds, .. } => {
                let v = value?;
                Some(thresholds.iter().filter(|t| **t <= v).count() as i32)
            }
            LabelRule::Threshold { op, value: t, .. } => {
                let v = value?;
                let hit = match op {
                    Op::Gt => v > *t,
                    Op::Ge => v >= *t,
                    Op::Lt => v < *t,
                    Op::Le => v <= *t,
                };
                Some(hit as i32)
            }
            LabelRule::Incidents { windows, .. } => {
                let spans = windows.get(&agent_key(agent_id));
                let hit = spans
                    .into_iter()
                    .flatten()
                    .any(|(a, b)| *a < next_end && *b >= next_start);
                Some(hit as i32)
            }
        }
    }

    /// The rule as the manifest records it.
    pub fn describe(&self) -> Value {
        let classes = self.class_names();
        match self {
            LabelRule::Classes { column, thresholds } => json!({
                "rule": "classes",
                "source": "following window",
                "column": column,
                "thresholds": thresholds,
                "classes": classes,
                "meaning": format!(
                    "class i when exactly i thresholds are <= the following window's {column}"
                ),
            }),
            LabelRule::Threshold {
                column,
                op_text,
                value,
                ..
            } => json!({
                "rule": "threshold",
                "source": "following window",
                "expression": format!("{column}{op_text}{value}"),
                "classes": classes,
            }),
            LabelRule::Incidents { file, windows } => json!({
                "rule": "incidents",
                "source": "following window overlaps an incident",
                "file": Path::new(file).file_name().map(|f| f.to_string_lossy().into_owned()),
                "incident_keys": windows.len(),
                "incidents": windows.values().map(Vec::len).sum::<usize>(),
                "classes": classes,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_classes_follow_seed_000() {
        let r = LabelRule::classes("memory_used_percent__max", &[75.0, 85.0, 95.0]).unwrap();
        let l = |v| r.label("a", 0, 1, Some(v)).unwrap();
        assert_eq!((l(10.0), l(75.0), l(90.0), l(95.0)), (0, 1, 2, 3));
        assert!(LabelRule::classes("c", &[80.0, 70.0, 90.0]).is_err());
    }

    #[test]
    fn threshold_rules_parse() {
        let r = LabelRule::threshold("cpu_percent__mean>=90").unwrap();
        assert_eq!(r.label("a", 0, 1, Some(90.0)), Some(1));
        assert_eq!(r.label("a", 0, 1, Some(89.9)), Some(0));
        assert_eq!(r.label("a", 0, 1, None), None);
        assert!(LabelRule::threshold("cpu_percent__mean=90").is_err());
        assert!(LabelRule::threshold(">90").is_err());
    }

    #[test]
    fn nab_keys_match_agents() {
        assert_eq!(
            agent_key("realKnownCause/machine_temperature_system_failure.csv"),
            agent_key("machine-temperature-system-failure")
        );
    }
}
