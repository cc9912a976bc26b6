//! Hostile frames (issue #11) against the real aggregator: valid, checksummed, unsigned frames
//! whose content breaks the snapshot contract — extreme seqs, pre-empting window starts,
//! non-finite stats, path-like agent ids, 1 MiB agent ids, a label that collides with a stats
//! column, a 300-character site — are rejected with their reason and counted, and cannot
//! crash, wedge, poison or exhaust the aggregator: a real agent's windows keep being stored, a
//! restart works, and the exports and pandas read the store afterwards.

use bytes::Bytes;
use fleetset_proto::frame::to_parts;
use fleetset_proto::pb::{self, AckStatus, RejectReason};
use fleetset_proto::{seal, Encoding, Point, SealOptions, Snapshot, WindowStats};
use fleetset_tests::*;
use prost::Message;
use std::process::Command;
use std::time::Duration;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// 2023-11-14T22:13:20Z: an old but valid window start (no age bound by default).
const T0: i64 = 1_700_000_000_000;

/// A valid one-minute window of `agent_id` at `start` with one metric and its stats.
fn window(agent_id: &str, seq: u64, start: i64) -> Snapshot {
    let mut s = Snapshot {
        agent_id: agent_id.into(),
        seq,
        start,
        end: start.saturating_add(60_000),
        ..Default::default()
    };
    let pts: Vec<Point> = (0..10)
        .map(|i| Point {
            ts_ms: start + i * 6_000,
            value: i as f64,
        })
        .collect();
    let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
    s.stats.insert(
        "cpu_percent".into(),
        WindowStats::from_values(&values).unwrap(),
    );
    s.data.insert("cpu_percent".into(), pts);
    s
}

