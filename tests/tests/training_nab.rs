//! A training set labelled by NAB's own incident windows: three Numenta Anomaly Benchmark files
//! from `tests/data/nab/` replayed through real agents (1-hour windows on the files' time axis),
//! exported with `--label-windows combined_windows.json`. Positive labels sit exactly on the
//! windows whose following window overlaps a labelled incident, the split is time-ordered, and
//! the manifest's checksums match the files. Needs `FLEETSET_PYTHON` (scripts/test.sh).

use fleetset_tests::*;
use std::time::Duration;

/// Files with 4, 1 and 0 incidents.
const FILES: [&str; 3] = [
    "machine_temperature_system_failure",
    "ec2_cpu_utilization_825cc2",
    "ec2_cpu_utilization_c6585a",
];

#[test]
fn nab_incidents_label_the_windows_before_them() {
    let nab = nab_dir();
    let dir = TempDir::new("training-nab");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--commit-interval",
            "50ms",
            "--set",
            "ingest.grpc.enabled=false",
        ],
    )
    .unwrap();
    for stem in FILES {
        let csv = nab.join(format!("{stem}.csv"));
        assert!(csv.exists(), "{} is missing", csv.display());
        let mut p = replay_agent(
            dir.path(),
            &csv,
            stem,
            &agg.zmq,
            "1h",
            &["--label", "site=nab"],
        );
        assert!(
            p.wait(Duration::from_secs(120)).unwrap(),
            "{}",
            p.log_text()
        );
    }
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let set = dir.path().join("set");
    let windows = nab.join("combined_windows.json");
    let stdout = export_ok(
        &agg.data_dir,
        &[
            "--training",
            "--no-anonymize",
            "--label-windows",
            windows.to_str().unwrap(),
            "--split",
            "0.7",
            "--output",
            set.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("training set:"), "{stdout}");
    let report = run_python_script(
        "nab_labels.py",
        &[set.to_str().unwrap(), windows.to_str().unwrap()],
    );
    assert!(report.contains("OK"), "{report}");
    eprintln!("{report}");
}
