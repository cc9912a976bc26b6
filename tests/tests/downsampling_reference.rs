//! Downsampling on the NAB files (`tests/data/nab/`), cut into 1-day windows on each file's own
//! time axis (what `fleetset-agent replay --window 1d` does: 288 samples at NAB's 5-minute step
//! → 60 points):
//! - in process: every window's output holds its first minimum and first maximum sample, the
//!   first and last sample, at most `threshold` points in strictly increasing time; with
//!   `keep_extremes` off it is exactly MinMaxLTTB with tsdownsample's tie rules;
//! - against the real `tsdownsample` package (tests/python/tsdownsample_reference.py through
//!   the `downsample` helper binary): the same indices as its `MinMaxLTTBDownsampler` with
//!   `keep_extremes` off, on the NAB windows and on tie-heavy synthetic series;
//! - end to end: every NAB file replayed through the real agent into the real aggregator; every
//!   stored window's series (the `series` table read back by pyarrow) holds its minimum and
//!   maximum and at most 60 points.

use fleetset_core::downsample::{clean, minmax, Downsampler};
use fleetset_core::window::window_start;
use fleetset_tests::*;
use std::path::PathBuf;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

fn nab_files() -> Vec<PathBuf> {
    fleetset_tests::nab_files(10)
}

/// `(ts_ms, value)` of a NAB CSV (`timestamp,value`, UTC `YYYY-MM-DD HH:MM:SS`), file order.
fn read_nab(path: &PathBuf) -> Vec<(i64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (ts, v) = l.split_once(',').unwrap();
            let ts = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|e| panic!("{}: {ts}: {e}", path.display()));
            (ts.and_utc().timestamp_millis(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_nab_window_keeps_its_extremes_within_the_threshold() {
    let (mut windows, mut rescued) = (0, 0);
    for file in nab_files() {
        let (sorted, _) = clean(&read_nab(&file));
        let mut by_window: std::collections::BTreeMap<i64, Vec<(i64, f64)>> = Default::default();
        for s in sorted {
            by_window
                .entry(window_start(s.0, DAY_MS))
                .or_default()
                .push(s);
        }
        for (start, samples) in by_window {
            // The series LTTB sees: the latest reading of a repeated timestamp.
            let mut pts: Vec<(i64, f64)> = Vec::new();
            for s in &samples {
                match pts.last_mut() {
                    Some(last) if last.0 == s.0 => *last = *s,
                    _ => pts.push(*s),
                }
            }
            let x: Vec<i64> = pts.iter().map(|p| p.0).collect();
            let y: Vec<f64> = pts.iter().map(|p| p.1).collect();
            let first_min = pts
                .iter()
                .copied()
                .reduce(|a, b| if b.1 < a.1 { b } else { a });
            let first_max = pts
                .iter()
                .copied()
                .reduce(|a, b| if b.1 > a.1 { b } else { a });
            let what = format!("{} window {start}", file.display());
            for keep_extremes in [true, false] {
                let ds = Downsampler {
                    keep_extremes,
                    ..Downsampler::default()
                };
                let (out, fallback) = ds.downsample(&samples, &mut Default::default());
                assert!(!fallback, "{what}");
                assert!(out.len() <= ds.threshold, "{what}: {} points", out.len());
                assert!(out.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms), "{what}");
                let has = |p: Option<(i64, f64)>| {
                    p.is_some_and(|p| out.iter().any(|o| o.ts_ms == p.0 && o.value == p.1))
                };
                assert!(
                    has(pts.first().copied()) && has(pts.last().copied()),
                    "{what}"
                );
                if keep_extremes {
                    assert!(has(first_min), "{what}: min {first_min:?} missing");
                    assert!(has(first_max), "{what}: max {first_max:?} missing");
                    windows += 1;
                } else {
                    let mut want = minmax::minmax_lttb(&x, &y, ds.threshold, ds.ratio);
                    want.dedup();
                    let got: Vec<i64> = out.iter().map(|p| p.ts_ms).collect();
                    let want: Vec<i64> = want.iter().map(|&i| x[i]).collect();
                    assert_eq!(got, want, "{what}: not the reference selection");
                    rescued += usize::from(!(has(first_min) && has(first_max)));
                }
            }
        }
    }
    eprintln!("{windows} windows; plain MinMaxLTTB missed an extreme in {rescued}");
    assert!(windows >= 200, "{windows} windows");
    // The rule is not vacuous: MinMaxLTTB alone loses an extreme in some NAB windows.
    assert!(rescued > 0, "no window needed the extrema rule");
}

#[test]
fn selection_equals_tsdownsample_and_extremes_are_kept() {
    let out = run_python_script(
        "tsdownsample_reference.py",
        &[
            env!("CARGO_BIN_EXE_downsample"),
            nab_dir().to_str().unwrap(),
        ],
    );
    eprintln!("{out}");
    assert!(out.starts_with("OK "), "{out}");
}

const STORED: &str = r#"
import sys, glob, os, numpy as np, pandas as pd, pyarrow.dataset as ds
nab, data = sys.argv[1], sys.argv[2]
s = ds.dataset(data + "/series", format="parquet", partitioning="hive").to_table(
    columns=["agent_id", "window_start", "metric", "ts", "value"]).to_pandas()
s["window_start"] = s["window_start"].astype("datetime64[ms, UTC]")
s["ts"] = s["ts"].astype("datetime64[ms, UTC]")
checked = 0
for path in sorted(glob.glob(nab + "/*.csv")):
    agent = "nab-" + os.path.basename(path)[:-4].replace("_", "-")
    df = pd.read_csv(path)
    df["ts"] = pd.to_datetime(df["timestamp"], utc=True).astype("datetime64[ms, UTC]")
    # What the agent downsamples: time order, the latest reading of a repeated timestamp.
    df = df.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last")
    df["window_start"] = df["ts"].dt.floor("1d")
    got = s[s.agent_id == agent]
    assert len(got), agent
    for start, w in df.groupby("window_start"):
        g = got[got.window_start == start].sort_values("ts")
        assert 0 < len(g) <= 60, (agent, start, len(g))
        assert g["ts"].is_monotonic_increasing and g["ts"].is_unique, (agent, start)
        stored = set(zip(g["ts"], g["value"]))
        for i in (w["value"].values.argmin(), w["value"].values.argmax(), 0, len(w) - 1):
            p = (w["ts"].iloc[i], w["value"].iloc[i])
            assert p in stored, (agent, str(start), "missing", p)
        checked += 1
assert checked >= 200, checked
print("OK", checked, "windows")
"#;

#[test]
fn every_stored_nab_window_holds_its_min_and_max() {
    let files = nab_files();
    let dir = TempDir::new("nab-extremes");
    let (mut agg, replayed) = replay_nab_files(dir.path(), &files, "1d");
    for (f, events) in files.iter().zip(replayed) {
        let framed = of_kind(&events, "framed", "").len();
        assert!(framed > 0, "{}: nothing framed", f.display());
        assert_eq!(acked(&events).len(), framed, "{}: {events:?}", f.display());
    }
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(STORED)
        .arg(nab_dir())
        .arg(&agg.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}
