//! This host's metrics, from sysinfo (refreshing only what is needed, never `refresh_all`) and,
//! on Linux, three cheap /proc reads sysinfo has no system-wide figure for.
//!
//! Measured cost (docs/dependencies.md): ~0.9 ms per host refresh (CPU, memory, load, disks,
//! networks), ~0.1 % of a core at 1 Hz, against 15–34 ms for `refresh_all`; a process scan costs
//! ~0.05 ms per process (kernel time reading /proc), so scans run on their own slower interval
//! and skip threads and open files. sysinfo has no system-wide process, thread or file-handle
//! count, hence the /proc reads.

use super::{health_score, Collector, ProcessSample};
use fleetset_proto::HostInfo;
use std::time::Instant;
use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, ProcessRefreshKind,
    ProcessesToUpdate, System,
};

const MB: f64 = (1u64 << 20) as f64;

/// Samples this host through sysinfo and /proc.
pub struct HostCollector {
    sys: System,
    disks: Disks,
    networks: Networks,
    last_rates: Instant,
    cpus: u32,
}

impl HostCollector {
    /// Creates the collector and primes CPU, disk and network counters so the first
    /// sample's usage and rates cover the time since creation.
    pub fn new() -> anyhow::Result<HostCollector> {
        let mut sys = System::new()?;
        sys.refresh_cpu_list(CpuRefreshKind::nothing().with_usage());
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let cpus = sys.cpus().len().max(1) as u32;
        let disks =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_io_usage())?;
        let networks = Networks::new_with_refreshed_list()?;
        Ok(HostCollector {
            sys,
            disks,
            networks,
            last_rates: Instant::now(),
            cpus,
        })
    }
}

/// Reads a /proc file's content; `None` off Linux or on error.
fn proc_file(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Open file handles system-wide: first field of /proc/sys/fs/file-nr.
fn fd_count() -> Option<f64> {
    proc_file("/proc/sys/fs/file-nr")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Threads system-wide: the total in /proc/loadavg's "running/total" field.
fn thread_count() -> Option<f64> {
    let loadavg = proc_file("/proc/loadavg")?;
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// Processes: numeric entries of /proc.
fn process_count() -> Option<f64> {
    let dir = std::fs::read_dir("/proc").ok()?;
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    Some(n as f64)
}

impl Collector for HostCollector {
    fn sample(&mut self, _ts_ms: i64, out: &mut Vec<(&'static str, f64)>) {
        self.sys
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let cpu = f64::from(self.sys.global_cpu_usage());
        let total = self.sys.total_memory() as f64;
        let used = self.sys.used_memory() as f64;
        let used_percent = if total > 0.0 {
            100.0 * used / total
        } else {
            0.0
        };
        out.extend([
            ("cpu_percent", cpu),
            ("memory_used_mb", used / MB),
            ("memory_mb", used / MB),
            (
                "memory_available_mb",
                self.sys.available_memory() as f64 / MB,
            ),
            ("memory_used_percent", used_percent),
            ("swap_used_mb", self.sys.used_swap() as f64 / MB),
        ]);
        if let Ok(load) = System::load_average() {
            out.extend([
                ("load_avg_1", load.one),
                ("load_avg", load.one),
                ("load_avg_5", load.five),
                ("load_avg_15", load.fifteen),
            ]);
            out.push((
                "health_score",
                health_score(cpu, used_percent, load.one, self.cpus),
            ));
        }
        for (name, value) in [
            ("process_count", process_count()),
            ("thread_count", thread_count()),
            ("fd_count", fd_count()),
        ] {
            if let Some(v) = value {
                out.push((name, v));
            }
        }

        let elapsed = self.last_rates.elapsed().as_secs_f64();
        self.last_rates = Instant::now();
        self.disks
            .refresh_specifics(false, DiskRefreshKind::nothing().with_io_usage());
        self.networks.refresh(false);
        if elapsed > 0.0 {
            // Several mount points can share one device (bind mounts, overlays): count each once.
            let mut seen = std::collections::HashSet::new();
            let (mut read, mut written) = (0u64, 0u64);
            for disk in self
                .disks
                .iter()
                .filter(|d| seen.insert(d.name().to_os_string()))
            {
                let u = disk.usage();
                read += u.read_bytes;
                written += u.written_bytes;
            }
            let (mut rx, mut tx) = (0u64, 0u64);
            for (_, data) in self
                .networks
                .iter()
                .filter(|(name, _)| name.as_os_str() != "lo")
            {
                rx += data.received();
                tx += data.transmitted();
            }
            out.extend([
                ("disk_read_bytes_per_sec", read as f64 / elapsed),
                ("disk_write_bytes_per_sec", written as f64 / elapsed),
                ("net_rx_bytes_per_sec", rx as f64 / elapsed),
                ("net_tx_bytes_per_sec", tx as f64 / elapsed),
            ]);
        }
    }

    fn scan_processes(&mut self, _ts_ms: i64, out: &mut Vec<ProcessSample>) {
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_memory()
                .with_cpu()
                .with_disk_usage()
                .without_tasks(),
        );
        out.extend(self.sys.processes().values().map(|p| {
            let io = p.disk_usage();
            ProcessSample {
                pid: p.pid().as_u32(),
                name: p.name().to_string_lossy().into_owned(),
                rss_bytes: p.memory(),
                virtual_memory_bytes: p.virtual_memory(),
                cpu_percent: f64::from(p.cpu_usage()),
                disk_read_bytes: io.read_bytes,
                disk_write_bytes: io.written_bytes,
            }
        }));
    }

    fn host_info(&self) -> HostInfo {
        HostInfo {
            hostname: System::host_name().unwrap_or_default(),
            os: System::long_os_version().unwrap_or_default(),
            kernel: System::kernel_version().unwrap_or_default(),
            cpu_count: self.cpus,
            memory_total_mb: self.sys.total_memory() >> 20,
            ..Default::default()
        }
    }
}
