//! `fleetset-aggregator export --stream` (seed 000's `export --stream --port 9999 --format
//! jsonlines`): subscribes to a running aggregator (gRPC `Live/Subscribe` on `--endpoint`, with
//! the TLS and token flags of the client commands; scope `subscribe`) with `--agents`,
//! `--label`, `--metrics` and `--since`, and writes each window in `--format` (`jsonlines`,
//! `msgpack`, `protobuf`: [`crate::live::format`]) to
//!
//! - `--fifo PATH`: a named pipe, created (mode 0600) if absent; an existing path that is not a
//!   FIFO is refused. Messages are framed ([`crate::live::format::frame`]: `\n` after each JSON
//!   line, a 4-byte big-endian length before each binary message). Opening waits for a reader;
//!   when the reader closes, the message being written is lost and the next reader gets the
//!   stream from the next message;
//! - stdout, framed the same way, when neither `--fifo` nor `--listen` is given;
//! - `--listen ADDR` / `--port N` (`127.0.0.1:N`): WebSocket clients, each message one WebSocket
//!   message as on the aggregator's `/v1/stream` (the query may only choose `format=`). Each client
//!   gets its own upstream subscription; at most `--max-clients` at once (a connection beyond is
//!   closed at accept). No TLS and no tokens here, so a non-loopback address is refused unless
//!   `--allow-insecure`.
//!
//! Bounded: between the upstream stream and a slow reader sit [`QUEUE`] messages and the HTTP/2
//! stream window (hyper's default, 2 MiB); beyond that this process stops reading upstream,
//! HTTP/2 flow control stops the aggregator's sends, and the aggregator skips windows for this
//! subscriber and says so with a lag notice (`{"lag": n}`), which is passed on. Memory does not
//! grow with a reader that stops.
//!
//! Anonymized by default like every export (`--no-anonymize` turns it off): `agent_id`,
//! `hostname`, process `name` and `name_hash` become salted hashes, other host strings and label
//! values have paths stripped, `--generalize-time` floors every timestamp, and the agent's raw
//! payload is dropped (`frame_payload` empty); `--k-anonymity` needs a whole export and is
//! refused here. The stream ends when the aggregator's does (an error), after `--count`
//! windows, or on SIGINT/SIGTERM.

use super::anonymize::{strip_paths, Anonymizer};
use super::{ExportFlags, FormatFlag};
use crate::client::{explain_status, ClientFlags};
use crate::live::format::{frame, Format};
use crate::live::subscription::{parse_since, End, Item, Window};
use anyhow::{bail, Context, Result};
use clap::Args;
use fleetset_core::names::parse_label;
use fleetset_proto::pb;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Messages queued between the upstream stream and a slow reader.
pub const QUEUE: usize = crate::live::subscription::QUEUE;

/// How long a WebSocket client may stay silent (it answers the pings sent every third of it)
/// and how long one send may take, for `--listen`.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `export --stream`.
#[derive(Debug, Args)]
pub struct StreamFlags {
    /// The aggregator's gRPC endpoint (`ingest.grpc.listen`): `http://host:port`, or
    /// `https://host:port` with TLS.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// TLS and the token (scope `subscribe`).
    #[command(flatten)]
    pub client: ClientFlags,
    /// Only agents with this label `key=value` (repeatable; all must match).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// First the stored windows starting at or after this time (Unix ms or RFC 3339), then
    /// live, with no gap and no duplicate.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<i64>,
    /// Write to this named pipe (created with mode 0600 if absent).
    #[arg(long, conflicts_with_all = ["listen", "port"])]
    pub fifo: Option<PathBuf>,
    /// Serve WebSocket clients on this address (`host:port`).
    #[arg(long, conflicts_with = "port")]
    pub listen: Option<String>,
    /// Serve WebSocket clients on 127.0.0.1 at this port (seed 000's `--port 9999`).
    #[arg(long)]
    pub port: Option<u16>,
    /// Allow a non-loopback `--listen` (it has no TLS and no tokens).
    #[arg(long)]
    pub allow_insecure: bool,
    /// WebSocket clients served at once (`--listen`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_clients: u16,
    /// Stop after this many windows (`--fifo`, stdout; default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// What every upstream subscription of this run asks for, and how windows leave.
struct Upstream {
    endpoint: String,
    client: ClientFlags,
    request: pb::SubscribeRequest,
    anonymizer: Option<Anonymizer>,
}

impl Upstream {
    /// A new upstream subscription as a queue of items (anonymized); an upstream failure ends
    /// it with [`End::Upstream`]. Errors: connect, TLS or refusal (explained).
    async fn open(self: &Arc<Self>) -> Result<mpsc::Receiver<Result<Item, End>>> {
        let mut stream =
            crate::client::subscribe(&self.endpoint, &self.client, self.request.clone()).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    m = stream.message() => m,
                    _ = tx.closed() => return,
                };
                let item = match next {
                    Ok(Some(m)) => Item::from_pb(m).map_err(|e| End::Upstream(format!("{e:#}"))),
                    Ok(None) => Err(End::Upstream("the aggregator ended the stream".into())),
                    Err(s) => Err(End::Upstream(format!("{:#}", explain_status(s)))),
                };
                let item = item.map(|i| me.anonymized(i));
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(rx)
    }