fn sealed(s: &Snapshot) -> pb::Frame {
    seal(
        s,
        &SealOptions {
            encoding: Encoding::Msgpack,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A ZeroMQ DEALER that sends one frame at a time and waits (≤ 20 s) for its ack.
struct Peer(DealerSocket);

impl Peer {
    async fn connect(endpoint: &str) -> Peer {
        let mut s = DealerSocket::new();
        s.connect(endpoint).await.unwrap();
        Peer(s)
    }

    async fn send(&mut self, f: &pb::Frame) -> pb::Ack {
        let [h, p] = to_parts(f);
        let mut m = ZmqMessage::from(h);
        m.push_back(Bytes::from(p));
        self.0.send(m).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(20), self.0.recv())
            .await
            .expect("ack in time")
            .unwrap();
        pb::Ack::decode(reply.get(0).unwrap().as_ref()).unwrap()
    }

    /// Sends `s` and checks its ack's status and reason.
    async fn expect(&mut self, s: &Snapshot, status: AckStatus, reason: RejectReason) -> pb::Ack {
        let a = self.send(&sealed(s)).await;
        assert_eq!(
            (a.status(), a.reason()),
            (status, reason),
            "seq {} start {}: {}",
            s.seq,
            s.start,
            a.detail
        );
        a
    }
}

fn start(dir: &TempDir, extra: &[&str]) -> Aggregator {
    // The zeromq 0.7 test peer drops the connection on a ZMTP PING: no heartbeats.
    let mut args = vec![
        "--commit-interval",
        "100ms",
        "--set",
        "ingest.zmq.heartbeat_interval=0s",
    ];
    args.extend_from_slice(extra);
    Aggregator::start(dir.path(), &args).unwrap()
}

/// Runs a synthetic agent `id` (1 s windows) until `n` windows are acked; returns its acks,
/// after checking none was rejected, acked DUPLICATE or dropped.
fn real_agent(dir: &TempDir, agg: &Aggregator, id: &str, n: usize, extra: &[&str]) -> Vec<Acked> {
    let mut args = vec!["--aggregator", agg.zmq.as_str()];
    args.extend_from_slice(extra);
    let mut agent = synthetic_agent_with(dir.path(), id, ("1s", "100ms"), &args);
    agent.wait_acked(n, Duration::from_secs(60)).unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    let events = agent.events();
    let acks: Vec<&Event> = events.iter().filter(|e| e.event == "acked").collect();
    assert!(
        acks.iter().all(|e| e.status == "COMMITTED"),
        "{id}: every window is new and must be COMMITTED: {acks:?}"
    );
    assert!(of_kind(&events, "dropped", "").is_empty(), "{events:?}");
    agent.acked()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_seqs_are_rejected_and_the_store_and_its_restart_keep_working() {
    let dir = TempDir::new("hostile-seq");
    let mut agg = start(&dir, &[]);
    let mut peer = Peer::connect(&agg.zmq).await;
    // The reproduction: 2^63, 2^63 − 1 and 0 for a new agent. 2^63 − 1 is a valid seq.
    let invalid = (AckStatus::Rejected, RejectReason::InvalidSnapshot);
    peer.expect(&window("victim", 1 << 63, T0), invalid.0, invalid.1)
        .await;
    let max = window("victim", (1 << 63) - 1, T0 + 60_000);
    peer.expect(&max, AckStatus::Committed, RejectReason::Unspecified)
        .await;
    peer.expect(&window("victim", 0, T0 + 120_000), invalid.0, invalid.1)
        .await;
    // A reused seq for another window is rejected; the same window again is a duplicate.
    let reused = window("victim", (1 << 63) - 1, T0 + 180_000);
    peer.expect(&reused, AckStatus::Rejected, RejectReason::SeqReused)
        .await;
    let mut again = max.clone();
    again.seq = 5;
    peer.expect(&again, AckStatus::Duplicate, RejectReason::Unspecified)
        .await;
    // The store still commits: a real agent with that id has all its windows stored.
    let acked = real_agent(&dir, &agg, "victim", 3, &[]);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let counters = aggregator_counters(&agg.data_dir).unwrap();
    assert_eq!(counters["rejected_invalid_snapshot"], 2, "{counters}");
    assert_eq!(counters["rejected_seq_reused"], 1, "{counters}");
    let stored = stored_windows(&agg.data_dir, "victim").unwrap();
    assert_eq!(stored.len(), acked.len() + 1, "{stored:?}");

    // A restart on that data directory recovers, and knows what is stored.
    let mut agg = start(&dir, &[]);
    let mut peer = Peer::connect(&agg.zmq).await;
    peer.expect(&max, AckStatus::Duplicate, RejectReason::Unspecified)
        .await;
    peer.expect(
        &window("victim", 1 << 40, T0 + 240_000),
        AckStatus::Committed,
        RejectReason::Unspecified,
    )
    .await;
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_before_an_agent_exists_do_not_pre_empt_its_windows() {
    let dir = TempDir::new("hostile-preempt");
    let mut agg = start(&dir, &[]);
    let mut peer = Peer::connect(&agg.zmq).await;
    let now = fleetset_core::time::now_ms();
    // A huge seq, and windows starting an hour to a year from now (every second of the next
    // minute, so any grid the real agent uses would be covered).
    peer.expect(
        &window("target", 1 << 63, now - now % 1000),
        AckStatus::Rejected,
        RejectReason::InvalidSnapshot,
    )
    .await;
    for (k, ahead) in [3_600_000, 86_400_000, 31_536_000_000]
        .into_iter()
        .enumerate()
    {
        let start = now + ahead - now % 1000;
        peer.expect(
            &window("target", 1 << 62 | k as u64, start),
            AckStatus::Rejected,
            RejectReason::WindowOutOfRange,
        )
        .await;
    }
    let acked = real_agent(&dir, &agg, "target", 4, &[]);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let stored = stored_windows(&agg.data_dir, "target").unwrap();
    let acked: Vec<(i64, u64)> = acked.iter().map(|a| (a.window_start, a.seq)).collect();
    assert_eq!(stored, acked, "every real window stored, nothing else");
    let counters = aggregator_counters(&agg.data_dir).unwrap();
    assert_eq!(counters["rejected_window_out_of_range"], 3, "{counters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_outside_the_contract_are_rejected_and_csv_and_sqlite_exports_work() {
    let dir = TempDir::new("hostile-values");
    let mut agg = start(&dir, &[]);
    let mut peer = Peer::connect(&agg.zmq).await;
    let mut inf = window("probe", 1, T0);
    let st = inf.stats.get_mut("cpu_percent").unwrap();
    (st.mean, st.max, st.count) = (f64::INFINITY, f64::INFINITY, u64::MAX);
    let path_id = window("../../etc/x\n\0", 2, T0 + 60_000);
    let mut forever = window("probe", 3, 0);
    (forever.start, forever.end) = (i64::MIN, i64::MAX);
    forever.data.clear();
    forever.stats.clear();
    for s in [&inf, &path_id, &forever] {
        let a = peer
            .expect(s, AckStatus::Rejected, RejectReason::InvalidSnapshot)
            .await;
        assert!(
            !a.agent_id.contains('\n') && !a.agent_id.contains('\0'),
            "{a:?}"
        );
    }
    peer.expect(
        &window("probe", 4, T0 + 180_000),
        AckStatus::Committed,
        RejectReason::Unspecified,
    )
    .await;
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let counters = aggregator_counters(&agg.data_dir).unwrap();
    assert_eq!(counters["rejected_invalid_snapshot"], 3, "{counters}");
    let out = dir.path().join("out");
    for table in ["windows", "series"] {
        for format in ["csv", "sqlite"] {
            let path = out.join(format!("{table}.{format}"));
            let args = ["--table", table, "--format", format, "--no-anonymize"];
            let mut args = args.to_vec();
            args.extend(["--output", path.to_str().unwrap()]);
            export_ok(&agg.data_dir, &args);
            assert!(path.exists());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_with_huge_agent_ids_cost_bounded_memory_log_and_acks() {
    let dir = TempDir::new("hostile-ids");
    let mut agg = start(&dir, &[]);
    let mut peer = Peer::connect(&agg.zmq).await;
    peer.expect(
        &window("warmup", 1, T0),
        AckStatus::Committed,
        RejectReason::Unspecified,
    )
    .await;
    let before = peak_rss_kib(agg.pid).unwrap();
    let log_before = std::fs::metadata(&agg.proc.log).unwrap().len();
    for i in 0..300u64 {
        // Distinct ids of 1 MiB each: each would be a new warn-once key without the bound.
        let id = format!("{i:06}{}", "x".repeat((1 << 20) - 6));
        let a = peer
            .expect(
                &window(&id, 1, T0),
                AckStatus::Rejected,
                RejectReason::InvalidSnapshot,
            )
            .await;
        assert!(
            a.agent_id.len() <= 128,
            "ack echoes {} bytes",
            a.agent_id.len()
        );
        assert!(a.detail.len() <= 2048, "detail of {} bytes", a.detail.len());
    }
    let grown_kib = peak_rss_kib(agg.pid).unwrap().saturating_sub(before);
    let log_grown = std::fs::metadata(&agg.proc.log).unwrap().len() - log_before;
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    eprintln!("peak RSS grew {grown_kib} KiB, log {log_grown} bytes");
    assert!(grown_kib < 50 * 1024, "peak RSS grew {grown_kib} KiB");
    assert!(log_grown < 64 * 1024, "log grew {log_grown} bytes");
    let counters = aggregator_counters(&agg.data_dir).unwrap();
    assert_eq!(counters["rejected_invalid_snapshot"], 300, "{counters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_character_site_still_exports_a_training_set() {
    let dir = TempDir::new("hostile-site");
    // The default contract caps label values at 256 bytes; raised here to reach the export.
    let mut agg = start(&dir, &["--set", "ingest.max_label_value_bytes=1024"]);
    let site = format!("site={}", "s".repeat(300));
    real_agent(&dir, &agg, "long-site", 6, &["--label", &site]);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let out = dir.path().join("training");
    export_ok(
        &agg.data_dir,
        &[
            "--training",
            "--split",
            "0.5",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    let shards = std::fs::read_dir(out.join("shards")).unwrap();
    for shard in shards {
        let name = shard.unwrap().file_name();
        assert!(name.len() <= 64 + "site=".len(), "{name:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_that_would_collide_with_a_stats_column_is_rejected_and_pandas_reads_windows() {
    let py = python();
    let dir = TempDir::new("hostile-collision");
    let mut agg = start(&dir, &[]);
    let mut peer = Peer::connect(&agg.zmq).await;
    peer.expect(
        &window("good", 1, T0),
        AckStatus::Committed,
        RejectReason::Unspecified,
    )
    .await;
    // Metric `label_x` has the column `label_x__count`, and so would the label key `x__count`.
    let mut s = window("collide", 1, T0 + 60_000);
    let pts = s.data["cpu_percent"].clone();
    let st = s.stats["cpu_percent"];
    s.data.insert("label_x".into(), pts);
    s.stats.insert("label_x".into(), st);
    s.host.labels.insert("x__count".into(), "1".into());
    peer.expect(&s, AckStatus::Rejected, RejectReason::InvalidSnapshot)
        .await;
    // The metric alone is fine: its columns are statistics columns, not labels.
    s.host.labels.clear();
    peer.expect(&s, AckStatus::Committed, RejectReason::Unspecified)
        .await;
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let check = Command::new(&py)
        .arg("-c")
        .arg(
            "import sys, glob, pandas as pd\n\
             df = pd.read_parquet(sys.argv[1] + '/windows')\n\
             assert len(df) == 2 and df.columns.is_unique, df.columns\n\
             files = [pd.read_parquet(f) for f in glob.glob(sys.argv[1] + '/windows/*/*.parquet')]\n\
             assert any('label_x__count' in f.columns for f in files)\n\
             assert all(f.columns.is_unique for f in files)\n\
             print('OK')",
        )
        .arg(&agg.data_dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "pandas failed:\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
