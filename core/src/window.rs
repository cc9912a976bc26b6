//! Window assembly: per-metric ring buffers of raw samples, windows aligned to wall-clock
//! multiples of the window length, and at window close the exact statistics, the MinMax-LTTB
//! series and the top-N processes of a [`Snapshot`].

use crate::downsample::{clean, CleanReport, Downsampler};
use fleetset_proto::{ProcessRecord, Snapshot, WindowStats};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// One process seen by a process scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSample {
    /// Process id.
    pub pid: u32,
    /// Clear process name (hashed before it leaves the host).
    pub name: String,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_memory_bytes: u64,
    /// CPU usage since the previous scan, percent of one core.
    pub cpu_percent: f64,
    /// Bytes read from storage since the previous scan.
    pub disk_read_bytes: u64,
    /// Bytes written to storage since the previous scan.
    pub disk_write_bytes: u64,
}

/// A bounded FIFO of raw `(ts_ms, value)` samples for one metric; when full, the oldest
/// sample is overwritten and counted in `overwritten`.
#[derive(Debug)]
pub struct RingBuffer {
    buf: VecDeque<(i64, f64)>,
    capacity: usize,
    /// Samples lost to overwriting since creation.
    pub overwritten: u64,
}

impl RingBuffer {
    /// A ring buffer holding at most `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> RingBuffer {
        RingBuffer {
            buf: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            overwritten: 0,
        }
    }

    /// Appends a sample, overwriting the oldest when full.
    pub fn push(&mut self, sample: (i64, f64)) {
        while self.buf.len() >= self.capacity {
            self.buf.pop_front();
            self.overwritten += 1;
        }
        self.buf.push_back(sample);
    }

    /// Holds at most `capacity` samples (at least 1) from the next push on.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Removes and returns all samples, oldest first.
    pub fn drain(&mut self) -> Vec<(i64, f64)> {
        self.buf.drain(..).collect()
    }
}

/// A closed window: its bounds, raw samples per metric and aggregated process records.
#[derive(Debug)]
pub struct ClosedWindow {
    /// Window start, Unix ms (multiple of the window length).
    pub start: i64,
    /// Window end, Unix ms, exclusive.
    pub end: i64,
    /// Raw samples per metric, in arrival order.
    pub raw: BTreeMap<String, Vec<(i64, f64)>>,
    /// Top-N processes by largest RSS in the window.
    pub processes: Vec<ProcessRecord>,
}

#[derive(Debug, Default)]
struct ProcessAgg {
    name: String,
    rss_max: u64,
    vm_max: u64,
    cpu_sum: f64,
    scans: u32,
    read: u64,
    written: u64,
}

/// Turns a stream of timestamped samples into aligned windows.
#[derive(Debug)]
pub struct WindowAssembler {
    window_ms: i64,
    capacity: usize,
    current: Option<i64>,
    series: BTreeMap<String, RingBuffer>,
    processes: HashMap<u32, ProcessAgg>,
    top_n: usize,
}

/// The start of the window holding `ts_ms` (floor to a multiple of `window_ms`).
pub fn window_start(ts_ms: i64, window_ms: i64) -> i64 {
    ts_ms.div_euclid(window_ms) * window_ms
}

impl WindowAssembler {
    /// `window_ms`: window length; `samples_per_window`: expected samples per metric (the ring
    /// buffers hold twice that); `top_n`: processes kept per window.
    pub fn new(window_ms: i64, samples_per_window: usize, top_n: usize) -> WindowAssembler {
        WindowAssembler {
            window_ms,
            capacity: samples_per_window.saturating_mul(2).max(4),
            current: None,
            series: BTreeMap::new(),
            processes: HashMap::new(),
            top_n,
        }
    }

    /// Applies a reloaded configuration to the window being filled: `samples_per_window`
    /// expected samples per metric (ring buffers hold twice that) and `top_n` processes.
    /// Call it at a window boundary (right after `push` returned the closed window): the
    /// window just started has at most one sample time yet.
    pub fn reshape(&mut self, samples_per_window: usize, top_n: usize) {
        self.capacity = samples_per_window.saturating_mul(2).max(4);
        for ring in self.series.values_mut() {
            ring.set_capacity(self.capacity);
        }
        self.top_n = top_n;
    }

    /// The start of the window being filled, if any sample arrived.
    pub fn current_start(&self) -> Option<i64> {
        self.current
    }

    /// Samples lost to full ring buffers (more samples than expected in a window).
    pub fn overwritten(&self) -> u64 {
        self.series.values().map(|r| r.overwritten).sum()
    }

    /// Moves to the window holding `ts_ms`; returns the window it closes, if any.
    fn advance(&mut self, ts_ms: i64) -> Option<ClosedWindow> {
        let start = window_start(ts_ms, self.window_ms);
        match self.current {
            Some(cur) if cur == start => None,
            Some(cur) if start < cur => None, // clock stepped back: keep filling the current window
            Some(_) => {
                let closed = self.close();
                self.current = Some(start);
                closed
            }
            None => {
                self.current = Some(start);
                None
            }
        }
    }

