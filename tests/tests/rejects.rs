//! Bad frames on both transports — a flipped payload byte, an unknown version, an oversized
//! frame — are each rejected with their reason while good frames (a real agent's and ours) keep
//! flowing; a resent frame is acked DUPLICATE; a metric that appears later lands in the store.

use bytes::Bytes;
use fleetset_proto::frame::to_parts;
use fleetset_proto::pb::{self, ingest_client::IngestClient, AckStatus, RejectReason};
use fleetset_proto::{seal, Encoding, Point, SealOptions, Snapshot, WindowStats};
use fleetset_tests::*;
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

const MAX_FRAME: usize = 64 * 1024;
/// zeromq 0.7 clients drop the connection on a ZMTP PING ("Unknown command received").
const NO_PING: &str = "ingest.zmq.heartbeat_interval=0s";

fn snapshot(agent_id: &str, seq: u64, extra_metric: Option<&str>, points: usize) -> Snapshot {
    let start = 1_700_000_000_000 + seq as i64 * 60_000;
    let mut s = Snapshot {
        agent_id: agent_id.into(),
        seq,
        start,
        end: start + 60_000,
        ..Default::default()
    };
    let mut add = |name: &str| {
        let pts: Vec<Point> = (0..points)
            .map(|i| Point {
                ts_ms: start + i as i64 * 10,
                value: i as f64,
            })
            .collect();
        let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
        s.stats
            .insert(name.into(), WindowStats::from_values(&values).unwrap());
        s.data.insert(name.into(), pts);
    };
    add("cpu_percent");
    if let Some(m) = extra_metric {
        add(m);
    }
    s
}

/// The frames of one scenario, by seq: (frame, expected status, expected reason).
fn scenario(agent_id: &str, encoding: Encoding) -> Vec<(pb::Frame, AckStatus, RejectReason)> {
    let opts = SealOptions {
        encoding,
        ..Default::default()
    };
    let good = |seq, extra| seal(&snapshot(agent_id, seq, extra, 50), &opts).unwrap();
    let mut corrupt = good(2, None);
    let mid = corrupt.payload.len() / 2;
    corrupt.payload[mid] ^= 0x40;
    let mut bad_version = good(3, None);
    bad_version.header.as_mut().unwrap().version = fleetset_proto::FRAME_VERSION + 1;
    let oversize = seal(&snapshot(agent_id, 4, None, 6000), &opts).unwrap();
    assert!(oversize.payload.len() > MAX_FRAME);
    // Within the ROUTER's ZMQ_MAXMSGSIZE slack (64 KiB): acked OVERSIZE, not disconnected.
    assert!(oversize.payload.len() < MAX_FRAME + 60 * 1024);
    vec![
        (
            good(1, None),
            AckStatus::Committed,
            RejectReason::Unspecified,
        ),
        (corrupt, AckStatus::Rejected, RejectReason::ChecksumMismatch),
        (bad_version, AckStatus::Rejected, RejectReason::BadVersion),
        (oversize, AckStatus::Rejected, RejectReason::Oversize),
        (
            good(5, Some("late_metric_percent")),
            AckStatus::Committed,
            RejectReason::Unspecified,
        ),
        (
            good(1, None),
            AckStatus::Duplicate,
            RejectReason::Unspecified,
        ),
    ]
}

fn check(acks: Vec<pb::Ack>, expected: &[(pb::Frame, AckStatus, RejectReason)]) {
    assert_eq!(acks.len(), expected.len(), "{acks:?}");
    let by_seq: BTreeMap<u64, Vec<&pb::Ack>> = acks.iter().fold(BTreeMap::new(), |mut m, a| {
        m.entry(a.seq).or_default().push(a);
        m
    });
    for (frame, status, reason) in expected {
        let seq = frame.header.as_ref().unwrap().seq;
        let got = by_seq[&seq]
            .iter()
            .find(|a| a.status() == *status)
            .unwrap_or_else(|| panic!("seq {seq}: no {status:?} in {acks:?}"));
        assert_eq!(got.reason(), *reason, "seq {seq}: {}", got.detail);
        if *status == AckStatus::Rejected {
            assert!(!got.detail.is_empty(), "a rejection names what was wrong");
        }
    }
}

async fn over_zmq(endpoint: &str, frames: &[(pb::Frame, AckStatus, RejectReason)]) -> Vec<pb::Ack> {
    let mut s = DealerSocket::new();
    s.connect(endpoint).await.unwrap();
    let mut acks = Vec::new();
    for (f, _, _) in frames {
        let [h, p] = to_parts(f);
        let mut m = ZmqMessage::from(h);
        m.push_back(Bytes::from(p));
        s.send(m).await.unwrap();
        // One at a time: the duplicate must arrive after the original is committed.
        let reply = tokio::time::timeout(Duration::from_secs(20), s.recv())
            .await
            .expect("ack in time")
            .unwrap();
        acks.push(pb::Ack::decode(reply.get(0).unwrap().as_ref()).unwrap());
    }
    acks
}

