//! The `[ingest]` section: frame limits and keys, `[ingest.zmq]` and `[ingest.grpc]`.

use anyhow::Context;
use fleetset_core::config::Section;
use fleetset_proto::frame::DEFAULT_MAX_FRAME_BYTES;
use fleetset_proto::HmacKeys;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[ingest.zmq]`: the ZeroMQ ROUTER agents connect to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct ZmqIngestConfig {
    /// Serve the ZeroMQ ROUTER.
    #[key(default = true)]
    pub enabled: bool,
    /// ZeroMQ bind endpoint, e.g. `tcp://0.0.0.0:5555` (`tcp://127.0.0.1:0`: a free port).
    #[key(default = "tcp://0.0.0.0:5555".into(), flag = "zmq-bind")]
    pub bind: String,
    /// A connection whose ZMTP handshake is not done this long after it opened is closed.
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(1), limit = "-")]
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// ZMTP PING sent to each peer this often (`0s`: no heartbeats; zeromq 0.7 clients, which
    /// cannot parse PING, need that).
    #[key(default = Duration::from_secs(10), unit = "duration")]
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A peer silent this long after a PING is disconnected (also sent as the PING's TTL).
    #[key(default = Duration::from_secs(30), unit = "duration", min = Duration::from_millis(100), limit = "-")]
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Messages queued from each peer (libzmq `ZMQ_RCVHWM`); beyond it libzmq stops reading
    /// that peer's connection.
    #[key(
        default = 1000,
        unit = "messages",
        min = 1,
        max = 1_000_000,
        limit = "-"
    )]
    pub rcvhwm: i32,
    /// Acks queued to each peer (libzmq `ZMQ_SNDHWM`); beyond it that peer's acks are dropped
    /// and counted (`zmq_acks_dropped`). Above `max_in_flight_per_peer`, so a peer with its
    /// frames in flight all acked at once (a backfill) loses none of the acks.
    #[key(
        default = 2048,
        unit = "messages",
        min = 1,
        max = 1_000_000,
        limit = "zmq_acks_dropped"
    )]
    pub sndhwm: i32,
    /// Frames of one peer admitted and not yet acked, at most; its further frames are dropped
    /// unread (no ack, counted as `zmq_peer_backpressure`), so it resends after its ack timeout.
    #[key(
        default = 1024,
        unit = "frames",
        min = 1,
        limit = "zmq_peer_backpressure"
    )]
    pub max_in_flight_per_peer: usize,
    /// Acks waiting for the ROUTER thread, at most; beyond it acks are dropped and counted
    /// (`zmq_acks_dropped`; the agent resends and gets DUPLICATE).
    #[key(default = 65_536, unit = "acks", min = 1, limit = "zmq_acks_dropped")]
    pub ack_queue: usize,
    /// How long unsent acks are kept at shutdown (libzmq `ZMQ_LINGER`).
    #[key(default = Duration::from_secs(1), unit = "duration")]
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

/// `[ingest.grpc.connections]`, `[otlp.connections]`: the bounds of one gRPC server's
/// connections and HTTP/2 streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConnections {
    /// Connections open at once; further ones are closed right after accept and counted
    /// (`<listener>_connections_refused`).
    #[key(
        default = 4096,
        unit = "connections",
        min = 1,
        limit = "{owner}_connections_refused"
    )]
    pub max_connections: usize,
    /// A connection that sends nothing (not even an answer to the keepalive ping) for this long
    /// is closed and counted (`<listener>_connections_idle_closed`).
    #[key(default = Duration::from_secs(300), unit = "duration", min = Duration::from_millis(100), limit = "{owner}_connections_idle_closed")]
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2 streams (RPCs) open at once per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    #[key(default = 64, unit = "streams", min = 1, limit = "-")]
    pub max_concurrent_streams: u32,
    /// Requests served at once per connection; further ones wait.
    #[key(default = 64, unit = "requests", min = 1, limit = "-")]
    pub concurrency_per_connection: usize,
    /// HTTP/2 PING sent after this much silence (its answer keeps a live peer from idling out).
    #[key(default = Duration::from_secs(30), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// A connection whose PING is not answered within this is closed.
    #[key(default = Duration::from_secs(20), unit = "duration", min = Duration::from_millis(100), limit = "-")]
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// TCP keepalive probes after this much silence (dead peers behind NAT are noticed).
    #[key(default = Duration::from_secs(60), unit = "duration", min = Duration::from_secs(1))]
    #[serde(with = "humantime_serde")]
    pub tcp_keepalive: Duration,
    /// Largest HTTP/2 header list a request may send.
    #[key(default = 16 * 1024, unit = "bytes", min = 1024, limit = "-")]
    pub max_header_list_bytes: u32,
    /// Longest time until a request handler answers (for streams: until the stream starts).
    #[key(default = Duration::from_secs(30), unit = "duration", min = Duration::from_millis(100), limit = "-")]
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl GrpcConnections {
    /// The listener bounds of these settings.
    pub fn limits(&self) -> fleetset_core::net::ConnLimits {
        fleetset_core::net::ConnLimits {
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            tcp_keepalive: Some(self.tcp_keepalive),
            evict_oldest: false,
        }
    }

    /// A tonic server builder with these HTTP/2 settings.
    pub fn server(&self) -> tonic::transport::Server {
        tonic::transport::Server::builder()
            .max_concurrent_streams(self.max_concurrent_streams)
            .concurrency_limit_per_connection(self.concurrency_per_connection)
            .http2_keepalive_interval(Some(self.keepalive_interval))
            .http2_keepalive_timeout(Some(self.keepalive_timeout))
            .http2_max_header_list_size(self.max_header_list_bytes)
            .timeout(self.request_timeout)
    }
}

