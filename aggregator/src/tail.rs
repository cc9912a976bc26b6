//! `fleetset-aggregator tail`: subscribe to an aggregator's live windows (gRPC `Live/Subscribe`)
//! and print one line per window as it arrives — a debugging tool and a small Rust client of the
//! Subscribe API. `https://` endpoints use TLS (`--ca-file`, optional `--cert-file` and
//! `--key-file` for mTLS, `--server-name`); a bearer token comes from `--token-file` or
//! `FLEETSET_TOKEN`, never from a flag value (it would show in `ps`), and is never printed.

use crate::client::ClientFlags;
use anyhow::{anyhow, Context, Result};
use clap::Args;
use fleetset_core::names::parse_label;
use fleetset_proto::pb::{self, live_client::LiveClient, subscribe_response::Event};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

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

/// The `authorization` value from `--token-file` or `FLEETSET_TOKEN` (None: neither).
/// Errors name the file, never the token.
fn bearer(
    flags: &TailFlags,
) -> Result<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>> {
    let Some(token) = flags.client.token()? else {
        return Ok(None);
    };
    format!("Bearer {token}")
        .parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("the bearer token is not printable ASCII"))
}

/// Reads `path` (flag `--what`); errors name the flag and the file.
fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("--{what} {}", path.display()))
}

/// The channel endpoint of `flags`: plaintext for `http://`, TLS for `https://` (the CA file
/// checked to hold PEM certificates). Errors: a bad URL, TLS flags with `http://`, an
/// unreadable or non-PEM file (named).
fn endpoint(flags: &TailFlags) -> Result<Endpoint> {
    let url = &flags.endpoint;
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("--endpoint {url:?}"))?
        .connect_timeout(std::time::Duration::from_secs(10));
    flags.client.check_scheme(url)?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &flags.client.ca_file {
        let pem = read(ca, "ca-file")?;
        fleetset_core::tls::pem_certs(&pem, ca).context("--ca-file")?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    if let (Some(cert), Some(key)) = (&flags.client.cert_file, &flags.client.key_file) {
        tls = tls.identity(Identity::from_pem(
            read(cert, "cert-file")?,
            read(key, "key-file")?,
        ));
    }
    if let Some(name) = &flags.client.server_name {
        tls = tls.domain_name(name.clone());
    }
    endpoint
        .tls_config(tls)
        .with_context(|| format!("TLS for {url}"))
}

/// What a failed connect or Subscribe means for the user: TLS handshake failures, and
/// UNAUTHENTICATED / PERMISSION_DENIED named as such.
fn explain_status(status: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    match status.code() {
        Code::Unauthenticated => anyhow!(
            "authentication failed (UNAUTHENTICATED): {} — pass a valid token with --token-file or FLEETSET_TOKEN",
            status.message()
        ),
        Code::PermissionDenied => anyhow!(
            "permission denied (PERMISSION_DENIED): {} — the token needs scope `subscribe`",
            status.message()
        ),
        _ => anyhow!("Subscribe failed ({:?}): {}", status.code(), status.message()),
    }
}

/// A connect error with its causes; a TLS one says so and hints at the TLS flags.
fn explain_connect(e: tonic::transport::Error, flags: &TailFlags) -> anyhow::Error {
    let chain = format!("{:#}", anyhow::Error::new(e));
    if flags.endpoint.starts_with("https://") {
        anyhow!(
            "TLS handshake with {} failed: {chain} (check --ca-file, --server-name and, with mTLS, --cert-file/--key-file)",
            flags.endpoint
        )
    } else {
        anyhow!("connecting to {}: {chain}", flags.endpoint)
    }
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
    let channel = endpoint(&flags)?
        .connect()
        .await
        .map_err(|e| explain_connect(e, &flags))?;
    let mut client = LiveClient::new(channel);
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
        .map_err(explain_status)?
        .into_inner();
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
