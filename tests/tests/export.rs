//! `fleetset-aggregator export` on stores written by real agents:
//! - every format (CSV, JSON Lines, Parquet, Arrow IPC, SQLite) of every table round-trips the
//!   store's values, read back with Python's csv and json, pyarrow and sqlite3;
//! - default (anonymized) exports and training sets hold no raw hostname, agent id or process
//!   name in any byte; k-anonymity drops rare processes;
//! - a training set trains seed 000's scikit-learn example and reads in pandas, pyarrow, DuckDB
//!   and polars; its manifest's checksums match; the same seed gives the same files;
//! - `--strict` refuses out-of-range data with a message naming the column.
//!
//! Needs `FLEETSET_PYTHON` (scripts/test.sh).

use fleetset_tests::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Agent ids, host name and process names that must never leave an anonymized export.
const AGENTS: [(&str, &str); 2] = [("exp-agent-alpha", "eu-1"), ("exp-agent-beta", "us-1")];
const RAW_STRINGS: [&str; 4] = [
    "exp-agent-alpha",
    "exp-agent-beta",
    "synthetic-host",
    "synthetic-proc",
];

/// A store of two synthetic agents (sites eu-1 and us-1, 500 ms windows, processes every
/// 200 ms sent with clear names and a shared fleet salt) holding at least `windows` windows per
/// agent. Returns the data directory.
fn fleet_store(dir: &Path, windows: usize) -> PathBuf {
    let mut agg = Aggregator::start(dir, &["--commit-interval", "100ms"]).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[collect]\nsend_process_names = true\nprocess_name_salt = \"fleet-salt-for-tests\"\n",
    )
    .unwrap();
    let mut agents: Vec<Proc> = AGENTS
        .iter()
        .map(|(id, site)| {
            let label = format!("site={site}");
            let extra = [
                "--config",
                config.to_str().unwrap(),
                "--aggregator",
                &agg.zmq,
                "--set",
                "collect.process_interval=200ms",
                "--label",
                &label,
            ];
            synthetic_agent_with(dir, id, ("500ms", "50ms"), &extra)
        })
        .collect();
    wait_for("agents' acked windows", Duration::from_secs(90), || {
        agents
            .iter()
            .all(|a| a.acked().len() >= windows)
            .then_some(())
    })
    .unwrap();
    for a in &mut agents {
        a.stop(Duration::from_secs(20)).unwrap();
    }
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    agg.data_dir.clone()
}

const TABLES: [&str; 3] = ["series", "windows", "processes"];
const FORMATS: [&str; 5] = ["csv", "jsonl", "parquet", "arrow", "sqlite"];

