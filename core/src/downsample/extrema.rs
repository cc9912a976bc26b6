//! The extrema rule: a window's stored series always holds the samples at its minimum and its
//! maximum (each the first occurrence), besides the first and the last sample, which LTTB keeps
//! anyway. The idea of keeping each interval's extremes is M4's (Jugel, Jerzak, Hackenbroich,
//! Markl, "M4: A Visualization-Oriented Time Series Data Aggregation", PVLDB 7(10), 2014); here
//! it is applied once per window, on top of MinMaxLTTB, without changing the point count:
//! - an extreme missing from the selection replaces the point LTTB picked in the bucket that
//!   contains it (buckets cut the index range `1..n-1` at the first index of each LTTB bucket),
//!   which keeps the count and the time order;
//! - when both missing extremes fall into one bucket, the earlier one takes that bucket's slot and
//!   the later one the next bucket's (the previous bucket's if the next is the last point);
//! - each unchanged neighbour of a replaced slot is then re-picked in its bucket the LTTB way,
//!   with its actual neighbours as the triangle's corners (largest area, first on a tie), which
//!   brings the interpolation error back to within 2 % of plain MinMaxLTTB's (docs/benchmarks.md);
//! - with a single interior slot (`threshold` 3) only the maximum fits.

/// The indices of the first minimum and the first maximum of `y` (`(0, 0)` for an empty slice).
pub fn first_min_max(y: &[f64]) -> (usize, usize) {
    let (mut lo, mut hi) = (0usize, 0usize);
    for (i, &v) in y.iter().enumerate().skip(1) {
        if v < y[lo] {
            lo = i;
        }
        if v > y[hi] {
            hi = i;
        }
    }
    (lo, hi)
}

/// Makes `selected` (strictly increasing indices into `y`, starting at 0 and ending at
/// `y.len() - 1`) hold the first minimum and first maximum of `y`, as the module docs say.
/// `bucket_starts[j]` is the first original index of the bucket of `selected[j]` for
/// `1 <= j < selected.len() - 1` (`bucket_starts[1] == 1`); other entries are ignored. Keeps
/// the length and the strict order; never panics (a malformed `bucket_starts` leaves
/// `selected` unchanged).
pub(crate) fn keep_extremes(x: &[i64], y: &[f64], selected: &mut [usize], bucket_starts: &[usize]) {
    let m = selected.len();
    if m < 3 || bucket_starts.len() != m || y.is_empty() || x.len() != y.len() {
        return;
    }
    let (lo, hi) = first_min_max(y);
    let last = y.len() - 1;
    // Interior extremes not yet kept, in index order.
    let mut missing: Vec<usize> = [lo.min(hi), lo.max(hi)]
        .into_iter()
        .filter(|&e| e != 0 && e != last && selected.binary_search(&e).is_err())
        .collect();
    missing.dedup();
    if m == 3 {
        // One interior slot: the maximum, unless it is an endpoint (kept anyway); then the minimum.
        let target = if hi != 0 && hi != last { hi } else { lo };
        if target != 0 && target != last {
            selected[1] = target;
        }
        return;
    }
    let before = selected.to_vec();
    let bucket_of = |e: usize| -> usize {
        // The last interior slot whose bucket starts at or before e.
        let starts = &bucket_starts[1..m - 1];
        starts.partition_point(|&s| s <= e).clamp(1, m - 2)
    };
    match missing.as_slice() {
        [] => {}
        [e] => {
            let j = bucket_of(*e);
            let kept = if *e == lo { hi } else { lo };
            if selected[j] == kept && kept != 0 && kept != last {
                place_pair(selected, j, (*e).min(kept), (*e).max(kept), m);
            } else {
                selected[j] = *e;
            }
        }
        [a, b, ..] => {
            let (ja, jb) = (bucket_of(*a), bucket_of(*b));
            if ja == jb {
                place_pair(selected, ja, *a, *b, m);
            } else {
                selected[ja] = *a;
                selected[jb] = *b;
            }
        }
    }
    refit_neighbours(x, y, selected, bucket_starts, &before, [lo, hi]);
    debug_assert!(selected.windows(2).all(|w| w[0] < w[1]));
}

/// After extremes replaced some slots, re-picks each unchanged neighbour of a changed slot
/// (unless it holds an extreme already) the LTTB way, but with its actual neighbours as the triangle's corners: the point of its bucket
/// (strictly between the neighbours) with the largest triangle area, the first on a tie.
fn refit_neighbours(
    x: &[i64],
    y: &[f64],
    selected: &mut [usize],
    bucket_starts: &[usize],
    before: &[usize],
    extremes: [usize; 2],
) {
    let m = selected.len();
    let last = y.len().saturating_sub(1);
    let changed: Vec<bool> = selected.iter().zip(before).map(|(a, b)| a != b).collect();
    if changed.len() != m {
        return;
    }
    for k in 1..m.saturating_sub(1) {
        if changed[k] || !(changed[k - 1] || changed[k + 1]) || extremes.contains(&selected[k]) {
            continue;
        }
        let (p, n) = (selected[k - 1], selected[k + 1]);
        let end = if k + 1 < m - 1 {
            bucket_starts[k + 1]
        } else {
            last
        };
        let (lo, hi) = (bucket_starts[k].max(p + 1), end.min(n));
        let (px, py, nx, ny) = (x[p] as f64, y[p], x[n] as f64, y[n]);
        let mut best = (selected[k], -1.0f64);
        for c in lo..hi {
            let area = ((px - nx) * (y[c] - py) - (px - x[c] as f64) * (ny - py)).abs();
            if area > best.1 {
                best = (c, area);
            }
        }
        selected[k] = best.0;
    }
}

/// Adds the first minimum and first maximum of `y` to `selected` (strictly increasing indices
/// into `y`, fewer than `threshold` points, as when the MinMax preselection left no more than
/// `threshold` points) where missing, keeping the order; if that goes past `threshold`, the
/// interior point just before the added extreme (or after, if that one is an extreme or an
/// endpoint) makes room. Never panics.
pub(crate) fn insert_extremes(y: &[f64], selected: &mut Vec<usize>, threshold: usize) {
    if y.is_empty() || threshold < 3 {
        return;
    }
    let (lo, hi) = first_min_max(y);
    let last = y.len() - 1;
    for e in [hi, lo] {
        let Err(at) = selected.binary_search(&e) else {
            continue;
        };
        selected.insert(at, e);
        if selected.len() <= threshold {
            continue;
        }
        let keep = |i: usize| i == 0 || i == last || i == lo || i == hi;
        let victim = [at.checked_sub(1), at.checked_add(1)]
            .into_iter()
            .flatten()
            .find(|&k| selected.get(k).is_some_and(|&i| !keep(i)));
        match victim {
            Some(k) => {
                selected.remove(k);
            }
            None => {
                selected.remove(at);
            }
        }
    }
}

/// Puts `a < b`, both inside the bucket of slot `j`, into slot `j` and a neighbouring slot;
/// needs `m >= 4` (two interior slots).
fn place_pair(selected: &mut [usize], j: usize, a: usize, b: usize, m: usize) {
    if j + 1 < m - 1 {
        selected[j] = a;
        selected[j + 1] = b;
    } else {
        selected[j - 1] = a;
        selected[j] = b;
    }
}