    /// Adds one sample time's metric values; returns the previous window if `ts_ms` starts a
    /// new one. Samples stamped before the current window (the clock stepped back) are
    /// dropped: their window was already closed and sent.
    pub fn push<'a>(
        &mut self,
        ts_ms: i64,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Option<ClosedWindow> {
        let closed = self.advance(ts_ms);
        if self.current.is_some_and(|cur| ts_ms < cur) {
            return closed;
        }
        for (metric, value) in values {
            match self.series.get_mut(metric) {
                Some(ring) => ring.push((ts_ms, value)),
                None => {
                    let mut ring = RingBuffer::new(self.capacity);
                    ring.push((ts_ms, value));
                    self.series.insert(metric.to_string(), ring);
                }
            }
        }
        closed
    }

    /// Adds one process scan at `ts_ms`; returns the previous window if `ts_ms` starts a new one.
    pub fn push_processes(&mut self, ts_ms: i64, scan: &[ProcessSample]) -> Option<ClosedWindow> {
        let closed = self.advance(ts_ms);
        for p in scan {
            let agg = self.processes.entry(p.pid).or_default();
            if agg.name.is_empty() {
                agg.name.clone_from(&p.name);
            }
            agg.rss_max = agg.rss_max.max(p.rss_bytes);
            agg.vm_max = agg.vm_max.max(p.virtual_memory_bytes);
            agg.cpu_sum += p.cpu_percent;
            agg.scans += 1;
            agg.read += p.disk_read_bytes;
            agg.written += p.disk_write_bytes;
        }
        closed
    }

    /// Closes the current window (partial or not) and returns it if it holds any sample.
    pub fn close(&mut self) -> Option<ClosedWindow> {
        let start = self.current.take()?;
        let raw: BTreeMap<String, Vec<(i64, f64)>> = self
            .series
            .iter_mut()
            .map(|(name, ring)| (name.clone(), ring.drain()))
            .filter(|(_, samples)| !samples.is_empty())
            .collect();
        let mut procs: Vec<(u32, ProcessAgg)> = self.processes.drain().collect();
        procs.sort_by(|a, b| b.1.rss_max.cmp(&a.1.rss_max).then(a.0.cmp(&b.0)));
        procs.truncate(self.top_n);
        let processes = procs
            .into_iter()
            .map(|(pid, a)| ProcessRecord {
                pid,
                name_hash: String::new(),
                rss_bytes: a.rss_max,
                virtual_memory_bytes: a.vm_max,
                cpu_percent: a.cpu_sum / a.scans.max(1) as f64,
                disk_read_bytes: a.read,
                disk_write_bytes: a.written,
                name: a.name,
            })
            .collect();
        if raw.is_empty() {
            return None;
        }
        Some(ClosedWindow {
            start,
            end: start + self.window_ms,
            raw,
            processes,
        })
    }
}

