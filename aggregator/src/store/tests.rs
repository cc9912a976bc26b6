//! The store's commit and recovery on real temporary directories: an outcome arrives only once
//! the window's files are committed; leftovers of a crashed commit are cleaned at open and the
//! de-duplication index is rebuilt from committed files; a failed commit answers `Failed`.

use super::reader::{self, Query};
use super::schema::{self, Table};
use super::*;
use fleetset_proto::{Point, WindowStats};
use std::path::Path;
use std::time::Duration;
use tokio::sync::oneshot::error::TryRecvError;

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!(
            "fleetset-store-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const WINDOW_MS: i64 = 60_000;
const T0: i64 = 1_763_683_200_000; // 2025-11-21T00:00:00Z

/// Window `k` of `agent`: seq `k + 1`, three `cpu_percent` points, label `site=s1`.
pub(crate) fn snapshot(agent: &str, k: i64) -> Snapshot {
    let start = T0 + k * WINDOW_MS;
    let points: Vec<Point> = (0..3)
        .map(|i| Point {
            ts_ms: start + i * 10_000,
            value: (k * 10 + i) as f64,
        })
        .collect();
    let mut s = Snapshot {
        agent_id: agent.into(),
        start,
        end: start + WINDOW_MS,
        seq: k as u64 + 1,
        sample_interval_ms: 1000,
        ..Default::default()
    };
    s.host.hostname = "host-1".into();
    s.host.labels.insert("site".into(), "s1".into());
    s.stats.insert(
        "cpu_percent".into(),
        WindowStats {
            count: 3,
            min: points[0].value,
            max: points[2].value,
            mean: points[1].value,
            std: Some(1.0),
            first: points[0].value,
            last: points[2].value,
        },
    );
    s.data.insert("cpu_percent".into(), points);
    s
}

fn header(sha: u8) -> fleetset_proto::pb::FrameHeader {
    fleetset_proto::pb::FrameHeader {
        encoding: fleetset_proto::Encoding::Protobuf as i32,
        payload_sha256: vec![sha; 32],
        ..Default::default()
    }
}

/// A running store on `data_dir` (recovered first) and what stops it.
struct Running {
    tx: mpsc::Sender<StoreMsg>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

fn start(data_dir: &Path, commit_interval: Duration, commit_rows: usize) -> Running {
    start_with(StoreConfig {
        data_dir: data_dir.to_path_buf(),
        commit_interval,
        commit_rows,
        ..StoreConfig::default()
    })
}

fn start_with(cfg: StoreConfig) -> Running {
    let data_dir = cfg.data_dir.as_path();
    let recovery = files::recover(data_dir).expect("recover");
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let counters = Arc::new(Counters::default());
    let task = tokio::spawn(run(
        cfg.clone(),
        rx,
        recovery.index,
        recovery.names,
        counters.clone(),
        stop.clone(),
    ));
    Running {
        tx,
        stop,
        task,
        counters,
    }
}

impl Running {
    async fn submit(&self, s: Snapshot, sha: u8) -> oneshot::Receiver<CommitStatus> {
        let (sub, rx) = Submission::new(s, header(sha));
        self.tx
            .send(StoreMsg::Window(Box::new(sub)))
            .await
            .expect("store running");
        rx
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("store stops")
            .expect("store task");
    }
}

async fn outcome(rx: oneshot::Receiver<CommitStatus>) -> CommitStatus {
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("an outcome within 10 s")
        .expect("the store answers")
}

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

fn committed(data_dir: &Path, table: Table) -> Vec<PathBuf> {
    files::committed_files(data_dir, table, None, None)
}

#[tokio::test]
async fn committed_arrives_only_once_the_windows_files_are_in_place() {
    let dir = TempDir::new("commit");
    // Commits only by row count: 3 points per window, so the second window triggers it.
    let store = start(&dir.0, Duration::from_secs(3600), 6);
    // The commit timer's first tick is immediate: let it pass on the empty buffer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut first = store.submit(snapshot("a", 0), 0xa0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        first.try_recv(),
        Err(TryRecvError::Empty),
        "no answer before the commit"
    );
    assert!(committed(&dir.0, Table::Windows).is_empty());

    let second = store.submit(snapshot("a", 1), 0xa1).await;
    assert_eq!(outcome(first).await, CommitStatus::Committed);
    // At the moment of the answer, the rows are readable from committed files.
    assert_eq!(committed(&dir.0, Table::Windows).len(), 1);
    assert_eq!(committed(&dir.0, Table::Series).len(), 1);
    assert!(files::uncommitted_files(&dir.0, Table::Series).is_empty());
    let stored = reader::windows(&dir.0, &Query::default()).unwrap();
    assert_eq!(outcome(second).await, CommitStatus::Committed);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].snapshot.data, snapshot("a", 0).data);
    assert_eq!(stored[0].snapshot.stats, snapshot("a", 0).stats);
    assert_eq!(stored[0].snapshot.host.labels, snapshot("a", 0).host.labels);
    assert_eq!(stored[1].snapshot.seq, 2);
    assert_eq!(stored[1].payload_sha256, vec![0xa1; 32]);
    assert_eq!(stored[1].encoding, "protobuf");
    assert_eq!(
        count(&store.counters.frames_committed),
        2,
        "{}",
        store.counters.summary()
    );
    store.stop().await;
}

