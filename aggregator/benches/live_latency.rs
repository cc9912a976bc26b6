//! Live latency: frame receipt at the aggregator → delivery to a gRPC subscriber and to a ZeroMQ
//! SUB, on loopback, while many agents replay concurrently (SPEC target: p99 ≤ 5 ms; seed 000
//! asks < 100 ms).
//!
//! The aggregator (`server::start`) and both subscribers run in this process; the load comes
//! from AGENTS separate `fleetset-agent replay` processes (as in production, where agents are
//! other hosts' processes), so their CPU work is scheduled by the OS rather than on the
//! aggregator's tokio workers — but still on the same 2 cores. With `LOADGEN=inprocess` the
//! replays run on the aggregator's runtime instead (the first session's setup). Receipt time is
//! the aggregator's `received_at_us` stamp (taken before verification); a ZeroMQ message is
//! matched to it by `(agent_id, seq)` through the gRPC stream, which sees every window.
//!
//! Run: `cargo build --release -p fleetset-agent && cargo bench -p fleetset-aggregator --bench
//! live_latency` (env AGENTS, WINDOWS, RATE, LOADGEN, COMMIT_MS: the aggregator's commit
//! interval, default 5000; agents get acks, and release their next frames, once per commit;
//! LOADGEN_CPUS: a `taskset -c` CPU list for the load generators, e.g. `1` with the bench itself
//! under `taskset -c 0`).

