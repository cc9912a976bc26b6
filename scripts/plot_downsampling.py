#!/usr/bin/env python3
"""Raw samples vs the points fleetset stores vs tsdownsample's MinMaxLTTB, as a PNG for the docs.

Replays a NAB file (tests/data/nab/) through the real `fleetset-agent replay` into a real
`fleetset-aggregator serve` on loopback, exports the store's `series` table (the downsampled
points, `fleetset-aggregator export --table series`), and downsamples the same raw samples with
tsdownsample's MinMaxLTTBDownsampler window by window, with the same threshold and MinMax ratio
(fleetset downsamples each window on its own: `window.lttb.threshold` points per window and
series, `window.lttb.ratio` 4). Before tsdownsample sees them, the samples get the cleaning
fleetset's agent does (core/src/downsample/mod.rs: non-finite values dropped, stable sort by time,
the last of repeated timestamps kept). Draws the whole series with fleetset's points and NAB's
labelled incidents, then a zoom with each downsampler's points over the raw samples, and prints
how many points the two share.

    cargo build -p fleetset-agent -p fleetset-aggregator --bins
    python3 -m venv .venv-plots && .venv-plots/bin/pip install -r scripts/requirements-plots.txt
    .venv-plots/bin/python scripts/plot_downsampling.py --out docs/downsampling.png

The replay runs with `window.lttb.keep_extremes=false` (the selection that equals tsdownsample's);
--keep-extremes draws fleetset's default instead, where each window's minimum and maximum replace
up to two of those points.

Options: --csv (default tests/data/nab/machine_temperature_system_failure.csv), --window (1d),
--threshold (60, fleetset's default), --zoom FROM TO (UTC; default the file's first labelled
incident, from combined_windows.json), --target (directory of the binaries; default
$CARGO_TARGET_DIR/debug, else target/debug). Requirements: scripts/requirements-plots.txt.
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tsdownsample import MinMaxLTTBDownsampler  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RATIO = 4  # fleetset's window.lttb.ratio default, tsdownsample's minmax_ratio default
UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# Both binaries serve /metrics; off loopback they refuse to start without TLS and a token.
ENV = {**os.environ, "FLEETSET_TELEMETRY_LISTEN": "127.0.0.1:0"}


def duration_ms(text):
    """`--window` as the agent reads it (`30s`, `5m`, `1h`, `1d`), in ms."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not m:
        sys.exit(f"--window {text!r}: expected a number and one of ms, s, m, h, d")
    return int(m[1]) * UNITS_MS[m[2]]


