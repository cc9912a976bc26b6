//! ZeroMQ on libzmq (issue 11): a 74-byte ZMTP 3.0 greeting and frame header declaring a 1 TiB
//! body, sent before the handshake, aborts a zeromq 0.7 ROUTER (its codec reserves the declared
//! length: "memory allocation of 1099511693385 bytes failed") — reproduced here in a child
//! process — while the real aggregator and a real agent (against a fake aggregator sending the
//! same bytes) stay up and keep delivering. Also: a peer flooding junk and never reading its acks
//! does not starve a real agent.

use fleetset_tests::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Environment variable that turns [`zeromq_07_router_child`] on and names its endpoint file.
const CHILD_ENV: &str = "FLEETSET_ZEROMQ07_ROUTER_ENDPOINT_FILE";

/// A ZMTP 3.0 greeting (64 bytes: signature, version 3.0, mechanism NULL, as-server 0, filler)
/// followed by a long message frame header declaring a 1 TiB body (flags 0x02, 8-byte big-endian
/// length) and one body byte: 74 bytes.
fn tib_header() -> Vec<u8> {
    let mut b = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    b.extend_from_slice(&mechanism);
    b.push(0); // as-server
    b.resize(64, 0); // filler
    b.push(0x02);
    b.extend_from_slice(&(1u64 << 40).to_be_bytes());
    b.push(0);
    assert_eq!(b.len(), 74);
    b
}

/// Connects to `tcp://host:port` and sends [`tib_header`]; keeps the connection open.
fn attack(endpoint: &str) -> TcpStream {
    let addr = endpoint.strip_prefix("tcp://").expect("a tcp endpoint");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&tib_header()).expect("send the header");
    s
}

/// Not a test of its own: the child process of
/// [`a_zeromq_07_router_aborts_on_a_header_declaring_1_tib`], a zeromq 0.7 ROUTER that receives
/// until it dies.
#[tokio::test]
#[ignore = "child process of a_zeromq_07_router_aborts_on_a_header_declaring_1_tib"]
async fn zeromq_07_router_child() {
    use zeromq::{RouterSocket, Socket, SocketRecv};
    let Ok(file) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut router = RouterSocket::new();
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap();
    std::fs::write(&file, endpoint.to_string()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let _ = router.recv().await;
        }
    })
    .await;
}

