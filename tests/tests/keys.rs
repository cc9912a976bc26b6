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

/// `pki init` in `dir/pki` and `pki issue-agent` for each of `agents`; returns the pki dir.
fn pki(dir: &Path, agents: &[&str]) -> std::path::PathBuf {
    let pki = dir.join("pki");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin("fleetset-aggregator"))
            .arg("pki")
            .args(args)
            .output()
            .expect("run pki");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let d = pki.to_str().unwrap();
    run(&["init", "--dir", d]);
    for a in agents {
        run(&["issue-agent", "--dir", d, a]);
    }
    pki
}

/// The derived key `pki issue-agent` wrote for `agent_id` (hex).
fn agent_key_hex(pki: &Path, agent_id: &str) -> String {
    std::fs::read_to_string(pki.join("agents").join(agent_id).join("hmac.key"))
        .unwrap()
        .trim()
        .to_string()
}

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
    let pki = pki(dir.path(), &["keyed-1"]);
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
    let key = format!("transport.hmac_key_hex={}", agent_key_hex(&pki, "keyed-1"));
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
        wait_for("every frame acked by the fake", Duration::from_secs(60), || {
            (fake.seen.load(SeqCst) & all == all).then_some(())
        })
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
    assert_eq!(spooled_files(&state), WINDOWS as usize, "the spool kept every window");

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
