//! Baselines of a training set's splits (`baselines` in the manifest): what a model that ignores
//! its features scores, so that a reported accuracy can be judged against it.
//!
//! The predictor always answers the majority class of the train split (after
//! `--balance-classes`; a tie goes to the lowest `label_id`). For each split:
//! - `accuracy`: the share of the split's rows in that class — the predictor's accuracy;
//! - `balanced_accuracy`: the mean over the classes present in the split of the per-class recall
//!   (scikit-learn's `balanced_accuracy_score`). The predictor's recall is 1 on its class and 0
//!   on every other, so this is 1 / (classes present) when its class is present in the split,
//!   else 0.
//!
//! Both are `null` for an empty split or an empty train split (no majority class).

use serde::Serialize;
use std::collections::BTreeMap;

/// The definition the manifest states beside the figures.
pub const DEFINITION: &str = "predictor: always the train split's majority class (ties: lowest label_id); accuracy = that class's share of the split's rows; balanced_accuracy = mean per-class recall over the classes present in the split (scikit-learn balanced_accuracy_score) = 1/classes_present if the majority class is present, else 0";

/// The baseline of one split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Baseline {
    /// Rows of the split.
    pub rows: usize,
    /// Classes with at least one row in the split.
    pub classes_present: usize,
    /// Accuracy of always predicting the train majority class, 0–1.
    pub accuracy: Option<f64>,
    /// Balanced accuracy of that predictor, 0–1.
    pub balanced_accuracy: Option<f64>,
}

/// The majority class of the train `histogram` (class name → rows), classes in `label_id`
/// order; `None` when the train split is empty.
pub fn majority(histogram: &BTreeMap<String, usize>, classes: &[&str]) -> Option<String> {
    let count = |c: &str| histogram.get(c).copied().unwrap_or(0);
    // `max_by_key` keeps the last maximum: reversed, that is the lowest label_id.
    classes
        .iter()
        .rev()
        .max_by_key(|c| count(c))
        .filter(|c| count(c) > 0)
        .map(|c| c.to_string())
}

/// The baseline of a split with class `histogram` for the predictor of `majority`.
pub fn of(histogram: &BTreeMap<String, usize>, majority: Option<&str>) -> Baseline {
    let rows: usize = histogram.values().sum();
    let classes_present = histogram.values().filter(|n| **n > 0).count();
    let hits = majority.map(|m| histogram.get(m).copied().unwrap_or(0));
    let (accuracy, balanced_accuracy) = match hits {
        Some(hits) if rows > 0 => (
            Some(hits as f64 / rows as f64),
            Some(if hits > 0 {
                1.0 / classes_present as f64
            } else {
                0.0
            }),
        ),
        _ => (None, None),
    };
    Baseline {
        rows,
        classes_present,
        accuracy,
        balanced_accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(v: &[(&str, usize)]) -> BTreeMap<String, usize> {
        v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    }

    #[test]
    fn the_issue_case_scores_like_the_majority_baseline() {
        // 695 Negative and 1 Positive in test: always-Negative has accuracy 0.9986 and balanced
        // accuracy 0.5 (recall 1 on Negative, 0 on Positive).
        let classes = ["Negative", "Positive"];
        let train = hist(&[("Negative", 900), ("Positive", 30)]);
        let m = majority(&train, &classes);
        assert_eq!(m.as_deref(), Some("Negative"));
        let b = of(&hist(&[("Negative", 695), ("Positive", 1)]), m.as_deref());
        assert_eq!(b.rows, 696);
        assert!((b.accuracy.unwrap() - 695.0 / 696.0).abs() < 1e-12);
        assert_eq!(b.balanced_accuracy, Some(0.5));
        // Only Positive in a split: the predictor never hits.
        let b = of(&hist(&[("Negative", 0), ("Positive", 4)]), m.as_deref());
        assert_eq!((b.accuracy, b.balanced_accuracy), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn ties_go_to_the_lowest_label_id_and_empty_splits_have_no_baseline() {
        let classes = ["A", "B", "C"];
        assert_eq!(
            majority(&hist(&[("A", 0), ("B", 5), ("C", 5)]), &classes).as_deref(),
            Some("B")
        );
        assert_eq!(majority(&hist(&[("A", 0)]), &classes), None);
        let empty = of(&hist(&[("A", 0)]), Some("A"));
        assert_eq!((empty.accuracy, empty.balanced_accuracy), (None, None));
        let b = of(&hist(&[("A", 2), ("B", 1), ("C", 1)]), Some("A"));
        assert_eq!(b.accuracy, Some(0.5));
        assert!((b.balanced_accuracy.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    }
}
