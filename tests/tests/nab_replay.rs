//! Every Numenta Anomaly Benchmark file in `tests/data/nab/` replays with no error, and the
//! store's exact window stats (count, min, max, mean, std) equal those pandas computes
//! independently from the CSV, for every window (1-hour windows on the file's own time axis) —
//! including the null std (pandas: NaN) of an hour with a single sample.
//!
//! `tests/data/nab/` holds a representative subset of NAB's 58 files (10 of its real AWS
//! CloudWatch and known-cause series, 1.7 MB), chosen for the defects real data has: repeated
//! timestamps and gaps (`ec2_disk_write_bytes_1ef3de`, `ec2_request_latency_system_failure`),
//! a gap (`ec2_cpu_utilization_ac20cd`), an out-of-order row and 22,695 rows
//! (`machine_temperature_system_failure`), irregular steps (`elb_request_count_8c0756`), an
//! hour with a single sample (`grok_asg_anomaly`), a short file with dots and dashes in its name
//! (`iio_us-east-1_i-a2eb1cd9_NetworkIn`), and plain 5-minute series.

use fleetset_tests::*;
use std::time::Duration;

const CHECK: &str = r#"
import sys, glob, os, numpy as np, pandas as pd, pyarrow.compute as pc, pyarrow.dataset as ds
nab, data = sys.argv[1], sys.argv[2]
t = ds.dataset(data + "/stats", format="parquet", partitioning="hive").to_table(
    columns=["agent_id", "window_start", "metric", "count", "min", "max", "mean", "std"])
assert set(t["metric"].to_pylist()) == {"value"}
# An undefined std (one sample) is a Parquet null, not a NaN.
assert pc.sum(pc.is_nan(t["std"])).as_py() in (0, None), "NaN std stored"
w = t.to_pandas().rename(columns={s: "value__" + s for s in ["count", "min", "max", "mean", "std"]})
checked, one_sample, two_samples = 0, 0, 0
for path in sorted(glob.glob(nab + "/*.csv")):
    agent = "nab-" + os.path.basename(path)[:-4].replace("_", "-")
    df = pd.read_csv(path)
    df["window_start"] = pd.to_datetime(df["timestamp"], utc=True).dt.floor("1h")
    want = df.groupby("window_start")["value"].agg(["count", "min", "max", "mean", "std"])
    got = w[w.agent_id == agent].copy()
    got["window_start"] = got["window_start"].astype("datetime64[ns, UTC]")
    got = got.set_index("window_start").sort_index()
    assert len(got) == len(want), (agent, len(got), len(want))
    assert (got.index == want.index.astype("datetime64[ns, UTC]")).all(), agent
    assert (got["value__count"].values == want["count"].values).all(), agent
    assert (got["value__min"].values == want["min"].values).all(), agent
    assert (got["value__max"].values == want["max"].values).all(), agent
    rel = ((got["value__mean"].values - want["mean"].values) / want["mean"].abs().clip(lower=1).values)
    assert abs(rel).max() < 1e-12, (agent, abs(rel).max())
    # std: ddof = 1; pandas' NaN for one sample is the store's null (NaN after to_pandas).
    got_std, want_std = got["value__std"].values, want["std"].values
    assert (np.isnan(got_std) == np.isnan(want_std)).all(), agent
    assert (np.isnan(want_std) == (want["count"].values == 1)).all(), agent
    ok = ~np.isnan(want_std)
    err = abs(got_std[ok] - want_std[ok]) / np.clip(abs(want_std[ok]), 1, None)
    assert err.max() < 1e-9, (agent, err.max())
    one_sample += int((want["count"] == 1).sum())
    two_samples += int((want["count"] == 2).sum())
    checked += len(want)
# grok_asg_anomaly has an hour with one sample, ec2_cpu_utilization_825cc2 one with two.
assert one_sample >= 1 and two_samples >= 1, (one_sample, two_samples)
print("OK", checked, "windows;", one_sample, "with one sample,", two_samples, "with two")
"#;

#[test]
fn every_nab_file_replays_and_its_window_stats_match_pandas() {
    let nab = nab_dir();
    let files = nab_files(5);
    let dir = TempDir::new("nab");
    let (mut agg, replayed) = replay_nab_files(dir.path(), &files, "1h");
    for (f, events) in files.iter().zip(replayed) {
        // Every window framed was delivered; none rejected or dropped.
        let framed: Vec<u64> = of_kind(&events, "framed", "")
            .iter()
            .filter_map(|e| e.seq)
            .collect();
        let mut delivered: Vec<u64> = acked(&events).iter().map(|a| a.seq).collect();
        delivered.sort();
        assert!(!framed.is_empty(), "{}: nothing framed", f.display());
        assert_eq!(delivered, framed, "{}: {events:?}", f.display());
        assert!(
            of_kind(&events, "dropped", "").is_empty(),
            "{}: {events:?}",
            f.display()
        );
    }
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(CHECK)
        .arg(&nab)
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