/// A backfill's backlog is committed once `commit_windows` windows are buffered, long before
/// the interval (an hour here): the third window commits the three; the fourth, the backlog's
/// tail, once the input pauses. Before any full batch, windows wait for the interval.
#[tokio::test]
async fn a_backlog_of_windows_commits_before_the_interval() {
    let dir = TempDir::new("commit-windows");
    let store = start_with(StoreConfig {
        data_dir: dir.0.clone(),
        commit_interval: Duration::from_secs(3600),
        commit_windows: 3,
        ..StoreConfig::default()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut first = store.submit(snapshot("a", 0), 0xb0).await;
    let second = store.submit(snapshot("a", 1), 0xb1).await;
    tokio::time::sleep(BACKLOG_PAUSE * 3).await;
    assert_eq!(
        first.try_recv(),
        Err(TryRecvError::Empty),
        "two windows, no backlog: no commit before the interval"
    );
    let third = store.submit(snapshot("a", 2), 0xb2).await;
    for rx in [first, second, third] {
        assert_eq!(outcome(rx).await, CommitStatus::Committed);
    }
    tokio::time::sleep(BACKLOG_PAUSE * 2).await;
    let fourth = store.submit(snapshot("a", 3), 0xb3).await;
    assert_eq!(
        outcome(fourth).await,
        CommitStatus::Committed,
        "the tail, on the pause"
    );
    assert_eq!(count(&store.counters.frames_committed), 4);
    assert_eq!(committed(&dir.0, Table::Windows).len(), 2);
    store.stop().await;
}

#[tokio::test]
async fn the_reader_filters_by_time_agent_label_and_metric() {
    let dir = TempDir::new("reader");
    let store = start(&dir.0, Duration::from_millis(50), 1_000_000);
    let mut outcomes = Vec::new();
    for (agent, k) in [("a", 0), ("a", 1), ("b", 1)] {
        let mut s = snapshot(agent, k);
        if agent == "b" {
            s.host.labels.insert("site".into(), "s2".into());
        }
        outcomes.push(store.submit(s, 1).await);
    }
    for o in outcomes {
        assert_eq!(outcome(o).await, CommitStatus::Committed);
    }
    store.stop().await;
    let keys = |q: Query| -> Vec<(String, i64)> {
        reader::windows(&dir.0, &q)
            .unwrap()
            .into_iter()
            .map(|w| (w.snapshot.agent_id, (w.snapshot.start - T0) / WINDOW_MS))
            .collect()
    };
    assert_eq!(keys(Query::default()).len(), 3);
    let later = Query {
        from_ms: Some(T0 + WINDOW_MS),
        ..Default::default()
    };
    assert_eq!(keys(later), [("a".into(), 1), ("b".into(), 1)]);
    let agent_a = Query {
        agents: vec!["a".into()],
        to_ms: Some(T0 + WINDOW_MS),
        ..Default::default()
    };
    assert_eq!(keys(agent_a), [("a".into(), 0)]);
    let site = Query {
        labels: vec![("site".into(), "s2".into())],
        ..Default::default()
    };
    assert_eq!(keys(site), [("b".into(), 1)]);
    let other_metric = Query {
        metrics: vec!["memory_used_mb".into()],
        ..Default::default()
    };
    let w = reader::windows(&dir.0, &other_metric).unwrap();
    assert_eq!(w.len(), 3);
    assert!(w
        .iter()
        .all(|w| w.snapshot.data.is_empty() && w.snapshot.stats.is_empty()));
}

#[tokio::test]
async fn a_crashed_commit_is_cleaned_at_open_and_a_resent_frame_is_duplicate() {
    let dir = TempDir::new("recover");
    let store = start(&dir.0, Duration::from_millis(50), 1_000_000);
    let rx = store.submit(snapshot("a", 0), 1).await;
    assert_eq!(outcome(rx).await, CommitStatus::Committed);
    store.stop().await;

    // What a crash mid-commit leaves: a temporary file, and a series file whose batch has no
    // windows file (the commit record).
    let date = schema::date_of(T0);
    let series_dir = schema::partition_dir(&dir.0, Table::Series, &date);
    let good = committed(&dir.0, Table::Series).remove(0);
    std::fs::write(
        series_dir.join(schema::temp_file_name("9999999999999-0")),
        b"half",
    )
    .unwrap();
    let orphan = series_dir.join(schema::part_file_name("9999999999999-1"));
    std::fs::copy(&good, &orphan).unwrap();

    let store = start(&dir.0, Duration::from_millis(50), 1_000_000);
    assert!(
        files::uncommitted_files(&dir.0, Table::Series).is_empty(),
        "temp file removed"
    );
    assert!(!orphan.exists(), "orphan of the unfinished commit removed");
    assert_eq!(committed(&dir.0, Table::Series), [good]);
    // The index was rebuilt from the committed windows file: the same frame is a duplicate, a
    // frame reusing its seq for another window is SeqReused (nothing stored); a new window
    // commits.
    let again = store.submit(snapshot("a", 0), 1).await;
    assert_eq!(outcome(again).await, CommitStatus::Duplicate);
    let mut same_seq = snapshot("a", 5);
    same_seq.seq = 1;
    let same_seq = store.submit(same_seq, 2).await;
    assert_eq!(outcome(same_seq).await, CommitStatus::SeqReused);
    let new = store.submit(snapshot("a", 1), 3).await;
    assert_eq!(outcome(new).await, CommitStatus::Committed);
    assert_eq!(count(&store.counters.frames_duplicate), 1);
    store.stop().await;
    let stored = reader::windows(&dir.0, &Query::default()).unwrap();
    assert_eq!(
        stored.iter().map(|w| w.snapshot.seq).collect::<Vec<_>>(),
        [1, 2],
        "each window once"
    );
}

#[tokio::test]
async fn extreme_keys_and_a_key_in_two_partitions_recover_without_panic() {
    // What a store written before the contract may hold: seqs 2^63, 2^63 − 1 and 0 of one
    // agent, and the same windows file in two date partitions.
    let dir = TempDir::new("extreme");
    let store = start(&dir.0, Duration::from_millis(50), 1_000_000);
    for (k, seq) in [(0, 1u64 << 63), (1, (1 << 63) - 1), (2, 0)] {
        let mut s = snapshot("x", k);
        s.seq = seq;
        let rx = store.submit(s, k as u8).await;
        assert_eq!(outcome(rx).await, CommitStatus::Committed);
    }
    store.stop().await;
    let other = schema::partition_dir(&dir.0, Table::Windows, "2000-01-01");
    std::fs::create_dir_all(&other).unwrap();
    for file in committed(&dir.0, Table::Windows) {
        std::fs::copy(&file, other.join(file.file_name().unwrap())).unwrap();
    }
    for _ in 0..2 {
        let r = files::recover(&dir.0).expect("recover");
        assert_eq!((r.duplicate_keys, r.index.windows()), (3, 3));
    }
    let store = start(&dir.0, Duration::from_millis(50), 1_000_000);
    let rx = store.submit(snapshot("x", 1), 9).await;
    assert_eq!(outcome(rx).await, CommitStatus::Duplicate);
    let rx = store.submit(snapshot("x", 3), 10).await;
    assert_eq!(outcome(rx).await, CommitStatus::Committed);
    store.stop().await;
}

#[tokio::test]
async fn a_failed_commit_answers_failed_for_the_window_and_its_duplicate() {
    let dir = TempDir::new("failed");
    // The data directory is a regular file: every partition directory fails to be created.
    let data_dir = dir.0.join("not-a-dir");
    std::fs::write(&data_dir, b"").unwrap();
    let store = start(&data_dir, Duration::from_secs(3600), 1_000_000);
    let original = store.submit(snapshot("a", 0), 1).await;
    let duplicate = store.submit(snapshot("a", 0), 1).await;
    let counters = store.counters.clone();
    store.stop().await; // commits what is buffered
    let CommitStatus::Failed(reason) = outcome(original).await else {
        panic!("expected Failed");
    };
    assert!(reason.contains("not-a-dir"), "{reason}");
    assert!(matches!(outcome(duplicate).await, CommitStatus::Failed(_)));
    assert_eq!(count(&counters.commit_failures), 1);
    assert_eq!(count(&counters.frames_committed), 0);
}

/// The schema of every file written: `windows` has only fixed and label columns, `stats` is
/// long and fixed, whatever the metrics (issue 11: 10,000 metrics made a 70,140-column file).
#[tokio::test]
async fn many_metrics_make_rows_not_columns() {
    let dir = TempDir::new("long-stats");
    let store = start(&dir.0, Duration::from_millis(50), 1_000_000);
    let mut s = snapshot("a", 0);
    let st = s.stats["cpu_percent"];
    for i in 0..500 {
        s.stats.insert(format!("m{i:04}"), st);
    }
    assert_eq!(
        outcome(store.submit(s.clone(), 1).await).await,
        CommitStatus::Committed
    );
    store.stop().await;
    let width = |table| {
        let f = std::fs::File::open(&committed(&dir.0, table)[0]).unwrap();
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        (
            b.schema().fields().len(),
            b.metadata().file_metadata().num_rows(),
        )
    };
    assert_eq!(
        width(Table::Windows),
        (schema::windows_fixed_fields().len() + 1, 1),
        "fixed columns and label_site"
    );
    assert_eq!(
        width(Table::Stats),
        (schema::stats_schema().fields().len(), 501)
    );
    // The wide view still gives every statistic back.
    let stored = reader::windows(&dir.0, &Query::default()).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].snapshot.stats, s.stats);
}

