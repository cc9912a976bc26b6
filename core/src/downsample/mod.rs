//! Downsampling of one window's series: input cleaning, MinMaxLTTB with tsdownsample's tie
//! rules, and the extrema rule.
//!
//! - [`clean`] and the de-duplication of timestamps make any input acceptable: non-finite
//!   samples are dropped and counted, samples are stably sorted by timestamp, and of samples
//!   sharing a timestamp the last one is kept (the latest reading wins; counted).
//! - [`minmax::minmax_lttb`] is MinMaxLTTB (Van Der Donckt et al., "MinMaxLTTB: Leveraging
//!   MinMax-Preselection to Scale LTTB", IEEE VIS 2023): MinMax preselection over
//!   `threshold * ratio / 2` bins equidistant in time, then LTTB (Steinarsson 2013,
//!   [`lttb::lttb`]). Bucket layout, anchor and ties (the first point of equal maximal area, the
//!   first minimum and maximum of a bin) follow tsdownsample, the paper authors' reference
//!   implementation, so the selection equals tsdownsample's `MinMaxLTTBDownsampler` index for
//!   index (`tests/tests/downsampling_reference.rs` checks it with the real package). The
//!   `minmaxlttb` crate, used before, keeps the LAST of equal-area points (proved by
//!   `tests::minmaxlttb_crate_keeps_the_last_tie`), so it could not match.
//! - [`extrema`] (on by default, `keep_extremes`): the window's minimum and maximum samples
//!   (first occurrence) always stay in the stored series, beside the first and last sample,
//!   without exceeding `threshold` (the M4 idea, Jugel et al., PVLDB 2014).
//!
//! Series with `n <= threshold` pass through unchanged (`threshold < 3` is rejected by the
//! configuration's validation). Nothing here panics on any input, and every allocation is
//! bounded by the series' length.

pub mod extrema;
pub mod lttb;
pub mod minmax;

use fleetset_proto::Point;

/// What cleaning removed from one series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanReport {
    /// NaN or infinite samples dropped.
    pub non_finite: usize,
    /// Samples dropped because a later sample had the same timestamp.
    pub repeated_ts: usize,
    /// Whether the input was out of time order (it is sorted, nothing is lost).
    pub reordered: bool,
}

/// Sorts `samples` (`(ts_ms, value)`) stably by time and drops non-finite values; returns the
/// finite samples in time order (repeated timestamps kept) and what was removed.
pub fn clean(samples: &[(i64, f64)]) -> (Vec<(i64, f64)>, CleanReport) {
    let mut report = CleanReport::default();
    let mut out: Vec<(i64, f64)> = samples
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    report.non_finite = samples.len() - out.len();
    if !out.windows(2).all(|w| w[0].0 <= w[1].0) {
        report.reordered = true;
        out.sort_by_key(|(ts, _)| *ts);
    }
    (out, report)
}

/// Keeps the last sample of each run of equal timestamps; input must be sorted by time.
fn dedup_timestamps(sorted: &[(i64, f64)], report: &mut CleanReport) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(sorted.len());
    for &(ts_ms, value) in sorted {
        match out.last_mut() {
            Some(last) if last.ts_ms == ts_ms => {
                last.value = value;
                report.repeated_ts += 1;
            }
            _ => out.push(Point { ts_ms, value }),
        }
    }
    out
}

/// A configured MinMax-LTTB downsampler; also the configuration section that sets it
/// (the agent's `[window.lttb]`, the aggregator's `[otlp.lttb]`).
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, crate::config::Section,
)]
#[serde(default, deny_unknown_fields)]
pub struct Downsampler {
    /// MinMax-LTTB output points per series per window (LTTB keeps the first and last point plus one per bucket).
    #[key(default = 60, unit = "points", min = 3, live)]
    pub threshold: usize,
    /// MinMax preselection ratio (tsdownsample's default 4): the min and max of `threshold × ratio / 2` buckets go to LTTB.
    #[key(default = 4, min = 2, live)]
    pub ratio: usize,
    /// Always keep each window's minimum and maximum sample (first occurrence) in the stored points, in place of LTTB's pick in their bucket (M4's extrema on top of MinMax-LTTB); off: exactly tsdownsample's MinMaxLTTB.
    #[key(default = true, live)]
    pub keep_extremes: bool,
}