/// `[ingest.grpc]`: the gRPC server (`fleetset.v1.Ingest`, `Live`, health, reflection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcIngestConfig {
    /// Serve gRPC.
    #[key(default = true)]
    pub enabled: bool,
    /// gRPC listen address (`host:port`).
    #[key(default = "0.0.0.0:50051".into(), flag = "grpc-listen")]
    pub listen: String,
    /// Connection and stream bounds.
    #[key(section)]
    pub connections: GrpcConnections,
}

/// `[ingest]`: what every frame must pass, and the listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest accepted frame (header + payload); larger frames are rejected as OVERSIZE. Over
    /// ZeroMQ a message part larger than this plus 64 KiB closes the connection instead
    /// (libzmq `ZMQ_MAXMSGSIZE`, checked before anything is allocated).
    #[key(default = DEFAULT_MAX_FRAME_BYTES, unit = "bytes", min = 1024, limit = "rejected_oversize")]
    pub max_frame_bytes: usize,
    /// Largest accepted decompressed payload.
    #[key(default = 4 * DEFAULT_MAX_FRAME_BYTES, unit = "bytes", min = 1024, limit = "rejected_oversize")]
    pub max_decompressed_bytes: usize,
    /// Latest accepted window start, after the aggregator's clock (later: WINDOW_OUT_OF_RANGE).
    #[key(default = Duration::from_secs(600), unit = "duration", limit = "rejected_window_out_of_range", live)]
    #[serde(with = "humantime_serde")]
    pub max_skew: Duration,
    /// Earliest accepted window start, before the aggregator's clock (earlier:
    /// WINDOW_OUT_OF_RANGE); unset: no bound, so replays of years-old data are stored.
    #[key(unit = "duration", limit = "rejected_window_out_of_range", live)]
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Longest accepted window (`end − start`; the shortest is 1 ms).
    #[key(default = Duration::from_secs(86_400), unit = "duration", min = Duration::from_millis(1), limit = "rejected_invalid_snapshot", live)]
    #[serde(with = "humantime_serde")]
    pub max_window: Duration,
    /// Metrics per snapshot.
    #[key(
        default = 1000,
        unit = "metrics",
        min = 1,
        limit = "rejected_invalid_snapshot",
        live
    )]
    pub max_metrics: usize,
    /// Operator labels per snapshot.
    #[key(
        default = 32,
        unit = "labels",
        limit = "rejected_invalid_snapshot",
        live
    )]
    pub max_labels: usize,
    /// Process records per snapshot.
    #[key(
        default = 100,
        unit = "processes",
        limit = "rejected_invalid_snapshot",
        live
    )]
    pub max_processes: usize,
    /// Longest label value.
    #[key(
        default = 256,
        unit = "bytes",
        limit = "rejected_invalid_snapshot",
        live
    )]
    pub max_label_value_bytes: usize,
    /// Longest host string (hostname, os, kernel, agent version) and process name.
    #[key(
        default = 256,
        unit = "bytes",
        limit = "rejected_invalid_snapshot",
        live
    )]
    pub max_string_bytes: usize,
    /// Frames admitted and waiting for the store's answer before their ack, at most; beyond it
    /// admission waits, so the transports stop reading (push-back, nothing dropped).
    #[key(default = 65_536, unit = "frames", min = 1, limit = "-")]
    pub max_pending_acks: usize,
    /// Frame verifications (SHA-256, zstd decompression, decode) running at once, each on a
    /// blocking thread off the async workers; further frames wait for one to finish. 0: the
    /// number of CPUs.
    #[key(default = 0, unit = "threads", limit = "-")]
    pub verify_threads: usize,
    /// Soft limit on the aggregator's resident memory (`/proc/self/statm`, read at most every
    /// 100 ms): above it new frames are refused before verification, unacked, retryably (gRPC
    /// Publish ends UNAVAILABLE after the acks owed; OTLP Export gets UNAVAILABLE), counted in
    /// `frames_refused_memory` / `otlp_refused_memory`. 0: off.
    #[key(default = 1 << 30, unit = "bytes", limit = "frames_refused_memory")]
    pub memory_limit_bytes: u64,
    /// Fleet-wide shared key (hex): when set, frames must carry a valid HMAC-SHA256 made with it and acks are signed with it. Weaker than `hmac_master_key_file`: any holder can sign for any agent. Not together with it.
    #[key(secret)]
    pub hmac_key_hex: Option<String>,
    /// Fleet master key file (hex, `pki init`'s `master.key`): each frame must carry a valid HMAC-SHA256 made with the key derived for its header's agent id (`pki issue-agent`'s `hmac.key`), so a host can sign only for itself; acks are signed with the same key. Read at start; its content is never logged.
    pub hmac_master_key_file: Option<PathBuf>,
    /// The ZeroMQ ROUTER.
    #[key(section)]
    pub zmq: ZmqIngestConfig,
    /// The gRPC server.
    #[key(section)]
    pub grpc: GrpcIngestConfig,
}

