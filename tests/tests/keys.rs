//! Per-agent HMAC keys and signed acks on real processes (issue 12): a fake aggregator that
//! acks COMMITTED unsigned or with a wrong MAC makes the agent delete nothing; forged frames for
//! an agent (unsigned, a made-up key, another agent's derived key) are never stored.

use fleetset_proto::pb;
use fleetset_tests::*;
use prost::Message;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_700_000_000 - 1_700_000_000 % 3600; // a whole hour, Unix s

fn counter(state: &Path, name: &str) -> u64 {
    agent_counters(state).map_or(0, |c| c[name].as_u64().unwrap_or(0))
}

fn spooled_files(state: &Path) -> usize {
    std::fs::read_dir(state.join("spool")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".frame"))
            .count()
    })
}

/// What the fake aggregator answers: 0 unsigned COMMITTED, 1 COMMITTED with a wrong MAC.
struct Fake {
    mode: AtomicU8,
    stop: AtomicBool,
    acks_sent: AtomicU64,
    /// Bit `seq` set once seq was received in the current mode (seqs 1..=63).
    seen: AtomicU64,
}

/// A ZeroMQ ROUTER on `endpoint` acking every frame as `fake.mode` says, until `fake.stop`.
fn fake_aggregator(endpoint: String, fake: Arc<Fake>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind(&endpoint).unwrap();
        while !fake.stop.load(SeqCst) {
            if router.poll(zmq::POLLIN, 100).unwrap_or(0) == 0 {
                continue;
            }
            let Ok(parts) = router.recv_multipart(0) else {
                continue;
            };
            let [identity, header, _payload] = <[Vec<u8>; 3]>::try_from(parts).unwrap();
            let h = pb::FrameHeader::decode(header.as_slice()).unwrap();
            let mut ack = pb::Ack {
                agent_id: h.agent_id.clone(),
                seq: h.seq,
                status: pb::AckStatus::Committed as i32,
                ..Default::default()
            };
            if fake.mode.load(SeqCst) == 1 {
                fleetset_proto::sign_ack(&mut ack, Some(b"not the agent's key"), &h.payload_sha256);
            }
            fake.seen.fetch_or(1u64 << h.seq.min(63), SeqCst);
            router
                .send_multipart([identity, ack.encode_to_vec()], 0)
                .unwrap();
            fake.acks_sent.fetch_add(1, SeqCst);
        }
    })
}