/// Beyond `max_agents` / `max_metric_names` / `max_label_keys` a new name is refused, known ones
/// pass, and the sets come back on recovery.
#[tokio::test]
async fn fleet_wide_caps_refuse_new_names_and_survive_recovery() {
    let dir = TempDir::new("caps");
    let cfg = StoreConfig {
        data_dir: dir.0.clone(),
        commit_interval: Duration::from_millis(50),
        max_agents: 2,
        max_metric_names: 2,
        max_label_keys: 1,
        ..StoreConfig::default()
    };
    let limited = |st: &CommitStatus, what: &str| {
        assert!(
            matches!(st, CommitStatus::CardinalityLimit(r) if r.contains(what)),
            "{st:?} should name {what}"
        )
    };
    let with_metric = |mut s: Snapshot, m: &str| {
        let st = s.stats["cpu_percent"];
        s.stats.insert(m.into(), st);
        s
    };
    let store = start_with(cfg.clone());
    let ok = CommitStatus::Committed;
    assert_eq!(outcome(store.submit(snapshot("a", 0), 1).await).await, ok);
    assert_eq!(outcome(store.submit(snapshot("b", 0), 2).await).await, ok);
    limited(
        &outcome(store.submit(snapshot("c", 0), 3).await).await,
        "store.max_agents",
    );
    let two = with_metric(snapshot("a", 1), "mem");
    assert_eq!(outcome(store.submit(two, 4).await).await, ok);
    let three = with_metric(snapshot("a", 2), "disk");
    limited(
        &outcome(store.submit(three, 5).await).await,
        "store.max_metric_names",
    );
    let mut rack = snapshot("b", 1);
    rack.host.labels.insert("rack".into(), "r1".into());
    limited(
        &outcome(store.submit(rack, 6).await).await,
        "store.max_label_keys",
    );
    store.stop().await;

    // After a restart the sets are rebuilt from the files: same answers.
    let r = files::recover(&dir.0).expect("recover");
    assert_eq!(
        (r.index.agents(), r.names.metrics(), r.names.label_keys()),
        (2, 2, 1)
    );
    let store = start_with(cfg);
    limited(
        &outcome(store.submit(snapshot("c", 0), 7).await).await,
        "store.max_agents",
    );
    let three = with_metric(snapshot("b", 3), "disk");
    limited(
        &outcome(store.submit(three, 8).await).await,
        "store.max_metric_names",
    );
    let known = with_metric(snapshot("b", 4), "mem");
    assert_eq!(outcome(store.submit(known, 9).await).await, ok);
    store.stop().await;
    let stored = reader::windows(&dir.0, &Query::default()).unwrap();
    assert_eq!(stored.len(), 4, "nothing of a refused frame is stored");
}