def fleetset_points(target, csv, window, threshold, keep_extremes, work):
    """The series rows the real agent and aggregator store for `csv`: DataFrame ts, value."""
    ready = work / "ready.json"
    agg = subprocess.Popen(
        [f"{target}/fleetset-aggregator", "serve", "--data-dir", str(work / "data"),
         "--zmq-bind", "tcp://127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
         "--zmq-pub", "tcp://127.0.0.1:0", "--otlp-listen", "127.0.0.1:0",
         "--control-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--ready-file", str(ready), "--commit-interval", "50ms"],
        stderr=open(work / "aggregator.log", "w"), env=ENV)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if agg.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the aggregator did not start; see {work / 'aggregator.log'}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        replay = subprocess.run(
            [f"{target}/fleetset-agent", "replay", str(csv), "--agent-id", "plot",
             "--state-dir", str(work / "agent"), "--aggregator", info["zmq"],
             "--window", window, "--set", f"window.lttb.threshold={threshold}",
             "--set", f"window.lttb.keep_extremes={str(keep_extremes).lower()}"],
            timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        if replay.returncode != 0:
            sys.exit(f"fleetset-agent replay failed:\n{replay.stderr[-4000:]}")
    finally:
        agg.terminate()
        agg.wait(timeout=30)
    out = work / "series.parquet"
    subprocess.run(
        [f"{target}/fleetset-aggregator", "export", "--data-dir", str(work / "data"),
         "--table", "series", "--no-anonymize", "--format", "parquet", "--output", str(out)],
        check=True, timeout=300, stdout=subprocess.DEVNULL)
    s = pd.read_parquet(out)
    metrics = s["metric"].unique()
    assert len(metrics) == 1, f"expected one metric, got {metrics}"
    return s[["window_start", "ts", "value"]].sort_values("ts").reset_index(drop=True)


def clean(raw):
    """fleetset's cleaning (core/src/downsample/mod.rs): finite values, stable time sort, last of
    repeated timestamps."""
    raw = raw[np.isfinite(raw["value"])]
    raw = raw.sort_values("ts", kind="stable")
    return raw.drop_duplicates("ts", keep="last").reset_index(drop=True)


def unix_ms(ts):
    """A timestamp column as Unix ms (int64), whatever its resolution."""
    return ts.dt.as_unit("ms").astype("int64").to_numpy()


def tsdownsample_points(raw, window_ms, threshold):
    """MinMaxLTTB per window of `window_ms` (windows start at multiples of it, UTC)."""
    ms = unix_ms(raw["ts"])
    starts = ms - ms % window_ms
    keep = []
    for w in np.unique(starts):
        idx = np.flatnonzero(starts == w)
        if len(idx) <= threshold:
            keep.extend(idx)
            continue
        x = ms[idx].astype(np.float64)
        y = raw["value"].to_numpy()[idx].astype(np.float64)
        sel = MinMaxLTTBDownsampler().downsample(x, y, n_out=threshold, minmax_ratio=RATIO)
        keep.extend(idx[sel])
    return raw.iloc[np.sort(np.asarray(keep))].reset_index(drop=True)


def incidents(csv):
    doc = json.loads((ROOT / "tests/data/nab/combined_windows.json").read_text())
    spans = next((v for k, v in doc.items() if pathlib.PurePosixPath(k).name == csv.name), [])
    return [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in spans]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", type=pathlib.Path,
                    default=ROOT / "tests/data/nab/machine_temperature_system_failure.csv")
    ap.add_argument("--window", default="1d")
    ap.add_argument("--threshold", type=int, default=60)
    ap.add_argument("--zoom", nargs=2, metavar=("FROM", "TO"))
    ap.add_argument("--keep-extremes", action="store_true",
                    help="replay with the extrema rule (the default in fleetset); without it the "
                         "stored points are tsdownsample's exact selection")
    ap.add_argument("--target", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"), "debug"))
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "docs/downsampling.png")
    a = ap.parse_args()
    window_ms = duration_ms(a.window)
    step = pd.Timedelta(milliseconds=window_ms)

    raw = pd.read_csv(a.csv)
    raw = clean(pd.DataFrame({"ts": pd.to_datetime(raw["timestamp"], utc=True), "value": raw["value"]}))
    with tempfile.TemporaryDirectory(prefix="fleetset-plot-") as work:
        ours = fleetset_points(a.target, a.csv.resolve(), a.window, a.threshold, a.keep_extremes,
                               pathlib.Path(work))
    ours["ts"] = pd.to_datetime(ours["ts"], utc=True)
    theirs = tsdownsample_points(raw, window_ms, a.threshold)
    shared = len(set(unix_ms(ours["ts"])) & set(unix_ms(theirs["ts"])))
    spans = incidents(a.csv)
    if a.zoom:
        z0, z1 = (pd.Timestamp(t, tz="UTC") for t in a.zoom)
    else:
        # One window length around the first window boundary after the first incident starts
        # (or after the first sample), so the zoom shows two windows' points.
        t = spans[0][0] if spans else raw["ts"].iloc[0]
        z0 = (t + step).floor(step) - step / 2
        z1 = z0 + step

    fig, (top, zoom) = plt.subplots(2, 1, figsize=(13, 8.5), constrained_layout=True)
    top.plot(raw["ts"], raw["value"], color="0.7", lw=0.6, label=f"raw samples ({len(raw):,})")
    top.plot(ours["ts"], ours["value"], color="tab:blue", lw=0.7,
             label=f"fleetset stored points ({len(ours):,})")
    for i, (s0, s1) in enumerate(spans):
        top.axvspan(s0, s1, color="tab:red", alpha=0.12, label="NAB labelled incident" if i == 0 else None)
    top.axvspan(z0, z1, fill=False, edgecolor="black", ls="--", lw=1, label="zoom below")
    top.set_title(f"{a.csv.name}: {a.window} windows, MinMax-LTTB threshold {a.threshold} points "
                  f"per window and series", fontsize=11)
    top.legend(loc="lower left", fontsize=9)
    top.set_ylabel("value")

    r = raw[(raw["ts"] >= z0) & (raw["ts"] < z1)]
    ours_z = ours[(ours["ts"] >= z0) & (ours["ts"] < z1)]
    theirs_z = theirs[(theirs["ts"] >= z0) & (theirs["ts"] < z1)]
    zoom.plot(r["ts"], r["value"], color="0.55", lw=0.8, marker=".", ms=4,
              label=f"raw samples ({len(r)})")
    zoom.plot(ours_z["ts"], ours_z["value"], ls="none", marker="o", ms=9, mfc="none", mew=1.4,
              color="tab:blue", label=f"fleetset: agent replay → aggregator → series table ({len(ours_z)})")
    zoom.plot(theirs_z["ts"], theirs_z["value"], ls="none", marker="x", ms=6, mew=1.4,
              color="tab:orange",
              label=f"tsdownsample MinMaxLTTBDownsampler, n_out={a.threshold}, minmax_ratio={RATIO}, "
                    f"per window ({len(theirs_z)})")
    for s0, s1 in spans:
        if s0 < z1 and s1 > z0:
            zoom.axvspan(max(s0, z0), min(s1, z1), color="tab:red", alpha=0.06)
    for d in pd.date_range(z0.ceil(step), z1, freq=step, inclusive="left"):
        zoom.axvline(d, color="black", lw=0.8, ls=":", label="window boundary")
    zoom.set_xlim(z0, z1)
    zoom.set_ylabel("value")
    zoom.legend(loc="lower right", fontsize=9)
    zoom.set_title(f"zoom: {z0:%Y-%m-%d %H:%M} to {z1:%Y-%m-%d %H:%M} UTC — the two keep the same "
                   f"points: {shared:,} of fleetset's {len(ours):,} and tsdownsample's {len(theirs):,} "
                   f"in the whole file", fontsize=11)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"{a.out}: raw {len(raw)}, fleetset {len(ours)}, tsdownsample {len(theirs)}, shared {shared}")


if __name__ == "__main__":
    main()
