//! Harness for the cross-crate tests: starts the real `fleetset-aggregator` and
//! `fleetset-agent` binaries on loopback (port 0, addresses read from the aggregator's ready
//! file), bounds every wait with a timeout, kills what it started on drop, and reads the Parquet
//! store back with the parquet crate.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, done by
//! `scripts/test.sh`).

#![warn(missing_docs)]

mod events;
pub use events::*;

use anyhow::{bail, Context, Result};
use arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary next to the test executable (`target/<profile>/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `fleetset-<tag>-<pid>-<nanos>`.
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!("fleetset-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    /// Removes the directory, except when the test is failing: then it is kept for inspection.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: logs and data kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) on drop if still running; stderr goes to a log file.
pub struct Proc {
    child: Child,
    /// The process's stderr log.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `program args…` with stderr to `log`; its own `/metrics` endpoint (if it serves
    /// one) on a loopback port chosen by the OS unless `args` say otherwise.
    pub fn spawn(program: &Path, args: &[String], log: PathBuf) -> Result<Proc> {
        let err = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .env("RUST_LOG", "info")
            .env("FLEETSET_METRICS_LISTEN", "127.0.0.1:0")
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;
        Ok(Proc { child, log })
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -{signal} {} failed", self.child.id());
        Ok(())
    }

    /// Waits up to `timeout` for exit; returns whether it exited successfully.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let status = wait_for("process exit", timeout, || {
            self.child.try_wait().ok().flatten()
        })?;
        Ok(status.success())
    }

    /// SIGTERM, then wait up to `timeout`; fails if it does not exit cleanly.
    pub fn stop(&mut self, timeout: Duration) -> Result<()> {
        self.signal("TERM")?;
        let ok = self.wait(timeout)?;
        anyhow::ensure!(
            ok,
            "{} exited with an error; log:\n{}",
            self.log.display(),
            self.log_text()
        );
        Ok(())
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `fleetset-aggregator serve`.
pub struct Aggregator {
    /// The process.
    pub proc: Proc,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Bound ZeroMQ endpoint, `tcp://127.0.0.1:PORT` (empty when turned off).
    pub zmq: String,
    /// Bound ZeroMQ PUB endpoint for live consumers (empty when turned off).
    pub zmq_pub: String,
    /// Bound gRPC endpoint, `http://127.0.0.1:PORT` (empty when turned off).
    pub grpc: String,
    /// Bound OTLP/gRPC receiver, `http://127.0.0.1:PORT` (empty when turned off).
    pub otlp: String,
    /// The aggregator's process id.
    pub pid: u32,
    /// Bound own-telemetry HTTP address (`/metrics`, `/healthz`), `127.0.0.1:PORT` (empty when
    /// turned off).
    pub metrics: String,
}

impl Aggregator {
    /// Starts an aggregator with data in `dir/data`, on loopback port 0 unless `extra` names
    /// `--zmq-bind` / `--grpc-listen`, plus the other `extra` flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Result<Aggregator> {
        let data_dir = dir.join("data");
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            data_dir.to_str().context("utf8 path")?.into(),
        ];
        args.extend([
            "--ready-file".into(),
            ready.to_str().context("utf8 path")?.into(),
        ]);
        // Loopback, port 0, unless the caller names the address.
        for (flag, default) in [
            ("--zmq-bind", "tcp://127.0.0.1:0"),
            ("--grpc-listen", "127.0.0.1:0"),
            ("--zmq-pub", "tcp://127.0.0.1:0"),
            ("--otlp-listen", "127.0.0.1:0"),
        ] {
            if !extra.contains(&flag) {
                args.extend([flag.to_string(), default.to_string()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn(
            &bin("fleetset-aggregator"),
            &args,
            dir.join("aggregator.log"),
        )?;
        let info: serde_json::Value =
            wait_for("aggregator ready file", Duration::from_secs(30), || {
                if let Ok(Some(_)) = proc.child.try_wait() {
                    return Some(serde_json::Value::Null);
                }
                serde_json::from_slice(&std::fs::read(&ready).ok()?).ok()
            })?;
        anyhow::ensure!(
            !info.is_null(),
            "aggregator exited at start:\n{}",
            proc.log_text()
        );
        Ok(Aggregator {
            proc,
            data_dir,
            zmq: info["zmq"].as_str().unwrap_or_default().to_string(),
            zmq_pub: info["zmq_pub"].as_str().unwrap_or_default().to_string(),
            grpc: info["grpc"]
                .as_str()
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            otlp: info["otlp"]
                .as_str()
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            metrics: info["metrics"].as_str().unwrap_or_default().to_string(),
            pid: info["pid"].as_u64().unwrap_or_default() as u32,
        })
    }
}

/// Every record batch of one table (`series`, `windows`, `processes`) under `data_dir`;
/// fails on any unreadable file.
pub fn read_table(data_dir: &Path, table: &str) -> Result<Vec<RecordBatch>> {
    let mut files = Vec::new();
    for part in std::fs::read_dir(data_dir.join(table))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(part.path())?.flatten() {
            files.push(f.path());
        }
    }
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "unexpected file in a partition: {}",
            p.display()
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p)?)
            .with_context(|| format!("opening {}", p.display()))?
            .build()?;
        for b in reader {
            out.push(b?);
        }
    }
    Ok(out)
}