use clap::Parser;
use fleetset_agent::replay::{replay, ReplayFlags};
use fleetset_aggregator::config::ServerConfig;
use fleetset_aggregator::ingest::now_us;
use fleetset_proto::pb::{self, live_client::LiveClient, subscribe_response::Event};
use prost::Message;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    replay: ReplayFlags,
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentiles(name: &str, mut v: Vec<i64>) {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    println!(
        "{name:<10} n={:<6} p50={:.3} ms  p90={:.3} ms  p99={:.3} ms  max={:.3} ms",
        v.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (agents, windows, rate) = (env("AGENTS", 16), env("WINDOWS", 600), env("RATE", 40));
    let dir = std::env::temp_dir().join(format!("fleetset-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut cfg = ServerConfig::loopback(dir.join("data"));
    cfg.telemetry.enabled = false;
    cfg.store.commit_interval = Duration::from_millis(env("COMMIT_MS", 5000) as u64);
    let server = fleetset_aggregator::server::start(&cfg).await?;
    let zmq = server.zmq_endpoint.clone().unwrap_or_default();
    let grpc = format!(
        "http://{}",
        server.grpc_addr.map(|a| a.to_string()).unwrap_or_default()
    );

    let mut stream = LiveClient::connect(grpc)
        .await?
        .subscribe(pb::SubscribeRequest::default())
        .await?
        .into_inner();
    let zmq_ctx = zmq::Context::new();
    let sub = zmq_ctx.socket(zmq::SUB)?;
    sub.connect(server.zmq_pub_endpoint.as_deref().unwrap_or_default())?;
    sub.set_subscribe(b"snapshot.")?;
    sub.set_rcvtimeo(5_000)?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let grpc_task = tokio::spawn(async move {
        let mut out: Vec<(String, u64, i64, i64)> = Vec::new();
        while let Ok(Some(m)) = stream.message().await {
            let now = now_us();
            if let Some(Event::Snapshot(s)) = m.event {
                out.push((s.agent_id, s.seq, m.received_at_us, now));
            }
        }
        out
    });
    let zmq_task = tokio::task::spawn_blocking(move || {
        let _ctx = zmq_ctx;
        let mut out: Vec<(String, u64, i64)> = Vec::new();
        // Ends 5 s after the last window (the receive timeout).
        while let Ok(m) = sub.recv_multipart(0) {
            let now = now_us();
            if let Some(h) = m
                .get(1)
                .and_then(|h| pb::FrameHeader::decode(h.as_slice()).ok())
            {
                out.push((h.agent_id, h.seq, now));
            }
        }
        out
    });

    let t0 = 1_700_000_000 - 1_700_000_000 % 3600;
    let stop = CancellationToken::new();
    let mut replays = Vec::new();
    let mut argv: Vec<[String; 16]> = Vec::new();
    for a in 0..agents {
        let csv = dir.join(format!("agent{a}.csv"));
        let mut text = String::from("timestamp,cpu,mem,load\n");
        for r in 0..windows * 20 {
            let t = t0 + r as i64 * 3;
            text += &format!(
                "{t},{},{},{}\n",
                (t * 7 + a as i64) % 100,
                4000 + (t % 97),
                (t % 13) as f64 / 4.0
            );
        }
        std::fs::write(&csv, text)?;
        let cli = [
            "replay",
            csv.to_str().unwrap_or_default(),
            "--agent-id",
            &format!("agent-{a}"),
            "--state-dir",
            dir.join(format!("st{a}")).to_str().unwrap_or_default(),
            "--aggregator",
            &zmq,
            "--window",
            "1m",
            "--rate",
            &rate.to_string(),
            "--set",
            "spool.fsync=never",
            "--set",
            "telemetry.enabled=false",
        ]
        .map(String::from);
        let args = Args::try_parse_from(&cli)?;
        argv.push(cli);
        replays.push(args);
    }
    let started = std::time::Instant::now();
    if std::env::var("LOADGEN").as_deref() == Ok("inprocess") {
        let tasks: Vec<_> = replays
            .into_iter()
            .map(|a| tokio::spawn(replay(a.replay, stop.clone())))
            .collect();
        for t in tasks {
            t.await??;
        }
    } else {
        let agent = std::env::current_exe()?
            .parent()
            .and_then(std::path::Path::parent)
            .map(|d| d.join("fleetset-agent"))
            .filter(|p| p.exists())
            .ok_or_else(|| {
                anyhow::anyhow!("build the agent first: cargo build --release -p fleetset-agent")
            })?;
        let mut children = Vec::new();
        // LOADGEN_CPUS=1: the load generators run on that CPU list only (`taskset -c`), as
        // agents on other hosts would; run the bench itself under `taskset -c 0`.
        let pin = std::env::var("LOADGEN_CPUS").ok();
        for (a, csv_args) in argv.iter().enumerate() {
            let mut cmd = match &pin {
                Some(cpus) => {
                    let mut c = std::process::Command::new("taskset");
                    c.args(["-c", cpus]).arg(&agent);
                    c
                }
                None => std::process::Command::new(&agent),
            };
            children.push(
                cmd.args(csv_args)
                    .env("RUST_LOG", "warn")
                    .stderr(std::process::Stdio::from(std::fs::File::create(
                        dir.join(format!("agent{a}.log")),
                    )?))
                    .spawn()?,
            );
        }
        for mut c in children {
            let status = tokio::task::spawn_blocking(move || c.wait()).await??;
            anyhow::ensure!(status.success(), "a replay failed (see {})", dir.display());
        }
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop().await;
    let grpc = grpc_task.await?;
    let zmq = zmq_task.await?;

    println!("live latency: {agents} agents replaying {windows} windows each at {rate} frames/s ({:.0} frames/s total, {:.1} s), loopback, 2 cores, load generators {}", (agents * windows) as f64 / elapsed.as_secs_f64(), elapsed.as_secs_f64(), if std::env::var("LOADGEN").as_deref() == Ok("inprocess") { "in process" } else { "in separate processes" });
    let received: HashMap<(String, u64), i64> = grpc
        .iter()
        .map(|(a, s, r, _)| ((a.clone(), *s), *r))
        .collect();
    percentiles("gRPC", grpc.iter().map(|(_, _, r, t)| t - r).collect());
    percentiles(
        "ZeroMQ",
        zmq.iter()
            .filter_map(|(a, s, t)| Some(t - received.get(&(a.clone(), *s))?))
            .collect(),
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