#[test]
fn a_zeromq_07_router_aborts_on_a_header_declaring_1_tib() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("zmq07-abort");
    let file = dir.path().join("endpoint");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "zeromq_07_router_child", "--ignored"])
        .env(CHILD_ENV, &file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let endpoint = loop {
        match std::fs::read_to_string(&file) {
            Ok(e) if !e.is_empty() => break e,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("the zeromq 0.7 child did not bind in 20 s");
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let _conn = attack(&endpoint);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline + Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the zeromq 0.7 ROUTER survived the 1 TiB header");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}: {stderr}");
    assert!(stderr.contains("memory allocation of"), "{stderr}");
}

#[test]
fn the_aggregator_survives_a_header_declaring_1_tib() {
    let dir = TempDir::new("zmq-tib-aggregator");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "100ms"]).unwrap();
    let conns: Vec<TcpStream> = (0..3).map(|_| attack(&agg.zmq)).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        agg.proc.is_running(),
        "aggregator died: {}",
        agg.proc.log_text()
    );
    assert_eq!(http_get(&agg.metrics, "/healthz").unwrap().trim(), "ok");
    let mut agent = synthetic_agent(dir.path(), "after-tib", "lab", &agg.zmq, "1s");
    agent.wait_acked(3, Duration::from_secs(60)).unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    drop(conns);
    assert!(agg.proc.is_running());
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn an_agent_survives_a_fake_aggregator_sending_a_header_declaring_1_tib() {
    let dir = TempDir::new("zmq-tib-agent");
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", fake.local_addr().unwrap());
    let mut agent = synthetic_agent(dir.path(), "victim", "lab", &endpoint, "1s");
    // Every connection the agent makes (libzmq reconnects) gets the header, for 3 s.
    fake.set_nonblocking(true).unwrap();
    let mut attacked = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Ok((mut s, _)) = fake.accept() {
            s.set_nonblocking(false).unwrap();
            s.write_all(&tib_header()).unwrap();
            attacked.push(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!attacked.is_empty(), "the agent never connected");
    assert!(agent.is_running(), "agent died: {}", agent.log_text());
    // A real aggregator on the same port: the agent's windows land there.
    drop((fake, attacked));
    let agg = Aggregator::start(
        dir.path(),
        &["--commit-interval", "100ms", "--zmq-bind", &endpoint],
    )
    .unwrap();
    agent.wait_acked(3, Duration::from_secs(60)).unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    drop(agg);
}

#[test]
fn a_peer_flooding_junk_and_never_reading_acks_does_not_starve_an_agent() {
    let dir = TempDir::new("zmq-junk-flood");
    // Small queues to the flooder, so its acks hit the high-water mark at once.
    let agg = Aggregator::start(
        dir.path(),
        &[
            "--commit-interval",
            "100ms",
            "--set",
            "ingest.zmq.sndhwm=10",
        ],
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let (endpoint, stop) = (agg.zmq.clone(), stop.clone());
        std::thread::spawn(move || {
            let ctx = zmq::Context::new();
            let s = ctx.socket(zmq::DEALER).unwrap();
            s.set_rcvhwm(1).unwrap();
            s.set_sndhwm(100).unwrap();
            s.set_linger(0).unwrap();
            s.connect(&endpoint).unwrap();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // One-part junk: rejected, acked REJECTED — acks it never reads.
                if s.send(&b"junk"[..], zmq::DONTWAIT).is_ok() {
                    sent += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let mut agent = synthetic_agent(dir.path(), "honest", "lab", &agg.zmq, "1s");
    let acked = agent.wait_acked(5, Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    acked.unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    let events = agent.events();
    assert!(
        acked_all_committed(&events),
        "every window is new and must be COMMITTED: {events:?}"
    );
    assert!(sent > 1000, "the flooder sent only {sent} messages");
    // Counters reach status.json within 5 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = aggregator_counters(&agg.data_dir).unwrap_or_default();
        let dropped = c["zmq_acks_dropped"].as_u64().unwrap_or(0);
        if dropped > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ack to the flooder dropped: {c}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every `acked` event is COMMITTED.
fn acked_all_committed(events: &[Event]) -> bool {
    events
        .iter()
        .filter(|e| e.event == "acked")
        .all(|e| e.status == "COMMITTED")
}

/// A sealed one-point window of `agent_id` (MessagePack), seq `seq`, `seq` minutes after 2023-11-14.
fn frame(agent_id: &str, seq: u64) -> fleetset_proto::pb::Frame {
    let start = 1_700_000_000_000 + i64::try_from(seq).unwrap() * 60_000;
    let mut s = fleetset_proto::Snapshot {
        agent_id: agent_id.into(),
        seq,
        start,
        end: start + 60_000,
        ..Default::default()
    };
    let pts = vec![fleetset_proto::Point {
        ts_ms: start,
        value: 1.0,
    }];
    s.stats.insert(
        "cpu_percent".into(),
        fleetset_proto::WindowStats::from_values(&[1.0]).unwrap(),
    );
    s.data.insert("cpu_percent".into(), pts);
    let opts = fleetset_proto::SealOptions {
        encoding: fleetset_proto::Encoding::Msgpack,
        ..Default::default()
    };
    fleetset_proto::seal(&s, &opts).unwrap()
}

#[test]
fn a_peer_past_its_in_flight_bound_is_not_read_until_acked() {
    use prost::Message;
    let dir = TempDir::new("zmq-peer-bound");
    // Commits every 3 s: a frame stays admitted and unacked that long.
    let agg = Aggregator::start(
        dir.path(),
        &[
            "--commit-interval",
            "3s",
            "--set",
            "ingest.zmq.max_in_flight_per_peer=2",
        ],
    )
    .unwrap();
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER).unwrap();
    s.set_linger(0).unwrap();
    s.set_rcvtimeo(15_000).unwrap();
    s.connect(&agg.zmq).unwrap();
    for seq in 1..=6 {
        let [h, p] = fleetset_proto::frame::to_parts(&frame("bounded", seq));
        s.send_multipart([h, p], 0).unwrap();
    }
    // Two admitted (acked COMMITTED at the commit), four dropped unread: no ack for them.
    let mut acked = Vec::new();
    while let Ok(m) = s.recv_bytes(0) {
        let a = fleetset_proto::pb::Ack::decode(m.as_slice()).unwrap();
        assert_eq!(
            a.status(),
            fleetset_proto::pb::AckStatus::Committed,
            "{a:?}"
        );
        acked.push(a.seq);
        s.set_rcvtimeo(2_000).unwrap();
    }
    acked.sort_unstable();
    assert_eq!(acked, [1, 2]);
    let c = wait_for("zmq_peer_backpressure", Duration::from_secs(15), || {
        let c = aggregator_counters(&agg.data_dir)?;
        (c["zmq_peer_backpressure"].as_u64() == Some(4)).then_some(c)
    });
    c.unwrap();
    // Resent after the acks, they are admitted.
    s.set_rcvtimeo(15_000).unwrap();
    for seq in 3..=4 {
        let [h, p] = fleetset_proto::frame::to_parts(&frame("bounded", seq));
        s.send_multipart([h, p], 0).unwrap();
    }
    for _ in 3..=4 {
        let m = s.recv_bytes(0).expect("an ack for a resent frame");
        let a = fleetset_proto::pb::Ack::decode(m.as_slice()).unwrap();
        assert_eq!(
            a.status(),
            fleetset_proto::pb::AckStatus::Committed,
            "{a:?}"
        );
    }
}
