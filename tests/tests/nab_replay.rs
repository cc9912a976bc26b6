//! Every Numenta Anomaly Benchmark file in `shared/data/nab/` replays with no error, and the
//! store's exact window stats equal those pandas computes independently from the CSV, for every
//! window (1-hour windows on the file's own time axis).

use fleetset_tests::*;
use std::path::PathBuf;
use std::time::Duration;

const CHECK: &str = r#"
import sys, glob, os, pandas as pd, pyarrow.dataset as ds
nab, data = sys.argv[1], sys.argv[2]
w = ds.dataset(data + "/windows", format="parquet", partitioning="hive").to_table(
    columns=["agent_id", "window_start", "value__count", "value__min", "value__max", "value__mean"]).to_pandas()
checked = 0
for path in sorted(glob.glob(nab + "/*.csv")):
    agent = "nab-" + os.path.basename(path)[:-4].replace("_", "-")
    df = pd.read_csv(path)
    df["window_start"] = pd.to_datetime(df["timestamp"], utc=True).dt.floor("1h")
    want = df.groupby("window_start")["value"].agg(["count", "min", "max", "mean"])
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
    checked += len(want)
print("OK", checked)
"#;

#[test]
fn every_nab_file_replays_and_its_window_stats_match_pandas() {
    let nab = nab_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&nab)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (set FLEETSET_SHARED_DIR to the shared/ folder)",
                nab.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "NAB files: {files:?}");
    let dir = TempDir::new("nab");
    let mut agg =
        Aggregator::start(dir.path(), &["--commit-interval", "50ms", "--no-grpc"]).unwrap();
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy().replace('_', "-");
        let mut p = replay_agent(dir.path(), f, &format!("nab-{stem}"), &agg.zmq, "1h", &[]);
        assert!(
            p.wait(Duration::from_secs(120)).unwrap(),
            "replay of {} failed:\n{}",
            f.display(),
            p.log_text()
        );
        // Every window framed was delivered; none rejected or dropped.
        let events = p.events();
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