#[test]
fn a_fake_aggregator_cannot_make_the_agent_delete_its_spool() {
    const WINDOWS: u64 = 12;
    let dir = TempDir::new("fake-aggregator");
    let pki = fleetset_pki(dir.path(), &["keyed-1"]);
    let csv = dir.path().join("load.csv");
    write_csv(&csv, T0, WINDOWS as usize, 60, 3).unwrap();
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let fake = Arc::new(Fake {
        mode: AtomicU8::new(0),
        stop: AtomicBool::new(false),
        acks_sent: AtomicU64::new(0),
        seen: AtomicU64::new(0),
    });
    let thread = fake_aggregator(endpoint.clone(), fake.clone());
    let key = format!(
        "transport.hmac_key_hex={}",
        issued_hmac_key_hex(&pki, "keyed-1")
    );
    let mut agent = replay_agent(
        dir.path(),
        &csv,
        "keyed-1",
        &endpoint,
        "1m",
        &["--set", "transport.ack_timeout=500ms", "--set", &key],
    );
    let state = dir.path().join("keyed-1");
    let all: u64 = (1..=WINDOWS).fold(0, |m, s| m | 1 << s);
    for mode in [0u8, 1] {
        fake.seen.store(0, SeqCst);
        fake.mode.store(mode, SeqCst);
        let before = fake.acks_sent.load(SeqCst);
        wait_for(
            "every frame acked by the fake",
            Duration::from_secs(60),
            || (fake.seen.load(SeqCst) & all == all).then_some(()),
        )
        .unwrap();
        // Every ack of this mode is counted unverified (status.json is written every 5 s).
        let want = before + WINDOWS;
        wait_for("acks_unverified", Duration::from_secs(30), || {
            (counter(&state, "acks_unverified") >= want).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    }
    fake.stop.store(true, SeqCst);
    thread.join().unwrap();
    let sent = fake.acks_sent.load(SeqCst);
    wait_for("every fake ack counted", Duration::from_secs(30), || {
        (counter(&state, "acks_unverified") == sent).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", agent_counters(&state)));
    assert_eq!(counter(&state, "frames_committed"), 0);
    assert_eq!(counter(&state, "frames_duplicate"), 0);
    assert_eq!(counter(&state, "frames_rejected"), 0);
    assert_eq!(counter(&state, "spool_frames"), WINDOWS);
    assert_eq!(
        spooled_files(&state),
        WINDOWS as usize,
        "the spool kept every window"
    );

    // The real aggregator on the same endpoint, verifying with the master key: the agent
    // reconnects, everything lands exactly once and the replay ends.
    let master = format!(
        "ingest.hmac_master_key_file={}",
        pki.join("master.key").display()
    );
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--commit-interval",
            "50ms",
            "--zmq-bind",
            &endpoint,
            "--set",
            "ingest.grpc.enabled=false",
            "--set",
            &master,
        ],
    )
    .unwrap();
    assert!(
        agent.wait(Duration::from_secs(60)).unwrap(),
        "{}",
        agent.log_text()
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let stored = stored_windows(&agg.data_dir, "keyed-1").unwrap();
    let seqs: Vec<u64> = stored.iter().map(|s| s.1).collect();
    assert_eq!(seqs, (1..=WINDOWS).collect::<Vec<_>>(), "each window once");
    assert_eq!(spooled_files(&state), 0);
    // The agent's delivery events: each frame acked (verified) once, only by the real one.
    let acked: Vec<u64> = agent.acked().iter().map(|a| a.seq).collect();
    assert_eq!(acked, (1..=WINDOWS).collect::<Vec<_>>());
}

/// agent `agent_id`'s window (`seq`, `[start, end)`) with one forged metric, signed with `key`.
fn forged(agent_id: &str, seq: u64, start: i64, end: i64, key: Option<Vec<u8>>) -> pb::Frame {
    let mut s = fleetset_proto::Snapshot {
        agent_id: agent_id.into(),
        seq,
        start,
        end,
        ..Default::default()
    };
    s.data.insert(
        "forged".into(),
        vec![fleetset_proto::Point {
            ts_ms: start,
            value: 1.0,
        }],
    );
    let opts = fleetset_proto::SealOptions {
        encoding: fleetset_proto::Encoding::Msgpack,
        hmac_key: key,
        ..Default::default()
    };
    fleetset_proto::seal(&s, &opts).unwrap()
}

#[test]
fn forged_future_windows_read_off_the_live_pub_are_never_stored() {
    let dir = TempDir::new("forgery");
    let pki = fleetset_pki(dir.path(), &["real-1", "other-2"]);
    let master = format!(
        "ingest.hmac_master_key_file={}",
        pki.join("master.key").display()
    );
    let mut agg =
        Aggregator::start(dir.path(), &["--commit-interval", "50ms", "--set", &master]).unwrap();
    let key = format!(
        "transport.hmac_key_hex={}",
        issued_hmac_key_hex(&pki, "real-1")
    );
    let mut agent = synthetic_agent_with(
        dir.path(),
        "real-1",
        ("1s", "50ms"),
        &["--aggregator", &agg.zmq, "--set", &key],
    );

    // The attacker: ids, seqs and windows off the unauthenticated live PUB.
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.connect(&agg.zmq_pub).unwrap();
    sub.set_subscribe(b"snapshot.real-1").unwrap();
    assert!(sub.poll(zmq::POLLIN, 30_000).unwrap() > 0, "no live window");
    let parts = sub.recv_multipart(0).unwrap();
    let h = pb::FrameHeader::decode(parts[1].as_slice()).unwrap();
    let len = h.window_end_ms - h.window_start_ms;
    let other = hex::decode(issued_hmac_key_hex(&pki, "other-2")).unwrap();
    let mut frames = Vec::new();
    for k in 2..=6u64 {
        let start = h.window_start_ms + k as i64 * len;
        for key in [None, Some(b"made-up key".to_vec()), Some(other.clone())] {
            frames.push(forged("real-1", h.seq + k, start, start + len, key));
        }
    }
    let last_forged = h.seq + 6;

    // Forged over ZeroMQ.
    let dealer = ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.connect(&agg.zmq).unwrap();
    for f in &frames {
        dealer
            .send_multipart(fleetset_proto::frame::to_parts(f), 0)
            .unwrap();
    }
    let mut reasons = Vec::new();
    for _ in &frames {
        assert!(dealer.poll(zmq::POLLIN, 10_000).unwrap() > 0, "no ack");
        let ack = pb::Ack::decode(dealer.recv_bytes(0).unwrap().as_slice()).unwrap();
        reasons.push((ack.status, ack.reason));
    }
    // Forged over gRPC.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = pb::ingest_client::IngestClient::connect(agg.grpc.clone())
            .await
            .unwrap();
        let out = tokio_stream::iter(frames.clone());
        let mut acks = client.publish(out).await.unwrap().into_inner();
        for _ in &frames {
            let ack = tokio::time::timeout(Duration::from_secs(10), acks.message())
                .await
                .expect("an ack within 10 s")
                .unwrap()
                .expect("ack");
            reasons.push((ack.status, ack.reason));
        }
    });
    let rejected = (
        pb::AckStatus::Rejected as i32,
        pb::RejectReason::BadSignature as i32,
    );
    assert!(reasons.iter().all(|r| *r == rejected), "{reasons:?}");

    // The real agent goes on past the forged seqs; then stop it and read the store back.
    wait_for(
        "the real agent past the forged seqs",
        Duration::from_secs(60),
        || {
            let s = stored_windows(&agg.data_dir, "real-1").ok()?;
            s.iter().any(|w| w.1 > last_forged + 1).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    agent.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let query = fleetset_aggregator::store::reader::Query::default();
    let windows = fleetset_aggregator::store::reader::windows(&agg.data_dir, &query).unwrap();
    assert!(
        windows
            .iter()
            .all(|w| !w.snapshot.data.contains_key("forged")),
        "a forged window was stored"
    );
    let mut per_seq = std::collections::BTreeMap::<u64, usize>::new();
    for w in windows.iter().filter(|w| w.snapshot.agent_id == "real-1") {
        *per_seq.entry(w.snapshot.seq).or_default() += 1;
    }
    let max = *per_seq.keys().last().unwrap();
    assert!(max > last_forged);
    assert_eq!(
        per_seq,
        (1..=max).map(|s| (s, 1)).collect(),
        "every real window once"
    );
    let c = aggregator_counters(&agg.data_dir).unwrap();
    assert_eq!(
        c["rejected_bad_signature"].as_u64(),
        Some(2 * frames.len() as u64)
    );
    assert_eq!(c["frames_duplicate"].as_u64().unwrap_or(0), 0, "{c}");
}
