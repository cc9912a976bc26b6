//! `fleetset-aggregator tail`: subscribe to an aggregator's live windows (gRPC `Live/Subscribe`)
//! and print one line per window as it arrives — a debugging tool and a small Rust client of the
//! Subscribe API.

use anyhow::{Context, Result};
use clap::Args;
use fleetset_core::names::parse_label;
use fleetset_proto::pb::{self, live_client::LiveClient, subscribe_response::Event};

/// Flags of `fleetset-aggregator tail`.
#[derive(Debug, Args)]
pub struct TailFlags {
    /// The aggregator's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
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
    /// File holding a bearer token with scope `subscribe` (needed when the aggregator has
    /// `security.tokens.file`); or set FLEETSET_TOKEN.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
}

/// The `authorization` value from `--token-file` or `FLEETSET_TOKEN` (None: neither).
/// Errors name the file, never the token.
fn bearer(
    flags: &TailFlags,
) -> Result<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>> {
    let token = match &flags.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?,
        ),
        None => std::env::var("FLEETSET_TOKEN").ok(),
    };
    let Some(token) = token else { return Ok(None) };
    format!("Bearer {}", token.trim())
        .parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("the bearer token is not printable ASCII"))
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
    let auth = bearer(&flags)?;
    let mut client = LiveClient::connect(flags.endpoint.clone())
        .await
        .with_context(|| format!("connecting to {}", flags.endpoint))?;
    let request = pb::SubscribeRequest {
        agent_ids: flags.agents,
        labels: flags.labels.into_iter().collect(),
        metrics: flags.metrics,
        since_ms: flags
            .since
            .map_or(0, |d| fleetset_core::time::now_ms() - d.as_millis() as i64),
    };
    let mut request = tonic::Request::new(request);
    if let Some(value) = auth {
        request.metadata_mut().insert("authorization", value);
    }
    let mut stream = client
        .subscribe(request)
        .await
        .context("Subscribe")?
        .into_inner();
    let mut seen = 0u64;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m.context("live stream")?,
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
