//! Time-ordered train/test split with no leakage, and optional class balancing.
//!
//! One cutoff time T for the whole fleet, on a window boundary: T is the start of the labelled
//! row at position ⌊fraction · n⌋ in time order. Test rows start at or after T. Train rows end
//! — *and so do the following windows their labels come from* — at or before T. The rows in
//! between (a window before T whose label window starts at T) are purged: keeping them would
//! let a label from the test period into training. So every train row, and its label, lies
//! strictly before every test row; no window of any agent straddles the cutoff.
//!
//! `--balance-classes` undersamples the training rows of every class to the size of the
//! smallest non-empty class, choosing rows with a `--seed`ed generator (reproducible), and
//! keeps time order. Test rows are never resampled.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;

/// Where a labelled row went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Training split.
    Train,
    /// Test split.
    Test,
    /// Dropped at the cutoff (its label window lies in the test period).
    Purged,
}

/// The cutoff (Unix ms) and the part of each row, for rows with window `starts` and label
/// windows ending at `label_ends`. `None` cutoff: everything is train (`fraction` ≥ 1 or no
/// rows).
pub fn time_ordered(starts: &[i64], label_ends: &[i64], fraction: f64) -> (Option<i64>, Vec<Part>) {
    let mut sorted = starts.to_vec();
    sorted.sort_unstable();
    let at = (fraction.clamp(0.0, 1.0) * sorted.len() as f64).floor() as usize;
    let Some(&cutoff) = sorted.get(at) else {
        return (None, vec![Part::Train; starts.len()]);
    };
    let parts = starts
        .iter()
        .zip(label_ends)
        .map(|(&s, &e)| {
            if s >= cutoff {
                Part::Test
            } else if e <= cutoff {
                Part::Train
            } else {
                Part::Purged
            }
        })
        .collect();
    (Some(cutoff), parts)
}

/// Undersamples `train` (row indices in time order) so every class present has as many rows
/// as the smallest; returns how many rows were dropped.
pub fn balance(train: &mut Vec<usize>, label_of: impl Fn(usize) -> i32, seed: u64) -> usize {
    let mut by_class: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for &i in train.iter() {
        by_class.entry(label_of(i)).or_default().push(i);
    }
    let Some(smallest) = by_class.values().map(Vec::len).min() else {
        return 0;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let before = train.len();
    let mut kept: Vec<usize> = Vec::with_capacity(smallest * by_class.len());
    for rows in by_class.values_mut() {
        rows.shuffle(&mut rng);
        kept.extend_from_slice(&rows[..smallest]);
    }
    kept.sort_unstable();
    *train = kept;
    before - train.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_time_ordered_and_purges_the_seam() {
        // Ten contiguous 5-min windows of one agent; labels come from the next window.
        let starts: Vec<i64> = (0..10).map(|i| i * 300_000).collect();
        let label_ends: Vec<i64> = starts.iter().map(|s| s + 600_000).collect();
        let (cutoff, parts) = time_ordered(&starts, &label_ends, 0.8);
        assert_eq!(cutoff, Some(8 * 300_000));
        assert_eq!(parts[..7], [Part::Train; 7]);
        assert_eq!(parts[7], Part::Purged);
        assert_eq!(parts[8..], [Part::Test; 2]);
        assert_eq!(time_ordered(&starts, &label_ends, 1.0).0, None);
    }

    #[test]
    fn balancing_is_seeded_and_keeps_order() {
        let labels = [0, 0, 0, 0, 1, 0, 1, 0];
        let run = |seed| {
            let mut train: Vec<usize> = (0..labels.len()).collect();
            let dropped = balance(&mut train, |i| labels[i], seed);
            (train, dropped)
        };
        let (a, dropped) = run(7);
        assert_eq!(dropped, 4);
        assert_eq!(a.iter().filter(|i| labels[**i] == 1).count(), 2);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(run(7).0, a);
    }
}
