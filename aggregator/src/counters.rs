//! Aggregator counters: frames received, committed, duplicate, rejected by reason, rows and
//! files written, commit failures. Logged periodically and at shutdown.

use fleetset_core::net::{ConnEvent, OnConnEvent};
use fleetset_proto::RejectReason;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

fleetset_core::counters! {
    /// Monotonic counters of the aggregator's data flow; all start at 0.
    pub struct Flow {
        /// Frames received on any transport.
        frames_received,
        /// Frames accepted at the previous frame version (agents not yet upgraded; README
        /// "Version skew"): 0 for a while means the whole fleet seals the current version.
        frames_previous_version,
        /// Payload bytes of the frames received.
        bytes_received,
        /// Frames whose rows were committed.
        frames_committed,
        /// Frames acked DUPLICATE.
        frames_duplicate,
        /// Rows written to `series/`.
        series_rows,
        /// Rows written to `windows/`.
        window_rows,
        /// Rows written to `processes/`.
        process_rows,
        /// Parquet files committed.
        files_committed,
        /// Commits that failed (frames not acked; agents resend).
        commit_failures,
        /// Acks that could not be delivered: peer gone, or (ZeroMQ) its send queue at
        /// `ingest.zmq.sndhwm` or the ROUTER's ack queue full; the agent resends and gets DUPLICATE.
        acks_undeliverable,
        /// ZeroMQ frames dropped unread because their peer already had
        /// `ingest.zmq.max_in_flight_per_peer` frames admitted and not yet acked (no ack: it resends).
        zmq_peer_backpressure,
        /// ZeroMQ acks dropped because the peer's send queue was at `ingest.zmq.sndhwm` (it is
        /// not reading acks) or the ROUTER thread's ack queue (`ingest.zmq.ack_queue`) was full.
        zmq_acks_dropped,
        /// gRPC `Publish` streams ended by a message that is not a `Frame` (or another stream
        /// error); the client gets INVALID_ARGUMENT or the error's own status, not OK.
        grpc_stream_errors,
        /// Frames refused unverified and unacked because resident memory was above
        /// `ingest.memory_limit_bytes` (gRPC: the stream ended UNAVAILABLE; senders resend).
        frames_refused_memory,
        /// OTLP Exports answered UNAVAILABLE because resident memory was above
        /// `ingest.memory_limit_bytes` (the exporter retries).
        otlp_refused_memory,
        /// gRPC (ingest, live) connections closed at accept: `ingest.grpc.connections.max_connections` open.
        grpc_connections_refused,
        /// gRPC connections closed after `ingest.grpc.connections.idle_timeout` without a byte received.
        grpc_connections_idle_closed,
        /// OTLP connections closed at accept: `otlp.connections.max_connections` open.
        otlp_connections_refused,
        /// OTLP connections closed after `otlp.connections.idle_timeout` without a byte received.
        otlp_connections_idle_closed,
        /// `/metrics` `/healthz` connections closed because `telemetry.max_connections` were open (the oldest, for a new one).
        metrics_connections_refused,
        /// `/metrics` `/healthz` connections closed after `telemetry.idle_timeout` without a byte received.
        metrics_connections_idle_closed,
        /// Live streams refused because `live.max_subscribers` were open: gRPC Subscribe
        /// (RESOURCE_EXHAUSTED) and WebSocket `/v1/stream` (HTTP 503).
        live_subscribers_refused,
        /// WebSocket `/v1/stream` requests answered 400: an unknown query parameter, a bad
        /// value, a `bearer.` subprotocol without `fleetset.v1`, or not a WebSocket upgrade.
        stream_bad_requests,
        /// Live Subscribe, `/v1/stream`, OTLP Export or `/metrics` requests refused UNAUTHENTICATED / 401:
        /// no `authorization: Bearer` token, or one not in `security.tokens.file`.
        auth_unauthenticated,
        /// Requests refused PERMISSION_DENIED / 403: a known token without the scope needed.
        auth_permission_denied,
        /// Web console API requests refused: a bad parameter (HTTP 400), or `MAX_QUERIES`
        /// (2) console store reads already running (HTTP 503; README "Web console").
        console_requests_refused,
        /// Token file re-reads that failed (unreadable, not valid, over
        /// `security.tokens.max_file_bytes`); the previous tokens stayed in force.
        tokens_reload_failures,
        /// OTLP data points accepted into windows.
        otlp_points_received,
        /// OTLP data points rejected (malformed, no identity, late).
        otlp_points_rejected,
        /// Windows built from OTLP points and handed to the store.
        otlp_windows,
        /// Torn or corrupt OTLP WAL records skipped at start.
        otlp_wal_torn,
        /// OTLP WAL records replayed into open windows at start.
        otlp_wal_replayed,
        /// Window keys found in more than one committed row at start (see `store::files::Recovery`).
        recovered_duplicate_keys,
        /// OTLP data points refused: series name invalid or over 128 bytes with its attributes.
        otlp_refused_name,
        /// OTLP data points refused: more than `otlp.max_attributes` attributes.
        otlp_refused_attributes,
        /// OTLP data points refused: more than `otlp.max_buckets` buckets or quantiles.
        otlp_refused_buckets,
        /// OTLP data points refused: past `otlp.max_request_points` series points in one request.
        otlp_refused_request_points,
        /// OTLP data points refused: later than now + `otlp.max_skew` or older than now − `otlp.max_age`.
        otlp_refused_time,
        /// OTLP data points refused: for a window already closed.
        otlp_refused_late,
        /// OTLP data points refused: would open more than `otlp.max_open_windows` windows.
        otlp_refused_open_windows,
        /// OTLP data points refused: more than `otlp.max_series` series in a window.
        otlp_refused_series,
        /// OTLP data points refused: the window's frame would exceed `ingest.max_frame_bytes`.
        otlp_refused_frame_bytes,
        /// OTLP Exports answered UNAVAILABLE because the WAL would exceed `otlp.max_wal_bytes`.
        otlp_wal_full,
        /// OTLP Exports answered UNAVAILABLE because a WAL append failed (truncated back).
        otlp_wal_write_failures,
        /// TLS handshakes on a gRPC or `/metrics` listener that failed or timed out (`security.tls.handshake_timeout`;
        /// e.g. no client certificate with mTLS on, a TLS version below `security.tls.min_version`).
        tls_handshake_failures,
        /// TLS certificate, key or client CA files reloaded after they changed on disk.
        tls_reloads,
        /// Changed TLS files that could not be loaded (the previous certificates stay in use).
        tls_reload_failures,
        /// ZeroMQ CURVE handshakes refused by the ZAP handler (key not in
        /// `security.curve.allow_file`, or not admitted on that socket).
        zmq_auth_denied,
        /// CURVE allow files re-read after they changed on disk (the new list is in use).
        curve_allow_reloads,
        /// Changed CURVE allow files that could not be read or parsed (the previous list stays).
        curve_allow_reload_failures,
        /// Configuration reloads (SIGHUP, `--watch-config`) that applied changed live keys.
        config_reloads,
        /// Configuration reloads refused because the new configuration was invalid (the running
        /// one stayed; the error is on `/healthz?verbose` and in the log).
        config_reload_failures,
        /// The configuration generation running now: 1 at start, +1 per applied reload (gauge).
        config_generation,
        /// OpAMP reports processed (`POST /v1/opamp`).
        control_reports,
        /// Control-plane requests refused: not protobuf / JSON, over `control.max_request_bytes`,
        /// a promoted body over `control.max_config_bytes` or not TOML.
        control_requests_refused,
        /// OpAMP reports refused because the caller's identity (mTLS certificate, `agent`
        /// token) is not the agent id it reports as, or it has none while identities are required.
        control_identity_refused,
        /// OpAMP reports and frames of agents not tracked: the inventory held `control.max_agents`.
        control_agents_untracked,
        /// Remote configurations sent to agents.
        control_configs_offered,
        /// Rollouts stopped by the health gate and rolled back automatically.
        control_rollbacks_automatic,
        /// Control-plane connections closed at accept: `control.max_connections` open.
        control_connections_refused,
        /// Control-plane connections closed after `control.idle_timeout` without a byte received.
        control_connections_idle_closed,
    }
}

