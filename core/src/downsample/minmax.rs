//! MinMax preselection and MinMaxLTTB (Van Der Donckt, Van Der Donckt, Rademaker, Van Hoecke,
//! "MinMaxLTTB: Leveraging MinMax-Preselection to Scale LTTB", IEEE VIS 2023), with the rules of
//! its reference implementation tsdownsample (its `MinMaxLTTBDownsampler` with an x array), so
//! that the selected indices equal tsdownsample's index for index:
//! - preselection runs only when `n / n_out > ratio` (integer division); otherwise it is plain
//!   [`lttb`];
//! - the interior points `1..n-1` are cut into `n_out * ratio / 2` bins equidistant in x: the
//!   step is `x_last / bins - x_first / bins` (f64, of the interior's first and last x), bin `i`
//!   ends before the first x greater than `x_first + step * (i + 1)` (truncated to an integer
//!   timestamp); a bin is empty when its first x is already at or past that bound;
//! - a bin of at most 2 points keeps them all; a larger one keeps its minimum and its maximum,
//!   each the FIRST occurrence, in index order — both entries even when they are the same
//!   point (a flat bin), as tsdownsample does; LTTB may then pick that point twice;
//! - the first and the last point are always kept, and LTTB picks `n_out` of the preselected
//!   points (all of them if there are no more than `n_out`).

use super::lttb::lttb;

/// The indices (in order, at most `n_out`; an index can repeat, see the module docs) MinMaxLTTB selects from the points
/// `(x[i] ms, y[i])`; `x` strictly increasing, `y` finite, `x.len() == y.len()`, `ratio >= 2`.
/// Every index when `n_out >= n` or `n_out < 3`. Allocation is bounded by `n` (the
/// preselection holds at most one index per point). Never panics.
pub fn minmax_lttb(x: &[i64], y: &[f64], n_out: usize, ratio: usize) -> Vec<usize> {
    minmax_lttb_with_preselection(x, y, n_out, ratio).0
}

/// [`minmax_lttb`], and the preselected indices LTTB chose from (`None`: plain LTTB on all
/// points).
pub(crate) fn minmax_lttb_with_preselection(
    x: &[i64],
    y: &[f64],
    n_out: usize,
    ratio: usize,
) -> (Vec<usize>, Option<Vec<usize>>) {
    let n = x.len().min(y.len());
    let xf: Vec<f64> = x[..n].iter().map(|&v| v as f64).collect();
    if n_out >= n || n_out < 3 || n / n_out <= ratio.max(2) {
        return (lttb(&xf, &y[..n], n_out), None);
    }
    let pre = preselect(&x[..n], &y[..n], n_out.saturating_mul(ratio.max(2)) / 2);
    let px: Vec<f64> = pre.iter().map(|&i| xf[i]).collect();
    let py: Vec<f64> = pre.iter().map(|&i| y[i]).collect();
    let picked = lttb(&px, &py, n_out).into_iter().map(|k| pre[k]).collect();
    (picked, Some(pre))
}

/// The preselected indices in order: 0, the min and max of each of `bins` equidistant bins of
/// the interior (see the module docs), `n - 1`. Needs `n >= 3`.
pub(crate) fn preselect(x: &[i64], y: &[f64], bins: usize) -> Vec<usize> {
    let n = x.len().min(y.len());
    let mut out = Vec::with_capacity(n.min(bins.saturating_mul(2).saturating_add(2)));
    out.push(0);
    let (ix, iy) = (&x[1..n - 1], &y[1..n - 1]);
    let (Some(&first), Some(&last)) = (ix.first(), ix.last()) else {
        out.push(n - 1);
        return out;
    };
    let bins_f = bins.max(1) as f64;
    // Dividing first keeps the step finite for any i64 timestamps.
    let step = last as f64 / bins_f - first as f64 / bins_f;
    let mut start = 0usize;
    for i in 0..bins {
        // `as i64` truncates toward zero and saturates: tsdownsample's conversion, no overflow.
        let bound = (first as f64 + step * (i as f64 + 1.0)) as i64;
        if start >= ix.len() || ix[start] >= bound {
            continue;
        }
        let end = start + ix[start..].partition_point(|&v| v <= bound);
        push_min_max(iy, start, end, &mut out);
        start = end;
    }
    out.push(n - 1);
    out
}

/// Appends (offset by 1, the interior's place in the series) the points of `y[start..end]`:
/// all of them for at most 2, else the first minimum and the first maximum in index order (the
/// same index twice for a flat bin, as tsdownsample).
fn push_min_max(y: &[f64], start: usize, end: usize, out: &mut Vec<usize>) {
    if end <= start.saturating_add(2) {
        out.extend((start..end).map(|i| i + 1));
        return;
    }
    let (lo, hi) = super::extrema::first_min_max(&y[start..end]);
    let (a, b) = (lo.min(hi), lo.max(hi));
    out.push(start + a + 1);
    out.push(start + b + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsdownsamples_own_examples() {
        // tsdownsample's unit tests: minmaxlttb_with_x(0..10, 0..10, 4, 2) == [0, 1, 5, 9].
        let x: Vec<i64> = (0..10).collect();
        let y: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(minmax_lttb(&x, &y, 4, 2), vec![0, 1, 5, 9]);
    }

    #[test]
    fn first_min_and_max_of_a_bin() {
        let y = [5.0, 1.0, 9.0, 1.0, 9.0, 5.0];
        let mut out = Vec::new();
        push_min_max(&y, 0, 6, &mut out);
        assert_eq!(
            out,
            vec![2, 3],
            "first 1.0 (index 1) and first 9.0 (index 2), +1"
        );
        out.clear();
        push_min_max(&[7.0; 4], 0, 4, &mut out);
        assert_eq!(
            out,
            vec![1, 1],
            "a flat bin enters twice, as in tsdownsample"
        );
    }
}
