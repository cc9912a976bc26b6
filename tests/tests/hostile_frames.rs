//! Hostile frames (issue #11) against the real aggregator: valid, checksummed, unsigned frames
//! whose content breaks the snapshot contract — extreme seqs, pre-empting window starts,
//! non-finite stats, path-like agent ids, 1 MiB agent ids, a label that collides with a stats
//! column, a 300-character site, new names beyond the fleet-wide caps — are rejected with their reason and counted, and cannot
//! crash, wedge, poison or exhaust the aggregator: a real agent's windows keep being stored, a
//! restart works, and the exports and pandas read the store afterwards. A frame of 10,000
//! metrics is stored as rows, not columns, in bounded memory.

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
    // A later window with another label set: the windows files differ in their label columns.
    let mut rack = window("good", 2, T0 + 120_000);
    rack.host.labels.insert("rack".into(), "r1".into());
    peer.expect(&rack, AckStatus::Committed, RejectReason::Unspecified)
        .await;
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let check = Command::new(&py)
        .arg("-c")
        .arg(
            "import sys, glob, duckdb, pandas as pd\n\
             root = sys.argv[1]\n\
             for t in ['windows', 'stats', 'series']:\n\
             \x20   df = pd.read_parquet(f'{root}/{t}')\n\
             \x20   assert df.columns.is_unique, (t, df.columns)\n\
             df = pd.read_parquet(root + '/windows')\n\
             assert len(df) == 3 and not any('__' in c for c in df.columns), df.columns\n\
             files = [pd.read_parquet(f) for f in glob.glob(root + '/windows/*/*.parquet')]\n\
             assert any('label_rack' in f.columns for f in files) and all(f.columns.is_unique for f in files)\n\
             st = pd.read_parquet(root + '/stats')\n\
             assert sorted(st.metric.unique()) == ['cpu_percent', 'label_x'], st.metric.unique()\n\
             wide = st.pivot_table(index=['agent_id', 'window_start'], columns='metric', values='count')\n\
             assert wide.shape == (3, 2), wide\n\
             n = duckdb.connect().execute(f\"SELECT count(*) FROM read_parquet('{root}/windows/*/*.parquet', union_by_name=true) WHERE label_rack = 'r1'\").fetchone()[0]\n\
             assert n == 1, n\n\
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_agents_metrics_and_label_keys_beyond_the_fleet_caps_are_rejected() {
    let dir = TempDir::new("hostile-caps");
    let caps = [
        "--set",
        "store.max_agents=2",
        "--set",
        "store.max_metric_names=2",
        "--set",
        "store.max_label_keys=1",
    ];
    let mut agg = start(&dir, &caps);
    let mut peer = Peer::connect(&agg.zmq).await;
    let ok = (AckStatus::Committed, RejectReason::Unspecified);
    let limit = (AckStatus::Rejected, RejectReason::CardinalityLimit);
    let mut a = window("a", 1, T0);
    a.host.labels.insert("site".into(), "s1".into());
    peer.expect(&a, ok.0, ok.1).await;
    peer.expect(&window("b", 1, T0), ok.0, ok.1).await;
    let ack = peer.expect(&window("c", 1, T0), limit.0, limit.1).await;
    assert!(ack.detail.contains("store.max_agents"), "{}", ack.detail);
    // A second metric fits, a third does not; a second label key does not.
    let with = |mut s: Snapshot, metric: &str| {
        let (pts, st) = (s.data["cpu_percent"].clone(), s.stats["cpu_percent"]);
        s.data.insert(metric.into(), pts);
        s.stats.insert(metric.into(), st);
        s
    };
    let two = with(window("a", 2, T0 + 60_000), "mem_percent");
    peer.expect(&two, ok.0, ok.1).await;
    let three = with(window("b", 2, T0 + 60_000), "disk_percent");
    let ack = peer.expect(&three, limit.0, limit.1).await;
    assert!(ack.detail.contains("disk_percent"), "{}", ack.detail);
    let mut rack = window("b", 3, T0 + 120_000);
    rack.host.labels.insert("rack".into(), "r1".into());
    peer.expect(&rack, limit.0, limit.1).await;
    // Known names keep working, also after a restart (the sets are rebuilt from the store).
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let mut agg = Aggregator::start(
        dir.path(),
        &[&["--commit-interval", "100ms"][..], &caps[..]].concat(),
    )
    .unwrap();
    let mut peer = Peer::connect(&agg.zmq).await;
    peer.expect(&window("c", 1, T0), limit.0, limit.1).await;
    let mut known = with(window("b", 4, T0 + 180_000), "mem_percent");
    known.host.labels.insert("site".into(), "s2".into());
    peer.expect(&known, ok.0, ok.1).await;
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let counters = aggregator_counters(&agg.data_dir).unwrap();
    assert_eq!(counters["rejected_cardinality_limit"], 1, "{counters}");
    assert_eq!(stored_windows(&agg.data_dir, "c").unwrap(), []);
    assert_eq!(stored_windows(&agg.data_dir, "b").unwrap().len(), 2);
}

/// Bound on the aggregator's peak RSS while it stores one frame of 10,000 metrics (the
/// 70,140-column `windows` file of issue 11 took 1.5 GB).
const PEAK_RSS_BOUND_KIB: u64 = 300 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_10000_metrics_is_stored_as_rows_in_bounded_memory() {
    use fleetset_aggregator::store::schema;
    let dir = TempDir::new("hostile-wide");
    let mut agg = start(&dir, &["--set", "ingest.max_metrics=10000"]);
    let mut peer = Peer::connect(&agg.zmq).await;
    let mut s = window("wide", 1, T0);
    let (pts, st) = (s.data["cpu_percent"][..2].to_vec(), s.stats["cpu_percent"]);
    for i in 1..10_000 {
        s.data.insert(format!("metric_{i:05}"), pts.clone());
        s.stats.insert(format!("metric_{i:05}"), st);
    }
    peer.expect(&s, AckStatus::Committed, RejectReason::Unspecified)
        .await;
    let peak = peak_rss_kib(agg.pid).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    eprintln!("aggregator peak RSS with one frame of 10,000 metrics: {peak} KiB");
    assert!(peak < PEAK_RSS_BOUND_KIB, "peak RSS {peak} KiB");
    let width = |table: &str| -> (usize, i64) {
        let path = glob_one(&agg.data_dir.join(table));
        let f = std::fs::File::open(path).unwrap();
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        (
            b.schema().fields().len(),
            b.metadata().file_metadata().num_rows(),
        )
    };
    assert_eq!(width("windows"), (schema::windows_fixed_fields().len(), 1));
    assert_eq!(
        width("stats"),
        (schema::stats_schema().fields().len(), 10_000)
    );
}

/// The one committed file under a table directory.
fn glob_one(table_dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(table_dir)
        .unwrap()
        .flat_map(|p| std::fs::read_dir(p.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}
