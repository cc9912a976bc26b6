//! The agent as an OpenTelemetry source: each window's metrics as one OTLP/gRPC
//! `MetricsService/Export` request to a collector (or a fleetset aggregator's OTLP receiver).
//!
//! Mapping (README "OpenTelemetry"): the resource carries `host.name` (the host name),
//! `service.name` = `fleetset-agent`, `service.instance.id` = the agent id, `service.version`,
//! `os.type`, and every operator label as an attribute of the same key; every series becomes a
//! Gauge of the same name whose data points are the window's downsampled (MinMax-LTTB) points,
//! in time order.
//!
//! Used two ways: `--transport otlp` sends every window only this way, through the spool with
//! at-least-once delivery (a successful Export response is the ack; rejected data points are a
//! REJECTED ack); `--otlp-endpoint URL` with another transport additionally exports each window
//! best-effort (failures are counted as `otlp_export_failures` and logged, never retried).

use fleetset_proto::Snapshot;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::time::Duration;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// The OTLP request of one window.
pub fn request(snapshot: &Snapshot) -> ExportMetricsServiceRequest {
    let host = &snapshot.host;
    let mut attributes = vec![
        kv("host.name", &host.hostname),
        kv("service.name", "fleetset-agent"),
        kv("service.instance.id", &snapshot.agent_id),
        kv("service.version", &host.agent_version),
        kv("os.type", &host.os),
    ];
    attributes.extend(host.labels.iter().map(|(k, v)| kv(k, v)));
    let metrics = snapshot
        .data
        .iter()
        .map(|(name, points)| Metric {
            name: name.clone(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points
                    .iter()
                    .map(|p| NumberDataPoint {
                        time_unix_nano: (p.ts_ms.max(0) as u64) * 1_000_000,
                        value: Some(number_data_point::Value::AsDouble(p.value)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "fleetset-agent".into(),
                    version: host.agent_version.clone(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// What an Export answered.
#[derive(Debug)]
pub enum Exported {
    /// Every data point accepted.
    Accepted,
    /// Some points rejected, with the collector's message.
    Rejected(String),
}

/// An OTLP/gRPC metrics client.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    client: MetricsServiceClient<tonic::transport::Channel>,
}

impl OtlpExporter {
    /// Connects to `endpoint` (`http://host:4317`, or `https://` with `tls`) within `timeout`.
    /// Errors name the endpoint or the TLS file.
    pub async fn connect(
        endpoint: &str,
        tls: &crate::config::ClientTlsConfig,
        timeout: Duration,
    ) -> Result<OtlpExporter, String> {
        let channel = crate::tls::endpoint(endpoint, tls, timeout)
            .map_err(|e| format!("OTLP {e}"))?
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("connect {endpoint}: {e}"))?;
        Ok(OtlpExporter {
            client: MetricsServiceClient::new(channel),
        })
    }

    /// Exports one window. Errors: the call failed (transport or status).
    pub async fn export(&mut self, snapshot: &Snapshot) -> Result<Exported, String> {
        let response = self
            .client
            .export(request(snapshot))
            .await
            .map_err(|s| format!("OTLP Export: {s}"))?
            .into_inner();
        Ok(match response.partial_success {
            Some(p) if p.rejected_data_points > 0 => Exported::Rejected(format!(
                "{} data point(s) rejected: {}",
                p.rejected_data_points, p.error_message
            )),
            _ => Exported::Accepted,
        })
    }
}
