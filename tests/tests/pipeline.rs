//! The main path on real processes: `fleetset-agent run` (deterministic synthetic source) →
//! ZeroMQ or gRPC, MessagePack or Protobuf → `fleetset-aggregator serve` → Parquet, read back.

use fleetset_agent::collect::synthetic::synthetic_value;
use fleetset_proto::WindowStats;
use fleetset_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WINDOW_MS: i64 = 1000;
const THRESHOLD: usize = 8;

fn run_pipeline(transport: &str, encoding: &str) {
    let dir = TempDir::new(&format!("pipeline-{transport}-{encoding}"));
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "200ms"]).unwrap();
    let endpoint = if transport == "zmq" {
        agg.zmq.clone()
    } else {
        agg.grpc.clone()
    };
    let agent_id = format!("agent-{transport}-{encoding}");
    let raw = dir.path().join("raw");
    let state = dir.path().join("state");
    let threshold = format!("window.lttb.threshold={THRESHOLD}");
    let raw_dump = format!("collect.raw_dump_dir={}", raw.display());
    let args = [
        "run",
        "--agent-id",
        &agent_id,
        "--state-dir",
        state.to_str().unwrap(),
        "--aggregator",
        &endpoint,
        "--transport",
        transport,
        "--encoding",
        encoding,
        "--source",
        "synthetic",
        "--window",
        "1s",
        "--sample-interval",
        "50ms",
        "--set",
        "collect.process_interval=300ms",
        "--set",
        &threshold,
        "--label",
        "site=test-1",
        "--set",
        &raw_dump,
    ];
    let mut agent = agent(dir.path(), "agent", &args);
    agent.wait_acked(4, Duration::from_secs(30)).unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let events = agent.events();
    let acked = acked(&events);
    // Each frame went through framed → spooled → sent → acked, in that order.
    for a in &acked {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e.seq == Some(a.seq))
            .map(|e| e.event.as_str())
            .collect();
        assert_eq!(
            kinds,
            ["framed", "spooled", "sent", "acked"],
            "seq {}",
            a.seq
        );
    }
    let seqs: Vec<u64> = acked.iter().map(|a| a.seq).collect();
    assert_eq!(
        seqs,
        (1..=acked.len() as u64).collect::<Vec<_>>(),
        "seq starts at 1, +1 per frame: {events:?}"
    );

    // Every acked window is in windows/ exactly once, and nothing else is.
    let windows = read_table(&agg.data_dir, "windows").unwrap();
    let mut stored: BTreeMap<i64, usize> = BTreeMap::new();
    for b in &windows {
        let (agents, starts) = (str_col(b, "agent_id"), ts_col(b, "window_start"));
        for i in 0..b.num_rows() {
            assert_eq!(agents.value(i), agent_id);
            *stored.entry(starts.value(i)).or_default() += 1;
        }
    }
    let acked_starts: BTreeSet<i64> = acked.iter().map(|a| a.window_start).collect();
    assert_eq!(
        stored.keys().copied().collect::<BTreeSet<_>>(),
        acked_starts
    );
    assert!(
        stored.values().all(|&n| n == 1),
        "a window stored twice: {stored:?}"
    );

    // series/: at most THRESHOLD points per metric per window, inside the window, and each
    // point is one of the raw samples with the deterministic source's value.
    let mut points: BTreeMap<(i64, String), Vec<(i64, f64)>> = BTreeMap::new();
    for b in &read_table(&agg.data_dir, "series").unwrap() {
        let (ws, m, ts) = (
            ts_col(b, "window_start"),
            str_col(b, "metric"),
            ts_col(b, "ts"),
        );
        let v = f64_col(b, "value").unwrap();
        for i in 0..b.num_rows() {
            points
                .entry((ws.value(i), m.value(i).to_string()))
                .or_default()
                .push((ts.value(i), v.value(i)));
        }
    }
    assert!(!points.is_empty());
    for ((start, metric), pts) in &points {
        assert!(
            pts.len() <= THRESHOLD,
            "{metric}@{start}: {} points",
            pts.len()
        );
        for &(ts, v) in pts {
            assert!(
                ts >= *start && ts < start + WINDOW_MS,
                "{metric}: {ts} outside window {start}"
            );
            assert_eq!(
                Some(v),
                synthetic_value(metric, ts),
                "{metric}@{ts} is not a raw sample"
            );
        }
    }

    // Exact stats equal those of the raw samples the agent saw.
    for b in &windows {
        let starts = ts_col(b, "window_start");
        assert_eq!(str_col(b, "label_site").value(0), "test-1");
        for i in 0..b.num_rows() {
            let start = starts.value(i);
            let dump: serde_json::Value = serde_json::from_slice(
                &std::fs::read(raw.join(format!("{agent_id}-{start}.json"))).unwrap(),
            )
            .unwrap();
            let series = dump["series"].as_object().unwrap();
            assert!(series.len() >= 18, "base metric set: {:?}", series.keys());
            for (metric, samples) in series {
                let samples: Vec<(i64, f64)> = samples
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                    .collect();
                for &(ts, v) in &samples {
                    assert_eq!(Some(v), synthetic_value(metric, ts), "raw {metric}@{ts}");
                }
                let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
                let want = WindowStats::from_values(&values).unwrap();
                let got_count = u64_col(b, &format!("{metric}__count")).unwrap().value(i);
                assert_eq!(got_count, want.count, "{metric}@{start} count");
                for (stat, w) in [
                    ("min", Some(want.min)),
                    ("max", Some(want.max)),
                    ("mean", Some(want.mean)),
                    ("std", want.std),
                    ("first", Some(want.first)),
                    ("last", Some(want.last)),
                ] {
                    let got = f64_at(f64_col(b, &format!("{metric}__{stat}")), i);
                    let close = match (got, w) {
                        (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                        (g, w) => g == w,
                    };
                    assert!(close, "{metric}@{start} {stat}: {got:?} vs {w:?}");
                }
            }
        }
    }

    // processes/: top-10 by RSS, names hashed.
    let procs = read_table(&agg.data_dir, "processes").unwrap();
    let n: usize = procs.iter().map(|b| b.num_rows()).sum();
    assert!(n > 0, "no process rows");
    for b in &procs {
        let hashes = str_col(b, "name_hash");
        for i in 0..b.num_rows() {
            assert_eq!(hashes.value(i).len(), 16);
            assert!(hashes.value(i).chars().all(|c| c.is_ascii_hexdigit()));
        }
        assert_eq!(
            b.column_by_name("name").unwrap().null_count(),
            b.num_rows(),
            "clear names must not leave the host"
        );
    }
}

#[test]
fn zmq_msgpack() {
    run_pipeline("zmq", "msgpack");
}

#[test]
fn zmq_protobuf() {
    run_pipeline("zmq", "protobuf");
}

#[test]
fn grpc_msgpack() {
    run_pipeline("grpc", "msgpack");
}

#[test]
fn grpc_protobuf() {
    run_pipeline("grpc", "protobuf");
}
