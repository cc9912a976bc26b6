//! OTLP/gRPC metrics receiver (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`)
//! on `--otlp-listen` (default 0.0.0.0:4317): an OpenTelemetry Collector's `otlp` exporter or
//! any OTel SDK pushes metrics in; they are mapped to fleetset series ([`mapping`]), cut into
//! the same windows as agents' samples, written ahead to a log and turned into frames admitted
//! like an agent's ([`windows`]) — so they land in the same store, training sets and live
//! streams, exactly once.
//!
//! Responses follow the OTLP spec: a request with rejected points gets `partial_success` with
//! `rejected_data_points` and an `error_message` naming why (the rules: [`mapping`] for a single
//! point, [`windows`] for time bounds and what the buffer holds; each rule counts in
//! `otlp_refused_<rule>`); a request whose accepted points cannot be made durable (WAL full or
//! a failed append), or that arrives while the aggregator is over `ingest.memory_limit_bytes`,
//! gets `UNAVAILABLE` (the exporter retries); nothing crashes the receiver.

pub mod config;
pub mod mapping;
pub mod quantiles;
pub mod windows;

use crate::counters::Counters;
use mapping::Refusal;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use std::sync::Arc;
use windows::OtlpWindows;

/// The `MetricsService` implementation.
pub struct OtlpReceiver {
    /// Where accepted points go.
    pub windows: Arc<OtlpWindows>,
    /// Salt of the source identities (`DATA_DIR/otlp.salt`).
    pub salt: Vec<u8>,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Per-request limits of the mapping.
    pub limits: mapping::MapLimits,
    /// Above it, Exports are answered UNAVAILABLE unread (`ingest.memory_limit_bytes`).
    pub memory: Arc<super::MemoryLimit>,
    /// Bearer tokens: Export needs scope `otlp`.
    pub tokens: Arc<crate::security::tokens::Tokens>,
}

impl OtlpReceiver {
    /// The counter of `rule` (malformed points only count in `otlp_points_rejected`).
    fn counter(&self, rule: Refusal) -> Option<&std::sync::atomic::AtomicU64> {
        let c = &self.counters;
        Some(match rule {
            Refusal::Malformed => return None,
            Refusal::Name => &c.otlp_refused_name,
            Refusal::Attributes => &c.otlp_refused_attributes,
            Refusal::Buckets => &c.otlp_refused_buckets,
            Refusal::RequestPoints => &c.otlp_refused_request_points,
            Refusal::Time => &c.otlp_refused_time,
            Refusal::Late => &c.otlp_refused_late,
            Refusal::OpenWindows => &c.otlp_refused_open_windows,
            Refusal::Series => &c.otlp_refused_series,
            Refusal::FrameBytes => &c.otlp_refused_frame_bytes,
        })
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.tokens
            .check_grpc(&request, crate::security::tokens::Scope::Otlp)?;
        if self.memory.exceeded() {
            Counters::add(&self.counters.otlp_refused_memory, 1);
            return Err(tonic::Status::unavailable(
                "aggregator over ingest.memory_limit_bytes; retry later",
            ));
        }
        let mut mapped = mapping::map_request(request.get_ref(), &self.salt, self.limits);
        let points: u64 = mapped.sources.iter().map(|s| s.points.len() as u64).sum();
        let windows = self.windows.clone();
        let sources = std::mem::take(&mut mapped.sources);
        let now = fleetset_core::time::now_ms();
        let refused = tokio::task::spawn_blocking(move || windows.accept(sources, now))
            .await
            .map_err(|e| tonic::Status::internal(format!("OTLP receiver task failed: {e}")))?
            .map_err(|e| {
                tracing::warn!(error = format!("{e:#}"), "OTLP points could not be logged");
                tonic::Status::unavailable(format!("points not durable, retry: {e:#}"))
            })?;
        let accepted = points.saturating_sub(refused.count);
        mapped.rejected.merge(refused);
        let rejected = mapped.rejected;
        Counters::add(&self.counters.otlp_points_received, accepted);
        Counters::add(&self.counters.otlp_points_rejected, rejected.count);
        for (rule, n) in &rejected.by {
            if let Some(c) = self.counter(*rule) {
                Counters::add(c, *n);
            }
        }
        let partial_success = (rejected.count > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected.count).unwrap_or(i64::MAX),
            error_message: rejected.reasons.join("; "),
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success,
        }))
    }
}

/// The identity salt in `data_dir/otlp.salt` (16 random bytes, hex; a secret file created on
/// first use, see `fleetset_core::secret`).
pub fn load_salt(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    fleetset_core::secret::load_or_create(&data_dir.join("otlp.salt"), 16, 16)
}
