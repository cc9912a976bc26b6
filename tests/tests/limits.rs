//! Resource limits of the real aggregator (issue 11): idle connections beyond each listener's
//! limit are refused and counted while /healthz answers and an agent's windows land; the memory
//! limiter refuses frames retryably and the agent resends them once it is raised; zstd bombs on
//! eight gRPC streams leave /healthz responsive (verification runs off the async workers);
//! live history is sent in pages, in order, to a bounded number of subscribers.

use fleetset_proto::frame::sha256;
use fleetset_proto::pb::{self, ingest_client::IngestClient, live_client::LiveClient};
use fleetset_proto::{seal, Compression, Encoding, Point, SealOptions, Snapshot, WindowStats};
use fleetset_tests::*;
use std::time::{Duration, Instant};

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (children inherit it).
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Waits (≤ 30 s) until the aggregator's counter `name` is at least `n`; returns it.
fn wait_counter(data_dir: &std::path::Path, name: &str, n: u64) -> u64 {
    wait_for(&format!("{name} >= {n}"), Duration::from_secs(30), || {
        let v = aggregator_counters(data_dir)?[name].as_u64()?;
        (v >= n).then_some(v)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_each_limit_are_refused_while_healthz_and_an_agent_work() {
    raise_nofile();
    let dir = TempDir::new("conn-limits");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--set",
            "ingest.grpc.connections.max_connections=300",
            "--set",
            "otlp.connections.max_connections=300",
            "--set",
            "telemetry.max_connections=32",
            "--set",
            "telemetry.idle_timeout=2s",
        ],
    )
    .unwrap();
    let grpc_addr = agg.grpc.trim_start_matches("http://").to_string();
    let otlp_addr = agg.otlp.trim_start_matches("http://").to_string();
    let mut a = synthetic_agent_with(
        dir.path(),
        "busy",
        ("300ms", "50ms"),
        &["--transport", "grpc", "--aggregator", &agg.grpc],
    );
    a.wait_acked(2, Duration::from_secs(30)).unwrap();
    // Probes on a fresh connection each, as a kubelet makes them (a full /metrics listener
    // evicts its oldest connection for a new one, so probes get in).
    let mut health = Liveness::default();
    health.probe(&agg.metrics);

    let mut idle = Vec::new();
    for addr in [&grpc_addr, &otlp_addr, &agg.metrics] {
        for k in 0..1500 {
            let c = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await;
            if let Ok(Ok(c)) = c {
                idle.push(c);
            }
            if k % 100 == 0 {
                health.probe(&agg.metrics);
            }
        }
    }
    let before = a.acked().len();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        health.probe(&agg.metrics);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    health.assert_alive("4,500 idle connections");
    a.wait_acked(before + 3, Duration::from_secs(30)).unwrap();
    // Beyond the limits: 1,200 on each gRPC port, all but 32 on /metrics.
    assert!(wait_counter(&agg.data_dir, "grpc_connections_refused", 1100) <= 1500);
    assert!(wait_counter(&agg.data_dir, "otlp_connections_refused", 1100) <= 1500);
    // On /metrics each connection beyond the 32 evicts the oldest (probes included), and the
    // idle ones left are closed after telemetry.idle_timeout: every idle socket but at most 32
    // is closed one way or the other, and the idle timeout bites.
    wait_for(
        "idle /metrics sockets evicted or idle-closed",
        Duration::from_secs(30),
        || {
            let c = aggregator_counters(&agg.data_dir)?;
            let evicted = c["metrics_connections_refused"].as_u64()?;
            let idle_closed = c["metrics_connections_idle_closed"].as_u64()?;
            (evicted + idle_closed >= 1500 - 32 && idle_closed >= 1).then_some(())
        },
    )
    .unwrap();
    assert_eq!(http_get(&agg.metrics, "/healthz").unwrap(), "ok\n");
    drop(idle);
    a.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_limit_frames_are_refused_and_land_once_it_is_raised() {
    let dir = TempDir::new("memory-limit");
    let listen = format!("127.0.0.1:{}", free_port());
    let endpoint = format!("http://{listen}");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--grpc-listen",
            &listen,
            "--set",
            "ingest.memory_limit_bytes=1",
        ],
    )
    .unwrap();
    let mut a = synthetic_agent_with(
        dir.path(),
        "mem",
        ("300ms", "50ms"),
        &["--transport", "grpc", "--aggregator", &endpoint],
    );
    wait_counter(&agg.data_dir, "frames_refused_memory", 2);
    assert!(a.acked().is_empty(), "nothing acked over the limit");
    assert_eq!(
        aggregator_counters(&agg.data_dir).unwrap()["frames_received"],
        0
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let mut agg = Aggregator::start(dir.path(), &["--grpc-listen", &listen]).unwrap();
    a.wait_acked(6, Duration::from_secs(60)).unwrap();
    a.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let seqs: Vec<u64> = stored_windows(&agg.data_dir, "mem")
        .unwrap()
        .iter()
        .map(|w| w.1)
        .collect();
    assert!(seqs.len() >= 6, "{seqs:?}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "the refused frames were resent and stored"
    );
}

/// A sealed zstd frame of `agent_id` whose payload decompresses to `bytes` zero bytes.
fn zstd_bomb(agent_id: &str, seq: u64, bytes: usize) -> pb::Frame {
    let start = fleetset_core::time::now_ms() - 60_000;
    let mut s = Snapshot {
        agent_id: agent_id.into(),
        seq,
        start,
        end: start + 1_000,
        ..Default::default()
    };
    s.stats
        .insert("x".into(), WindowStats::from_values(&[1.0]).unwrap());
    s.data.insert(
        "x".into(),
        vec![Point {
            ts_ms: start,
            value: 1.0,
        }],
    );
    let opts = SealOptions {
        encoding: Encoding::Msgpack,
        compression: Compression::Zstd,
        hmac_key: None,
    };
    let mut f = seal(&s, &opts).unwrap();
    f.payload = zstd::encode_all(&vec![0u8; bytes][..], 1).unwrap();
    if let Some(h) = f.header.as_mut() {
        h.payload_sha256 = sha256(&f.payload).to_vec();
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_bombs_on_eight_streams_leave_healthz_responsive() {
    let dir = TempDir::new("zstd-bombs");
    let mut agg = Aggregator::start(dir.path(), &[]).unwrap();
    // ingest.max_decompressed_bytes by default: 4 × 8 MiB.
    let bomb = 32 << 20;
    let per_stream = 15u64;
    let streams: Vec<_> = (0..8)
        .map(|k| {
            let grpc = agg.grpc.clone();
            tokio::spawn(async move {
                let id = format!("bomb-{k}");
                let frames: Vec<pb::Frame> =
                    (1..=per_stream).map(|s| zstd_bomb(&id, s, bomb)).collect();
                let mut client = IngestClient::connect(grpc).await.unwrap();
                let mut acks = client
                    .publish(tokio_stream::iter(frames))
                    .await
                    .unwrap()
                    .into_inner();
                let mut n = 0u64;
                while n < per_stream {
                    let next = tokio::time::timeout(Duration::from_secs(60), acks.message());
                    match next.await {
                        Ok(Ok(Some(_))) => n += 1,
                        other => panic!("stream {k}: {other:?}"),
                    }
                }
                n
            })
        })
        .collect();
    let mut health = Liveness::default();
    while !streams.iter().all(|s| s.is_finished()) {
        health.probe(&agg.metrics);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in streams {
        assert_eq!(s.await.unwrap(), per_stream);
    }
    health.assert_alive("zstd bombs on eight streams");
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_history_is_sent_in_order_in_pages_to_a_bounded_number_of_subscribers() {
    let dir = TempDir::new("live-pages");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--commit-interval",
            "200ms",
            "--set",
            "live.history_batch_windows=3",
            "--set",
            "live.max_subscribers=5",
        ],
    )
    .unwrap();
    let mut a = synthetic_agent(dir.path(), "pages", "eu-1", &agg.zmq, "200ms");
    a.wait_acked(30, Duration::from_secs(60)).unwrap();
    a.stop(Duration::from_secs(20)).unwrap();
    let stored = wait_for("all acked windows stored", Duration::from_secs(10), || {
        let n = stored_windows(&agg.data_dir, "pages").ok()?.len();
        (n >= a.acked().len()).then_some(n)
    })
    .unwrap();
    let rss_before = peak_rss_kib(agg.pid).unwrap();

    let mut subs = Vec::new();
    for _ in 0..5 {
        let mut c = LiveClient::connect(agg.grpc.clone()).await.unwrap();
        let req = pb::SubscribeRequest {
            since_ms: 1,
            ..Default::default()
        };
        subs.push(c.subscribe(req).await.unwrap().into_inner());
    }
    let mut extra = LiveClient::connect(agg.grpc.clone()).await.unwrap();
    let refused = extra
        .subscribe(pb::SubscribeRequest::default())
        .await
        .expect_err("a sixth subscriber is refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    for s in &mut subs {
        let mut seqs = Vec::new();
        while seqs.len() < stored {
            let msg = tokio::time::timeout(Duration::from_secs(20), s.message())
                .await
                .expect("history in time")
                .unwrap()
                .expect("stream open");
            assert!(msg.historical, "only history: nothing is live");
            let Some(pb::subscribe_response::Event::Snapshot(snap)) = msg.event else {
                panic!("{msg:?}")
            };
            seqs.push(snap.seq);
        }
        assert_eq!(seqs, (1..=stored as u64).collect::<Vec<_>>(), "in order");
    }
    let growth_kib = peak_rss_kib(agg.pid).unwrap().saturating_sub(rss_before);
    assert!(growth_kib < 64 * 1024, "peak RSS grew {growth_kib} KiB");
    wait_counter(&agg.data_dir, "live_subscribers_refused", 1);
    drop(subs);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

/// A sealed one-minute window of `agent_id` (seq `seq`) with `metrics` metrics of 50 points.
fn wide_window(agent_id: &str, seq: u64, metrics: usize) -> pb::Frame {
    let start = 1_700_000_000_000 + i64::try_from(seq).unwrap() * 60_000;
    let mut s = Snapshot {
        agent_id: agent_id.into(),
        seq,
        start,
        end: start + 60_000,
        ..Default::default()
    };
    for m in 0..metrics {
        let pts: Vec<Point> = (0..50)
            .map(|i| Point {
                ts_ms: start + i * 1_000,
                value: (i as f64) * 0.37 + m as f64,
            })
            .collect();
        let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
        let name = format!("metric_{m}");
        s.stats
            .insert(name.clone(), WindowStats::from_values(&values).unwrap());
        s.data.insert(name, pts);
    }
    let opts = SealOptions {
        encoding: Encoding::Msgpack,
        compression: Compression::Zstd,
        hmac_key: None,
    };
    seal(&s, &opts).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_since_subscribers_on_a_long_history_cost_a_bounded_peak_rss() {
    let dir = TempDir::new("live-rss");
    let mut agg =
        Aggregator::start(dir.path(), &["--set", "live.history_batch_windows=50"]).unwrap();
    let windows = 2_000u64;
    let mut client = IngestClient::connect(agg.grpc.clone()).await.unwrap();
    let frames = tokio_stream::iter((1..=windows).map(|s| wide_window("wide", s, 20)));
    let mut acks = client.publish(frames).await.unwrap().into_inner();
    for _ in 0..windows {
        let a = tokio::time::timeout(Duration::from_secs(60), acks.message())
            .await
            .expect("ack in time")
            .unwrap()
            .expect("stream open");
        assert_eq!(a.status, pb::AckStatus::Committed as i32, "{a:?}");
    }
    let rss_before = peak_rss_kib(agg.pid).unwrap();
    let subs: Vec<_> = (0..5)
        .map(|_| {
            let grpc = agg.grpc.clone();
            tokio::spawn(async move {
                let mut c = LiveClient::connect(grpc).await.unwrap();
                let req = pb::SubscribeRequest {
                    since_ms: 1,
                    ..Default::default()
                };
                let mut s = c.subscribe(req).await.unwrap().into_inner();
                let mut last = 0u64;
                for _ in 0..windows {
                    let msg = tokio::time::timeout(Duration::from_secs(60), s.message())
                        .await
                        .expect("history in time")
                        .unwrap()
                        .expect("stream open");
                    let Some(pb::subscribe_response::Event::Snapshot(snap)) = msg.event else {
                        panic!("{msg:?}")
                    };
                    assert_eq!(snap.seq, last + 1, "in order");
                    last = snap.seq;
                }
                last
            })
        })
        .collect();
    for s in subs {
        assert_eq!(s.await.unwrap(), windows);
    }
    let growth_mib = peak_rss_kib(agg.pid).unwrap().saturating_sub(rss_before) / 1024;
    println!("peak RSS growth with five since=1 subscribers: {growth_mib} MiB");
    assert!(growth_mib < 100, "peak RSS grew {growth_mib} MiB");
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}