/// `stats` reads long and filters by metric; the windows view pivots only the selected metrics.
#[tokio::test]
async fn stats_scan_filters_by_metric_and_the_windows_view_pivots_the_selection() {
    let dir = TempDir::new("stats-scan");
    let store = start(&dir.0, Duration::from_millis(50), 1_000_000);
    let mut s = snapshot("a", 0);
    let st = s.stats["cpu_percent"];
    s.stats.insert("mem".into(), st);
    assert_eq!(
        outcome(store.submit(s, 1).await).await,
        CommitStatus::Committed
    );
    store.stop().await;
    let q = Query {
        metrics: vec!["mem".into()],
        ..Default::default()
    };
    let stats = reader::Scan::open(&dir.0, Table::Stats, &q)
        .unwrap()
        .read_all()
        .unwrap()
        .unwrap();
    assert_eq!(stats.num_rows(), 1);
    let m = reader::column::<arrow::array::StringArray>(&stats, schema::METRIC).unwrap();
    assert_eq!(m.value(0), "mem");
    let w = reader::Scan::open(&dir.0, Table::Windows, &q).unwrap();
    let names: Vec<&str> = w
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert!(
        names.contains(&"mem__mean") && !names.iter().any(|n| n.starts_with("cpu_percent")),
        "{names:?}"
    );
    let b = w.read_all().unwrap().unwrap();
    let mean = reader::column::<arrow::array::Float64Array>(&b, "mem__mean").unwrap();
    assert_eq!(mean.value(0), st.mean);
}
