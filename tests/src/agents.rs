//! Agents the tests run: `fleetset-agent run` on the synthetic source, `fleetset-agent replay`
//! of a CSV, the CSV itself, the agent's status counters.

use crate::events::events_path;
use crate::process::{bin, Proc};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Counters of the agent using `state_dir`, from its status file (`None` before the first write).
pub fn agent_counters(state_dir: &Path) -> Option<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("status.json")).ok()?).ok()?;
    Some(v["counters"].clone())
}

/// Writes a CSV `timestamp,cpu,mem` with `windows` windows of `window_s` seconds starting at
/// `start_s` (Unix s), `rows_per_window` rows each; values are a pure function of the row.
pub fn write_csv(
    path: &Path,
    start_s: i64,
    windows: usize,
    window_s: i64,
    rows_per_window: usize,
) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "timestamp,cpu,mem")?;
    let step = window_s / rows_per_window as i64;
    for w in 0..windows as i64 {
        for r in 0..rows_per_window as i64 {
            let t = start_s + w * window_s + r * step;
            writeln!(f, "{t},{},{}", (t % 97) as f64 * 0.5, 1000 + (t % 13))?;
        }
    }
    Ok(())
}

/// A `fleetset-agent run` on the deterministic synthetic source (50 ms samples, `window`
/// windows, label `site=<site>`), state in `dir/<id>`, log in `dir/<id>.log`.
pub fn synthetic_agent(dir: &Path, id: &str, site: &str, endpoint: &str, window: &str) -> Proc {
    let label = format!("site={site}");
    synthetic_agent_with(
        dir,
        id,
        (window, "50ms"),
        &["--aggregator", endpoint, "--label", &label],
    )
}

/// `fleetset-agent run` on the synthetic source as `--agent-id id`, with state in `dir/<id>`,
/// `--window` and `--sample-interval` from `(window, sample)`, then `extra`; stderr in
/// `dir/<id>.log`.
pub fn synthetic_agent_with(
    dir: &Path,
    id: &str,
    (window, sample): (&str, &str),
    extra: &[&str],
) -> Proc {
    let state = dir.join(id);
    let mut args = vec![
        "run",
        "--agent-id",
        id,
        "--state-dir",
        state.to_str().unwrap_or_default(),
        "--source",
        "synthetic",
        "--window",
        window,
        "--sample-interval",
        sample,
    ];
    args.extend_from_slice(extra);
    agent(dir, id, &args)
}

/// A `fleetset-agent` process with `args` (a `run` or `replay` command line), stderr in
/// `dir/<log>.log`, delivery events in `dir/<log>.events.jsonl` ([`Proc::events`]).
pub fn agent(dir: &Path, log: &str, args: &[&str]) -> Proc {
    let log = dir.join(format!("{log}.log"));
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--events".into(), events_path(&log).display().to_string()]);
    Proc::spawn(&bin("fleetset-agent"), &args, log).expect("spawn fleetset-agent")
}

/// What a finished `fleetset-agent replay` said: its exit, its JSON report (stdout; `Null`
/// when it printed none) and its stderr (the error of a refused replay).
pub struct ReplayRun {
    /// It exited with status 0.
    pub ok: bool,
    /// The JSON report.
    pub report: serde_json::Value,
    /// Its stderr (log lines, and the error when it failed).
    pub stderr: String,
}

/// Runs `fleetset-agent <args>` (a `replay` command line) to its end, at most `timeout` (then
/// it is killed and the run fails); stderr in `dir/<log>.log`, the report in
/// `dir/<log>.report.json`, delivery events in `dir/<log>.events.jsonl`.
pub fn replay_to_end(dir: &Path, log: &str, args: &[&str], timeout: Duration) -> ReplayRun {
    let report = dir.join(format!("{log}.report.json"));
    let out = std::fs::File::create(&report).expect("create the report file");
    let log_path = dir.join(format!("{log}.log"));
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--events".into(),
        events_path(&log_path).display().to_string(),
    ]);
    let mut p = Proc::spawn_with_stdout(&bin("fleetset-agent"), &args, log_path, out)
        .expect("spawn fleetset-agent");
    let ok = p
        .wait(timeout)
        .unwrap_or_else(|e| panic!("{e}:\n{}", p.log_text()));
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    ReplayRun {
        ok,
        report: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        stderr: p.log_text(),
    }
}

/// A `fleetset-agent replay` of `csv` as `agent_id` into the ZeroMQ `endpoint` with `window`
/// windows and the `extra` flags; state in `dir/<agent_id>`, log in `dir/<agent_id>.log`.
pub fn replay_agent(
    dir: &Path,
    csv: &Path,
    agent_id: &str,
    endpoint: &str,
    window: &str,
    extra: &[&str],
) -> Proc {
    let state = dir.join(agent_id);
    let mut args = vec![
        "replay",
        csv.to_str().unwrap_or_default(),
        "--agent-id",
        agent_id,
        "--state-dir",
        state.to_str().unwrap_or_default(),
        "--aggregator",
        endpoint,
        "--window",
        window,
    ];
    args.extend_from_slice(extra);
    agent(dir, agent_id, &args)
}

/// `tests/data/replay`: small files written for fleetset in the shapes of real traces
/// (Bitbrains per-VM files, collectd CSV, a trace without timestamps; see its README.md).
pub fn replay_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/replay")
}

/// `tests/data/nab`: the Numenta Anomaly Benchmark files the tests replay (a subset of NAB's
/// `data/`, unmodified, MIT; see its README.md), found from this crate's manifest directory.
pub fn nab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/nab")
}

/// Every NAB file (`tests/data/nab/*.csv`), sorted; panics with fewer than `at_least`.
pub fn nab_files(at_least: usize) -> Vec<PathBuf> {
    let nab = nab_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&nab)
        .unwrap_or_else(|e| panic!("{}: {e}", nab.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    assert!(files.len() >= at_least, "NAB files: {files:?}");
    files
}

/// Starts an aggregator in `dir` (ZeroMQ only, 50 ms commits) and replays each of `files` into
/// it in `window` windows, as agent `nab-<stem>`; returns the aggregator and each file's
/// delivery events. Panics when a replay fails or outlasts 120 s.
pub fn replay_nab_files(
    dir: &Path,
    files: &[PathBuf],
    window: &str,
) -> (crate::process::Aggregator, Vec<Vec<crate::events::Event>>) {
    let agg = crate::process::Aggregator::start(
        dir,
        &[
            "--commit-interval",
            "50ms",
            "--set",
            "ingest.grpc.enabled=false",
        ],
    )
    .unwrap();
    let events = files
        .iter()
        .map(|f| {
            let stem = f.file_stem().unwrap().to_string_lossy().replace('_', "-");
            let mut p = replay_agent(dir, f, &format!("nab-{stem}"), &agg.zmq, window, &[]);
            assert!(
                p.wait(Duration::from_secs(120)).unwrap(),
                "replay of {} failed:\n{}",
                f.display(),
                p.log_text()
            );
            p.events()
        })
        .collect();
    (agg, events)
}
