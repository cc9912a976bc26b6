#!/usr/bin/env python3
"""fleetset's downsampling (MinMax-LTTB + the extrema rule) beside tsdownsample's MinMaxLTTB and
LTTB on the NAB files (tests/data/nab/): the share of windows whose stored points hold both the
window's minimum and maximum sample, and the interpolation error.

Each file is cut into windows on its own time axis (default 1 day, 288 samples at NAB's 5-minute
step, as `fleetset-agent replay --window 1d`), after the agent's cleaning (time order, the latest
reading of a repeated timestamp). Per window and downsampler: `extremes` = both the first
minimum and the first maximum sample kept; `nrmse` = the RMSE of the linear interpolation of the
kept points at every raw timestamp, divided by the window's range (max − min; a flat window
counts 0). Reported: the share of windows with both extremes, and the mean and median nrmse in
percent of the range, per threshold.

    cargo build -p fleetset-tests --bin downsample
    python3 -m venv .venv-plots && .venv-plots/bin/pip install -r scripts/requirements-plots.txt
    .venv-plots/bin/python scripts/downsampling_extremes.py

Options: --window (1d), --thresholds (60,20), --ratio (4), --binary (the `downsample` test
helper; default $CARGO_TARGET_DIR/debug/downsample, else target/debug/downsample).
Requirements: scripts/requirements-plots.txt (tsdownsample, numpy, pandas).
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
from tsdownsample import LTTBDownsampler, MinMaxLTTBDownsampler

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def windows(window_ms):
    """(file name, x int64 ms, y float64) per window of every NAB file, cleaned like the agent."""
    for csv in sorted((ROOT / "tests/data/nab").glob("*.csv")):
        df = pd.read_csv(csv)
        df["ts"] = pd.to_datetime(df["timestamp"]).astype("datetime64[ms]").astype("int64")
        df = df.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last")
        for _, w in df.groupby(df["ts"] // window_ms):
            yield csv.name, w["ts"].to_numpy(), w["value"].to_numpy(dtype=np.float64)


def fleetset(binary, wins, threshold, ratio):
    doc = {"threshold": threshold, "ratio": ratio, "keep_extremes": True,
           "series": [{"x": x.tolist(), "y": y.tolist()} for _, x, y in wins]}
    out = subprocess.run([binary], input=json.dumps(doc), capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        sys.exit(f"{binary} failed: {out.stderr}")
    return [np.array(i, dtype=np.int64) for i in json.loads(out.stdout)["indices"]]


def score(x, y, idx):
    idx = np.unique(idx)  # tsdownsample can repeat an index; a stored series cannot
    both = int(np.argmin(y)) in idx and int(np.argmax(y)) in idx
    rng = float(y.max() - y.min())
    err = np.interp(x.astype(np.float64), x[idx].astype(np.float64), y[idx]) - y
    nrmse = float(np.sqrt(np.mean(err ** 2)) / rng) if rng > 0 else 0.0
    return both, nrmse


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--window", default="1d")
    p.add_argument("--thresholds", default="60,20")
    p.add_argument("--ratio", type=int, default=4)
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    p.add_argument("--binary", default=f"{target}/debug/downsample")
    a = p.parse_args()
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", a.window)
    if not m:
        sys.exit(f"--window {a.window!r}: expected a number and one of ms, s, m, h, d")
    wins = list(windows(int(m[1]) * UNITS_MS[m[2]]))
    print(f"{len(wins)} windows of {a.window} from the NAB files, ratio {a.ratio}")
    print("| threshold | downsampler | windows | both extremes kept | mean nRMSE | median nRMSE "
          "| mean nRMSE / MinMaxLTTB's |")
    print("|---|---|---|---|---|---|---|")
    for threshold in [int(t) for t in a.thresholds.split(",")]:
        big = [w for w in wins if len(w[2]) > threshold]
        ours = fleetset(a.binary, big, threshold, a.ratio)
        peers = {
            "fleetset (MinMax-LTTB + extrema)": ours,
            "tsdownsample MinMaxLTTB": [MinMaxLTTBDownsampler().downsample(
                x, y, n_out=threshold, minmax_ratio=a.ratio) for _, x, y in big],
            "tsdownsample LTTB": [LTTBDownsampler().downsample(x, y, n_out=threshold)
                                  for _, x, y in big],
        }
        scores = {name: [score(x, y, i) for (_, x, y), i in zip(big, sel)]
                  for name, sel in peers.items()}
        ref = np.mean([e for _, e in scores["tsdownsample MinMaxLTTB"]])
        for name, s in scores.items():
            both = np.mean([b for b, _ in s]) * 100
            nr = np.array([e for _, e in s])
            print(f"| {threshold} | {name} | {len(big)} | {both:.1f} % | {nr.mean() * 100:.3f} % "
                  f"| {np.median(nr) * 100:.3f} % | {nr.mean() / ref:.3f}× |")


if __name__ == "__main__":
    main()
