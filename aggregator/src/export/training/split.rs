//! Time-ordered train/test split with no leakage, and optional class balancing.
//!
//! `--split-by time` (default): one cutoff time T for the whole fleet, on a window boundary: T
//! is the start of the labelled row at position ⌊fraction · n⌋ in time order. Test rows start
//! at or after T. Train rows end — *and so do the following windows their labels come from* —
//! at or before T. The rows in between (a window before T whose label window starts at T) are
//! purged: keeping them would let a label from the test period into training. So every train
//! row, and its label, lies strictly before every test row; no window of any agent straddles
//! the cutoff.
//!
//! `--split-by agent`: the same rule applied to each agent's own labelled rows, with its own
//! cutoff T_a (the start of its row at position ⌊fraction · n_a⌋ of its n_a labelled rows), so
//! every agent has rows in both splits, even when the agents cover different periods, as soon
//! as 2 ≤ ⌊fraction · n_a⌋ < n_a (the row just before a cutoff is purged). Within an agent nothing leaks; across agents a
//! train row of one may be later than a test row of another.
//!
//! `--balance-classes` undersamples the training rows of every class to the size of the
//! smallest non-empty class, choosing rows with a `--seed`ed generator (reproducible), and
//! keeps time order. Test rows are never resampled.

use clap::ValueEnum;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;

/// How the train/test cutoff is chosen (`--split-by`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitBy {
    /// One fleet-wide cutoff time.
    #[default]
    Time,
    /// One cutoff per agent, at the fraction of its own rows.
    Agent,
}

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

/// [`time_ordered`] per agent: `agents[i]` is row i's agent. Returns each agent's cutoff (Unix
/// ms; `None` when all its rows are train) and the part of each row.
pub fn per_agent<'a>(
    agents: &[&'a str],
    starts: &[i64],
    label_ends: &[i64],
    fraction: f64,
) -> (BTreeMap<&'a str, Option<i64>>, Vec<Part>) {
    let mut by_agent: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in agents.iter().enumerate() {
        by_agent.entry(a).or_default().push(i);
    }
    let mut parts = vec![Part::Train; starts.len()];
    let mut cutoffs = BTreeMap::new();
    for (agent, idx) in by_agent {
        let pick = |v: &[i64]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let (cutoff, own) = time_ordered(&pick(starts), &pick(label_ends), fraction);
        for (&i, p) in idx.iter().zip(own) {
            parts[i] = p;
        }
        cutoffs.insert(agent, cutoff);
    }
    (cutoffs, parts)
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
    fn per_agent_split_gives_every_agent_both_parts() {
        // Agent a covers hours 0-9, agent b hours 100-104: a fleet-wide cutoff at 0.8 (b's
        // third row) gives a no test row; per agent, each has its own cutoff.
        let h = 3_600_000i64;
        let mut agents = vec!["a"; 10];
        agents.extend(["b"; 5]);
        let starts: Vec<i64> = (0..10).chain(100..105).map(|i| i * h).collect();
        let label_ends: Vec<i64> = starts.iter().map(|s| s + 2 * h).collect();
        let (_, fleet) = time_ordered(&starts, &label_ends, 0.8);
        assert!(fleet[..10].iter().all(|p| *p == Part::Train));
        assert_eq!(fleet[12..], [Part::Test; 3]);
        let (cutoffs, parts) = per_agent(&agents, &starts, &label_ends, 0.8);
        assert_eq!(cutoffs["a"], Some(8 * h));
        assert_eq!(cutoffs["b"], Some(104 * h));
        assert_eq!(parts[..7], [Part::Train; 7]);
        assert_eq!(parts[7], Part::Purged);
        assert_eq!(parts[8..10], [Part::Test; 2]);
        assert_eq!(parts[10..13], [Part::Train; 3]);
        assert_eq!(parts[13], Part::Purged);
        assert_eq!(parts[14], Part::Test);
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