impl IngestConfig {
    /// The fleet key's bytes. Errors: not hex (named, value not shown).
    pub fn hmac_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.hmac_key_hex
            .as_deref()
            .map(|k| hex::decode(k).map_err(|_| anyhow::anyhow!("ingest.hmac_key_hex is not hex")))
            .transpose()
    }

    /// The HMAC keys of these settings: per-agent from `hmac_master_key_file` (read now), the
    /// shared `hmac_key_hex`, or none. Errors: both set, not hex, the file unreadable (named,
    /// no key shown).
    pub fn hmac_keys(&self) -> anyhow::Result<HmacKeys> {
        match (self.hmac_key()?, &self.hmac_master_key_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "ingest.hmac_key_hex and ingest.hmac_master_key_file are both set: choose one"
            ),
            (Some(k), None) => Ok(HmacKeys::Shared(k)),
            (None, Some(path)) => Ok(HmacKeys::PerAgent {
                master: crate::pki::read_master_file(path)
                    .context("ingest.hmac_master_key_file")?,
            }),
            (None, None) => Ok(HmacKeys::None),
        }
    }

    /// The frame verification options of these settings (see [`IngestConfig::hmac_keys`]).
    pub fn verify_options(&self) -> anyhow::Result<fleetset_proto::VerifyOptions> {
        Ok(fleetset_proto::VerifyOptions {
            max_frame_bytes: self.max_frame_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
            keys: self.hmac_keys()?,
        })
    }

    /// The bounds of admission of these settings (`verify_threads` 0 resolved to the CPUs).
    pub fn admission_limits(&self) -> crate::ingest::AdmissionLimits {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        crate::ingest::AdmissionLimits {
            max_pending_acks: self.max_pending_acks,
            verify_threads: if self.verify_threads == 0 {
                cpus
            } else {
                self.verify_threads
            },
            memory_limit_bytes: self.memory_limit_bytes,
        }
    }

    /// The snapshot contract of these settings (durations beyond i64 ms saturate).
    pub fn contract(&self) -> fleetset_proto::Contract {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        fleetset_proto::Contract {
            max_window_ms: ms(self.max_window),
            max_skew_ms: ms(self.max_skew),
            max_age_ms: self.max_age.map(ms),
            max_metrics: self.max_metrics,
            max_labels: self.max_labels,
            max_processes: self.max_processes,
            max_label_value_bytes: self.max_label_value_bytes,
            max_string_bytes: self.max_string_bytes,
        }
    }
}
