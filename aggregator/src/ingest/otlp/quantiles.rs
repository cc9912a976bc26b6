//! Quantile estimates from an OTLP exponential histogram data point: the derived series an
//! exponential histogram is stored as, beside its count/sum/min/max (README "OpenTelemetry").
//!
//! Bucket layout (OpenTelemetry metrics data model, "ExponentialHistogram"): with
//! `base = 2^(2^-scale)`, positive bucket index `i` holds values in `(base^i, base^(i+1)]`,
//! negative bucket index `i` holds values in `[-base^(i+1), -base^i)`, and the zero bucket
//! holds values within the zero threshold, counted as 0. Buckets are stored from `offset`.
//!
//! Estimation: the rank `q × total` is located in the buckets in ascending value order, and
//! the value is interpolated exponentially inside its bucket (as Prometheus does for native
//! histograms, whose buckets are the same), then clamped to the point's `min`/`max` when sent.
//! The relative error is at most the bucket's relative width, `base − 1` (4.4 % at scale 4).

use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;

/// The quantiles stored for every exponential histogram, as `<name>.quantile_<q>`.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// The `q`-quantile (0 ≤ q ≤ 1) of the values `p` counts, in the data point's unit; `None`
/// when the buckets are empty or the scale makes the bounds non-finite.
pub fn estimate(p: &ExponentialHistogramDataPoint, q: f64) -> Option<f64> {
    let log2_base = (-(p.scale as f64)).exp2();
    let bound = |index: f64| (index * log2_base).exp2();
    let (pos, neg) = (p.positive.as_ref(), p.negative.as_ref());
    let pos_counts = pos.map_or(&[][..], |b| &b.bucket_counts[..]);
    let neg_counts = neg.map_or(&[][..], |b| &b.bucket_counts[..]);
    // Counts come from the peer: their sums saturate (a rank past u64::MAX is not needed).
    let add = |a: u64, &n: &u64| a.saturating_add(n);
    let total = neg_counts
        .iter()
        .fold(pos_counts.iter().fold(p.zero_count, add), add);
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    // Ascending value order: the most negative bucket first (the highest negative index).
    let neg_offset = neg.map_or(0, |b| b.offset) as f64;
    let mut value = None;
    for (k, &n) in neg_counts.iter().enumerate().rev() {
        if n > 0 && rank <= below.saturating_add(n) as f64 {
            let f = (rank - below as f64) / n as f64;
            value = Some(-bound(neg_offset + k as f64 + 1.0 - f));
            break;
        }
        below = below.saturating_add(n);
    }
    if value.is_none() && rank <= below.saturating_add(p.zero_count) as f64 && p.zero_count > 0 {
        value = Some(0.0);
    }
    if value.is_none() {
        below = below.saturating_add(p.zero_count);
        let pos_offset = pos.map_or(0, |b| b.offset) as f64;
        for (k, &n) in pos_counts.iter().enumerate() {
            if n > 0 && rank <= below.saturating_add(n) as f64 {
                let f = (rank - below as f64) / n as f64;
                value = Some(bound(pos_offset + k as f64 + f));
                break;
            }
            below = below.saturating_add(n);
        }
    }
    let v = value?;
    let v = p.min.map_or(v, |min| v.max(min));
    let v = p.max.map_or(v, |max| v.min(max));
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

    /// Found by the `otlp_mapping` fuzz target: counts summing past u64::MAX overflowed.
    #[test]
    fn counts_past_u64_max_saturate() {
        let p = ExponentialHistogramDataPoint {
            zero_count: u64::MAX,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![u64::MAX, 1],
            }),
            negative: Some(Buckets {
                offset: 0,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        assert!(estimate(&p, 0.5).is_some_and(f64::is_finite));
    }

    /// Buckets `values` at `scale` the way an OTel SDK does.
    fn histogram(values: &[f64], scale: i32) -> ExponentialHistogramDataPoint {
        let index = |v: f64| ((v.abs().log2() * (scale as f64).exp2()).ceil() as i32) - 1;
        let mut p = ExponentialHistogramDataPoint {
            scale,
            min: values.iter().copied().reduce(f64::min),
            max: values.iter().copied().reduce(f64::max),
            ..Default::default()
        };
        let fill = |vals: Vec<f64>| -> Option<Buckets> {
            let idx: Vec<i32> = vals.iter().map(|v| index(*v)).collect();
            let lo = *idx.iter().min()?;
            let hi = *idx.iter().max()?;
            let mut counts = vec![0u64; (hi - lo + 1) as usize];
            for i in idx {
                counts[(i - lo) as usize] += 1;
            }
            Some(Buckets {
                offset: lo,
                bucket_counts: counts,
            })
        };
        p.positive = fill(values.iter().copied().filter(|v| *v > 0.0).collect());
        p.negative = fill(values.iter().copied().filter(|v| *v < 0.0).collect());
        p.zero_count = values.iter().filter(|v| **v == 0.0).count() as u64;
        p.count = values.len() as u64;
        p
    }

    /// The exact `q`-quantile of sorted `v` (the rank-⌈q·n⌉ value).
    fn exact(v: &[f64], q: f64) -> f64 {
        v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
    }

    #[test]
    fn estimates_are_within_one_bucket_width_of_the_exact_quantiles() {
        // A skewed, latency-like sample: 1,000 values from 0.5 ms to ~400 ms.
        let mut v: Vec<f64> = (1..=1000).map(|i| 0.5 * (i as f64 / 150.0).exp()).collect();
        v.sort_by(f64::total_cmp);
        for scale in [0, 2, 4, 8] {
            let p = histogram(&v, scale);
            let width = (-(scale as f64)).exp2().exp2() - 1.0;
            for q in [0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
                let (got, want) = (estimate(&p, q).unwrap(), exact(&v, q));
                assert!(
                    (got - want).abs() <= want * width + 1e-12,
                    "scale {scale} q {q}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn negative_zero_and_positive_buckets_are_ordered_by_value() {
        let v = [-8.0, -3.0, 0.0, 0.0, 2.0, 5.0];
        let p = histogram(&v, 3);
        let at = |q| estimate(&p, q).unwrap();
        assert!(
            at(1.0 / 6.0) < -6.0 && at(1.0 / 6.0) >= -8.0,
            "{}",
            at(1.0 / 6.0)
        );
        assert!(
            at(2.0 / 6.0) < -2.5 && at(2.0 / 6.0) >= -3.3,
            "{}",
            at(2.0 / 6.0)
        );
        assert_eq!(at(0.5), 0.0);
        assert_eq!(at(4.0 / 6.0), 0.0);
        assert!(
            at(5.0 / 6.0) > 1.8 && at(5.0 / 6.0) <= 2.0,
            "{}",
            at(5.0 / 6.0)
        );
        assert_eq!(at(1.0), 5.0, "clamped to max");
        assert_eq!(at(0.0), -8.0, "clamped to min");
    }

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        assert_eq!(
            estimate(&ExponentialHistogramDataPoint::default(), 0.5),
            None
        );
    }
}
