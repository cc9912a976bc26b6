//! `fleetset-aggregator demo`: the main job in one command. Starts an aggregator on free
//! loopback ports in a fresh data directory, runs two agents on this host's real metrics (5 s
//! windows, 250 ms samples) — one over ZeroMQ with MessagePack, one over gRPC with Protobuf —
//! for `--duration`, stops them cleanly and prints what the Parquet store holds.

use crate::config::ServerConfig;
use crate::server;
use crate::store::reader::{self, Query, Scan};
use crate::store::schema::{self, Table, COMMIT_ORDER};
use anyhow::{Context, Result};
use clap::Args;
use fleetset_agent::config::RunFlags;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Flags of `fleetset-aggregator demo`.
#[derive(Debug, Args)]
pub struct DemoFlags {
    /// Data directory; default: a new `fleetset-demo-<unix seconds>` in the current directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long the agents run (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Use the deterministic synthetic source instead of this host's metrics.
    #[arg(long)]
    pub synthetic: bool,
}

/// Runs the demo (see the module docs).
pub async fn run(flags: DemoFlags) -> Result<()> {
    let data_dir = match flags.data_dir {
        Some(d) => d,
        None => std::env::current_dir()?.join(format!(
            "fleetset-demo-{}",
            fleetset_core::time::now_ms() / 1000
        )),
    };
    let mut cfg = ServerConfig::loopback(data_dir.clone());
    cfg.store.commit_interval = Duration::from_secs(1);
    let server = server::start(&cfg).await?;
    let zmq = server.zmq_endpoint.clone().context("zmq listener")?;
    let grpc = format!("http://{}", server.grpc_addr.context("grpc listener")?);
    println!(
        "fleetset demo: aggregator on {zmq} (ZeroMQ) and {grpc} (gRPC), data in {}",
        data_dir.display()
    );

    let stop = CancellationToken::new();
    let source = if flags.synthetic { "synthetic" } else { "host" };
    let agent = |name: &str, transport: &str, encoding: &str, endpoint: &str| {
        let mut c = RunFlags::new(
            None,
            &[
                ("agent_id", name),
                ("transport.protocol", transport),
                ("transport.aggregator", endpoint),
                ("transport.encoding", encoding),
                ("transport.ack_timeout", "5s"),
                ("collect.source", source),
                ("collect.sample_interval", "250ms"),
                ("collect.process_interval", "2s"),
                ("window.length", "5s"),
                ("window.lttb.threshold", "10"),
                ("labels.site", "demo"),
                ("telemetry.enabled", "false"),
            ],
        )
        .load()?;
        c.state_dir = data_dir.join("agent-state").join(name);
        anyhow::Ok(c)
    };
    let agents = [
        agent("demo-zmq-msgpack", "zmq", "msgpack", &zmq)?,
        agent("demo-grpc-protobuf", "grpc", "protobuf", &grpc)?,
    ];
    let handles: Vec<_> = agents
        .into_iter()
        .map(|c| tokio::spawn(fleetset_agent::run(c, stop.clone())))
        .collect();
    println!(
        "running two agents on this host's metrics for {} (Ctrl-C stops early)…",
        humantime::format_duration(flags.duration)
    );
    tokio::select! {
        _ = tokio::time::sleep(flags.duration) => {}
        _ = tokio::signal::ctrl_c() => println!("stopping early"),
    }
    stop.cancel();
    for h in handles {
        h.await??;
    }
    server.stop().await;
    summarize(&data_dir)?;
    training_set(&data_dir)
}

/// Builds `<data_dir>/training` with `export --training` and its defaults (seed 000's memory
/// pressure classes, 0.8 split, anonymized), and says how to load it.
fn training_set(data_dir: &Path) -> Result<()> {
    #[derive(clap::Parser)]
    struct Export {
        #[command(flatten)]
        flags: crate::export::ExportFlags,
    }
    let out = data_dir.join("training");
    let export = <Export as clap::Parser>::try_parse_from([
        "export".as_ref(),
        "--training".as_ref(),
        "--overwrite".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ])?;
    println!("\nTraining set (fleetset-aggregator export --training):");
    crate::export::run(&export.flags)?;
    println!(
        "Train on it:          df = pd.read_parquet(\"{}/train.parquet\"); y = df[\"label\"]",
        out.display()
    );
    Ok(())
}

/// Prints windows and points per agent and a few rows of each table.
fn summarize(data_dir: &Path) -> Result<()> {
    let all = Query::default();
    let mut per_agent: BTreeMap<String, (usize, usize, u64)> = BTreeMap::new();
    for w in reader::windows(data_dir, &all)? {
        let e = per_agent.entry(w.snapshot.agent_id.clone()).or_default();
        e.0 += 1;
        e.1 += w.snapshot.data.values().map(Vec::len).sum::<usize>();
        e.2 = e.2.max(w.snapshot.seq);
    }
    println!("\nParquet store: {}", data_dir.display());
    for table in COMMIT_ORDER {
        println!(
            "  {}/{}…/{}*{}",
            table.dir(data_dir).display(),
            schema::PARTITION_PREFIX,
            schema::PART_PREFIX,
            schema::PARQUET_SUFFIX
        );
    }
    println!(
        "\n{:<22} {:>8} {:>10} {:>8}",
        "agent", "windows", "points", "max seq"
    );
    for (agent, (w, p, s)) in &per_agent {
        println!("{agent:<22} {w:>8} {p:>10} {s:>8}");
    }
    let first_batch = |table| -> Result<_> {
        Scan::open(data_dir, table, &all)?
            .batches(|_| {})
            .next()
            .transpose()
    };
    if let Some(b) = first_batch(Table::Series)? {
        println!(
            "\nseries (first rows):\n{}",
            arrow::util::pretty::pretty_format_batches(&[b.slice(0, b.num_rows().min(5))])?
        );
    }
    if let Some(b) = first_batch(Table::Windows)? {
        let cols: Vec<usize> = [
            schema::AGENT_ID.to_string(),
            schema::SEQ.to_string(),
            schema::WINDOW_START.to_string(),
            schema::stat_column("cpu_percent", "mean"),
            schema::stat_column("cpu_percent", "max"),
            schema::stat_column("memory_used_mb", "mean"),
        ]
        .iter()
        .filter_map(|c| b.schema().index_of(c).ok())
        .collect();
        println!(
            "\nwindows (first rows, some of {} columns):\n{}",
            b.num_columns(),
            arrow::util::pretty::pretty_format_batches(&[b
                .project(&cols)?
                .slice(0, b.num_rows().min(5))])?
        );
    }
    println!(
        "\nRead it with pandas:  pd.read_parquet(\"{}\")",
        Table::Windows.dir(data_dir).display()
    );
    println!(
        "statistics, wide:     pd.read_parquet(\"{}\").pivot_table(index=[\"agent_id\", \"window_start\"], columns=\"metric\", values=[\"mean\", \"max\"])",
        Table::Stats.dir(data_dir).display()
    );
    println!("or DuckDB:            SELECT * FROM read_parquet('{}/*/*.parquet', hive_partitioning=true, union_by_name=true);", Table::Series.dir(data_dir).display());
    anyhow::ensure!(
        per_agent.len() >= 2,
        "expected windows from both agents, got {:?}",
        per_agent.keys()
    );
    Ok(())
}
