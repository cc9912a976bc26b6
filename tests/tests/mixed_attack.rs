//! The mixed attack (issue #11 acceptance): junk, oversize, forged-format, high-cardinality and
//! slow clients on every port of a real aggregator at once, for [`ATTACK`]. Meanwhile a real
//! agent sends its windows over ZeroMQ. Asserted: every window the agent framed lands exactly
//! once (acked, and stored once per window start), `/healthz` answers within 1 s throughout,
//! the aggregator's peak RSS stays under [`PEAK_RSS_KIB`] (the bound README's "Limits" section
//! documents for this scenario), the attacks were refused and counted, and pandas, pyarrow and
//! DuckDB read every table of the store afterwards.

use fleetset_proto::frame::to_parts;
use fleetset_proto::pb::{self, ingest_client::IngestClient};
use fleetset_proto::{seal, Encoding, Point, SealOptions, Snapshot, WindowStats};
use fleetset_tests::otlp::{gauge, kv, now_ns, request};
use fleetset_tests::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long every attacker runs.
const ATTACK: Duration = Duration::from_secs(25);
/// Peak RSS bound of the aggregator under this attack, KiB (README "Limits").
const PEAK_RSS_KIB: u64 = 512 * 1024;
/// Idle connections each slow client holds open per port.
const SLOW_CONNECTIONS: usize = 150;

/// Stops the attackers when dropped or told to.
#[derive(Clone, Default)]
struct Stop(Arc<AtomicBool>);

impl Stop {
    fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `host:port` of a `tcp://host:port` or `http://host:port` endpoint.
fn addr(endpoint: &str) -> String {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, a)| a)
        .to_string()
}

/// Connects (bounded by 2 s), or `None` when the listener refuses (a limit biting is fine).
fn connect(addr: &str) -> Option<TcpStream> {
    let sa = addr.parse().ok()?;
    let s = TcpStream::connect_timeout(&sa, Duration::from_secs(2)).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    Some(s)
}

/// Random bytes from `rng`.
fn junk(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.range(0, 256) as u8).collect()
}

/// Connect, write 4 KiB of junk, read a little, close — over and over. Returns connections made.
fn junk_client(addr: String, stop: Stop, seed: u64) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let mut n = 0;
        while !stop.stopped() {
            if let Some(mut s) = connect(&addr) {
                let _ = s.write_all(&junk(&mut rng, 4096));
                let _ = s.read(&mut [0u8; 256]);
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    })
}

/// A ZMTP 3.0 greeting (NULL mechanism, 64 bytes) followed by a long frame header that declares
/// a 1 TiB body (flags 0x02, 8-byte big-endian length), then one byte of it: what aborted
/// zeromq 0.7 peers by reserving the declared length.
fn zmtp_oversize() -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    g.extend(mechanism);
    g.push(0); // as-server
    g.resize(64, 0); // filler
    g.push(0x02);
    g.extend((1u64 << 40).to_be_bytes());
    g.push(0);
    g
}

/// Sends [`zmtp_oversize`] on fresh connections, over and over.
fn oversize_client(addr: String, stop: Stop) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let bytes = zmtp_oversize();
        let mut n = 0;
        while !stop.stopped() {
            if let Some(mut s) = connect(&addr) {
                let _ = s.write_all(&bytes);
                let _ = s.read(&mut [0u8; 64]);
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    })
}

/// Holds [`SLOW_CONNECTIONS`] idle connections (HTTP ports: a request line trickled a byte at
/// a time, slowloris-style) until stopped.
fn slow_client(addr: String, stop: Stop, trickle: bool) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = (0..SLOW_CONNECTIONS)
            .filter_map(|_| connect(&addr))
            .collect();
        let opened = held.len() as u64;
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut i = 0;
        while !stop.stopped() {
            if trickle {
                let b = request[i % request.len()];
                held.retain_mut(|s| s.write_all(&[b]).is_ok());
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        opened
    })
}

/// A valid one-minute window of `agent_id` with `metrics` metrics and `labels` label keys.
fn window(agent_id: &str, seq: u64, start: i64, metrics: usize, labels: usize) -> Snapshot {
    let mut s = Snapshot {
        agent_id: agent_id.into(),
        seq,
        start,
        end: start + 60_000,
        ..Default::default()
    };
    for m in 0..metrics {
        let name = format!("m{m}_of_{agent_id}").replace('-', "_");
        let pts = vec![Point {
            ts_ms: start,
            value: m as f64,
        }];
        s.stats
            .insert(name.clone(), WindowStats::from_values(&[m as f64]).unwrap());
        s.data.insert(name, pts);
    }
    for l in 0..labels {
        s.host.labels.insert(format!("k{l}_{seq}"), "v".into());
    }
    s
}