/// Column `name` of `b` as strings.
pub fn str_col<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .unwrap_or_else(|| panic!("utf8 column {name}"))
}

/// Column `name` of `b` as UTC ms timestamps.
pub fn ts_col<'a>(b: &'a RecordBatch, name: &str) -> &'a TimestampMillisecondArray {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .unwrap_or_else(|| panic!("timestamp column {name}"))
}

/// Column `name` of `b` as f64, if present.
pub fn f64_col<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a Float64Array> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
}

/// Column `name` of `b` as u64, if present.
pub fn u64_col<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a UInt64Array> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
}

/// Value `i` of an optional f64 column, `None` if absent or null.
pub fn f64_at(col: Option<&Float64Array>, i: usize) -> Option<f64> {
    col.filter(|c| !c.is_null(i)).map(|c| c.value(i))
}

/// The Python interpreter with pyarrow, DuckDB and pandas (set by `scripts/test.sh`).
pub fn python() -> PathBuf {
    PathBuf::from(std::env::var("FLEETSET_PYTHON").expect(
        "FLEETSET_PYTHON is not set: run the tests with scripts/test.sh, which creates the virtualenv with pyarrow, DuckDB and pandas",
    ))
}

/// Counters of the agent using `state_dir`, from its status file (`None` before the first write).
pub fn agent_counters(state_dir: &Path) -> Option<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("status.json")).ok()?).ok()?;
    Some(v["counters"].clone())
}

/// A loopback TCP port that was free a moment ago (for an aggregator that starts later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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

/// `(window_start ms, seq)` of every row of `windows/` for `agent_id`.
pub fn stored_windows(data_dir: &Path, agent_id: &str) -> Result<Vec<(i64, u64)>> {
    let mut out = Vec::new();
    for b in read_table(data_dir, "windows")? {
        let (agents, starts) = (str_col(&b, "agent_id"), ts_col(&b, "window_start"));
        let seqs = u64_col(&b, "seq").context("seq column")?;
        for i in 0..b.num_rows() {
            if agents.value(i) == agent_id {
                out.push((starts.value(i), seqs.value(i)));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A small deterministic pseudo-random sequence (xorshift64*) for fault timing; the seed is
/// printed by the tests so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// A value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo).max(1)
    }
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

/// Runs the Python script `tests/python/<name>` with `args` in the test virtualenv; fails the
/// test with its output unless it exits 0; returns its stdout.
pub fn run_python_script(name: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `fleetset-aggregator export --data-dir <data_dir> <args>`; returns (success, stdout,
/// stderr).
pub fn export(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("fleetset-aggregator"))
        .arg("export")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fleetset-aggregator export");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`export`] that must succeed; returns its stdout.
pub fn export_ok(data_dir: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = export(data_dir, args);
    assert!(ok, "export {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// `shared/data/nab` of the workplace (beside the repository), or under `FLEETSET_SHARED_DIR`.
pub fn nab_dir() -> PathBuf {
    std::env::var_os("FLEETSET_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("data/nab")
}

/// `GET path` on `addr` (`host:port`) over plain HTTP/1.0; returns the body. Bounded by a 10 s
/// timeout.
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    Ok(body.to_string())
}

/// The value of the Prometheus sample `name` (exact name, no labels) in `text`.
pub fn prom_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
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

/// Peak resident set size (VmHWM) of process `pid`, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
