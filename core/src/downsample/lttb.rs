//! Largest-Triangle-Three-Buckets (Steinarsson, "Downsampling Time Series for Visual
//! Representation", MSc thesis, University of Iceland, 2013) with the bucket layout, the
//! next-bucket anchor and the tie rule of tsdownsample (Van Der Donckt et al., the reference
//! implementation of the MinMaxLTTB paper), so that the selected indices equal tsdownsample's
//! `LTTBDownsampler` index for index (checked by `tests/tests/downsampling_reference.rs`).
//!
//! Rules (for `n` points and `n_out` output points, `3 <= n_out < n`):
//! - the first and the last point are always selected;
//! - `every = (n - 2) / (n_out - 2)` (f64); output slot `j` (`1..=n_out-2`) picks one point of
//!   bucket `[floor(every * (j-1)) + 1, floor(every * j) + 1)`;
//! - the triangle's third corner is the next bucket `[floor(every * j) + 1,
//!   min(floor(every * (j+1)) + 1, n))`: its mean y and the midpoint of its first and last x
//!   (tsdownsample's choice; the thesis uses the mean x);
//! - the area is compared as `|d1 * y + d2 * x - (d1 * ay + d2 * ax)|` with `d1 = ax - cx`,
//!   `d2 = cy - ay` (`a` the previously selected point, `c` the anchor), the same f64 expression
//!   as tsdownsample's, so that near-ties round alike;
//! - ties: the FIRST point of the bucket with the maximal area is kept (strictly greater wins).

/// The first index of output slot `j`'s bucket (`1 <= j <= n_out - 1`; slot `n_out - 1` is
/// the end of the last interior bucket) over `n` points: `floor(every * (j-1)) + 1`, clamped
/// to `n - 1`.
pub(crate) fn bucket_start(n: usize, n_out: usize, j: usize) -> usize {
    let every = n.saturating_sub(2) as f64 / n_out.saturating_sub(2).max(1) as f64;
    // `as usize` saturates (and maps NaN to 0): no overflow on any input.
    let start = (every * j.saturating_sub(1) as f64) as usize;
    start.saturating_add(1).min(n.saturating_sub(1))
}

/// The indices (strictly increasing, `n_out` of them) LTTB selects from the points
/// `(x[i], y[i])`; `x` strictly increasing, `y` finite, `x.len() == y.len()`. Returns every index
/// when `n_out >= n` or `n_out < 3` (nothing to choose). Allocates one `Vec` of `n_out`
/// indices; never panics.
pub fn lttb(x: &[f64], y: &[f64], n_out: usize) -> Vec<usize> {
    let n = x.len().min(y.len());
    if n_out >= n || n_out < 3 {
        return (0..n).collect();
    }
    let mut out = Vec::with_capacity(n_out);
    out.push(0);
    let mut a = 0usize;
    for j in 1..n_out.saturating_sub(1) {
        let (lo, hi) = (bucket_start(n, n_out, j), bucket_start(n, n_out, j + 1));
        // The anchor bucket; the last one is the final point alone.
        let next_hi = if j + 1 == n_out - 1 {
            n
        } else {
            bucket_start(n, n_out, j + 2)
        };
        let (cx, cy) = anchor(&x[hi..next_hi], &y[hi..next_hi]);
        let (ax, ay) = (x[a], y[a]);
        let d1 = ax - cx;
        let d2 = cy - ay;
        let offset = d1 * ay + d2 * ax;
        let mut best = a;
        let mut best_area = -1.0f64;
        for i in lo..hi {
            let area = (d1 * y[i] + d2 * x[i] - offset).abs();
            if area > best_area {
                best_area = area;
                best = i;
            }
        }
        out.push(best);
        a = best;
    }
    out.push(n - 1);
    out
}

/// The next bucket's anchor: the midpoint of its first and last x, and its mean y (summed in
/// index order). An empty bucket (impossible for `n_out < n`) gives `(0, 0)`.
fn anchor(x: &[f64], y: &[f64]) -> (f64, f64) {
    let (Some(first), Some(last)) = (x.first(), x.last()) else {
        return (0.0, 0.0);
    };
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    ((first + last) / 2.0, mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_line_is_tsdownsamples_own_example() {
        // tsdownsample's own unit test: 0..10 on a line, 4 points -> [0, 1, 5, 9].
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(lttb(&x, &x, 4), vec![0, 1, 5, 9]);
    }

    #[test]
    fn ties_keep_the_first_point() {
        // A flat series: every interior point has area 0, the first of each bucket wins.
        let x: Vec<f64> = (0..12).map(f64::from).collect();
        let y = vec![1.0; 12];
        assert_eq!(lttb(&x, &y, 4), vec![0, 1, 6, 11]);
    }

    #[test]
    fn degenerate_sizes_pass_through() {
        assert_eq!(lttb(&[], &[], 3), Vec::<usize>::new());
        assert_eq!(lttb(&[0.0, 1.0], &[0.0, 1.0], 3), vec![0, 1]);
        assert_eq!(lttb(&[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0], 2), vec![0, 1, 2]);
    }
}