    fn anonymized(&self, item: Item) -> Item {
        match (item, &self.anonymizer) {
            (Item::Window(mut w), Some(a)) => {
                anonymize(a, &mut w);
                Item::Window(w)
            }
            (item, _) => item,
        }
    }
}

/// Applies the export's anonymization to one window (module docs).
pub fn anonymize(a: &Anonymizer, w: &mut Window) {
    let s = &mut w.snapshot;
    s.agent_id = a.hash(&s.agent_id);
    s.host.hostname = a.hash(&s.host.hostname);
    for text in [
        &mut s.host.os,
        &mut s.host.kernel,
        &mut s.host.agent_version,
    ] {
        *text = strip_paths(text).into_owned();
    }
    for v in s.host.labels.values_mut() {
        *v = strip_paths(v).into_owned();
    }
    for p in &mut s.processes {
        p.name_hash = a.hash(&p.name_hash);
        if !p.name.is_empty() {
            p.name = a.hash(&p.name);
        }
    }
    if a.grain.is_some() {
        s.start = a.generalize_ms(s.start);
        s.end = a.generalize_ms(s.end);
        for pts in s.data.values_mut() {
            for p in pts {
                p.ts_ms = a.generalize_ms(p.ts_ms);
            }
        }
        w.received_at_us = a
            .generalize_ms(w.received_at_us / 1000)
            .saturating_mul(1000);
    }
    w.frame_payload = bytes::Bytes::new();
}

/// Runs `export --stream` (module docs) on its own runtime until the stream ends, `--count`,
/// or a signal.
pub fn run(flags: &ExportFlags) -> Result<()> {
    let s = &flags.streaming;
    let format = FormatFlag::stream(flags.format)?;
    if flags.anonymize.k_anonymity.is_some() {
        bail!("--k-anonymity needs a whole export; it cannot apply to --stream");
    }
    let listen = match (&s.listen, s.port) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(p)) => Some(format!("127.0.0.1:{p}")),
        (None, None) => None,
    };
    if let Some(addr) = &listen {
        if !fleetset_core::net::is_loopback_addr(addr) && !s.allow_insecure {
            bail!("--listen {addr} is not loopback and export --stream serves without TLS or tokens; listen on 127.0.0.1 or pass --allow-insecure");
        }
    }
    let upstream = Arc::new(Upstream {
        endpoint: s.endpoint.clone(),
        client: s.client.clone(),
        request: pb::SubscribeRequest {
            agent_ids: flags.agents.clone(),
            labels: s.labels.iter().cloned().collect(),
            metrics: flags.metrics.clone(),
            since_ms: s.since.unwrap_or(0),
        },
        anonymizer: super::anonymize::Anonymizer::from_flags(&flags.anonymize, &flags.data_dir)?,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(fleetset_core::process::stop_on_signal(stop.clone()));
        match listen {
            Some(addr) => serve(upstream, &addr, s.max_clients, format, stop).await,
            None => {
                let sink = match &s.fifo {
                    Some(path) => Output::Fifo(open_fifo(path)?),
                    None => Output::Stdout,
                };
                to_bytes(upstream, sink, format, s.count, stop).await
            }
        }
    })
}

/// Where framed messages go.
enum Output {
    /// The named pipe (checked or created).
    Fifo(PathBuf),
    /// This process's stdout.
    Stdout,
}

/// Checks that `path` is a FIFO, or creates it with mode 0600. Errors: it exists and is not a
/// FIFO, or cannot be created (named).
fn open_fifo(path: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(path.to_path_buf()),
        Ok(_) => bail!(
            "--fifo {} exists and is not a named pipe; remove it or choose another path",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                path,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .with_context(|| format!("mkfifo {}", path.display()))?;
            Ok(path.to_path_buf())
        }
        Err(e) => Err(e).with_context(|| format!("--fifo {}", path.display())),
    }
}

