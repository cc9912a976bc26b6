//! A training set of a fleet whose hosts cover different periods at different scales
//! (`tests/data/training/`: four CSVs replayed through real agents into a real aggregator, 1-hour
//! windows), exported four ways and read back with pandas, pyarrow and scikit-learn
//! (`tests/python/training_fleet.py`):
//! - default (`--split-by time`, `--outliers-by agent`): `is_outlier` equals per-agent IQR bounds
//!   recomputed in pandas from a plain windows export; the manifest warns that `db-1` dominates
//!   the test split and that `Positive` is under 1 % of it, and lists the shard files it did not
//!   write (`db-1` has no train rows, `batch-1` no test rows); no shard file is empty; the
//!   baselines equal scikit-learn's `DummyClassifier(strategy="most_frequent")` scores;
//! - `--outliers-by fleet`: nearly every `db-1` row is flagged (it merely runs hotter);
//! - `--split-by agent`: every agent has rows in both splits, each before its own cutoff;
//! - `--strict`: fails on the default set's warnings, naming them, and writes nothing; passes on
//!   the per-agent split, which has none of them.
//!
//! Needs `FLEETSET_PYTHON` (scripts/test.sh).

use fleetset_tests::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HOSTS: [&str; 4] = ["batch-1", "web-1", "web-2", "db-1"];

/// The fixtures replayed into a fresh store; returns its data directory.
fn fleet_store(dir: &Path) -> PathBuf {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/training");
    let mut agg = Aggregator::start(
        dir,
        &[
            "--commit-interval",
            "50ms",
            "--set",
            "ingest.grpc.enabled=false",
        ],
    )
    .unwrap();
    let mut agents: Vec<Proc> = HOSTS
        .iter()
        .map(|h| {
            let csv = data.join(format!("{h}.csv"));
            assert!(csv.exists(), "{} is missing", csv.display());
            replay_agent(dir, &csv, h, &agg.zmq, "1h", &["--label", "site=lab"])
        })
        .collect();
    for a in &mut agents {
        assert!(
            a.wait(Duration::from_secs(180)).unwrap(),
            "{}",
            a.log_text()
        );
    }
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    agg.data_dir.clone()
}

/// `export --training --no-anonymize` of the fleet's store with the `cpu_percent__max > 90`
/// rule and `extra` flags into `out`; returns (success, stderr).
fn training(data: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "--training",
        "--no-anonymize",
        "--label-threshold",
        "cpu_percent__max>90",
        "--split",
        "0.8",
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = export(data, &args);
    if ok {
        assert!(stdout.contains("training set:"), "{stdout}");
    }
    (ok, stderr)
}

#[test]
fn per_agent_outliers_warnings_baselines_and_per_agent_split() {
    let dir = TempDir::new("training-fleet");
    let data = fleet_store(dir.path());
    let set = |name: &str| dir.path().join(name);

    let (ok, stderr) = training(&data, &set("by-time"), &[]);
    assert!(ok, "{stderr}");
    // The warnings reach stderr too, each with its code.
    for code in [
        "agent_dominates_split",
        "class_under_1_percent",
        "empty_shard_split",
    ] {
        assert!(
            stderr.contains(&format!("warning {code}: ")),
            "{code}:\n{stderr}"
        );
    }
    let (ok, stderr) = training(&data, &set("fleet-outliers"), &["--outliers-by", "fleet"]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = training(&data, &set("by-agent"), &["--split-by", "agent"]);
    assert!(ok, "{stderr}");
    let windows = set("windows.parquet");
    export_ok(
        &data,
        &[
            "--table",
            "windows",
            "--no-anonymize",
            "--output",
            windows.to_str().unwrap(),
        ],
    );

    // --strict: the default split's warnings are errors, named, and nothing is written.
    let strict = set("strict");
    let (ok, stderr) = training(&data, &strict, &["--strict"]);
    assert!(
        !ok,
        "--strict accepted a dominated, empty-sharded split:\n{stderr}"
    );
    for error in [
        "warning agent_dominates_split: test split: 143 of its 207 rows",
        "warning class_under_1_percent: test split: class Positive has 1 of 207 rows",
        "warning empty_shard_split: 1 agent shard(s) have no train rows",
        "warning empty_shard_split: 1 agent shard(s) have no test rows",
    ] {
        assert!(stderr.contains(error), "{error}:\n{stderr}");
    }
    assert!(
        stderr.contains("--strict: 4 error(s), nothing written"),
        "{stderr}"
    );
    assert!(!strict.exists(), "--strict wrote {}", strict.display());
    // The per-agent split has none of them: --strict passes.
    let (ok, stderr) = training(
        &data,
        &set("strict-by-agent"),
        &["--strict", "--split-by", "agent"],
    );
    assert!(ok, "--strict refused the per-agent split:\n{stderr}");

    // Anonymized (the default): the warnings, cutoffs and skipped files name agents by hash only.
    for (name, extra) in [("anon-time", "time"), ("anon-agent", "agent")] {
        let out = set(name);
        let args = [
            "--training",
            "--label-threshold",
            "cpu_percent__max>90",
            "--split-by",
            extra,
            "--output",
            out.to_str().unwrap(),
        ];
        let (ok, _, stderr) = export(&data, &args);
        assert!(ok, "{stderr}");
        let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        for host in HOSTS {
            assert!(!text.contains(host), "{name}: manifest names {host}");
            assert!(
                !stderr.contains(host),
                "{name}: stderr names {host}:\n{stderr}"
            );
        }
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        let strict = m["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["fails_strict"] == true)
            .count();
        assert_eq!(
            strict,
            if extra == "time" { 4 } else { 0 },
            "{name}: {text}"
        );
    }

    let report = run_python_script(
        "training_fleet.py",
        &[
            set("by-time").to_str().unwrap(),
            set("fleet-outliers").to_str().unwrap(),
            set("by-agent").to_str().unwrap(),
            windows.to_str().unwrap(),
        ],
    );
    assert!(report.contains("OK"), "{report}");
    eprintln!("{report}");
}
