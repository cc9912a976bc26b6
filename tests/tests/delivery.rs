//! SPEC.md's delivery guarantee on real processes: every window an agent produced is in the
//! store exactly once through aggregator SIGKILLs, agent SIGKILLs, outages, a full spool and a
//! corrupted spool — with the replay source as the load generator.

use fleetset_tests::*;
use std::path::Path;
use std::time::Duration;

const T0: i64 = 1_700_000_000 - 1_700_000_000 % 3600; // a whole hour, Unix s

/// A `fleetset-agent` with `args`, log `dir/<log>.log`, events `dir/<log>.events.jsonl`.
fn spawn(dir: &Path, log: &str, args: &[String]) -> Proc {
    agent(
        dir,
        log,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn replay_args(
    csv: &Path,
    state: &Path,
    agent_id: &str,
    endpoint: &str,
    transport: &str,
    window: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut a: Vec<String> = [
        "replay",
        csv.to_str().unwrap(),
        "--agent-id",
        agent_id,
        "--state-dir",
        state.to_str().unwrap(),
        "--aggregator",
        endpoint,
        "--transport",
        transport,
        "--window",
        window,
        "--set",
        "transport.ack_timeout=1s",
        "--set",
        "window.lttb.threshold=3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// An aggregator (ZeroMQ only, 50 ms commits) on a fixed endpoint an agent already targets.
fn aggregator_at(dir: &Path, endpoint: &str) -> Aggregator {
    Aggregator::start(
        dir,
        &[
            "--commit-interval",
            "50ms",
            "--zmq-bind",
            endpoint,
            "--set",
            "ingest.grpc.enabled=false",
        ],
    )
    .unwrap()
}

fn seed() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("fault timing seed: {s}");
    s
}

/// Every expected window exactly once, nothing else.
fn assert_exactly_once(stored: &[(i64, u64)], expected: impl Iterator<Item = i64>) {
    let starts: Vec<i64> = stored.iter().map(|s| s.0).collect();
    let want: Vec<i64> = expected.collect();
    let dups = starts.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(dups, 0, "duplicated windows");
    assert_eq!(
        starts.len(),
        want.len(),
        "stored {} windows, expected {}",
        starts.len(),
        want.len()
    );
    assert_eq!(starts, want);
}

fn aggregator_kills(transport: &str) {
    const WINDOWS: usize = 10_000;
    let dir = TempDir::new(&format!("kill-{transport}"));
    let csv = dir.path().join("load.csv");
    write_csv(&csv, T0, WINDOWS, 60, 2).unwrap();
    // Fixed ports outside the ephemeral range, so the restarts can always bind them again.
    let zmq_bind = format!("tcp://127.0.0.1:{}", free_port());
    let grpc_listen = format!("127.0.0.1:{}", free_port());
    let listen = [
        "--commit-interval",
        "50ms",
        "--zmq-bind",
        &zmq_bind,
        "--grpc-listen",
        &grpc_listen,
    ];
    let agg = Aggregator::start(dir.path(), &listen).unwrap();
    let endpoint = if transport == "zmq" {
        agg.zmq.clone()
    } else {
        agg.grpc.clone()
    };
    let args = replay_args(
        &csv,
        &dir.path().join("st"),
        "loadgen",
        &endpoint,
        transport,
        "1m",
        &[],
    );
    let mut agent = spawn(dir.path(), "agent", &args);

    let mut rng = Rng(seed());
    let mut agg = Some(agg);
    for kill in 0..12 {
        std::thread::sleep(Duration::from_millis(rng.range(150, 900)));
        if let Some(a) = agg.take() {
            a.proc.signal("KILL").unwrap();
        }
        std::thread::sleep(Duration::from_millis(rng.range(50, 400)));
        agg = Some(Aggregator::start(dir.path(), &listen).unwrap());
        eprintln!("kill {kill} done; acked so far: {}", agent.acked().len());
    }
    assert!(
        agent.wait(Duration::from_secs(300)).unwrap(),
        "replay failed:\n{}",
        agent.log_text()
    );
    let mut agg = agg.unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let stored = stored_windows(&agg.data_dir, "loadgen").unwrap();
    assert_exactly_once(&stored, (0..WINDOWS as i64).map(|w| (T0 + w * 60) * 1000));
    // Every file under the data directory is readable Parquet, by us (above) and by pyarrow.
    let check = std::process::Command::new(python())
        .args(["-c", "import sys,glob,pyarrow.parquet as pq\nfs=glob.glob(sys.argv[1]+'/**/*.parquet',recursive=True)\nn=sum(pq.read_table(f).num_rows for f in fs)\nprint(len(fs),n)"])
        .arg(&agg.data_dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "pyarrow could not read a file: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // No commit was torn into an unreadable windows file.
    let quarantine = agg.data_dir.join("quarantine");
    assert!(
        std::fs::read_dir(&quarantine).map_or(true, |d| d.count() == 0),
        "windows files quarantined in {}",
        quarantine.display()
    );
    // The agent saw every frame delivered (COMMITTED, or DUPLICATE for a resend).
    let mut seqs: Vec<u64> = agent.acked().iter().map(|a| a.seq).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs, (1..=WINDOWS as u64).collect::<Vec<_>>());
}

#[test]
fn zmq_replay_survives_aggregator_sigkills() {
    aggregator_kills("zmq");
}

#[test]
fn grpc_replay_survives_aggregator_sigkills() {
    aggregator_kills("grpc");
}

#[test]
fn agent_sigkills_lose_and_duplicate_nothing() {
    const WINDOWS: usize = 2000;
    let dir = TempDir::new("agent-kill");
    let csv = dir.path().join("load.csv");
    write_csv(&csv, T0, WINDOWS, 60, 3).unwrap();
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "50ms"]).unwrap();
    let state = dir.path().join("st");
    let args = replay_args(
        &csv,
        &state,
        "crashy",
        &agg.zmq,
        "zmq",
        "1m",
        &["--rate", "500"],
    );
    let mut rng = Rng(seed());
    let mut runs = Vec::new();
    for round in 0..5 {
        let mut agent = spawn(dir.path(), &format!("agent{round}"), &args);
        std::thread::sleep(Duration::from_millis(rng.range(300, 900)));
        agent.signal("KILL").unwrap();
        assert!(agent.wait(Duration::from_secs(10)).is_ok());
        runs.push(agent);
    }
    let mut last = spawn(dir.path(), "agent-final", &args);
    assert!(
        last.wait(Duration::from_secs(120)).unwrap(),
        "{}",
        last.log_text()
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let stored = stored_windows(&agg.data_dir, "crashy").unwrap();
    assert_exactly_once(&stored, (0..WINDOWS as i64).map(|w| (T0 + w * 60) * 1000));
    // seq continued across the crashes: one seq per window, 1..=N, in window order.
    let seqs: Vec<u64> = stored.iter().map(|s| s.1).collect();
    assert_eq!(seqs, (1..=WINDOWS as u64).collect::<Vec<_>>());
    // Across the six runs, every frame was reported delivered (a frame acked just before a
    // kill is resent by the next run and acked DUPLICATE).
    runs.push(last);
    let mut acked: Vec<u64> = runs.iter().flat_map(|r| r.acked()).map(|a| a.seq).collect();
    acked.sort();
    acked.dedup();
    assert_eq!(acked, seqs);
}

/// What [`outage`] saw: stored windows, the dropped counter, the seqs of the agent's `dropped`
/// events, and those of them that had a `sent` event before their `dropped` one.
type Outage = (Vec<(i64, u64)>, u64, Vec<u64>, Vec<u64>);

/// A day of 5-minute windows (288) accumulates in the spool while no aggregator runs; with a
/// `spool_max` the oldest are dropped.
fn outage(tag: &str, spool_max: Option<&str>) -> Outage {
    let dir = TempDir::new(tag);
    let csv = dir.path().join("day.csv");
    write_csv(&csv, T0, 288, 300, 5).unwrap();
    let port = free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let state = dir.path().join("st");
    let spool_max = spool_max.map(|m| format!("spool.max_bytes={m}"));
    // With a small spool, `--max-ahead 0`: replay would otherwise wait for the aggregator
    // instead of filling the spool past its bound.
    let extra: Vec<&str> = spool_max
        .as_deref()
        .map(|m| vec!["--set", m, "--max-ahead", "0"])
        .unwrap_or_default();
    let args = replay_args(&csv, &state, "outage", &endpoint, "zmq", "5m", &extra);
    let mut agent = spawn(dir.path(), "agent", &args);
    wait_for(
        "a day of frames in the spool",
        Duration::from_secs(60),
        || {
            agent_counters(&state)
                .filter(|c| c["windows"] == 288)
                .map(|_| ())
        },
    )
    .unwrap();
    let mut agg = aggregator_at(dir.path(), &endpoint);
    assert!(
        agent.wait(Duration::from_secs(120)).unwrap(),
        "{}",
        agent.log_text()
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let dropped = agent_counters(&state).unwrap()["frames_dropped_spool_full"]
        .as_u64()
        .unwrap();
    let events = agent.events();
    let dropped_seqs = of_kind(&events, "dropped", "")
        .iter()
        .map(|e| {
            assert_eq!(e.reason, "spool_full", "{e:?}");
            e.seq.unwrap()
        })
        .collect();
    let mut sent = std::collections::HashSet::new();
    let mut sent_then_dropped = Vec::new();
    for e in &events {
        match e.event.as_str() {
            "sent" => {
                sent.insert(e.seq);
            }
            "dropped" if sent.contains(&e.seq) => sent_then_dropped.extend(e.seq),
            _ => {}
        }
    }
    (
        stored_windows(&agg.data_dir, "outage").unwrap(),
        dropped,
        dropped_seqs,
        sent_then_dropped,
    )
}

#[test]
fn a_day_long_outage_delivers_everything_after() {
    let (stored, dropped, dropped_seqs, _) = outage("outage", None);
    assert_eq!(dropped, 0);
    assert_eq!(dropped_seqs, Vec::<u64>::new());
    assert_exactly_once(&stored, (0..288).map(|w| (T0 + w * 300) * 1000));
}

#[test]
fn a_full_spool_drops_exactly_the_oldest_and_counts_them() {
    let (stored, dropped, dropped_seqs, sent_then_dropped) = outage("outage-small", Some("40000"));
    assert!(dropped > 0 && dropped < 288, "dropped {dropped}");
    assert_eq!(
        dropped_seqs,
        (1..=dropped).collect::<Vec<_>>(),
        "the oldest, in order"
    );
    // A frame dropped from the spool after it was sent may still arrive (it was in the link's
    // queue when the aggregator came up, before any resend): then it is stored once. Every
    // frame not dropped is stored exactly once; no other dropped frame is.
    let early: Vec<u64> = stored
        .iter()
        .map(|s| s.1)
        .filter(|&seq| seq <= dropped)
        .collect();
    assert!(
        early.iter().all(|s| sent_then_dropped.contains(s)),
        "stored frames dropped before they were sent: {early:?}"
    );
    let first = (dropped - early.len() as u64) as i64;
    assert_exactly_once(&stored, (first..288).map(|w| (T0 + w * 300) * 1000));
}

#[test]
fn corrupt_spool_files_are_quarantined_and_the_rest_flows() {
    let dir = TempDir::new("corrupt");
    let csv = dir.path().join("c.csv");
    write_csv(&csv, T0, 50, 60, 4).unwrap();
    let port = free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let state = dir.path().join("st");
    let args = replay_args(&csv, &state, "corrupt", &endpoint, "zmq", "1m", &[]);
    let agent = spawn(dir.path(), "agent1", &args);
    wait_for("50 frames spooled", Duration::from_secs(30), || {
        agent_counters(&state)
            .filter(|c| c["spool_frames"] == 50)
            .map(|_| ())
    })
    .unwrap();
    agent.signal("KILL").unwrap();
    drop(agent);

    // Truncate seq 7's file, flip one byte in the middle of seq 23's.
    let spool = state.join("spool");
    let f7 = spool.join(format!("{:020}.frame", 7));
    let len = std::fs::metadata(&f7).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f7)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let f23 = spool.join(format!("{:020}.frame", 23));
    let mut bytes = std::fs::read(&f23).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    std::fs::write(&f23, bytes).unwrap();

    let mut agg = aggregator_at(dir.path(), &endpoint);
    let mut agent = spawn(dir.path(), "agent2", &args);
    assert!(
        agent.wait(Duration::from_secs(60)).unwrap(),
        "{}",
        agent.log_text()
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    assert_eq!(agent_counters(&state).unwrap()["spool_quarantined"], 2);
    assert_eq!(
        std::fs::read_dir(spool.join("quarantine")).unwrap().count(),
        2
    );
    let stored = stored_windows(&agg.data_dir, "corrupt").unwrap();
    let want = (0..50i64)
        .filter(|w| *w != 6 && *w != 22)
        .map(|w| (T0 + w * 60) * 1000);
    assert_exactly_once(&stored, want);
}