/// First 16 hex chars of SHA-256(salt || name): stable per host, not reversible without the salt.
pub fn hash_process_name(salt: &str, name: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(name.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Per-window data-quality counts from cleaning and downsampling.
#[derive(Debug, Default, Clone, Copy)]
pub struct WindowQuality {
    /// Non-finite samples dropped.
    pub non_finite: usize,
    /// Samples dropped for a repeated timestamp (LTTB input only; stats keep them).
    pub repeated_ts: usize,
    /// Series that arrived out of time order.
    pub reordered: usize,
    /// Series where the LTTB crate failed and evenly spaced samples were kept.
    pub fallbacks: usize,
}

/// How process names leave the host.
#[derive(Debug, Clone)]
pub struct ProcessNaming {
    /// Salt for [`hash_process_name`].
    pub salt: String,
    /// Keep the clear name as well (off by default).
    pub send_names: bool,
}

/// Builds the snapshot of a closed window: exact stats on all finite raw samples (in time order),
/// MinMax-LTTB series, hashed process names. `agent_id`, `seq` and `host` are left for the caller.
pub fn build_snapshot(
    closed: ClosedWindow,
    downsampler: &Downsampler,
    naming: &ProcessNaming,
) -> (Snapshot, WindowQuality) {
    let mut snap = Snapshot {
        start: closed.start,
        end: closed.end,
        ..Default::default()
    };
    let mut quality = WindowQuality::default();
    for (metric, samples) in closed.raw {
        let (sorted, mut report): (Vec<(i64, f64)>, CleanReport) = clean(&samples);
        let values: Vec<f64> = sorted.iter().map(|s| s.1).collect();
        let Some(stats) = WindowStats::from_values(&values) else {
            quality.non_finite += report.non_finite;
            continue;
        };
        let (points, fallback) = downsampler.downsample(&sorted, &mut report);
        quality.non_finite += report.non_finite;
        quality.repeated_ts += report.repeated_ts;
        quality.reordered += usize::from(report.reordered);
        quality.fallbacks += usize::from(fallback);
        snap.stats.insert(metric.clone(), stats);
        snap.data.insert(metric, points);
    }
    snap.processes = closed
        .processes
        .into_iter()
        .map(|mut p| {
            p.name_hash = hash_process_name(&naming.salt, &p.name);
            if !naming.send_names {
                p.name.clear();
            }
            p
        })
        .collect();
    (snap, quality)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_wall_clock_and_close_on_the_boundary() {
        let mut w = WindowAssembler::new(5000, 20, 10);
        assert!(w.push(12_250, [("cpu_percent", 1.0)]).is_none());
        assert_eq!(w.current_start(), Some(10_000));
        assert!(w.push(14_750, [("cpu_percent", 2.0)]).is_none());
        let closed = w.push(15_000, [("cpu_percent", 3.0)]).unwrap();
        assert_eq!((closed.start, closed.end), (10_000, 15_000));
        assert_eq!(
            closed.raw["cpu_percent"],
            vec![(12_250, 1.0), (14_750, 2.0)]
        );
        assert_eq!(window_start(-1, 5000), -5000);
    }

    #[test]
    fn a_clock_step_back_never_reopens_a_sent_window() {
        let mut w = WindowAssembler::new(5000, 20, 10);
        w.push(12_000, [("m", 1.0)]);
        assert!(w.push(4_000, [("m", 9.0)]).is_none());
        let closed = w.close().unwrap();
        assert_eq!(closed.raw["m"], vec![(12_000, 1.0)]);
    }

    #[test]
    fn ring_buffer_overwrites_oldest_and_counts() {
        let mut r = RingBuffer::new(2);
        for i in 0..5 {
            r.push((i, i as f64));
        }
        assert_eq!(r.overwritten, 3);
        assert_eq!(r.drain(), vec![(3, 3.0), (4, 4.0)]);
    }

    /// pandas' `std()` (ddof = 1) is NaN for one sample: the snapshot's std is `None` then,
    /// counting finite samples only, and pandas' value for two.
    #[test]
    fn std_of_one_sample_is_none_and_of_two_is_pandas_value() {
        let mut w = WindowAssembler::new(10_000, 20, 0);
        w.push(1000, [("one", 7.0), ("two", 1.0)]);
        w.push(2000, [("one", f64::NAN), ("two", 4.0)]);
        let naming = ProcessNaming {
            salt: String::new(),
            send_names: false,
        };
        let ds = Downsampler::default();
        let (snap, _) = build_snapshot(w.close().unwrap(), &ds, &naming);
        assert_eq!((snap.stats["one"].count, snap.stats["one"].std), (1, None));
        // pandas.Series([1.0, 4.0]).std() == 2.1213203435596424
        assert_eq!(snap.stats["two"].std, Some(2.1213203435596424));
    }

    #[test]
    fn snapshot_has_exact_stats_and_hashed_top_n() {
        let mut w = WindowAssembler::new(300_000, 300, 2);
        for i in 0..300 {
            w.push(
                i * 1000,
                [("cpu_percent", (i % 50) as f64), ("mem", f64::NAN)],
            );
        }
        let scan = |rss: u64, name: &str, pid: u32| ProcessSample {
            pid,
            name: name.into(),
            rss_bytes: rss,
            virtual_memory_bytes: rss * 2,
            cpu_percent: 10.0,
            disk_read_bytes: 5,
            disk_write_bytes: 7,
        };
        w.push_processes(
            1000,
            &[
                scan(100, "postgres", 1),
                scan(50, "sshd", 2),
                scan(10, "cron", 3),
            ],
        );
        w.push_processes(16_000, &[scan(300, "postgres", 1)]);
        let closed = w.close().unwrap();
        let naming = ProcessNaming {
            salt: "s".into(),
            send_names: false,
        };
        let (snap, q) = build_snapshot(closed, &Downsampler::default(), &naming);
        let st = snap.stats["cpu_percent"];
        assert_eq!(
            (st.count, st.min, st.max, st.first, st.last),
            (300, 0.0, 49.0, 0.0, 49.0)
        );
        assert!((st.mean - 24.5).abs() < 1e-12);
        assert_eq!(snap.data["cpu_percent"].len(), 60);
        assert!(
            !snap.data.contains_key("mem"),
            "all-NaN series has no stats and no points"
        );
        assert_eq!(q.non_finite, 300);
        assert_eq!(snap.processes.len(), 2);
        assert_eq!(snap.processes[0].rss_bytes, 300);
        assert_eq!(
            (
                snap.processes[0].disk_read_bytes,
                snap.processes[0].name.as_str()
            ),
            (10, "")
        );
        assert_eq!(
            snap.processes[0].name_hash,
            hash_process_name("s", "postgres")
        );
        assert_ne!(
            snap.processes[0].name_hash,
            hash_process_name("other-salt", "postgres")
        );
    }
}