/// Writes framed messages from `rx` to `out` on this (blocking) thread: a FIFO is (re)opened for
/// each reader (opening waits for one); stdout ends with its reader. Errors: a write error other
/// than the reader leaving, or a FIFO that cannot be opened.
fn write_loop(out: Output, mut rx: mpsc::Receiver<Vec<u8>>) -> Result<()> {
    loop {
        let (mut w, what): (Box<dyn Write>, String) = match &out {
            Output::Fifo(p) => (
                Box::new(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(p)
                        .with_context(|| format!("opening --fifo {}", p.display()))?,
                ),
                p.display().to_string(),
            ),
            Output::Stdout => (Box::new(std::io::stdout().lock()), "stdout".into()),
        };
        info!(output = %what, "writing the stream");
        loop {
            let Some(buf) = rx.blocking_recv() else {
                return Ok(());
            };
            match w.write_all(&buf).and_then(|_| w.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                Err(e) => return Err(e).with_context(|| format!("writing to {what}")),
            }
        }
        match out {
            Output::Stdout => return Ok(()),
            Output::Fifo(_) => warn!(output = %what, "the reader left; waiting for the next"),
        }
    }
}

/// Streams to a FIFO or stdout (module docs). Errors: the upstream failed or a write failed.
async fn to_bytes(
    upstream: Arc<Upstream>,
    out: Output,
    format: Format,
    count: Option<u64>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut items = upstream.open().await?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    // A plain thread, not spawn_blocking: a FIFO open waiting for a reader must not hold up
    // the runtime's shutdown.
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(write_loop(out, rx));
    });
    let mut windows = 0u64;
    loop {
        let item = tokio::select! {
            i = items.recv() => i,
            _ = stop.cancelled() => return Ok(()),
            r = &mut done => return r.unwrap_or(Ok(())),
        };
        let item = match item {
            Some(Ok(item)) => item,
            Some(Err(end)) => bail!("{end}"),
            None => return Ok(()),
        };
        let is_window = matches!(item, Item::Window(_));
        let framed = match format.encode(&item).and_then(frame) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "a window could not be encoded; skipped");
                continue;
            }
        };
        if tx.send(framed).await.is_err() {
            return done.await.unwrap_or(Ok(()));
        }
        windows += u64::from(is_window);
        if count.is_some_and(|c| windows >= c) {
            drop(tx);
            return done.await.unwrap_or(Ok(()));
        }
    }
}

/// Serves WebSocket clients on `addr` (module docs) until `stop`. Errors: `addr` cannot be
/// bound.
async fn serve(
    upstream: Arc<Upstream>,
    addr: &str,
    max_clients: u16,
    format: Format,
    stop: tokio_util::sync::CancellationToken,
) -> Result<()> {
    use axum::extract::ws::WebSocketUpgrade;
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --listen {addr}"))?;
    let bound = listener.local_addr()?;
    let limits = fleetset_core::net::ConnLimits {
        max_connections: usize::from(max_clients),
        idle_timeout: CLIENT_IDLE_TIMEOUT,
        tcp_keepalive: None,
        evict_oldest: false,
    };
    let on_event: fleetset_core::net::OnConnEvent = Arc::new(|e| {
        if e == fleetset_core::net::ConnEvent::Refused {
            warn!("a WebSocket client was refused: --max-clients are connected");
        }
    });
    let listener = fleetset_core::net::BoundedListener::new(listener, limits, on_event);
    let handler = move |axum::extract::RawQuery(query): axum::extract::RawQuery,
                        upgrade: WebSocketUpgrade| {
        let upstream = upstream.clone();
        async move {
            let q = match crate::web::stream::parse_query(query.as_deref().unwrap_or("")) {
                Ok(q) if q.request == pb::SubscribeRequest::default() => q,
                Ok(_) => {
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        "this stream's filters are export --stream's flags; the query may only set format=",
                    )
                        .into_response()
                }
                Err(why) => return (axum::http::StatusCode::BAD_REQUEST, why).into_response(),
            };
            let format = q.format.unwrap_or(format);
            let items = match upstream.open().await {
                Ok(items) => items,
                Err(e) => {
                    return (axum::http::StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response()
                }
            };
            upgrade
                .protocols([crate::web::stream::SUBPROTOCOL])
                .max_message_size(crate::web::stream::MAX_CLIENT_MESSAGE_BYTES)
                .on_upgrade(move |socket| {
                    crate::web::stream::serve(socket, items, format, CLIENT_IDLE_TIMEOUT)
                })
        }
    };
    let app = axum::Router::new()
        .route("/", axum::routing::get(handler.clone()))
        .route("/v1/stream", axum::routing::get(handler));
    info!(listen = %bound, "serving the stream over WebSocket");
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .context("serving WebSocket clients")
}
