//! `fleetset-agent replay`: timestamped measurements from CSV files, cut into windows of
//! `--window` on the files' own time axis, sent through the same pipeline as live samples
//! (stats + MinMax-LTTB → seal → spool → send). It is the load generator for the fault tests and
//! the way to backfill history. It exits once every frame is acked and prints a JSON report
//! ([`report`]). By stage: [`read`] (CSV), [`naming`] (metric names), [`time`] (the time axis
//! and its sanity check), [`send`] (windows into the pipeline), [`report`].
//!
//! **Input.** A header row, then rows. `--separator` (default `,`) may be several characters
//! (`';\t'`; `\t` written as backslash-t is a TAB); every field is trimmed of spaces and tabs, so
//! `;` also reads a `;\t` file. A one-byte separator honours CSV quoting, a longer one splits
//! each line on it (no quoting; lines up to [`read::MAX_LINE_BYTES`]).
//!
//! **Time axis.** A timestamp column (`--timestamp-column`, default `timestamp`; a header
//! matches exactly or, ignoring case, without a trailing unit, so `Timestamp [ms]` is
//! `timestamp`): a `--timestamp-format` (chrono strftime, taken as UTC), or by default RFC
//! 3339, `YYYY-MM-DD HH:MM:SS[.f]`, `YYYY-MM-DDTHH:MM:SS[.f]`, or a number in
//! `--timestamp-unit` (default `s`; a header's unit is not trusted, the check below catches a
//! wrong one). Or, for a file without one, `--start T --step D`: data row `i` (0-based) is at
//! `T + i × D`. Before anything is sent every file's axis is checked, and replay refuses (exit
//! non-zero, the file, column and likely fix named) timestamps before 1990 or more than a day
//! in the future (`--allow-any-time` replays them anyway; the frame contract still needs 1970
//! to 9999) and a timestamp column that is no time axis: of at least 8 steps, more than 10 %
//! and less than 90 % go back in time, or more than half repeat the previous time (a value
//! column). A newest-first file is a time axis (sorted).
//!
//! **Metric names.** `--metric-map COLUMN=NAME`, else the header by one rule
//! ([`fleetset_core::names::metric_name`]): a trailing unit in `[…]` or `(…)` is written out
//! after the name (`%` → `percent`, `/` → `per`, `s` → `sec`), lower case, every other run of
//! characters one `_`: `CPU usage [%]` → `cpu_usage_percent`, `Disk read throughput [KB/s]` →
//! `disk_read_throughput_kb_per_sec`, `CPU capacity provisioned [MHZ]` →
//! `cpu_capacity_provisioned_mhz`.
//!
//! **Agents.** One file: one agent, `--agent-id` or the id derived once and kept in the state
//! directory. Several files: one agent per file (`--agent-id '{stem}'` is the default; `{stem}`
//! is the file name without its extension, characters outside `[A-Za-z0-9._:-]` made `-`), each
//! with its own state (seq, last window, spool) in `<state-dir>/<agent id>/` (and
//! `<spool.dir>/<agent id>/` when `spool.dir` is set), so each resumes on its own after a kill.
//! A fixed `--agent-id` merges several files into one agent (headers in several files are
//! prefixed by their file's stem; a series merged through `--metric-map` has its timestamps
//! repeated across files counted). Host attributes: `--host cpu_count=2,memory_total_mb=8192`
//! (also `hostname`, `os`, `kernel`); without `cpu_count` and `memory_total_mb` the windows carry
//! 0 for them and the report says so.
//!
//! **Real-data defects** are handled and reported, never fatal: rows whose timestamp does not
//! parse are skipped; value cells that hold no finite number (NaN, ±∞, empty, unparseable:
//! counted by kind) are dropped before stats; rows out of time order are sorted (counted);
//! repeated timestamps are kept for stats, and the latest reading wins in the downsampled series
//! (counted); gaps longer than 3× the median step are counted and simply leave windows out.
//!
//! **Speed.** Backfill is bound by the aggregator's commits, not by acks one commit interval
//! apart: replay keeps `--max-in-flight` (default 1024) frames unacked and frames windows in
//! batches of [`send::BATCH_WINDOWS`] (one spool sync and one state write per batch), and the
//! aggregator commits as soon as `store.commit_windows` windows are buffered
//! (docs/benchmarks.md).