/// Exports every table in every format to `out/<prefix><table>.<format>` with `extra` flags;
/// returns each export's stdout.
fn export_all(data: &Path, out: &Path, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut outputs = Vec::new();
    for table in TABLES {
        for format in FORMATS {
            let path = out.join(format!("{prefix}{table}.{format}"));
            let mut args = vec![
                "--table",
                table,
                "--format",
                format,
                "--output",
                path.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            let stdout = export_ok(data, &args);
            assert!(
                stdout.contains("exported ") && stdout.contains("records/s"),
                "{stdout}"
            );
            outputs.push(stdout);
        }
    }
    outputs
}

#[test]
fn every_format_round_trips_and_anonymized_exports_hold_no_identifier() {
    let dir = TempDir::new("export");
    let data = fleet_store(dir.path(), 6);
    let out = dir.path().join("out");

    // Clear exports: values equal the store's, read back by tools we did not write.
    for stdout in export_all(&data, &out, "clear-", &["--no-anonymize"]) {
        assert!(stdout.contains("(NOT anonymized)"), "{stdout}");
    }
    let checked = run_python_script(
        "export_roundtrip.py",
        &[data.to_str().unwrap(), out.to_str().unwrap()],
    );
    assert!(checked.contains("OK"), "{checked}");
    eprintln!("{checked}");

    // Default exports: anonymized, in every format and table, plus a training set.
    let anon = dir.path().join("anon");
    for stdout in export_all(&data, &anon, "", &[]) {
        assert!(stdout.contains("(anonymized)"), "{stdout}");
    }
    export_ok(
        &data,
        &[
            "--training",
            "--split",
            "0.5",
            "--output",
            anon.join("training").to_str().unwrap(),
        ],
    );
    let mut files = Vec::new();
    collect_files(&anon, &mut files);
    assert!(files.len() >= 15 + 5, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let rel = f
            .strip_prefix(&anon)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for raw in RAW_STRINGS {
            assert!(!rel.contains(raw), "{raw} in the path {rel}");
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
                "{raw} in the bytes of {rel}"
            );
        }
    }
    // Compressed files are checked decoded too: every string cell and column name.
    let mut args = vec![anon.to_str().unwrap().to_string()];
    args.extend(RAW_STRINGS.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let decoded = run_python_script("no_identifiers.py", &args);
    assert!(decoded.contains("OK"), "{decoded}");
    // The salt stays in the data directory, never in the export.
    let salt = std::fs::read_to_string(data.join("export.salt")).unwrap();
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        assert!(
            !text.contains(salt.trim()),
            "the salt leaked into {}",
            f.display()
        );
    }

    // k-anonymity: both agents run the same processes (shared salt) → k=2 keeps all, k=3 none.
    let all = processes_exported(&data, &out, &[]);
    assert!(all > 0);
    assert_eq!(
        processes_exported(&data, &out, &["--k-anonymity", "2"]),
        all
    );
    assert_eq!(processes_exported(&data, &out, &["--k-anonymity", "3"]), 0);
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            collect_files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Records of an anonymized processes export with `extra` flags.
fn processes_exported(data: &Path, out: &Path, extra: &[&str]) -> u64 {
    let path = out.join("k.csv");
    let mut args = vec![
        "--table",
        "processes",
        "--format",
        "csv",
        "--overwrite",
        "--output",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let stdout = export_ok(data, &args);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("exported "))
        .unwrap_or_else(|| panic!("{stdout}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn training_set_trains_seed_000_model_and_reads_everywhere() {
    let dir = TempDir::new("training");
    let data = fleet_store(dir.path(), 30);
    let set = dir.path().join("set");
    let args = |out: &Path| -> Vec<String> {
        [
            "--training",
            "--split",
            "0.75",
            "--label-threshold",
            "net_rx_bytes_per_sec__mean>500000",
            "--lags",
            "2",
            "--seed",
            "7",
            "--output",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a = args(&set);
    let stdout = export_ok(&data, &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stdout.contains("training set:"), "{stdout}");
    let report = run_python_script(
        "train_seed000.py",
        &[
            set.to_str().unwrap(),
            dir.path().join("model.pkl").to_str().unwrap(),
        ],
    );
    assert!(report.contains("OK"), "{report}");
    eprintln!("{report}");
    assert!(dir.path().join("model.pkl").metadata().unwrap().len() > 0);

    // Reproducible: the same store, flags and seed give byte-identical files.
    let again = dir.path().join("again");
    let b = args(&again);
    export_ok(&data, &b.iter().map(String::as_str).collect::<Vec<_>>());
    for f in ["train.parquet", "test.parquet"] {
        assert_eq!(
            std::fs::read(set.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f} differs between two runs with the same seed"
        );
    }

    // A label column the store does not have is a clear error, and nothing is written.
    let missing = dir.path().join("missing");
    let (ok, _, stderr) = export(
        &data,
        &[
            "--training",
            "--label-threshold",
            "gpu_percent__mean>50",
            "--output",
            missing.to_str().unwrap(),
        ],
    );
    assert!(!ok && stderr.contains("gpu_percent__mean"), "{stderr}");
    assert!(!missing.exists());
}

#[test]
fn strict_validation_refuses_out_of_range_values() {
    let dir = TempDir::new("strict");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "50ms"]).unwrap();
    // `mem` is 1000..1012: as memory_used_percent that is out of its 0-100 range.
    let csv = dir.path().join("bad.csv");
    write_csv(&csv, 1_700_000_040, 12, 60, 6).unwrap();
    let mut p = replay_agent(
        dir.path(),
        &csv,
        "bad-host",
        &agg.zmq,
        "1m",
        &[
            "--metric-map",
            "mem=memory_used_percent",
            "--metric-map",
            "cpu=cpu_percent",
        ],
    );
    assert!(p.wait(Duration::from_secs(60)).unwrap(), "{}", p.log_text());
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let strict = dir.path().join("strict");
    let (ok, _, stderr) = export(
        &agg.data_dir,
        &[
            "--training",
            "--strict",
            "--output",
            strict.to_str().unwrap(),
        ],
    );
    assert!(!ok, "--strict accepted out-of-range data:\n{stderr}");
    assert!(
        stderr.contains("memory_used_percent__max") && stderr.contains("outside the range"),
        "{stderr}"
    );
    assert!(!strict.exists());

    // Without --strict the violation is reported in the manifest and the set is written.
    let lenient = dir.path().join("lenient");
    export_ok(
        &agg.data_dir,
        &["--training", "--output", lenient.to_str().unwrap()],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lenient.join("manifest.json")).unwrap()).unwrap();
    let violations = manifest["validation"]["violations"].as_array().unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.as_str().unwrap().contains("memory_used_percent__max")),
        "{violations:?}"
    );
    assert_eq!(
        manifest["validation"]["out_of_range"]["memory_used_percent__max"],
        12
    );
    assert_eq!(manifest["split"]["rows"]["labelled"], 11);
}
