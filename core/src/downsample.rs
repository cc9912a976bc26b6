//! MinMax-LTTB downsampling of one window's series, with the input cleaning the `minmaxlttb`
//! crate needs.
//!
//! Algorithm: MinMaxLTTB (Van Der Donckt et al., "MinMaxLTTB: Leveraging MinMax-Preselection to
//! Scale LTTB", IEEE VIS 2023), i.e. MinMax preselection over `threshold * ratio / 2`
//! equal-width partitions followed by LTTB (Steinarsson 2013), as implemented by the
//! `minmaxlttb` crate (0.1.4).
//!
//! What the crate cannot take (it does not validate its input; measured, see
//! docs/dependencies.md), and what [`clean`] does about it, before any series reaches it:
//! - NaN or ±inf values make it fail (or panic in debug builds): non-finite samples are dropped
//!   and counted.
//! - Unsorted x panics even in release builds: samples are stably sorted by timestamp.
//! - Repeated x panics in debug builds: of samples sharing a timestamp the last one is kept
//!   (the latest reading wins) and the others are counted.
//! - It requires `3 <= threshold < n`: series with `n <= threshold` pass through unchanged
//!   (`threshold < 3` is rejected by the agent's config validation).

use fleetset_proto::Point;
use minmaxlttb::{LttbBuilder, LttbMethod};

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
}

impl Downsampler {
    /// Downsamples finite, time-sorted samples (the output of [`clean`]) to at most `threshold`
    /// points with strictly increasing timestamps; every output point is one of the input
    /// samples. Never panics: if the crate still returns an error, evenly spaced samples are
    /// kept instead (and `fallback` is set).
    pub fn downsample(
        &self,
        sorted: &[(i64, f64)],
        report: &mut CleanReport,
    ) -> (Vec<Point>, bool) {
        let points = dedup_timestamps(sorted, report);
        if points.len() <= self.threshold || self.threshold < 3 {
            return (points, false);
        }
        let input: Vec<minmaxlttb::Point> = points
            .iter()
            .map(|p| minmaxlttb::Point::new(p.ts_ms as f64, p.value))
            .collect();
        let lttb = LttbBuilder::new()
            .threshold(self.threshold)
            .method(LttbMethod::MinMax)
            .ratio(self.ratio.max(2))
            .build();
        match lttb.downsample(&input) {
            Ok(out) => (
                out.iter()
                    .map(|p| Point {
                        ts_ms: p.x() as i64,
                        value: p.y(),
                    })
                    .collect(),
                false,
            ),
            Err(_) => {
                let step = (points.len() - 1) as f64 / (self.threshold - 1) as f64;
                let picked = (0..self.threshold)
                    .map(|i| points[((i as f64 * step).round() as usize).min(points.len() - 1)])
                    .collect();
                (picked, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(threshold: usize) -> Downsampler {
        Downsampler {
            threshold,
            ratio: 4,
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
