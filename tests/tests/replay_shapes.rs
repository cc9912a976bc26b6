//! `fleetset-agent replay` on the shapes of real traces (tests/data/replay/, written for fleetset
//! with the quirks of the real files: `;\t` separators and epoch seconds under a `[ms]` header
//! in Bitbrains-like per-VM files, collectd's `epoch,value` with a `nan` first row, a
//! datacenter-like trace without a timestamp column), the real binary into a real aggregator:
//! the JSON report, the stored tables, refusals of time axes that are none, several files as one
//! agent each (each resuming from its own state after a kill), and a backfill that is not held to
//! the commit interval.

use fleetset_aggregator::store::reader::{self, Query, StoredWindow};
use fleetset_tests::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const BITBRAINS_ROWS: u64 = 36;

fn aggregator(dir: &Path, commit_interval: &str) -> Aggregator {
    Aggregator::start(
        dir,
        &[
            "--commit-interval",
            commit_interval,
            "--set",
            "ingest.grpc.enabled=false",
        ],
    )
    .unwrap()
}

/// Every stored window of `agent`, by window start.
fn windows_of(data_dir: &Path, agent: &str) -> Vec<StoredWindow> {
    let query = Query {
        agents: vec![agent.to_string()],
        ..Default::default()
    };
    let mut w = reader::windows(data_dir, &query).unwrap();
    w.sort_by_key(|w| w.snapshot.start);
    w
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// A Bitbrains-like file's rows: `(ts_s, column → value text)`, split on `;\t`.
fn bitbrains_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let split = |l: &str| l.split(";\t").map(str::to_string).collect::<Vec<_>>();
    let header = split(lines.next().unwrap());
    (header, lines.map(split).collect())
}

#[test]
fn bitbrains_vm_files_replay_as_one_agent_each_with_readable_metric_names() {
    let dir = TempDir::new("replay-bitbrains");
    let mut agg = aggregator(dir.path(), "50ms");
    let data = replay_data_dir().join("bitbrains");
    let files: Vec<_> = ["1.csv", "2.csv", "3.csv"]
        .iter()
        .map(|f| data.join(f))
        .collect();
    let state = dir.path().join("st");
    let mut args = vec!["replay"];
    args.extend(files.iter().map(|f| path_str(f)));
    args.extend([
        "--separator",
        ";\\t", // backslash-t, as typed in a shell between single quotes
        "--state-dir",
        path_str(&state),
        "--aggregator",
        &agg.zmq,
        "--window",
        "1h",
        "--host",
        "cpu_count=4,memory_total_mb=65536",
    ]);
    let run = replay_to_end(dir.path(), "vms", &args, Duration::from_secs(120));
    assert!(run.ok, "replay failed:\n{}", run.stderr);
    let report = &run.report;
    let agents = report["agents"].as_array().unwrap();
    let ids: Vec<&str> = agents
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "{report}");
    assert_eq!(u(report, "rows"), 3 * BITBRAINS_ROWS);
    assert_eq!(report["warnings"], Value::Array(vec![]), "{report}");
    for a in agents {
        assert_eq!(u(a, "rows"), BITBRAINS_ROWS, "{a}");
        assert_eq!(u(a, "windows"), 4, "{a}");
        assert_eq!(u(a, "repeated_timestamps"), 0, "{a}");
        assert_eq!(a["host_attributes_unknown"], Value::Array(vec![]));
        let bad = if a["agent_id"] == "2" { 1 } else { 0 };
        assert_eq!(u(a, "empty_values"), bad, "{a}");
        assert_eq!(u(a, "nan_values"), bad, "{a}");
        assert_eq!(u(a, "unparseable_values"), bad, "{a}");
        assert_eq!(u(a, "bad_values"), 3 * bad, "{a}");
        // Each agent has its own state (seq, last window, spool).
        let own = state.join(a["agent_id"].as_str().unwrap());
        assert!(own.join("next_seq").is_file() && own.join("spool").is_dir());
    }
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    for (file, id) in files.iter().zip(ids) {
        let (header, rows) = bitbrains_rows(file);
        let stored = windows_of(&agg.data_dir, id);
        assert_eq!(stored.len(), 4, "agent {id}");
        // Epoch seconds under the `[ms]` header, read as seconds: 2013, hour windows.
        let first_s: i64 = rows[0][0].parse().unwrap();
        assert_eq!(
            stored[0].snapshot.start,
            first_s * 1000 / 3_600_000 * 3_600_000
        );
        let cpu_col = header.iter().position(|h| h == "CPU usage [%]").unwrap();
        let mut samples = 0;
        for w in &stored {
            let s = &w.snapshot;
            assert_eq!((s.host.cpu_count, s.host.memory_total_mb), (4, 65536));
            let mut names: Vec<&str> = s.stats.keys().map(String::as_str).collect();
            names.sort();
            assert_eq!(
                names,
                [
                    "cpu_capacity_provisioned_mhz",
                    "cpu_cores",
                    "cpu_usage_mhz",
                    "cpu_usage_percent",
                    "disk_read_throughput_kb_per_sec",
                    "disk_write_throughput_kb_per_sec",
                    "memory_capacity_provisioned_kb",
                    "memory_usage_kb",
                    "network_received_throughput_kb_per_sec",
                    "network_transmitted_throughput_kb_per_sec",
                ],
                "agent {id}"
            );
            // One VM per series: this file's rows only, and their exact maximum.
            let in_window: Vec<f64> = rows
                .iter()
                .filter(|r| {
                    let t: i64 = r[0].parse().unwrap();
                    (s.start..s.end).contains(&(t * 1000))
                })
                .map(|r| r[cpu_col].parse().unwrap())
                .collect();
            let cpu = &s.stats["cpu_usage_percent"];
            assert_eq!(cpu.count as usize, in_window.len(), "agent {id}");
            assert_eq!(cpu.max, in_window.iter().cloned().fold(f64::MIN, f64::max));
            samples += cpu.count;
        }
        assert_eq!(samples, BITBRAINS_ROWS);
        if id == "2" {
            // The empty cell, the NaN and the `n/a` are left out of their series' stats.
            let count = |m: &str| {
                stored
                    .iter()
                    .map(|w| w.snapshot.stats[m].count)
                    .sum::<u64>()
            };
            assert_eq!(count("disk_read_throughput_kb_per_sec"), BITBRAINS_ROWS - 1);
            assert_eq!(
                count("network_received_throughput_kb_per_sec"),
                BITBRAINS_ROWS - 1
            );
            assert_eq!(
                count("network_transmitted_throughput_kb_per_sec"),
                BITBRAINS_ROWS - 1
            );
        }
    }
}

