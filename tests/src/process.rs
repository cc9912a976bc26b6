//! Processes the tests start: the real binaries next to the test executable ([`bin`]), a child
//! killed on drop with its stderr in a log file ([`Proc`]), a running aggregator with the
//! addresses from its ready file ([`Aggregator`]), one-shot `export` runs, and peak RSS.

use crate::wait_for;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
        Proc::spawn_with_stdout(program, args, log, Stdio::null())
    }

    /// [`Proc::spawn`] with stdout to `stdout` (e.g. a file for a report the program prints).
    pub fn spawn_with_stdout(
        program: &Path,
        args: &[String],
        log: PathBuf,
        stdout: impl Into<Stdio>,
    ) -> Result<Proc> {
        let err = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(err)
            .env("RUST_LOG", "info")
            .env("FLEETSET_TELEMETRY_LISTEN", "127.0.0.1:0")
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has not exited (yet).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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
    /// Bound control plane (OpAMP, fleet admin API), `http://127.0.0.1:PORT` (empty when turned
    /// off; `https://` is the caller's to add with TLS).
    pub control: String,
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
            ("--control-listen", "127.0.0.1:0"),
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
            control: info["control"]
                .as_str()
                .map(|a| format!("http://{a}"))
                .unwrap_or_default(),
            pid: info["pid"].as_u64().unwrap_or_default() as u32,
        })
    }
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