pub mod naming;
pub mod read;
pub mod report;
pub mod send;
pub mod time;

use crate::config::{AgentConfig, RunFlags};
use crate::run::resolve_agent_id;
use anyhow::{bail, Context, Result};
use clap::Args;
use fleetset_core::config::{ConfigCommand, Source};
pub(crate) use read::read_inputs;
pub use read::CsvRead;
use read::{open_file, parse_separator, read_agent};
use report::{AgentReport, ReplayReport};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
pub use time::TimestampUnit;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Frames unacked at once in replay unless `--max-in-flight` says otherwise (`run`'s default
/// `transport.max_in_flight` is 64): the aggregator's default `ingest.zmq.max_in_flight_per_peer`
/// and gRPC ack queue per stream, beyond which it would leave frames unread until they are
/// resent.
pub const REPLAY_MAX_IN_FLIGHT: usize = 1024;

/// Flags of `fleetset-agent replay` (plus the agent's configuration flags; `run`'s sampling
/// flags are refused).
#[derive(Debug, Args)]
#[command(
    mut_arg("sample-interval", |a| a.hide(true)),
    mut_arg("source", |a| a.hide(true)),
    mut_arg("watch-config", |a| a.hide(true)),
    mut_arg("agent-id", |a| a.help(
        "Agent id of the replayed windows, or a template: `{stem}` is each file's name without \
         its extension. Default: one file → the id kept in the state directory (created once); \
         several files → `{stem}`, one agent per file, each with its state in \
         <state-dir>/<agent id>/. [key agent_id]"
    ))
)]
pub struct ReplayFlags {
    /// CSV files to replay.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Name of the timestamp column: a header equal to it, or equal ignoring case and a
    /// trailing unit (`Timestamp [ms]` is `timestamp`).
    #[arg(long, default_value = "timestamp")]
    pub timestamp_column: String,
    /// Value columns, comma-separated, headers as written (default: every column but the
    /// timestamp).
    #[arg(long, value_delimiter = ',')]
    pub value_columns: Vec<String>,
    /// Field separator, one or more characters (`';\t'`; `\t` is a TAB, `\\` a backslash).
    /// Fields are trimmed of spaces and tabs, so `;` reads `;\t` files too. One byte: CSV
    /// quoting applies; longer: lines are split on it, no quoting.
    #[arg(long, default_value = ",", value_parser = parse_separator)]
    pub separator: String,
    /// chrono strftime format of the timestamps, taken as UTC (default: RFC 3339,
    /// `YYYY-MM-DD HH:MM:SS[.f]`, or a number in --timestamp-unit).
    #[arg(long)]
    pub timestamp_format: Option<String>,
    /// Unit of numeric timestamps (a header's unit, e.g. `[ms]`, is not trusted: timestamps
    /// before 1990 or in the future are refused, naming the unit they look like).
    #[arg(long, value_enum, default_value = "s")]
    pub timestamp_unit: TimestampUnit,
    /// For a file without a timestamp column: the time of the first data row (RFC 3339,
    /// `YYYY-MM-DD[ HH:MM:SS]` UTC, or Unix seconds); row i is at START + i × STEP. Every
    /// column is then a value column.
    #[arg(long, value_parser = time::parse_start, requires = "step", value_name = "T")]
    pub start: Option<i64>,
    /// With --start: the time between rows (`5m`, `30s`, `250ms`).
    #[arg(long, value_parser = time::parse_step, requires = "start", value_name = "D")]
    pub step: Option<i64>,
    /// Replay timestamps before 1990 or more than a day in the future instead of refusing
    /// them.
    #[arg(long)]
    pub allow_any_time: bool,
    /// Rename a column's metric: `COLUMN=NAME` (repeatable; default: the header made a name,
    /// `CPU usage [%]` → `cpu_usage_percent`).
    #[arg(long = "metric-map", value_parser = parse_map)]
    pub metric_map: Vec<(String, String)>,
    /// Host attributes of the replayed windows: `cpu_count=N`, `memory_total_mb=N`,
    /// `hostname=S`, `os=S`, `kernel=S`, comma-separated or repeated (default: hostname
    /// `replay`, cpu_count and memory_total_mb 0, flagged in the report).
    #[arg(long, value_delimiter = ',', value_parser = send::parse_host, value_name = "KEY=VALUE")]
    pub host: Vec<(String, String)>,
    /// Frames per second at most (default: as fast as the aggregator commits).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Frames spooled ahead of the acks, at most (flow control; replay also keeps the spool
    /// under half of spool.max_bytes, so it waits for a slow or absent aggregator instead of
    /// dropping frames). 0: no flow control, the spool's bound drops the oldest frames
    /// (counted).
    #[arg(long, default_value_t = 8192)]
    pub max_ahead: usize,
    /// Frames sent and not yet acked, at most; replaces transport.max_in_flight (whose `run`
    /// default is 64) in replay. Above the aggregator's ingest.zmq.max_in_flight_per_peer (1024)
    /// frames are left unread and resent.
    #[arg(long, default_value_t = REPLAY_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// MinMax-LTTB points kept per series and window [default: 60, key
    /// window.lttb.threshold].
    #[arg(long, value_name = "POINTS")]
    pub lttb_threshold: Option<usize>,
    /// The usual agent flags: aggregator, transport, encoding, window, state and spool.
    #[command(flatten)]
    pub agent: RunFlags,
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not COLUMN=NAME"))?;
    if !fleetset_proto::model::is_valid_metric_name(v) {
        return Err(format!(
            "{v:?} is not a valid metric name ([a-z][a-z0-9_.]*)"
        ));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

/// Refuses `run`'s flags that mean nothing in replay (hidden from its `--help`).
fn refuse_run_only(flags: &RunFlags) -> Result<()> {
    for (_, _, source) in &flags.overrides {
        match source {
            Source::Flag("sample-interval") => bail!(
                "--sample-interval does not apply to replay: the samples are the file's rows, \
                 spaced as its timestamps (or --step) say"
            ),
            Source::Flag("source") => {
                bail!("--source does not apply to replay: its source is the CSV files")
            }
            _ => {}
        }
    }
    if flags.watch {
        bail!("--watch-config does not apply to replay: it reads its configuration once");
    }
    Ok(())
}

/// Takes an `agent_id` template (a value with `{`) out of the configuration's flags, so the
/// configuration loads (the template is no valid id); returns the last one given.
fn take_template(flags: &mut RunFlags) -> Option<String> {
    let mut template = None;
    flags.overrides.retain(|(key, value, _)| {
        let is_template = key == "agent_id" && value.contains('{');
        if is_template {
            template = Some(value.clone());
        }
        !is_template
    });
    template
}

/// `path`'s stem as a part of an agent id: characters outside `[A-Za-z0-9._:-]` become `-`,
/// a leading `.` too.
fn stem_id(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.chars()
        .enumerate()
        .map(|(i, c)| match c {
            '.' if i == 0 => '-',
            c if c.is_ascii_alphanumeric() || "._:-".contains(c) => c,
            _ => '-',
        })
        .collect()
}

/// The agent id `template` gives `path`. Errors: a placeholder other than `{stem}`.
fn render(template: &str, path: &Path) -> Result<String> {
    let id = template.replace("{stem}", &stem_id(path));
    if id.contains('{') || id.contains('}') {
        bail!("--agent-id {template:?}: the only placeholder is {{stem}}");
    }
    Ok(id)
}

/// One replaying agent: its id (`None`: the one kept in the state directory), its files and
/// configuration.
struct Planned {
    id: Option<String>,
    files: Vec<PathBuf>,
    cfg: AgentConfig,
}

/// Splits the files into agents (see the module docs). Errors: a bad template, two files with
/// one id, an id the configuration refuses.
fn plan_agents(
    flags: &ReplayFlags,
    base: &AgentConfig,
    template: Option<String>,
) -> Result<Vec<Planned>> {
    let template = template.or_else(|| {
        (base.agent_id.is_none() && flags.files.len() > 1).then(|| "{stem}".to_string())
    });
    let Some(template) = template else {
        return Ok(vec![Planned {
            id: base.agent_id.clone(),
            files: flags.files.clone(),
            cfg: base.clone(),
        }]);
    };
    let several = flags.files.len() > 1;
    let mut seen = HashSet::new();
    flags
        .files
        .iter()
        .map(|path| {
            let id = render(&template, path)?;
            if !seen.insert(id.clone()) {
                bail!(
                    "two files are agent {id:?} (--agent-id {template:?}); give them distinct \
                     names or a template that tells them apart"
                );
            }
            let mut cfg = base.clone();
            cfg.agent_id = Some(id.clone());
            if several {
                cfg.state_dir = base.state_dir.join(&id);
                cfg.spool.dir = base.spool.dir.as_ref().map(|d| d.join(&id));
            }
            cfg.check()
                .with_context(|| format!("--agent-id {template:?} for {}", path.display()))?;
            Ok(Planned {
                id: Some(id),
                files: vec![path.clone()],
                cfg,
            })
        })
        .collect()
}

/// Reads one agent's files and checks their time axes. Errors: see [`read_agent`] and
/// [`time::Axis::check`].
fn read_checked(flags: &ReplayFlags, files: &[PathBuf]) -> Result<CsvRead> {
    let read = read_agent(flags, files, &open_file)?;
    let now = fleetset_core::time::now_ms();
    for (path, column, axis) in &read.axes {
        axis.check(
            path,
            column.as_deref(),
            flags.timestamp_unit,
            flags.allow_any_time,
            now,
        )?;
    }
    Ok(read)
}

/// Replays `flags.files` (see the module docs); returns what it found and did. Errors: bad
/// flags or configuration, an unreadable input, a refused time axis — all before anything is
/// sent — or a pipeline failure.
pub async fn replay(mut flags: ReplayFlags, shutdown: CancellationToken) -> Result<ReplayReport> {
    refuse_run_only(&flags.agent)?;
    let template = take_template(&mut flags.agent);
    let mut front = vec![(
        "transport.max_in_flight".to_string(),
        flags.max_in_flight.to_string(),
        Source::Flag("max-in-flight"),
    )];
    if let Some(t) = flags.lttb_threshold {
        front.push((
            "window.lttb.threshold".into(),
            t.to_string(),
            Source::Flag("lttb-threshold"),
        ));
    }
    // Before the other flags: `--set` still wins.
    flags.agent.overrides.splice(0..0, front);
    let base = flags.agent.load()?;
    let agents = plan_agents(&flags, &base, template)?;
    let host = send::host_info(&flags.host, &base)?;
    // With several agents every file is read and checked once before anything is sent, then
    // again when its turn comes (only one agent's samples are held at a time).
    if agents.len() > 1 {
        for a in &agents {
            read_checked(&flags, &a.files)?;
        }
    }
    let mut report = ReplayReport::default();
    let unknown = send::unknown_host_attributes(&host);
    if !unknown.is_empty() {
        let w = format!(
            "host attributes {} unknown: the replayed windows carry 0 for them; pass --host \
             cpu_count=N,memory_total_mb=M",
            unknown.join(", ")
        );
        warn!("{w}");
        report.warnings.push(w);
    }
    for a in agents {
        let read = read_checked(&flags, &a.files)?;
        let agent_id = match &a.id {
            Some(id) => id.clone(),
            None => resolve_agent_id(&a.cfg)?,
        };
        let mut counts = read.report.clone();
        if counts.repeated_across_files > 0 {
            let w = format!(
                "agent {agent_id}: {} samples of series merged from several files repeat a \
                 timestamp another file gave (one agent per file: --agent-id '{{stem}}')",
                counts.repeated_across_files
            );
            warn!("{w}");
            report.warnings.push(w);
        }
        let sent = send::send(&a.cfg, &agent_id, host.clone(), read, &flags, &shutdown).await?;
        counts.windows = sent.windows;
        counts.windows_already_sent = sent.already_sent;
        counts.sum_bad_values();
        report.total.add(&counts);
        report.agents.push(AgentReport {
            agent_id,
            files: a.files.iter().map(|f| f.display().to_string()).collect(),
            counts,
            host_attributes_unknown: unknown.iter().map(|s| s.to_string()).collect(),
        });
        if sent.interrupted {
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ReplayFlags,
    }

    /// `--help` lists every default and none of `run`'s sampling flags.
    #[test]
    fn help_shows_defaults_and_hides_run_only_flags() {
        let help = Cli::command().render_long_help().to_string();
        for want in [
            "[default: timestamp]",
            "[default: ,]",
            "[default: s]",
            "[default: 8192]",
            &format!("[default: {REPLAY_MAX_IN_FLIGHT}]"),
            &format!(
                "[default: {}, key window.lttb.threshold]",
                fleetset_core::downsample::Downsampler::default().threshold
            ),
            "default: \"5m\"",
            "trimmed",
            "{stem}",
        ] {
            assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
        }
        for hidden in ["--sample-interval", "--source", "--watch-config"] {
            assert!(!help.contains(hidden), "--help lists {hidden}:\n{help}");
        }
    }

    #[test]
    fn run_only_flags_are_refused() {
        for args in [
            ["--sample-interval", "10s"],
            ["--source", "synthetic"],
            ["--watch-config", "--window=1h"],
        ] {
            let flags = crate::fuzzing::replay_flags(&[args[0], args[1], "a.csv"]).unwrap();
            let e = refuse_run_only(&flags.agent).unwrap_err().to_string();
            assert!(e.contains(args[0]) && e.contains("does not apply"), "{e}");
        }
    }

    #[test]
    fn agent_id_templates() {
        assert_eq!(stem_id(Path::new("/d/VM 12.csv")), "VM-12");
        assert_eq!(stem_id(Path::new("/d/.hidden.csv")), "-hidden");
        assert_eq!(
            render("vm-{stem}", Path::new("rnd/2013-7/1.csv")).unwrap(),
            "vm-1"
        );
        assert!(render("{host}", Path::new("a.csv"))
            .unwrap_err()
            .to_string()
            .contains("{stem}"));
        let mut flags = crate::fuzzing::replay_flags(&[
            "--agent-id",
            "{stem}",
            "--state-dir",
            "/s",
            "a.csv",
            "b/c.csv",
        ])
        .unwrap();
        let template = take_template(&mut flags.agent);
        assert_eq!(template.as_deref(), Some("{stem}"));
        let base = flags.agent.load().unwrap();
        let agents = plan_agents(&flags, &base, template).unwrap();
        let ids: Vec<_> = agents.iter().map(|a| a.id.clone().unwrap()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(agents[1].cfg.state_dir, Path::new("/s/c"));
        assert_eq!(agents[1].cfg.spool_dir(), Path::new("/s/c/spool"));
        // Several files without --agent-id: `{stem}`; with a fixed id: one merged agent.
        let flags = crate::fuzzing::replay_flags(&["x/1.csv", "y/1.csv"]).unwrap();
        let base = flags.agent.load().unwrap();
        let e = plan_agents(&flags, &base, None).err().unwrap().to_string();
        assert!(e.contains("two files are agent \"1\""), "{e}");
        let flags = crate::fuzzing::replay_flags(&["--agent-id", "one", "a.csv", "b.csv"]).unwrap();
        let base = flags.agent.load().unwrap();
        let agents = plan_agents(&flags, &base, None).unwrap();
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].files.len(), 2);
    }

    /// Timestamps at both ends of i64 (as the `replay_csv` fuzz target feeds them) overflowed the
    /// step (`ts - prev`), the gap threshold (`3 × median`) and, when windowed, `window_start`
    /// and `start + window_ms`. Outside the contract's `[0, MAX_TIME_MS)` they are bad
    /// timestamps, counted and never windowed.
    #[test]
    fn timestamps_outside_the_contract_are_counted_and_never_windowed() {
        let max_s = fleetset_proto::contract::MAX_TIME_MS / 1000;
        let csv = format!(
            "timestamp,value\n-1e300,1\n1e300,2\n0,3\n4e18,4\n-1,5\n{max_s},6\n{},7\n",
            max_s + 1
        );
        let flags = crate::fuzzing::replay_flags(&["input.csv"]).unwrap();
        let read = crate::fuzzing::replay_csv(&flags, csv.as_bytes()).unwrap();
        assert_eq!(read.report.rows, 7);
        assert_eq!(
            read.report.bad_timestamps, 5,
            "±1e300, 4e18, -1 and past 9999"
        );
        let kept: Vec<i64> = read.samples.iter().map(|s| s.0).collect();
        assert_eq!(kept, vec![0, max_s * 1000]);
    }

    /// The shapes of the fixtures in tests/data/replay/, read in memory.
    #[test]
    fn real_file_shapes_read() {
        let bitbrains = "Timestamp [ms];\tCPU cores;\tCPU usage [%];\tMemory usage [KB]\n\
                         1376314846;\t4;\t2.5;\t6129274.5\n1376315146;\t4;\tnan;\t\n";
        let flags = crate::fuzzing::replay_flags(&["--separator", ";\\t", "vm.csv"]).unwrap();
        let read = crate::fuzzing::replay_csv(&flags, bitbrains.as_bytes()).unwrap();
        let mut metrics = read.metrics.clone();
        metrics.sort();
        assert_eq!(
            metrics,
            ["cpu_cores", "cpu_usage_percent", "memory_usage_kb"]
        );
        assert_eq!(
            (
                read.report.rows,
                read.report.nan_values,
                read.report.empty_values
            ),
            (2, 1, 1)
        );
        assert_eq!(read.samples[0].0, 1_376_314_846_000);

        let collectd = "epoch,value\n1700000000.123,nan\n1700000010.123,0.5\n";
        let flags =
            crate::fuzzing::replay_flags(&["--timestamp-column", "epoch", "load.csv"]).unwrap();
        let read = crate::fuzzing::replay_csv(&flags, collectd.as_bytes()).unwrap();
        assert_eq!(read.metrics, ["value"]);
        assert_eq!(read.report.nan_values, 1);
        assert_eq!(read.samples[0].0, 1_700_000_000_123);

        let datacenter = "cpu,mem\n1,2\n3,4\n5,6\n";
        let flags =
            crate::fuzzing::replay_flags(&["--start", "2020-01-01", "--step", "5m", "dc.csv"])
                .unwrap();
        let read = crate::fuzzing::replay_csv(&flags, datacenter.as_bytes()).unwrap();
        let times: Vec<i64> = read.samples.iter().map(|s| s.0).collect();
        let t0 = 1_577_836_800_000;
        assert_eq!(
            times,
            [
                t0,
                t0,
                t0 + 300_000,
                t0 + 300_000,
                t0 + 600_000,
                t0 + 600_000
            ]
        );
        let e = crate::fuzzing::replay_csv(
            &crate::fuzzing::replay_flags(&["dc.csv"]).unwrap(),
            datacenter.as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--start T --step D"), "{e}");
    }
}