/// A libzmq DEALER that floods frames of every bad kind (garbage header, checksum mismatch,
/// wrong part count, oversize) and never reads its acks.
fn forged_zmq_client(endpoint: String, stop: Stop, max_frame_bytes: usize) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = ctx.socket(zmq::DEALER).unwrap();
        s.set_sndhwm(1000).unwrap();
        s.set_linger(0).unwrap();
        s.set_sndtimeo(200).unwrap();
        s.connect(&endpoint).unwrap();
        let mut rng = Rng(7);
        let good = seal(
            &window("forged", 1, 1_700_000_000_000, 3, 0),
            &SealOptions {
                encoding: Encoding::Msgpack,
                ..Default::default()
            },
        )
        .unwrap();
        let [header, payload] = to_parts(&good);
        let mut corrupt = payload.clone();
        corrupt[0] ^= 0xFF;
        let oversize = vec![0u8; max_frame_bytes + 1];
        let mut n = 0;
        while !stop.stopped() {
            let msg: Vec<Vec<u8>> = match n % 4 {
                0 => vec![junk(&mut rng, 64), junk(&mut rng, 256)],
                1 => vec![header.clone(), corrupt.clone()],
                2 => vec![header.clone(), payload.clone(), b"extra".to_vec()],
                _ if n % 40 == 3 => vec![header.clone(), oversize.clone()],
                _ => vec![junk(&mut rng, 8)],
            };
            if s.send_multipart(msg, 0).is_ok() {
                n += 1;
            }
        }
        n
    })
}

/// gRPC `Publish` streams of valid frames for ever new agents with many metrics and label keys
/// (high cardinality), interleaved with undecodable frames; plus OTLP Exports of many distinct
/// metric names, far-future points and over-long names. Returns requests sent.
fn cardinality_client(grpc: String, otlp: String, stop: Stop) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut sent = 0u64;
            let mut round = 0u64;
            while !stop.stopped() {
                round += 1;
                if let Ok(mut c) = IngestClient::connect(grpc.clone()).await {
                    let frames: Vec<pb::Frame> = (0..20)
                        .map(|i| {
                            let id = format!("card-{round}-{i}");
                            let mut f = seal(
                                &window(&id, 1, 1_700_000_000_000, 200, 8),
                                &SealOptions {
                                    encoding: Encoding::Protobuf,
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                            if i % 5 == 0 {
                                f.payload = vec![0xC1; 512]; // checksum mismatch
                            }
                            f
                        })
                        .collect();
                    sent += frames.len() as u64;
                    let stream = tokio_stream::iter(frames);
                    if let Ok(resp) = c.publish(stream).await {
                        let mut acks = resp.into_inner();
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while let Ok(Some(_)) = acks.message().await {}
                        })
                        .await;
                    }
                }
                if let Ok(mut c) = MetricsServiceClient::connect(otlp.clone()).await {
                    let now = now_ns();
                    let far = now.saturating_add(475 * 365 * 86_400 * 1_000_000_000);
                    let metrics = (0..100)
                        .map(|m| {
                            let name = if m == 0 {
                                "x".repeat(10_000)
                            } else {
                                format!("otlp_card_{round}_{m}")
                            };
                            let t = if m == 1 { far } else { now };
                            gauge(&name, vec![(t, m as f64, vec![kv("k", format!("{m}"))])])
                        })
                        .collect();
                    let host = vec![kv("host.name", format!("otlp-card-{round}"))];
                    let _ = c.export(request(Some(host), metrics)).await;
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        })
    })
}

/// Polls `/healthz` every 100 ms until stopped, as a kubelet would judge it.
fn healthz_probe(metrics: String, stop: Stop) -> JoinHandle<Liveness> {
    std::thread::spawn(move || {
        let mut health = Liveness::default();
        while !stop.stopped() {
            health.probe(&metrics);
            std::thread::sleep(Duration::from_millis(100));
        }
        health
    })
}

const READERS: &str = r#"
import sys, os, pyarrow.dataset as ds, duckdb, pandas as pd
root = sys.argv[1]
con = duckdb.connect()
for table in sorted(os.listdir(root)):
    path = os.path.join(root, table)
    if not os.path.isdir(path) or not any(f.endswith(".parquet") for _, _, fs in os.walk(path) for f in fs):
        continue
    df = pd.read_parquet(path)
    t = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    n = con.execute(f"SELECT count(*) FROM read_parquet('{path}/*/*.parquet', hive_partitioning=true, union_by_name=true)").fetchone()[0]
    assert len(df) == t.num_rows == n, (table, len(df), t.num_rows, n)
    print(table, n, len(df.columns))