impl Downsampler {
    /// Downsamples finite, time-sorted samples (the output of [`clean`]) to at most `threshold`
    /// points with strictly increasing timestamps (ms); every output point is one of the input
    /// samples (the last of each repeated timestamp, counted in `report`). The `bool` is kept
    /// for the `lttb.fallbacks` counter and is always `false`: this implementation has no
    /// failure path.
    pub fn downsample(
        &self,
        sorted: &[(i64, f64)],
        report: &mut CleanReport,
    ) -> (Vec<Point>, bool) {
        let points = dedup_timestamps(sorted, report);
        let x: Vec<i64> = points.iter().map(|p| p.ts_ms).collect();
        let y: Vec<f64> = points.iter().map(|p| p.value).collect();
        let mut picked = self.select(&x, &y);
        // Only tsdownsample's exact selection (keep_extremes off) can repeat an index; stored
        // timestamps must be strictly increasing.
        picked.dedup();
        let picked = picked
            .into_iter()
            .filter_map(|i| points.get(i).copied())
            .collect();
        (picked, false)
    }

    /// The indices (in order, at most `threshold`) this downsampler keeps of the points
    /// `(x[i] ms, y[i])`: `x` strictly increasing, `y` finite (the caller's contract; on other
    /// input the result is still in bounds, only not meaningful). Every index when
    /// `n <= threshold`. With `keep_extremes` off: exactly tsdownsample's MinMaxLTTB selection,
    /// which can hold an index twice (a preselection bin whose first minimum is also its first
    /// maximum enters twice, and LTTB may pick both copies); with it on: strictly increasing,
    /// and the extrema rule ([`extrema`]) applied.
    pub fn select(&self, x: &[i64], y: &[f64]) -> Vec<usize> {
        let n = x.len().min(y.len());
        let (x, y) = (&x[..n], &y[..n]);
        let n_out = self.threshold;
        if n <= n_out || n_out < 3 {
            return (0..n).collect();
        }
        let ratio = self.ratio.max(2);
        // The points LTTB works on (all, or the MinMax preselection) and their original index.
        let (mut selected, pre) = minmax::minmax_lttb_with_preselection(x, y, n_out, ratio);
        if !self.keep_extremes {
            return selected;
        }
        // tsdownsample's preselection may hold an index twice (a bin whose first minimum is
        // its first maximum) and LTTB may then pick both copies; the stored series cannot.
        selected.dedup();
        let work = pre.as_ref().map_or(n, Vec::len);
        if work > n_out && selected.len() == n_out {
            let orig = |k: usize| pre.as_ref().map_or(Some(k), |p| p.get(k).copied());
            let starts: Vec<usize> = (0..n_out)
                .map(|j| match j {
                    0 | 1 => j,
                    _ => orig(lttb::bucket_start(work, n_out, j)).unwrap_or(n - 1),
                })
                .collect();
            extrema::keep_extremes(x, y, &mut selected, &starts);
        } else {
            extrema::insert_extremes(y, &mut selected, n_out);
        }
        selected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate fleetset used before: on a tie (a flat series, every area 0) it keeps the LAST
    /// point of each bucket where tsdownsample keeps the first ([0, 1, 6, 11], checked against
    /// the real package by tests/tests/downsampling_reference.rs), so it cannot reproduce the
    /// reference selection.
    #[test]
    fn minmaxlttb_crate_keeps_the_last_tie() {
        let pts: Vec<minmaxlttb::Point> = (0..12)
            .map(|i| minmaxlttb::Point::new(f64::from(i), 1.0))
            .collect();
        let by_crate: Vec<f64> = minmaxlttb::lttb(&pts, 4, minmaxlttb::Binning::ByCount)
            .expect("valid input")
            .iter()
            .map(|p| p.x())
            .collect();
        let x: Vec<i64> = (0..12).collect();
        let ours = Downsampler {
            threshold: 4,
            ratio: 4,
            keep_extremes: false,
        }
        .select(&x, &[1.0; 12]);
        assert_eq!(
            ours,
            vec![0, 1, 6, 11],
            "tsdownsample's selection: the first of each tie"
        );
        assert_ne!(by_crate, vec![0.0, 1.0, 6.0, 11.0]);
        assert_eq!(
            by_crate,
            vec![0.0, 5.0, 10.0, 11.0],
            "the last of each bucket"
        );
    }

    #[test]
    fn extremes_are_kept_within_the_threshold() {
        // A sine with one low and one high spike that LTTB alone drops in some bucket layouts;
        // every threshold, ratio and spike position must keep both, and never exceed the
        // threshold.
        for n in [61usize, 200, 288, 300, 1000, 5000] {
            for threshold in [3usize, 4, 5, 10, 60] {
                for ratio in [2usize, 4] {
                    for (lo_at, hi_at) in [(1, 2), (n / 3, n / 3 + 1), (n - 3, n - 2), (5, n / 2)] {
                        let x: Vec<i64> = (0..n as i64).map(|i| 1_000 * i).collect();
                        let mut y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.05).sin()).collect();
                        y[lo_at] = -5.0;
                        y[hi_at] = 5.0;
                        let d = Downsampler {
                            threshold,
                            ratio,
                            keep_extremes: true,
                        };
                        let got = d.select(&x, &y);
                        let what = format!("n {n} t {threshold} r {ratio} lo {lo_at} hi {hi_at}");
                        assert!(got.len() <= threshold, "{what}: {} points", got.len());
                        assert!(got.windows(2).all(|w| w[0] < w[1]), "{what}: order");
                        assert_eq!((got[0], got[got.len() - 1]), (0, n - 1), "{what}: ends");
                        assert!(got.contains(&hi_at), "{what}: max missing");
                        if threshold > 3 {
                            assert!(got.contains(&lo_at), "{what}: min missing");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn extremes_are_kept_on_tie_heavy_series() {
        // Repeated small integers and step functions (many equal areas and flat bins), with a
        // deterministic LCG so a failure reproduces.
        let mut state = 16u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % m
        };
        for case in 0..400 {
            let n = 10 + next(3000) as usize;
            let threshold = [3usize, 4, 5, 10, 20, 60][next(6) as usize];
            let ratio = [2usize, 4, 8][next(3) as usize];
            let x: Vec<i64> = (0..n as i64)
                .map(|i| 1_000 * i + next(900) as i64)
                .collect();
            let y: Vec<f64> = match case % 3 {
                0 => (0..n).map(|_| next(3) as f64).collect(),
                1 => (0..n).map(|i| ((i / 7) % 5) as f64).collect(),
                _ => (0..n)
                    .map(|i| if i % 50 < 25 { 1.0 } else { 0.0 })
                    .collect(),
            };
            let got = Downsampler {
                threshold,
                ratio,
                keep_extremes: true,
            }
            .select(&x, &y);
            let (lo, hi) = extrema::first_min_max(&y);
            let what = format!("case {case}: n {n} t {threshold} r {ratio}");
            assert!(got.len() <= threshold.max(n.min(threshold)), "{what}");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{what}: order");
            assert!(got.contains(&hi), "{what}: max {hi} missing");
            assert!(
                threshold == 3 || got.contains(&lo),
                "{what}: min {lo} missing"
            );
        }
    }

    #[test]
    fn keep_extremes_off_is_plain_minmax_lttb() {
        let x: Vec<i64> = (0..1000).map(|i| 300_000 * i).collect();
        let y: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 101) as f64).collect();
        let d = Downsampler {
            threshold: 60,
            ratio: 4,
            keep_extremes: false,
        };
        assert_eq!(d.select(&x, &y), minmax::minmax_lttb(&x, &y, 60, 4));
    }

    #[test]
    fn no_panic_on_hostile_but_finite_sorted_input() {
        let cases: Vec<(Vec<i64>, Vec<f64>)> = vec![
            (
                (0..500).map(|i| i64::MIN + i).collect(),
                vec![f64::MAX; 500],
            ),
            (
                (0..500).map(|i| i64::MAX - 500 + i).collect(),
                (0..500)
                    .map(|i| if i % 2 == 0 { f64::MAX } else { -f64::MAX })
                    .collect(),
            ),
            ((0..500).map(|i| i * i * i).collect(), vec![0.0; 500]),
            ((0..3).collect(), vec![1.0, 2.0, 3.0]),
        ];
        for (x, y) in cases {
            for threshold in [3usize, 4, 60] {
                for keep_extremes in [false, true] {
                    let d = Downsampler {
                        threshold,
                        ratio: 2,
                        keep_extremes,
                    };
                    let got = d.select(&x, &y);
                    assert!(got.len() <= threshold.max(x.len().min(threshold)));
                    assert!(got.iter().all(|&i| i < x.len()));
                }
            }
        }
    }

    fn ds(threshold: usize) -> Downsampler {
        Downsampler {
            threshold,
            ratio: 4,
            keep_extremes: true,
        }
    }

    fn run(d: Downsampler, samples: &[(i64, f64)]) -> (Vec<Point>, CleanReport) {
        let (clean, mut report) = clean(samples);
        let (out, fallback) = d.downsample(&clean, &mut report);
        assert!(
            !fallback,
            "the crate should not have failed on cleaned input"
        );
        assert!(
            out.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms),
            "strictly increasing"
        );
        (out, report)
    }

    // Seed 004 `test_lttb_downsampling`: 100 points -> exactly 25, float precision kept.
    #[test]
    fn seed_004_downsampling_keeps_threshold_and_precision() {
        let pts: Vec<_> = (0..100)
            .map(|i| (1000 + i * 1000, 45.0 + i as f64 * 0.1))
            .collect();
        let (out, _) = run(ds(25), &pts);
        assert_eq!(out.len(), 25);
        assert!(out.iter().any(|p| p.value != p.value.round()));
        assert_eq!(
            (out[0].ts_ms, out[24].ts_ms),
            (1000, 100_000),
            "first and last kept"
        );
    }

    // Seed 004 `test_no_downsampling_when_below_threshold`.
    #[test]
    fn seed_004_below_threshold_passes_through() {
        let (out, _) = run(ds(25), &[(1000, 45.2), (2000, 45.8), (3000, 46.1)]);
        let values: Vec<f64> = out.iter().map(|p| p.value).collect();
        assert_eq!(values, vec![45.2, 45.8, 46.1]);
    }

    // Seed 004 `test_multiple_metrics`: each series is downsampled independently.
    #[test]
    fn seed_004_multiple_metrics_independently() {
        let cpu: Vec<_> = (0..50)
            .map(|i| (1000 + i * 1000, 45.0 + i as f64 * 0.1))
            .collect();
        let mem: Vec<_> = (0..50)
            .map(|i| (1000 + i * 1000, 1024.0 + i as f64 * 2.5))
            .collect();
        assert_eq!(run(ds(25), &cpu).0.len(), 25);
        assert_eq!(run(ds(25), &mem).0.len(), 25);
    }

    #[test]
    fn nan_and_infinities_are_dropped_and_counted() {
        let mut pts: Vec<_> = (0..300).map(|i| (i * 1000, (i as f64).sin())).collect();
        pts[7].1 = f64::NAN;
        pts[0].1 = f64::INFINITY;
        pts[299].1 = f64::NAN;
        let (out, report) = run(ds(60), &pts);
        assert_eq!(report.non_finite, 3);
        assert_eq!(out.len(), 60);
        assert!(out.iter().all(|p| p.value.is_finite()));
        let (out, report) = run(ds(60), &[(0, f64::NAN), (1, f64::NAN)]);
        assert_eq!((out.len(), report.non_finite), (0, 2));
    }

    #[test]
    fn repeated_timestamps_keep_the_latest_reading() {
        let mut pts: Vec<_> = (0..300).map(|i| (i * 1000, i as f64)).collect();
        pts.insert(100, (100_000, -5.0));
        pts.insert(50, (49_000, 7.5)); // after (49_000, 49.0): the later reading wins
        let (out, report) = run(ds(60), &pts);
        assert_eq!(report.repeated_ts, 2);
        assert_eq!(out.len(), 60);
        let (out, _) = run(ds(10), &[(5, 1.0), (5, 2.0), (6, 3.0)]);
        assert_eq!(
            out,
            vec![
                Point {
                    ts_ms: 5,
                    value: 2.0
                },
                Point {
                    ts_ms: 6,
                    value: 3.0
                }
            ]
        );
    }

    #[test]
    fn unsorted_input_is_sorted_not_a_panic() {
        let pts: Vec<_> = (0..300)
            .rev()
            .map(|i| (i * 1000, (i % 17) as f64))
            .collect();
        let (out, report) = run(ds(60), &pts);
        assert!(report.reordered);
        assert_eq!(out.len(), 60);
        assert_eq!(out[0].ts_ms, 0);
    }

    #[test]
    fn threshold_boundaries() {
        let pts: Vec<_> = (0..61).map(|i| (i * 1000, (i * i) as f64)).collect();
        assert_eq!(
            run(ds(60), &pts[..60]).0.len(),
            60,
            "n == threshold passes through"
        );
        assert_eq!(
            run(ds(60), &pts).0.len(),
            60,
            "n == threshold + 1 is downsampled"
        );
        assert_eq!(
            run(ds(3), &pts).0.len(),
            3,
            "smallest threshold the crate takes"
        );
        assert!(run(ds(60), &[]).0.is_empty());
        let constant: Vec<_> = (0..300).map(|i| (i * 1000, 42.0)).collect();
        assert_eq!(run(ds(60), &constant).0.len(), 60);
    }

    #[test]
    fn epoch_ms_timestamps_survive_the_f64_round_trip() {
        let base = 1_763_000_000_000i64;
        let pts: Vec<_> = (0..300)
            .map(|i| (base + i * 1000, (i as f64 * 0.3).cos()))
            .collect();
        let (out, _) = run(ds(60), &pts);
        assert!(out
            .iter()
            .all(|p| pts.iter().any(|&(ts, v)| ts == p.ts_ms && v == p.value)));
        // The shape is what LTTB keeps: a one-sample spike survives 300 -> 60.
        let mut spiky = pts.clone();
        spiky[151].1 = 1000.0;
        assert!(run(ds(60), &spiky).0.iter().any(|p| p.value == 1000.0));
    }
}