/// A fixed `--agent-id` merges the files into one agent; `--metric-map` onto one name merges
/// their series, and the report counts the timestamps the files share (the old report said 0).
#[test]
fn files_merged_into_one_series_have_their_shared_timestamps_counted() {
    let dir = TempDir::new("replay-merged");
    let mut agg = aggregator(dir.path(), "50ms");
    let data = replay_data_dir().join("bitbrains");
    let (one, two) = (data.join("1.csv"), data.join("2.csv"));
    let state = dir.path().join("st");
    let args = [
        "replay",
        path_str(&one),
        path_str(&two),
        "--separator",
        ";\t", // a real TAB works too
        "--agent-id",
        "merged",
        "--metric-map",
        "CPU usage [%]=cpu",
        "--value-columns",
        "CPU usage [%],CPU cores",
        "--state-dir",
        path_str(&state),
        "--aggregator",
        &agg.zmq,
        "--window",
        "1h",
    ];
    let run = replay_to_end(dir.path(), "merged", &args, Duration::from_secs(120));
    assert!(run.ok, "replay failed:\n{}", run.stderr);
    let a = &run.report["agents"][0];
    assert_eq!(a["agent_id"], "merged");
    assert_eq!(u(a, "repeated_across_files"), BITBRAINS_ROWS, "{a}");
    let warnings = run.report["warnings"].to_string();
    assert!(
        warnings.contains("repeat a timestamp") && warnings.contains("host attributes"),
        "{warnings}"
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let stored = windows_of(&agg.data_dir, "merged");
    let count = |m: &str| {
        stored
            .iter()
            .map(|w| w.snapshot.stats[m].count)
            .sum::<u64>()
    };
    assert_eq!(count("cpu"), 2 * BITBRAINS_ROWS);
    // A header both files have, not mapped: one series per file, prefixed by the stem.
    assert_eq!(count("m_1_cpu_cores"), BITBRAINS_ROWS);
    assert_eq!(count("m_2_cpu_cores"), BITBRAINS_ROWS);
}

#[test]
fn a_collectd_csv_with_a_nan_first_row() {
    let dir = TempDir::new("replay-collectd");
    let mut agg = aggregator(dir.path(), "50ms");
    let file = replay_data_dir().join("collectd/cpu-0/cpu-user-2024-01-15");
    let state = dir.path().join("st");
    let args = [
        "replay",
        path_str(&file),
        "--timestamp-column",
        "epoch",
        "--agent-id",
        "collectd-host",
        "--state-dir",
        path_str(&state),
        "--aggregator",
        &agg.zmq,
        "--window",
        "10m",
    ];
    let run = replay_to_end(dir.path(), "collectd", &args, Duration::from_secs(120));
    assert!(run.ok, "replay failed:\n{}", run.stderr);
    let r = &run.report;
    assert_eq!((u(r, "rows"), u(r, "windows")), (360, 6), "{r}");
    assert_eq!((u(r, "nan_values"), u(r, "bad_values")), (1, 1), "{r}");
    assert_eq!(u(r, "bad_timestamps"), 0, "{r}");
    // No --host: flagged, not silent.
    assert_eq!(
        r["agents"][0]["host_attributes_unknown"],
        serde_json::json!(["cpu_count", "memory_total_mb"])
    );
    assert!(
        r["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("cpu_count, memory_total_mb unknown")),
        "{r}"
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let stored = windows_of(&agg.data_dir, "collectd-host");
    let t0 = 1_705_276_800_000; // 2024-01-15T00:00:00Z
    let starts: Vec<i64> = stored.iter().map(|w| w.snapshot.start).collect();
    assert_eq!(starts, (0..6).map(|k| t0 + k * 600_000).collect::<Vec<_>>());
    let counts: Vec<u64> = stored
        .iter()
        .map(|w| w.snapshot.stats["value"].count)
        .collect();
    assert_eq!(counts, [59, 60, 60, 60, 60, 60], "the nan is left out");
    let first = &stored[0].snapshot;
    assert_eq!(
        first.stats["value"].first, 1.75,
        "the first reading after the nan"
    );
    assert_eq!(first.host.cpu_count, 0);
}

#[test]
fn a_trace_without_timestamps_replays_at_a_fixed_step() {
    let dir = TempDir::new("replay-datacenter");
    let mut agg = aggregator(dir.path(), "50ms");
    let file = replay_data_dir().join("datacenter.csv");
    let state = dir.path().join("st");
    let base = [
        "replay",
        path_str(&file),
        "--agent-id",
        "dc",
        "--state-dir",
        path_str(&state),
        "--aggregator",
        &agg.zmq,
        "--window",
        "1h",
    ];
    let run = replay_to_end(dir.path(), "no-start", &base, Duration::from_secs(60));
    assert!(!run.ok, "a file without a timestamp column was replayed");
    assert!(
        run.stderr.contains("no column \"timestamp\"") && run.stderr.contains("--start T --step D"),
        "{}",
        run.stderr
    );
    let mut args = base.to_vec();
    args.extend(["--start", "2019-12-01T00:00:00Z", "--step", "5m"]);
    let run = replay_to_end(dir.path(), "fixed-step", &args, Duration::from_secs(120));
    assert!(run.ok, "replay failed:\n{}", run.stderr);
    assert_eq!((u(&run.report, "rows"), u(&run.report, "windows")), (48, 4));
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let stored = windows_of(&agg.data_dir, "dc");
    let t0 = 1_575_158_400_000; // 2019-12-01T00:00:00Z
    let starts: Vec<i64> = stored.iter().map(|w| w.snapshot.start).collect();
    assert_eq!(
        starts,
        (0..4).map(|k| t0 + k * 3_600_000).collect::<Vec<_>>()
    );
    for w in &stored {
        let mut names: Vec<&str> = w.snapshot.stats.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "cpu_utilization_percent",
                "memory_utilization_percent",
                "network_in_mb_per_sec",
                "network_out_mb_per_sec"
            ]
        );
        assert!(w.snapshot.stats.values().all(|s| s.count == 12));
    }
    // Row 0 at the start, row 47 at 3 h 55 min.
    let last = &stored[3].snapshot.stats["cpu_utilization_percent"];
    assert_eq!(last.last, (20 + (47 * 7) % 50) as f64);
}

/// Time axes that are none are refused before anything is framed, naming the likely fix; so
/// is `run`'s `--sample-interval`, which means nothing in replay.
#[test]
fn time_axes_that_are_none_are_refused_with_the_fix_named() {
    let dir = TempDir::new("replay-refused");
    let file = replay_data_dir().join("bitbrains/1.csv");
    let state = dir.path().join("st");
    let base = [
        "replay",
        path_str(&file),
        "--separator",
        ";\\t",
        "--agent-id",
        "vm1",
        "--state-dir",
        path_str(&state),
        "--aggregator",
        "tcp://127.0.0.1:9", // never reached
    ];
    for (extra, want) in [
        (
            &["--timestamp-unit", "ms"][..],
            "timestamps look like seconds: pass --timestamp-unit s",
        ),
        (
            &["--timestamp-column", "CPU usage [%]"][..],
            "column \"CPU usage [%]\" is not a time axis",
        ),
        (
            &["--sample-interval", "10s"][..],
            "--sample-interval does not apply to replay",
        ),
        (&["--host", "cpus=4"][..], "unknown host attribute"),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let run = replay_to_end(dir.path(), "refused", &args, Duration::from_secs(60));
        assert!(!run.ok, "{extra:?} was accepted");
        assert!(run.stderr.contains(want), "{extra:?}: {}", run.stderr);
        assert!(
            !state.join("spool").exists(),
            "{extra:?}: something was spooled"
        );
    }
}

/// Several files, one agent each, SIGKILLed mid-way and run again: every window of each agent
/// is stored exactly once, each resuming from its own seq and spool.
#[test]
fn several_agents_resume_after_a_kill_each_from_its_own_state() {
    const WINDOWS: usize = 3000;
    const T0: i64 = 1_700_000_000 - 1_700_000_000 % 3600;
    let dir = TempDir::new("replay-resume");
    let agg = aggregator(dir.path(), "50ms");
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    write_csv(&a, T0, WINDOWS, 60, 2).unwrap();
    write_csv(&b, T0, WINDOWS, 60, 2).unwrap();
    let state = dir.path().join("st");
    let args: Vec<String> = [
        "replay",
        path_str(&a),
        path_str(&b),
        "--state-dir",
        path_str(&state),
        "--aggregator",
        &agg.zmq,
        "--window",
        "1m",
        "--lttb-threshold",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut first = agent(
        dir.path(),
        "first",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    first.wait_acked(200, Duration::from_secs(120)).unwrap();
    assert!(
        first.is_running(),
        "the replay ended before it could be killed"
    );
    first.signal("KILL").unwrap();
    let _ = first.wait(Duration::from_secs(10));

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = replay_to_end(dir.path(), "second", &args, Duration::from_secs(300));
    assert!(run.ok, "second replay failed:\n{}", run.stderr);
    let mut agg = agg;
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let mut resumed = 0;
    for (i, id) in ["a", "b"].iter().enumerate() {
        let r = &run.report["agents"][i];
        assert_eq!(r["agent_id"], *id);
        assert_eq!(
            u(r, "windows") + u(r, "windows_already_sent"),
            WINDOWS as u64,
            "{r}"
        );
        resumed += u(r, "windows_already_sent");
        let stored = stored_windows(&agg.data_dir, id).unwrap();
        let starts: Vec<i64> = stored.iter().map(|s| s.0).collect();
        let want: Vec<i64> = (0..WINDOWS as i64).map(|w| (T0 + w * 60) * 1000).collect();
        assert_eq!(starts, want, "agent {id}: every window exactly once");
        let mut seqs: Vec<u64> = stored.iter().map(|s| s.1).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), WINDOWS, "agent {id}: a seq per window");
    }
    assert!(resumed > 0, "the second run framed everything again");
}

/// A backfill is committed in batches as it arrives, not once per commit interval: 4,000
/// windows against a 10 s interval finish in well under the 10 minutes that 64 acks per
/// interval (the old bound) would take.
#[test]
fn a_backfill_is_not_bound_by_the_commit_interval() {
    const WINDOWS: usize = 4000;
    let dir = TempDir::new("replay-backfill");
    let mut agg = aggregator(dir.path(), "10s");
    let csv = dir.path().join("month.csv");
    write_csv(&csv, 1_700_000_000 - 1_700_000_000 % 3600, WINDOWS, 300, 5).unwrap();
    let state = dir.path().join("st");
    let args = [
        "replay",
        path_str(&csv),
        "--agent-id",
        "backfill",
        "--state-dir",
        path_str(&state),
        "--aggregator",
        &agg.zmq,
    ];
    let started = Instant::now();
    let run = replay_to_end(dir.path(), "backfill", &args, Duration::from_secs(300));
    let took = started.elapsed();
    assert!(run.ok, "replay failed:\n{}", run.stderr);
    assert_eq!(u(&run.report, "windows"), WINDOWS as u64);
    assert!(
        took < Duration::from_secs(90),
        "{WINDOWS} windows took {took:?}: still bound by the commit interval?"
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    assert_eq!(
        stored_windows(&agg.data_dir, "backfill").unwrap().len(),
        WINDOWS
    );
    eprintln!("{WINDOWS} five-minute windows in {took:?}");
}
