//! Stored bytes per host-minute (SPEC.md target: ≤ 0.5 KB for the base metric set with exact
//! window stats), measured through the real code path: the agent's window assembly, exact stats
//! and MinMax-LTTB (`fleetset_core::window`), then the aggregator's Arrow tables and Parquet
//! writer (`fleetset_aggregator::store`), with many hosts per commit as at fleet scale.
//!
//! Side by side, in the same run: the same raw 1 s samples written as a long-format zstd Parquet
//! (`agent_id, metric, ts, value`) by the same writer — what storing without downsampling costs.
//!
//! Input: the synthetic source's base metric set (18 metrics, 1 s samples, 5 min windows) with
//! deterministic measurement noise (±2% of the value), so values are not artificially smooth,
//! then quantized the way the host collector's sources are: CPU % as f32 (sysinfo), memory in
//! whole 4 KiB pages, load averages at 2 decimals (/proc/loadavg), counts as integers;
//! percentages, health score and byte rates keep full f64 precision as the collector computes them.
//!
//! Run: `cargo bench -p fleetset-aggregator --bench store_size` (env HOSTS, HOURS).
//! With `FLEETSET_BENCH_KEEP_DIR=DIR` the store is written to DIR (which must be missing or
//! empty) and kept, as a real data directory for `fleetset-aggregator export`
//! (`scripts/export_bench.sh` uses it).

