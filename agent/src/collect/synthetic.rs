//! A deterministic sample source: every metric of the base set is a pure function of the
//! sample timestamp, inside the same physical ranges as a real host (tests and demos).

use super::{health_score, Collector, ProcessSample};
use fleetset_proto::HostInfo;

/// Total memory the synthetic host reports, MB.
pub const SYNTHETIC_MEMORY_MB: f64 = 8192.0;
/// CPU count the synthetic host reports.
pub const SYNTHETIC_CPUS: u32 = 4;

/// Deterministic metrics as a function of time.
#[derive(Debug, Default)]
pub struct SyntheticCollector;

/// The value of `metric` at `ts_ms` (the function tests recompute).
pub fn synthetic_value(metric: &str, ts_ms: i64) -> Option<f64> {
    let s = ts_ms as f64 / 1000.0;
    let cpu = 50.0 + 30.0 * (s / 7.0).sin() + 10.0 * (s * 1.3).sin();
    let used = 4000.0 + 1500.0 * (s / 50.0).sin();
    let load1 = 1.5 + (s / 11.0).sin();
    Some(match metric {
        "cpu_percent" => cpu,
        "memory_used_mb" | "memory_mb" => used,
        "memory_available_mb" => SYNTHETIC_MEMORY_MB - used,
        "memory_used_percent" => 100.0 * used / SYNTHETIC_MEMORY_MB,
        "swap_used_mb" => 64.0 + 32.0 * (s / 90.0).cos(),
        "load_avg_1" | "load_avg" => load1,
        "load_avg_5" => 1.2 + 0.5 * (s / 60.0).sin(),
        "load_avg_15" => 1.0 + 0.2 * (s / 300.0).sin(),
        "process_count" => 200.0 + (ts_ms.div_euclid(1000) % 7) as f64,
        "thread_count" => 800.0 + (ts_ms.div_euclid(1000) % 31) as f64,
        "fd_count" => 3000.0 + (ts_ms.div_euclid(500) % 101) as f64,
        "disk_read_bytes_per_sec" => 1e6 * (1.0 + (s / 3.0).sin()),
        "disk_write_bytes_per_sec" => 2e6 * (1.0 + (s / 5.0).cos()),
        "net_rx_bytes_per_sec" => 5e5 * (1.0 + (s / 2.0).sin()),
        "net_tx_bytes_per_sec" => 2.5e5 * (1.0 + (s / 4.0).cos()),
        "health_score" => health_score(
            cpu,
            100.0 * used / SYNTHETIC_MEMORY_MB,
            load1,
            SYNTHETIC_CPUS,
        ),
        _ => return None,
    })
}

/// The metrics the synthetic source emits, in emission order.
pub const SYNTHETIC_METRICS: [&str; 18] = [
    "cpu_percent",
    "memory_used_mb",
    "memory_mb",
    "memory_available_mb",
    "memory_used_percent",
    "swap_used_mb",
    "load_avg_1",
    "load_avg",
    "load_avg_5",
    "load_avg_15",
    "health_score",
    "process_count",
    "thread_count",
    "fd_count",
    "disk_read_bytes_per_sec",
    "disk_write_bytes_per_sec",
    "net_rx_bytes_per_sec",
    "net_tx_bytes_per_sec",
];

impl Collector for SyntheticCollector {
    fn sample(&mut self, ts_ms: i64, out: &mut Vec<(&'static str, f64)>) {
        out.extend(
            SYNTHETIC_METRICS
                .iter()
                .filter_map(|&m| Some((m, synthetic_value(m, ts_ms)?))),
        );
    }

    fn scan_processes(&mut self, ts_ms: i64, out: &mut Vec<ProcessSample>) {
        let s = ts_ms as f64 / 1000.0;
        out.extend((0..12u32).map(|i| ProcessSample {
            pid: 1000 + i,
            name: format!("synthetic-proc-{i}"),
            rss_bytes: ((u64::from(i) + 1) * 10) << 20,
            virtual_memory_bytes: ((u64::from(i) + 1) * 40) << 20,
            cpu_percent: (f64::from(i) * 3.0 + 5.0 * (s / 13.0).sin()).abs(),
            disk_read_bytes: u64::from(i) * 4096,
            disk_write_bytes: u64::from(i) * 8192,
        }));
    }

    fn host_info(&self) -> HostInfo {
        HostInfo {
            hostname: "synthetic-host".into(),
            os: "synthetic".into(),
            kernel: "synthetic".into(),
            cpu_count: SYNTHETIC_CPUS,
            memory_total_mb: SYNTHETIC_MEMORY_MB as u64,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_defined_and_in_range() {
        for ts in (0..3_600_000).step_by(997) {
            for m in SYNTHETIC_METRICS {
                let v = synthetic_value(m, ts).unwrap();
                assert!(v.is_finite() && v >= 0.0, "{m} at {ts}: {v}");
                if m.ends_with("_percent") || m == "health_score" {
                    assert!(v <= 100.0, "{m} at {ts}: {v}");
                }
            }
        }
    }
}