/// The counter name of rejections for `reason`: `rejected_<reason>` (`rejected_oversize`).
fn rejected_name(reason: RejectReason) -> String {
    let name = reason.as_str_name().trim_start_matches("REJECT_REASON_");
    format!("rejected_{}", name.to_lowercase())
}

/// The aggregator's counters: the [`Flow`] counters (reached through `Deref`) and frames
/// rejected per reason.
#[derive(Debug, Default)]
pub struct Counters {
    flow: Flow,
    rejected: Mutex<Vec<(RejectReason, u64)>>,
}

impl std::ops::Deref for Counters {
    type Target = Flow;
    fn deref(&self) -> &Flow {
        &self.flow
    }
}

/// The aggregator's TCP listeners, for their connection counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Ingest and live gRPC (`ingest.grpc`).
    Grpc,
    /// The OTLP receiver (`otlp`).
    Otlp,
    /// `/metrics` and `/healthz` (`telemetry`).
    Metrics,
    /// The control plane (`control`).
    Control,
}

impl Counters {
    /// The counter of `event` on `listener` (`<listener>_connections_refused` / `_idle_closed`).
    pub fn conn_counter(&self, listener: Listener, event: ConnEvent) -> &AtomicU64 {
        let f = &self.flow;
        match (listener, event) {
            (Listener::Grpc, ConnEvent::Refused) => &f.grpc_connections_refused,
            (Listener::Grpc, ConnEvent::IdleClosed) => &f.grpc_connections_idle_closed,
            (Listener::Otlp, ConnEvent::Refused) => &f.otlp_connections_refused,
            (Listener::Otlp, ConnEvent::IdleClosed) => &f.otlp_connections_idle_closed,
            (Listener::Metrics, ConnEvent::Refused) => &f.metrics_connections_refused,
            (Listener::Metrics, ConnEvent::IdleClosed) => &f.metrics_connections_idle_closed,
            (Listener::Control, ConnEvent::Refused) => &f.control_connections_refused,
            (Listener::Control, ConnEvent::IdleClosed) => &f.control_connections_idle_closed,
        }
    }

