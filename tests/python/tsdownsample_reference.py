"""fleetset's downsampling against the real tsdownsample package (the reference implementation of
the MinMaxLTTB paper), run by tests/tests/downsampling_reference.rs.

    tsdownsample_reference.py <downsample binary> <NAB data dir>

Cases: every NAB CSV cut into 1-day windows on its own time axis (floor of the timestamp, as
`fleetset-agent replay --window 1d` does) at thresholds 60 (288 samples: plain LTTB) and 20
(MinMax preselection), each whole file at threshold 60 (MinMax preselection over ~4,000 to
22,000 samples), and synthetic tie-heavy series (flat runs, repeated values, step functions,
random integers on irregular time steps) at several thresholds and ratios.

Asserts, per case: with keep_extremes off, fleetset selects exactly the indices of
tsdownsample's MinMaxLTTBDownsampler (x = int64 ms timestamps); with it on, the output holds the
first minimum and first maximum, the first and last sample, at most `threshold` points in
strictly increasing order. Prints `OK <cases> cases, <windows with a tie> with ties`.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
from tsdownsample import MinMaxLTTBDownsampler

binary, nab_dir = sys.argv[1], pathlib.Path(sys.argv[2])
DAY_MS = 86_400_000


def nab_cases():
    for csv in sorted(nab_dir.glob("*.csv")):
        df = pd.read_csv(csv)
        ts = pd.to_datetime(df["timestamp"]).astype("datetime64[ms]").astype("int64").to_numpy()
        y = df["value"].to_numpy(dtype=np.float64)
        order = np.argsort(ts, kind="stable")
        ts, y = ts[order], y[order]
        keep = np.append(ts[1:] != ts[:-1], True)  # the last of a repeated timestamp
        ts, y = ts[keep], y[keep]
        yield (csv.name, "whole file", 60, 4, ts, y)
        for day in np.unique(ts // DAY_MS):
            m = ts // DAY_MS == day
            for threshold in (60, 20):
                yield (csv.name, f"day {day} t{threshold}", threshold, 4, ts[m], y[m])


def synthetic_cases():
    rng = np.random.default_rng(16)
    for k in range(300):
        n = int(rng.integers(10, 3000))
        x = 1_700_000_000_000 + np.cumsum(rng.integers(1, 4, n) * 1000).astype(np.int64)
        kind = k % 5
        if kind == 0:
            y = np.full(n, 42.0)
        elif kind == 1:
            y = rng.integers(0, 3, n).astype(np.float64)
        elif kind == 2:
            y = np.repeat(rng.integers(0, 5, n // 7 + 1), 7)[:n].astype(np.float64)
        elif kind == 3:
            y = np.where(np.arange(n) % 50 < 25, 1.0, 0.0)
        else:
            y = np.round(rng.normal(0, 1, n), 1)
        threshold = int(rng.choice([3, 4, 5, 10, 20, 60]))
        ratio = int(rng.choice([2, 4, 8]))
        yield ("synthetic", f"#{k} kind {kind} n {n}", threshold, ratio, x, y)


def ours(cases, threshold, ratio, keep):
    doc = {"threshold": threshold, "ratio": ratio, "keep_extremes": keep,
           "series": [{"x": c[4].tolist(), "y": c[5].tolist()} for c in cases]}
    out = subprocess.run([binary], input=json.dumps(doc), capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        sys.exit(f"{binary} failed: {out.stderr}")
    return json.loads(out.stdout)["indices"]


cases = list(nab_cases()) + list(synthetic_cases())
groups = {}
for c in cases:
    groups.setdefault((c[2], c[3]), []).append(c)

failures, checked, ties = [], 0, 0
for (threshold, ratio), group in groups.items():
    plain = ours(group, threshold, ratio, False)
    kept = ours(group, threshold, ratio, True)
    for c, got, got_kept in zip(group, plain, kept):
        name, what, _, _, x, y = c
        checked += 1
        if len(y) > threshold:
            want = MinMaxLTTBDownsampler().downsample(x, y, n_out=threshold, minmax_ratio=ratio)
            want = [int(i) for i in want]
        else:
            want = list(range(len(y)))
        if len(np.unique(y)) < len(y):
            ties += 1
        if got != want:
            diff = [i for i, (a, b) in enumerate(zip(got, want)) if a != b][:5]
            failures.append(f"{name} {what}: {len(got)} vs {len(want)} points, first "
                            f"differences at {diff}: ours {[got[i] for i in diff]} "
                            f"tsdownsample {[want[i] for i in diff]}")
        lo, hi = int(np.argmin(y)), int(np.argmax(y))
        problems = []
        if len(got_kept) > threshold and len(y) > threshold:
            problems.append(f"{len(got_kept)} points > threshold {threshold}")
        if any(b <= a for a, b in zip(got_kept, got_kept[1:])):
            problems.append("indices not strictly increasing")
        need = {0, len(y) - 1, hi} | ({lo} if threshold > 3 else set())
        if not need <= set(got_kept):
            problems.append(f"missing {sorted(need - set(got_kept))} (min {lo}, max {hi})")
        if problems:
            failures.append(f"{name} {what} keep_extremes: {'; '.join(problems)}")

if failures:
    print(f"{len(failures)} of {checked} cases failed:")
    print("\n".join(failures[:40]))
    sys.exit(1)
print("OK", checked, "cases,", ties, "with ties")
