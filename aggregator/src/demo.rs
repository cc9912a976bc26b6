//! `fleetset-aggregator demo`: the main job in one command. Starts an aggregator on free
//! loopback ports in a fresh data directory, runs two agents on this host's real metrics (5 s
//! windows, 250 ms samples) — one over ZeroMQ with MessagePack, one over gRPC with Protobuf —
//! for `--duration`, stops them cleanly and prints what the Parquet store holds.

use crate::config::ServerConfig;
use crate::server;
use anyhow::{Context, Result};
use arrow::array::{Array, StringArray, UInt64Array};
use arrow::record_batch::RecordBatch;
use clap::Args;
use fleetset_agent::config::RunFlags;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
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

/// Reads every Parquet file under `dir` (one table) into record batches.
pub fn read_table(dir: &Path) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for part in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(part.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "parquet")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p)?)?.build()?;
        for b in reader {
            out.push(b.with_context(|| format!("reading {}", p.display()))?);
        }
    }
    Ok(out)
}

fn strings<'a>(b: &'a RecordBatch, col: &str) -> Option<&'a StringArray> {
    b.column_by_name(col)?.as_any().downcast_ref()
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
    let windows = read_table(&data_dir.join("windows"))?;
    let series = read_table(&data_dir.join("series"))?;
    let mut per_agent: BTreeMap<String, (usize, usize, u64)> = BTreeMap::new();
    for b in &windows {
        let agents = strings(b, "agent_id").context("windows.agent_id")?;
        let seqs: &UInt64Array = b
            .column_by_name("seq")
            .and_then(|c| c.as_any().downcast_ref())
            .context("windows.seq")?;
        for i in 0..b.num_rows() {
            let e = per_agent.entry(agents.value(i).to_string()).or_default();
            e.0 += 1;
            e.2 = e.2.max(seqs.value(i));
        }
    }
    for b in &series {
        let agents = strings(b, "agent_id").context("series.agent_id")?;
        for i in 0..agents.len() {
            per_agent.entry(agents.value(i).to_string()).or_default().1 += 1;
        }
    }
    println!("\nParquet store: {}", data_dir.display());
    for table in ["series", "windows", "processes"] {
        println!("  {}/date=…/part-*.parquet", data_dir.join(table).display());
    }
    println!(
        "\n{:<22} {:>8} {:>10} {:>8}",
        "agent", "windows", "points", "max seq"
    );
    for (agent, (w, p, s)) in &per_agent {
        println!("{agent:<22} {w:>8} {p:>10} {s:>8}");
    }
    if let Some(b) = series.first() {
        println!(
            "\nseries (first rows):\n{}",
            arrow::util::pretty::pretty_format_batches(&[b.slice(0, b.num_rows().min(5))])?
        );
    }
    if let Some(b) = windows.first() {
        let cols: Vec<usize> = [
            "agent_id",
            "seq",
            "window_start",
            "cpu_percent__mean",
            "cpu_percent__max",
            "memory_used_mb__mean",
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
        "\nRead it with pandas:  pd.read_parquet(\"{}/windows\")",
        data_dir.display()
    );
    println!("or DuckDB:            SELECT * FROM read_parquet('{}/series/*/*.parquet', hive_partitioning=true, union_by_name=true);", data_dir.display());
    anyhow::ensure!(
        per_agent.len() >= 2,
        "expected windows from both agents, got {:?}",
        per_agent.keys()
    );
    Ok(())
}
