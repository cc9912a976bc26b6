//! Sample sources behind one [`Collector`] trait: this host's metrics ([`host::HostCollector`])
//! and a deterministic source for tests and demos ([`synthetic::SyntheticCollector`]).
//!
//! Metric names (the base set; units in the name, see `fleetset_proto::model`):
//!
//! | metric | unit | source |
//! |---|---|---|
//! | `cpu_percent` | % of all CPUs | sysinfo global CPU usage |
//! | `memory_used_mb`, `memory_available_mb` | MB (2^20 bytes) | sysinfo |
//! | `memory_used_percent` | % of total memory | used / total |
//! | `swap_used_mb` | MB | sysinfo |
//! | `load_avg_1`, `load_avg_5`, `load_avg_15` | runnable tasks | sysinfo |
//! | `process_count` | processes | numeric entries of /proc (Linux) |
//! | `thread_count` | threads | /proc/loadavg scheduling entities (Linux) |
//! | `fd_count` | open file handles | /proc/sys/fs/file-nr, first field (Linux) |
//! | `disk_read_bytes_per_sec`, `disk_write_bytes_per_sec` | bytes/s | sysinfo per-disk I/O, summed over devices |
//! | `net_rx_bytes_per_sec`, `net_tx_bytes_per_sec` | bytes/s | sysinfo, all interfaces except loopback |
//! | `memory_mb` | MB | seed 004 name, = `memory_used_mb` |
//! | `load_avg` | runnable tasks | seed 004 name, = `load_avg_1` |
//! | `health_score` | 0–100 | seed 004 name: 100 − the highest of CPU %, memory used % and load per CPU in % (clamped) |

pub mod host;
pub mod synthetic;

pub use fleetset_core::window::ProcessSample;
use fleetset_proto::HostInfo;

/// A source of metric samples and process scans.
pub trait Collector: Send {
    /// Appends this sample time's `(metric, value)` pairs to `out`; `ts_ms` is the sample's
    /// Unix ms timestamp. Metrics that cannot be read this time are left out.
    fn sample(&mut self, ts_ms: i64, out: &mut Vec<(&'static str, f64)>);
    /// Appends every process seen by a scan at `ts_ms` to `out`.
    fn scan_processes(&mut self, ts_ms: i64, out: &mut Vec<ProcessSample>);
    /// Static host attributes (labels and agent version are added by the caller).
    fn host_info(&self) -> HostInfo;
}

/// 100 − the highest pressure among CPU %, memory used % and load per CPU in %, clamped to 0–100.
pub fn health_score(cpu_percent: f64, memory_used_percent: f64, load_1: f64, cpus: u32) -> f64 {
    let load_percent = 100.0 * load_1 / f64::from(cpus.max(1));
    (100.0 - cpu_percent.max(memory_used_percent).max(load_percent)).clamp(0.0, 100.0)
}
