//! The real host collector through the real binaries: every base metric of SPEC.md arrives
//! with physically sane values, and top-N processes arrive with hashed names only.

use fleetset_tests::*;
use std::time::Duration;

/// (metric, lowest, highest) sane values; `None` = no upper bound.
const RANGES: &[(&str, f64, Option<f64>)] = &[
    ("cpu_percent", 0.0, Some(100.0)),
    ("memory_used_mb", 1.0, None),
    ("memory_available_mb", 0.0, None),
    ("memory_used_percent", 0.0, Some(100.0)),
    ("swap_used_mb", 0.0, None),
    ("load_avg_1", 0.0, None),
    ("load_avg_5", 0.0, None),
    ("load_avg_15", 0.0, None),
    ("process_count", 1.0, None),
    ("thread_count", 1.0, None),
    ("fd_count", 1.0, None),
    ("disk_read_bytes_per_sec", 0.0, None),
    ("disk_write_bytes_per_sec", 0.0, None),
    ("net_rx_bytes_per_sec", 0.0, None),
    ("net_tx_bytes_per_sec", 0.0, None),
    ("memory_mb", 1.0, None),
    ("health_score", 0.0, Some(100.0)),
    ("load_avg", 0.0, None),
];

#[test]
fn base_metrics_of_this_host_arrive_in_sane_ranges() {
    let dir = TempDir::new("host");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--commit-interval",
            "200ms",
            "--set",
            "ingest.grpc.enabled=false",
        ],
    )
    .unwrap();
    let state = dir.path().join("st");
    let args = [
        "run",
        "--agent-id",
        "this-host",
        "--state-dir",
        state.to_str().unwrap(),
        "--aggregator",
        &agg.zmq,
        "--window",
        "1s",
        "--sample-interval",
        "100ms",
        "--set",
        "collect.process_interval=400ms",
    ];
    let mut agent = agent(dir.path(), "agent", &args);
    agent.wait_acked(3, Duration::from_secs(30)).unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let windows = read_table(&agg.data_dir, "windows").unwrap();
    let total_mb = u64_col(&windows[0], "memory_total_mb").unwrap().value(0) as f64;
    assert!(total_mb > 0.0);
    let mut checked = 0;
    for b in &windows {
        for i in 0..b.num_rows() {
            for &(metric, lo, hi) in RANGES {
                for stat in ["min", "max", "mean", "first", "last"] {
                    let Some(v) = f64_at(f64_col(b, &format!("{metric}__{stat}")), i) else {
                        // Rates need two samples; the very first window may lack them.
                        assert!(
                            metric.ends_with("_per_sec") && i == 0,
                            "{metric}__{stat} missing"
                        );
                        continue;
                    };
                    assert!(v.is_finite() && v >= lo, "{metric}__{stat} = {v} < {lo}");
                    if let Some(hi) = hi {
                        assert!(v <= hi, "{metric}__{stat} = {v} > {hi}");
                    }
                    if metric.starts_with("memory_") && metric.ends_with("_mb") {
                        assert!(
                            v <= total_mb,
                            "{metric}__{stat} = {v} MB > total {total_mb} MB"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 3 * 5 * 15, "checked only {checked} values");

    let procs = read_table(&agg.data_dir, "processes").unwrap();
    let rows: usize = procs.iter().map(|b| b.num_rows()).sum();
    assert!(rows > 0, "no process records");
    for b in &procs {
        assert!(
            b.num_rows() <= 10 * windows.iter().map(|w| w.num_rows()).sum::<usize>(),
            "top-10 per window"
        );
        let hashes = str_col(b, "name_hash");
        for i in 0..b.num_rows() {
            assert!(
                hashes.value(i).len() == 16 && !hashes.value(i).contains("fleetset"),
                "{}",
                hashes.value(i)
            );
        }
        assert_eq!(b.column_by_name("name").unwrap().null_count(), b.num_rows());
    }
    // The agent's own process name never appears in clear in the processes table.
    for f in walk(&agg.data_dir.join("processes")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(14).any(|w| w == b"fleetset-agent"),
            "clear process name in {}",
            f.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