async fn over_grpc(
    endpoint: &str,
    frames: &[(pb::Frame, AckStatus, RejectReason)],
) -> Vec<pb::Ack> {
    let mut client = IngestClient::connect(endpoint.to_string()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut acks_stream = client
        .publish(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut acks = Vec::new();
    for (f, _, _) in frames {
        tx.send(f.clone()).await.unwrap();
        let a = tokio::time::timeout(Duration::from_secs(20), acks_stream.message())
            .await
            .expect("ack in time")
            .unwrap()
            .unwrap();
        acks.push(a);
    }
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_rejected_with_reasons_while_good_ones_flow() {
    let dir = TempDir::new("rejects");
    let max = format!("ingest.max_frame_bytes={MAX_FRAME}");
    // The zeromq 0.7 client cannot parse ZMTP PING: no heartbeats.
    let args = [
        "--commit-interval",
        "100ms",
        "--set",
        &max,
        "--set",
        NO_PING,
    ];
    let mut agg = Aggregator::start(dir.path(), &args).unwrap();

    // A real agent keeps sending over ZeroMQ while we misbehave on both transports.
    let mut agent = synthetic_agent_with(
        dir.path(),
        "steady",
        ("1s", "100ms"),
        &["--aggregator", &agg.zmq],
    );

    let zmq_frames = scenario("probe-zmq", Encoding::Msgpack);
    check(over_zmq(&agg.zmq, &zmq_frames).await, &zmq_frames);
    let grpc_frames = scenario("probe-grpc", Encoding::Protobuf);
    check(over_grpc(&agg.grpc, &grpc_frames).await, &grpc_frames);

    // The agent's windows keep being acked.
    let before = agent.acked().len();
    agent
        .wait_acked(before + 2, Duration::from_secs(20))
        .unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let events = agent.events();
    assert!(
        of_kind(&events, "dropped", "").is_empty(),
        "the real agent lost a frame: {events:?}"
    );

    // Counted by reason (the status file is written at exit).
    let counters = aggregator_counters(&agg.data_dir).expect("aggregator status.json");
    for counter in [
        "rejected_checksum_mismatch",
        "rejected_bad_version",
        "rejected_oversize",
    ] {
        assert_eq!(counters[counter], 2, "{counter} in {counters}");
    }

    // Only good frames reached the store; the late metric landed with its own columns and rows.
    let windows = read_table(&agg.data_dir, "windows").unwrap();
    for probe in ["probe-zmq", "probe-grpc"] {
        let mut seqs = Vec::new();
        let mut late = Vec::new();
        for b in &windows {
            let agents = str_col(b, "agent_id");
            let seq = u64_col(b, "seq").unwrap();
            for i in 0..b.num_rows() {
                if agents.value(i) == probe {
                    seqs.push(seq.value(i));
                    late.push(f64_at(f64_col(b, "late_metric_percent__max"), i));
                }
            }
        }
        seqs.sort();
        assert_eq!(seqs, vec![1, 5], "{probe}");
        assert!(
            late.contains(&Some(49.0)),
            "{probe}: late metric stats missing: {late:?}"
        );
    }
    let series = read_table(&agg.data_dir, "series").unwrap();
    let late_rows: usize = series
        .iter()
        .map(|b| {
            (0..b.num_rows())
                .filter(|&i| str_col(b, "metric").value(i) == "late_metric_percent")
                .count()
        })
        .sum();
    assert_eq!(late_rows, 2 * 50);
}

/// `frames_received_total` of the aggregator's `/metrics`.
fn frames_received(agg: &Aggregator) -> f64 {
    let text = http_get(&agg.metrics, "/metrics").unwrap();
    prom_value(&text, "fleetset_aggregator_frames_received_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_that_never_reads_its_acks_is_pushed_back_not_buffered_for() {
    // 100,000 corrupt frames on one Publish stream whose acks are never read. Without a bound the
    // aggregator reads them all and queues 100,000 REJECTED acks; with it, it stops reading once
    // its 1,024-ack queue, h2's send buffer (~400 KB) and the client's HTTP/2 receive window
    // (hyper: 2 MB) are full — ~12,000 acks of ~150 bytes — and the client's sends stall.
    let dir = TempDir::new("ack-backpressure");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "100ms"]).unwrap();
    let mut corrupt = scenario("mute", Encoding::Protobuf).swap_remove(1).0;
    corrupt.header.as_mut().unwrap().seq = 2;
    let mut client = IngestClient::connect(agg.grpc.clone()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let _unread_acks = client
        .publish(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..100_000 {
            if tx.send(corrupt.clone()).await.is_err() {
                break;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // Wait until reading has stopped: the count holds still for 2 s.
    let mut last = -1.0;
    let plateau = wait_for(
        "frames_received to stop growing",
        Duration::from_secs(60),
        || {
            std::thread::sleep(Duration::from_secs(2));
            let now = frames_received(&agg);
            let still = now == last;
            last = now;
            still.then_some(now)
        },
    )
    .unwrap();
    let sent_n = sent.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("frames read by the aggregator: {plateau}; sent by the client: {sent_n}");
    assert!(
        plateau < 30_000.0,
        "the aggregator kept reading a client that reads no acks: {plateau} frames"
    );
    assert!(sent_n < 100_000, "the client's sends were never held back");
    // Everybody else is unaffected: a good frame on another stream is committed.
    let good = scenario("polite", Encoding::Protobuf).swap_remove(0);
    check(
        over_grpc(&agg.grpc, std::slice::from_ref(&good)).await,
        &[good],
    );
    sender.abort();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}