print("OK")
"#;

#[test]
fn a_real_agent_lands_exactly_once_under_a_mixed_attack_on_every_port() {
    let dir = TempDir::new("mixed-attack");
    let agg = Aggregator::start(
        dir.path(),
        &[
            "--set",
            "store.commit_interval=500ms",
            "--set",
            "ingest.max_frame_bytes=1048576",
        ],
    )
    .unwrap();
    let real = synthetic_agent_with(
        dir.path(),
        "real-agent",
        ("2s", "50ms"),
        &["--aggregator", &agg.zmq, "--label", "site=lab"],
    );
    real.wait_acked(1, Duration::from_secs(60)).unwrap();

    let stop = Stop::default();
    let (zmq, grpc, otlp, pub_) = (
        addr(&agg.zmq),
        addr(&agg.grpc),
        addr(&agg.otlp),
        addr(&agg.zmq_pub),
    );
    let ports = [&zmq, &grpc, &otlp, &pub_, &agg.metrics];
    let mut counted: Vec<(&str, JoinHandle<u64>)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        counted.push((
            "junk",
            junk_client(port.to_string(), stop.clone(), 11 + i as u64),
        ));
        let http = *port == &agg.metrics;
        counted.push(("slow", slow_client(port.to_string(), stop.clone(), http)));
    }
    counted.push(("oversize zmq", oversize_client(zmq.clone(), stop.clone())));
    counted.push(("oversize pub", oversize_client(pub_.clone(), stop.clone())));
    counted.push((
        "forged zmq",
        forged_zmq_client(agg.zmq.clone(), stop.clone(), 1 << 20),
    ));
    counted.push((
        "cardinality",
        cardinality_client(agg.grpc.clone(), agg.otlp.clone(), stop.clone()),
    ));
    let probe = healthz_probe(agg.metrics.clone(), stop.clone());

    std::thread::sleep(ATTACK);
    stop.0.store(true, Ordering::Relaxed);
    for (what, h) in counted {
        let n = h.join().unwrap();
        assert!(n > 0, "attacker {what} made no attempt");
    }
    let health = probe.join().unwrap();
    assert!(
        health.polls > 50,
        "healthz polled only {} times",
        health.polls
    );
    health.assert_alive("mixed attack");

    // Every window the agent framed before the attack ended is delivered once the link settles.
    let framed_at_end: Vec<u64> = real
        .events()
        .iter()
        .filter(|e| e.event == "framed")
        .filter_map(|e| e.seq)
        .collect();
    assert!(framed_at_end.len() >= 10, "agent framed {framed_at_end:?}");
    let last = *framed_at_end.iter().max().unwrap();
    wait_for("every framed window acked", Duration::from_secs(60), || {
        let acked: std::collections::BTreeSet<u64> = real.acked().iter().map(|a| a.seq).collect();
        (1..=last).all(|s| acked.contains(&s)).then_some(())
    })
    .unwrap();
    let counters = wait_for("status.json", Duration::from_secs(10), || {
        aggregator_counters(&agg.data_dir)
    })
    .unwrap();
    let rss = peak_rss_kib(agg.pid).unwrap();
    assert!(rss < PEAK_RSS_KIB, "aggregator peak RSS {rss} KiB");
    let rejected: u64 = counters
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("rejected_"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    assert!(rejected > 100, "attacks not counted: {counters}");
    eprintln!(
        "mixed attack: /healthz worst {:?} over {} polls, peak RSS {rss} KiB, \
         {rejected} frames rejected, {} windows of the real agent",
        health.worst, health.polls, last
    );

    let mut agg = agg;
    let mut real = real;
    real.stop(Duration::from_secs(10)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let stored = stored_windows(&agg.data_dir, "real-agent").unwrap();
    let mut starts: Vec<i64> = stored.iter().map(|(s, _)| *s).collect();
    let n = starts.len();
    starts.dedup();
    assert_eq!(starts.len(), n, "a window of the real agent stored twice");
    let seqs: std::collections::BTreeSet<u64> = stored.iter().map(|(_, q)| *q).collect();
    assert!(
        (1..=last).all(|s| seqs.contains(&s)),
        "stored {seqs:?}, framed 1..={last}"
    );

    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(READERS)
        .arg(&agg.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "readers failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
