//! `fleetset-aggregator tail`: subscribe to an aggregator's live windows (gRPC `Live/Subscribe`)
//! and print one line per window as it arrives — a debugging tool and a small Rust client of the
//! Subscribe API. `https://` endpoints use TLS (`--ca-file`, optional `--cert-file` and
//! `--key-file` for mTLS, `--server-name`); a bearer token comes from `--token-file` or
//! `FLEETSET_TOKEN`, never from a flag value (it would show in `ps`), and is never printed.

use crate::client::{explain_status, ClientFlags};
use anyhow::{Context, Result};
use clap::Args;
use fleetset_core::names::parse_label;
use fleetset_proto::pb::{self, subscribe_response::Event};

/// Flags of `fleetset-aggregator tail`.
#[derive(Debug, Args)]
pub struct TailFlags {
    /// The aggregator's gRPC endpoint: `http://host:port`, or `https://host:port` for TLS.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// TLS and the token (scope `subscribe`).
    #[command(flatten)]
    pub client: ClientFlags,
    /// Only these agents (repeatable).
    #[arg(long = "agent")]
    pub agents: Vec<String>,
    /// Only these metrics (repeatable); their window mean is printed.
    #[arg(long = "metric")]
    pub metrics: Vec<String>,
    /// Only agents with this label `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// First replay stored windows from this long ago (e.g. 10m, 2h), then go live.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Stop after this many windows (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// One output line for a window: agent, seq, window start (RFC 3339), and `metric=mean` pairs.
pub fn line(s: &pb::Snapshot) -> String {
    let start = chrono::DateTime::from_timestamp_millis(s.start)
        .map_or_else(|| s.start.to_string(), |t| t.to_rfc3339());
    let stats: Vec<String> = s
        .series
        .iter()
        .filter_map(|m| {
            m.stats
                .as_ref()
                .map(|st| format!("{}={:.3}", m.name, st.mean))
        })
        .collect();
    format!(
        "{} seq={} window={} {}",
        s.agent_id,
        s.seq,
        start,
        stats.join(" ")
    )
}

/// Subscribes and prints windows until the stream ends, `count` is reached, or Ctrl-C.
pub async fn run(flags: TailFlags) -> Result<()> {
    let request = pb::SubscribeRequest {
        agent_ids: flags.agents,
        labels: flags.labels.into_iter().collect(),
        metrics: flags.metrics,
        since_ms: flags
            .since
            .map_or(0, |d| fleetset_core::time::now_ms() - d.as_millis() as i64),
    };
    let mut stream = crate::client::subscribe(&flags.endpoint, &flags.client, request).await?;
    let mut seen = 0u64;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m.map_err(explain_status).context("live stream")?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match msg.and_then(|m| m.event) {
            Some(Event::Snapshot(s)) => {
                println!("{}", line(&s));
                seen += 1;
                if flags.count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
            Some(Event::Lag(l)) => println!("(fell behind: {} windows skipped)", l.skipped_windows),
            None => return Ok(()),
        }
    }
}