    /// A listener callback counting into [`Counters::conn_counter`].
    pub fn on_conn_event(self: &Arc<Self>, listener: Listener) -> OnConnEvent {
        let c = self.clone();
        Arc::new(move |e| Counters::add(c.conn_counter(listener, e), 1))
    }

    /// Adds `n` to `c`.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Counts one frame rejected for `reason`.
    pub fn reject(&self, reason: RejectReason) {
        let mut r = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        match r.iter_mut().find(|(k, _)| *k == reason) {
            Some((_, n)) => *n += 1,
            None => r.push((reason, 1)),
        }
    }

    /// Frames rejected for `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        let r = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().find(|(k, _)| *k == reason).map_or(0, |(_, n)| *n)
    }

    /// All counters as `(name, value)` in declaration order, then rejections as
    /// `rejected_<reason>`.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .flow
            .snapshot()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let r = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        all.extend(r.iter().map(|(k, n)| (rejected_name(*k), *n)));
        all
    }

    /// Every counter name [`Counters::snapshot`] can report, rejections of every reason included.
    pub fn names() -> Vec<String> {
        let mut names: Vec<String> = Flow::default()
            .snapshot()
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        names.extend(
            (1..)
                .map_while(|i| RejectReason::try_from(i).ok())
                .map(rejected_name),
        );
        names
    }

    /// All counters as `name=value …` (the log line), in [`Counters::snapshot`] order.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .snapshot()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.join(" ")
    }
}
