//! Harness for the cross-crate tests: starts the real `fleetset-aggregator` and
//! `fleetset-agent` binaries on loopback (port 0, addresses read from the aggregator's ready
//! file), bounds every wait with a timeout, kills what it started on drop, and reads the Parquet
//! store back with the aggregator's own reader.
//!
//! By concern: [`process`] (spawning, stopping, waiting; the aggregator and `export`),
//! [`agents`] (agent launchers, CSV input, agent counters), [`store`] (reading the store),
//! [`python`] (the interop scripts), [`otlp`] (OTLP requests, OTLP series in the store), [`pki`] (test certificates), `events` (what agents and aggregators report about
//! themselves: delivery events, status counters); small shared helpers here. Everything is re-exported at
//! the crate root.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, done by
//! `scripts/test.sh`).

#![warn(missing_docs)]

pub mod agents;
mod events;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod python;
pub mod store;

pub use agents::*;
pub use events::*;
pub use otlp::*;
pub use pki::*;
pub use process::*;
pub use python::*;
pub use store::*;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// A loopback TCP port that was free a moment ago (for an aggregator that starts later, or
/// restarts on the same port). It is taken from 20000–32767, below Linux's ephemeral range
/// (32768–60999), so no client connection of a parallel test can be given it meanwhile (a port
/// from `bind(:0)` can be, and a restart on it then fails with "Address already in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LO: u16 = 20_000;
    const SPAN: u16 = 12_768;
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    for _ in 0..SPAN {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LO + (seed.wrapping_add(i) % SPAN);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LO}..{}", LO + SPAN);
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

/// `GET path` on `addr` (`host:port`) over plain HTTP/1.0; returns the body. Bounded by a 10 s
/// timeout.
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    let (status, body) = http_get_with(addr, path, &[])?;
    anyhow::ensure!(status == 200, "HTTP {status}");
    Ok(body)
}

/// `GET path` on `addr` with extra `headers` (`name`, `value`) over plain HTTP/1.0; returns the
/// status code and the body. Bounded by a 10 s timeout.
pub fn http_get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    let (status, _, body) = http_get_headers(addr, path, headers)?;
    Ok((status, body))
}

/// An HTTP answer: status code, headers (names lower-cased, in order), body.
pub type HttpAnswer = (u16, Vec<(String, String)>, String);

/// [`http_get_with`] that also returns the response headers.
pub fn http_get_headers(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<HttpAnswer> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header")?;
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|h| h.get(2..5))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP status line: {head}"))?;
    let fields = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, fields, body.to_string()))
}

/// The value of the Prometheus sample `name` (exact name, no labels) in `text`.
pub fn prom_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `/healthz` probes judged as a kubelet judges them with its defaults (`timeoutSeconds: 1`,
/// `failureThreshold: 3`): a probe slower than 1 s fails, and only three failures in a row
/// restart the container. A wedged process fails every probe; one slow answer on a loaded 2-core
/// CI machine does not make it unhealthy.
#[derive(Debug, Default)]
pub struct Liveness {
    /// Probes made.
    pub polls: u64,
    /// Probes with no `ok` answer within [`http_get`]'s 10 s.
    pub unanswered: u64,
    /// Longest run of consecutive failed probes (slower than 1 s or unanswered).
    pub worst_streak: u64,
    /// Slowest answered probe.
    pub worst: Duration,
    streak: u64,
}

impl Liveness {
    /// Probe timeout, as kubelet's default `timeoutSeconds`.
    pub const TIMEOUT: Duration = Duration::from_secs(1);
    /// Consecutive failures that restart a container, as kubelet's default `failureThreshold`.
    pub const FAILURE_THRESHOLD: u64 = 3;

    /// One `GET /healthz` on a fresh connection to `addr`, recorded; returns its latency.
    pub fn probe(&mut self, addr: &str) -> Duration {
        let t = Instant::now();
        let ok = http_get(addr, "/healthz").is_ok_and(|b| b.ends_with("ok\n"));
        let took = t.elapsed();
        self.polls += 1;
        self.unanswered += u64::from(!ok);
        if ok {
            self.worst = self.worst.max(took);
        }
        if ok && took < Self::TIMEOUT {
            self.streak = 0;
        } else {
            self.streak += 1;
            self.worst_streak = self.worst_streak.max(self.streak);
        }
        took
    }

    /// Panics unless every probe was answered `ok` and no run of failures reached the
    /// threshold; `what` names the situation in the message.
    pub fn assert_alive(&self, what: &str) {
        assert!(self.polls > 0, "{what}: /healthz never probed");
        assert_eq!(self.unanswered, 0, "{what}: /healthz unanswered: {self:?}");
        assert!(
            self.worst_streak < Self::FAILURE_THRESHOLD,
            "{what}: {} probes in a row over {:?}: {self:?}",
            self.worst_streak,
            Self::TIMEOUT
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that is gone fails every probe: the model must call that dead.
    #[test]
    #[should_panic(expected = "/healthz unanswered")]
    fn a_port_that_never_answers_is_not_alive() {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut health = Liveness::default();
        for _ in 0..3 {
            health.probe(&addr);
        }
        assert_eq!(health.worst_streak, 3);
        health.assert_alive("nothing listening");
    }
}