use fleetset_agent::collect::synthetic::{synthetic_value, SYNTHETIC_METRICS};
use fleetset_aggregator::store::schema::{self, Table};
use fleetset_aggregator::store::{files, tables, Submission};
use fleetset_core::downsample::Downsampler;
use fleetset_core::window::ProcessSample;
use fleetset_core::window::{build_snapshot, ProcessNaming, WindowAssembler};
use std::sync::Arc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn noise(seed: u64) -> f64 {
    // splitmix64 → [-1, 1)
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// The resolution the host collector's sources deliver for `metric` (see the module docs).
fn quantize(metric: &str, v: f64) -> f64 {
    match metric {
        "cpu_percent" => f64::from(v as f32),
        m if m.ends_with("_mb") => (v * 256.0).round() / 256.0,
        m if m.starts_with("load_avg") => (v * 100.0).round() / 100.0,
        "process_count" | "thread_count" | "fd_count" => v.round(),
        _ => v,
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        total += if p.is_dir() {
            dir_bytes(&p)
        } else {
            e.metadata().map_or(0, |m| m.len())
        };
    }
    total
}

fn main() -> anyhow::Result<()> {
    let hosts = env("HOSTS", 200);
    let hours = env("HOURS", 1);
    let windows = hours * 12;
    let window_ms = 300_000i64;
    let t0 = 1_763_000_000_000i64 - 1_763_000_000_000i64 % window_ms;
    let keep = std::env::var_os("FLEETSET_BENCH_KEEP_DIR").map(std::path::PathBuf::from);
    let out = match &keep {
        Some(dir) => {
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                anyhow::bail!("FLEETSET_BENCH_KEEP_DIR {} is not empty", dir.display());
            }
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("fleetset-store-size-{}", std::process::id())),
    };
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
    let ds = Downsampler::default();
    let naming = ProcessNaming {
        salt: "bench".into(),
        send_names: false,
    };
    let mut raw_rows: Vec<(String, &str, i64, f64)> = Vec::new();
    let mut raw_bytes = 0u64;

    for w in 0..windows {
        let start = t0 + w as i64 * window_ms;
        let mut subs = Vec::with_capacity(hosts);
        for h in 0..hosts {
            let agent_id = format!("host-{h:05}-0a1b2c3d");
            let mut asm = WindowAssembler::new(window_ms, 300, 10);
            for s in 0..300i64 {
                let ts = start + s * 1000;
                let shifted = ts + h as i64 * 7_919; // hosts differ in phase
                let values: Vec<(&str, f64)> = SYNTHETIC_METRICS
                    .iter()
                    .enumerate()
                    .map(|(m, &name)| {
                        let v = synthetic_value(name, shifted).unwrap_or(0.0);
                        let noisy = (v
                            * (1.0 + 0.02 * noise((h * 1_000_003 + m * 7_777) as u64 ^ ts as u64)))
                        .max(0.0);
                        (name, quantize(name, noisy))
                    })
                    .collect();
                raw_rows.extend(values.iter().map(|&(n, v)| (agent_id.clone(), n, ts, v)));
                asm.push(ts, values);
                if s % 15 == 0 {
                    let scan: Vec<ProcessSample> = (0..40u32)
                        .map(|p| ProcessSample {
                            pid: 1000 + p,
                            name: format!("proc-{p}"),
                            rss_bytes: (u64::from(p) + 1) << 22,
                            virtual_memory_bytes: (u64::from(p) + 1) << 24,
                            cpu_percent: (noise(u64::from(p) ^ ts as u64) + 1.0) * 5.0,
                            disk_read_bytes: u64::from(p) * 4096,
                            disk_write_bytes: u64::from(p) * 8192,
                        })
                        .collect();
                    asm.push_processes(ts, &scan);
                }
            }
            let (mut snap, _) = build_snapshot(asm.close().expect("window"), &ds, &naming);
            snap.agent_id = agent_id;
            snap.seq = w as u64 + 1;
            snap.sample_interval_ms = 1000;
            snap.host.os = "Debian GNU/Linux 12".into();
            snap.host.kernel = "6.1.0-18-amd64".into();
            snap.host.cpu_count = 8;
            snap.host.memory_total_mb = 32_000;
            snap.host
                .labels
                .insert("site".into(), format!("site-{}", h % 4));
            // Outcomes are never read here: tables and files are written directly.
            let (sub, _outcome) = Submission::new(
                snap,
                fleetset_proto::pb::FrameHeader {
                    encoding: 1,
                    payload_sha256: vec![0xab; 32],
                    ..Default::default()
                },
            );
            subs.push(sub);
        }
        // One commit per window across the fleet, as the aggregator does under load.
        let refs: Vec<&Submission> = subs.iter().collect();
        let batch_id = schema::new_batch_id(start);
        let date = schema::date_of(start);
        files::write_parquet(
            &schema::partition_dir(&out, Table::Series, &date),
            &batch_id,
            &tables::series_batch(&refs)?,
        )?;
        if let Some(p) = tables::processes_batch(&refs)? {
            files::write_parquet(
                &schema::partition_dir(&out, Table::Processes, &date),
                &batch_id,
                &p,
            )?;
        }
        files::write_parquet(
            &schema::partition_dir(&out, Table::Stats, &date),
            &batch_id,
            &tables::stats_batch(&refs)?,
        )?;
        files::write_parquet(
            &schema::partition_dir(&out, Table::Windows, &date),
            &batch_id,
            &tables::windows_batch(&refs, start)?,
        )?;

        // Peer: the raw samples of the same window, same writer, zstd.
        let raw = arrow::record_batch::RecordBatch::try_from_iter([
            (
                schema::AGENT_ID,
                Arc::new(arrow::array::StringArray::from_iter_values(
                    raw_rows.iter().map(|r| r.0.as_str()),
                )) as _,
            ),
            (
                schema::METRIC,
                Arc::new(arrow::array::StringArray::from_iter_values(
                    raw_rows.iter().map(|r| r.1),
                )) as _,
            ),
            (
                schema::TS,
                Arc::new(
                    arrow::array::TimestampMillisecondArray::from_iter_values(
                        raw_rows.iter().map(|r| r.2),
                    )
                    .with_timezone("UTC"),
                ) as _,
            ),
            (
                schema::VALUE,
                Arc::new(arrow::array::Float64Array::from_iter_values(
                    raw_rows.iter().map(|r| r.3),
                )) as _,
            ),
        ])?;
        let p = files::write_parquet(&out.join("raw"), &batch_id, &raw)?;
        raw_bytes += std::fs::metadata(p)?.len();
        raw_rows.clear();
    }

    let host_minutes = (hosts * windows * 5) as f64;
    println!("store size: {hosts} hosts x {windows} windows of 5 min ({hours} h), 18 base metrics at 1 s, top-10 processes");
    println!("{:<28} {:>12} {:>16}", "table", "bytes", "bytes/host-min");
    let mut ours = 0;
    for t in schema::COMMIT_ORDER {
        let b = dir_bytes(&t.dir(&out));
        let t = t.name();
        ours += b;
        println!("{t:<28} {b:>12} {:>16.1}", b as f64 / host_minutes);
    }
    println!(
        "{:<28} {ours:>12} {:>16.1}",
        "fleetset total",
        ours as f64 / host_minutes
    );
    println!(
        "{:<28} {raw_bytes:>12} {:>16.1}",
        "raw 1 s samples (zstd)",
        raw_bytes as f64 / host_minutes
    );
    println!("ratio fleetset/raw: {:.3}", ours as f64 / raw_bytes as f64);
    match keep {
        Some(_) => println!("store kept in {}", out.display()),
        None => std::fs::remove_dir_all(&out)?,
    }
    Ok(())
}
