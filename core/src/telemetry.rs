//! fleetset's own telemetry, for both binaries, through the OpenTelemetry metrics SDK: one
//! `SdkMeterProvider` with
//! - a manual (pull) reader behind a Prometheus text endpoint, `GET /metrics` (exposition format
//!   0.0.4) with `GET /healthz` beside it, on `--metrics-listen`;
//! - and, with `--telemetry-otlp URL`, a periodic OTLP/gRPC exporter (opentelemetry-otlp).
//!
//! Names follow the OpenTelemetry conventions (lower case, dot-separated namespaces):
//! `fleetset.<role>.<group>.<what>`, where a process counter `frames_sent` of the agent becomes
//! the monotonic counter `fleetset.agent.frames.sent` (the first `_` becomes a `.`), and
//! per-reason rejections `rejected_<reason>` become `fleetset.aggregator.frames.rejected` with a
//! `reason` attribute. Prometheus names replace `.` by `_` and add `_total` to counters
//! (`fleetset_agent_frames_sent_total`). The list is in README "Own telemetry".

use anyhow::{Context, Result};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::Resource;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The `[telemetry]` section of both binaries: own metrics over Prometheus text and OTLP.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, crate::config::Section)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Serve own telemetry: `/metrics` (Prometheus text) and `/healthz`.
    #[key(default = true)]
    pub enabled: bool,
    /// Address of `/metrics` and `/healthz` (the agent only warns when it cannot bind it, e.g. an aggregator on the same host holds it).
    #[key(default = "0.0.0.0:9464".into(), flag = "metrics-listen")]
    pub listen: String,
    /// Also push own telemetry over OTLP/gRPC every 10 s to this collector, e.g. `http://otel:4317`.
    #[key(flag = "telemetry-otlp")]
    pub otlp: Option<String>,
    /// Connections to `/metrics` `/healthz` open at once; beyond it the oldest is closed for the
    /// new one (so probes get in past slow clients), counted (`metrics_connections_refused`).
    #[key(
        default = 64,
        unit = "connections",
        min = 1,
        limit = "metrics_connections_refused"
    )]
    pub max_connections: usize,
    /// A `/metrics` `/healthz` connection that sends nothing for this long is closed (idle or
    /// slowloris sockets free their slot).
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(100), limit = "metrics_connections_idle_closed")]
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

/// How often own telemetry is pushed over OTLP when `telemetry.otlp` is set.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(10);

/// A [`ManualReader`] shared between the provider and the `/metrics` handler.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The `/metrics` guard of [`Telemetry::serve_with_auth`]: given the `authorization` header's
/// bytes (if any), `Ok` to serve or `Err(http_status)` to refuse (the aggregator's scoped tokens;
/// the agent has none).
pub type MetricsAuth =
    std::sync::Arc<dyn Fn(Option<&[u8]>) -> std::result::Result<(), u16> + Send + Sync>;

/// The meter provider of one process and its Prometheus reader.
#[derive(Debug, Clone)]
pub struct Telemetry {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    /// The meter every instrument of this process is created from (scope `fleetset`).
    pub meter: Meter,
    /// `agent` or `aggregator`: the second part of every metric name.
    pub role: &'static str,
    /// What configuration reloads did, for `/healthz?verbose` ([`Telemetry::with_reload_status`]).
    reload: Option<Arc<crate::config::ReloadStatus>>,
    /// More routes served beside `/metrics` and `/healthz` ([`Telemetry::with_routes`]).
    routes: Option<axum::Router>,
}

/// The OpenTelemetry name of a process counter: `fleetset.<role>.` + the counter name with its
/// first `_` made a `.`.
pub fn metric_name(role: &str, counter: &str) -> String {
    format!("fleetset.{role}.{}", counter.replacen('_', ".", 1))
}

impl Telemetry {
    /// Starts the SDK for `role` (resource: `service.name` = `fleetset-<role>`,
    /// `service.instance.id` = `instance_id`, `host.name`); with `otlp_endpoint` (e.g.
    /// `http://collector:4317`) also exports every `interval` over OTLP/gRPC.
    /// Errors: an OTLP endpoint the exporter cannot use.
    pub fn start(
        role: &'static str,
        instance_id: &str,
        otlp_endpoint: Option<&str>,
        interval: Duration,
    ) -> Result<Telemetry> {
        let reader = Arc::new(ManualReader::builder().build());
        let host = sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into());
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", format!("fleetset-{role}")),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", instance_id.to_string()),
                KeyValue::new("host.name", host),
            ])
            .build();
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(SharedReader(reader.clone()));
        if let Some(endpoint) = otlp_endpoint {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .with_context(|| format!("--telemetry-otlp {endpoint}"))?;
            builder = builder.with_reader(
                opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                    .with_interval(interval)
                    .build(),
            );
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        let meter = provider.meter("fleetset");
        Ok(Telemetry {
            provider,
            reader,
            meter,
            role,
            reload: None,
            routes: None,
        })
    }

    /// Serves `routes` on the same listener as `/metrics` and `/healthz` (the aggregator's
    /// WebSocket stream and web console); each route does its own authentication. The routes
    /// share the listener's bounds (`telemetry.max_connections`, `telemetry.idle_timeout`).
    pub fn with_routes(mut self, routes: axum::Router) -> Telemetry {
        self.routes = Some(routes);
        self
    }

    /// Shows `status` in `/healthz?verbose` (configuration generation, reload failures and the
    /// last error, keys pending a restart).
    pub fn with_reload_status(mut self, status: Arc<crate::config::ReloadStatus>) -> Telemetry {
        self.reload = Some(status);
        self
    }

    /// Registers the process counters returned by `read` (name → value, see the module
    /// documentation for the naming) as observable counters, and the names in `gauges` as
    /// observable gauges. `rejected_<reason>` counters become one counter with a `reason`.
    pub fn observe_counters<F>(&self, names: &[String], gauges: &[&str], read: F)
    where
        F: Fn() -> Vec<(String, u64)> + Send + Sync + 'static,
    {
        let read = Arc::new(read);
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let (base, reason) = match name.strip_prefix("rejected_") {
                Some(_) => ("frames_rejected".to_string(), true),
                None => (name.clone(), false),
            };
            if !seen.insert(base.clone()) {
                continue;
            }
            let otel = metric_name(self.role, &base);
            let read = read.clone();
            let pick = move |all: Vec<(String, u64)>| -> Vec<(u64, Vec<KeyValue>)> {
                all.into_iter()
                    .filter_map(|(k, v)| {
                        if reason {
                            k.strip_prefix("rejected_")
                                .map(|r| (v, vec![KeyValue::new("reason", r.to_string())]))
                        } else {
                            (k == base).then(|| (v, Vec::new()))
                        }
                    })
                    .collect()
            };
            if gauges.contains(&name.as_str()) {
                self.meter
                    .u64_observable_gauge(otel)
                    .with_callback(move |o| {
                        for (v, attrs) in pick(read()) {
                            o.observe(v, &attrs)
                        }
                    })
                    .build();
            } else {
                self.meter
                    .u64_observable_counter(otel)
                    .with_callback(move |o| {
                        for (v, attrs) in pick(read()) {
                            o.observe(v, &attrs)
                        }
                    })
                    .build();
            }
        }
    }

    /// Every instrument now, in the Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.reader.collect(&mut rm) {
            return format!("# collect failed: {e}\n");
        }
        render(&rm)
    }

    /// Serves `/metrics` and `/healthz` on `cfg.listen` until `shutdown` (from inside a tokio
    /// runtime), at most `cfg.max_connections` connections at once, each closed after
    /// `cfg.idle_timeout` without a byte received (both reported to `on_event`); returns the
    /// bound address. Errors: the address cannot be bound.
    pub fn serve(
        &self,
        cfg: &TelemetryConfig,
        shutdown: CancellationToken,
        on_event: crate::net::OnConnEvent,
    ) -> Result<SocketAddr> {
        self.serve_with(cfg, shutdown, on_event, None, |l| l)
    }

    /// [`Telemetry::serve`] with `/metrics` guarded by `auth` (given the request's
    /// `authorization` header, if any; `Err(status)` answers that HTTP status, e.g. 401 or 403,
    /// with an empty body; `/healthz` stays open for probes — `/healthz?verbose` shows the
    /// reload status, with error text only to callers `auth` admits), over the listener that `wrap`
    /// makes of the bounded one (e.g. one that yields TLS connections).
    pub fn serve_with<L>(
        &self,
        cfg: &TelemetryConfig,
        shutdown: CancellationToken,
        on_event: crate::net::OnConnEvent,
        auth: Option<MetricsAuth>,
        wrap: impl FnOnce(crate::net::BoundedListener) -> L,
    ) -> Result<SocketAddr>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let listen = &cfg.listen;
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding --metrics-listen {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let limits = crate::net::ConnLimits {
            max_connections: cfg.max_connections,
            idle_timeout: cfg.idle_timeout,
            tcp_keepalive: None,
            evict_oldest: true,
        };
        let listener = wrap(crate::net::BoundedListener::new(listener, limits, on_event));
        let me = self.clone();
        let (reload, health_auth) = (self.reload.clone(), auth.clone());
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move |headers: axum::http::HeaderMap| {
                    let (me, auth) = (me.clone(), auth.clone());
                    async move {
                        use axum::response::IntoResponse;
                        let header = headers
                            .get(axum::http::header::AUTHORIZATION)
                            .map(|v| v.as_bytes());
                        if let Some(Err(code)) = auth.map(|a| a(header)) {
                            let code = axum::http::StatusCode::from_u16(code)
                                .unwrap_or(axum::http::StatusCode::UNAUTHORIZED);
                            return (code, [(axum::http::header::WWW_AUTHENTICATE, "Bearer")])
                                .into_response();
                        }
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            me.render_prometheus(),
                        )
                            .into_response()
                    }
                }),
            )
            .route(
                "/healthz",
                axum::routing::get(
                    move |query: axum::extract::RawQuery, headers: axum::http::HeaderMap| {
                        let (reload, auth) = (reload.clone(), health_auth.clone());
                        async move {
                            let verbose = query.0.is_some_and(|q| {
                                q.split('&')
                                    .any(|p| p == "verbose" || p.starts_with("verbose="))
                            });
                            match (verbose, reload) {
                                (true, Some(r)) => {
                                    let header = headers
                                        .get(axum::http::header::AUTHORIZATION)
                                        .map(|v| v.as_bytes());
                                    let reasons = auth.is_none_or(|a| a(header).is_ok());
                                    r.verbose(reasons)
                                }
                                (true, None) => "[+]ping ok\n".to_string(),
                                (false, _) => "ok\n".to_string(),
                            }
                        }
                    },
                ),
            );
        let app = match &self.routes {
            Some(routes) => app.merge(routes.clone()),
            None => app,
        };
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "metrics endpoint stopped");
            }
        });
        Ok(addr)
    }

    /// Flushes the OTLP exporter (if any) and shuts the SDK down; blocking, so it runs on a
    /// blocking thread.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        })
        .await;
    }
}

fn prom_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = attrs
        .map(|kv| {
            format!(
                "{}=\"{}\"",
                prom_name(kv.key.as_str()),
                kv.value
                    .as_str()
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

trait Num: Copy {
    fn f(self) -> f64;
}
impl Num for f64 {
    fn f(self) -> f64 {
        self
    }
}
impl Num for u64 {
    fn f(self) -> f64 {
        self as f64
    }
}
impl Num for i64 {
    fn f(self) -> f64 {
        self as f64
    }
}

fn render_data<T: Num>(out: &mut String, name: &str, help: &str, data: &MetricData<T>) {
    let head = |out: &mut String, n: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {n} {help}\n# TYPE {n} {kind}");
    };
    match data {
        MetricData::Gauge(g) => {
            head(out, name, "gauge");
            for p in g.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    p.value().f()
                );
            }
        }
        MetricData::Sum(s) => {
            let (n, kind) = if s.is_monotonic() {
                (format!("{name}_total"), "counter")
            } else {
                (name.to_string(), "gauge")
            };
            head(out, &n, kind);
            for p in s.data_points() {
                let _ = writeln!(out, "{n}{} {}", labels(p.attributes(), None), p.value().f());
            }
        }
        MetricData::Histogram(h) => {
            head(out, name, "histogram");
            for p in h.data_points() {
                let mut cumulative = 0u64;
                let bounds: Vec<f64> = p.bounds().collect();
                for (i, c) in p.bucket_counts().enumerate() {
                    cumulative += c;
                    let le = bounds
                        .get(i)
                        .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(p.attributes(), Some(("le", le)))
                    );
                }
                let l = labels(p.attributes(), None);
                let _ = writeln!(out, "{name}_sum{l} {}", p.sum().f());
                let _ = writeln!(out, "{name}_count{l} {}", p.count());
            }
        }
        MetricData::ExponentialHistogram(h) => {
            head(out, name, "summary");
            for p in h.data_points() {
                let l = labels(p.attributes(), None);
                let _ = writeln!(out, "{name}_sum{l} {}", p.sum().f());
                let _ = writeln!(out, "{name}_count{l} {}", p.count());
            }
        }
    }
}

/// Renders collected metrics in the Prometheus text format.
fn render(rm: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in rm.scope_metrics() {
        for m in scope.metrics() {
            let name = prom_name(m.name());
            let help = if m.description().is_empty() {
                m.name().to_string()
            } else {
                m.description().replace('\n', " ")
            };
            match m.data() {
                AggregatedMetrics::F64(d) => render_data(&mut out, &name, &help, d),
                AggregatedMetrics::U64(d) => render_data(&mut out, &name, &help, d),
                AggregatedMetrics::I64(d) => render_data(&mut out, &name, &help, d),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_render_as_prometheus_text() {
        let t = Telemetry::start("agent", "test-agent", None, Duration::from_secs(60)).unwrap();
        t.observe_counters(
            &[
                "frames_sent".into(),
                "spool_frames".into(),
                "rejected_checksum".into(),
            ],
            &["spool_frames"],
            || {
                vec![
                    ("frames_sent".into(), 7),
                    ("spool_frames".into(), 3),
                    ("rejected_checksum".into(), 2),
                ]
            },
        );
        let h = t
            .meter
            .f64_histogram("fleetset.agent.ack.latency")
            .with_unit("ms")
            .build();
        h.record(3.0, &[]);
        let text = t.render_prometheus();
        assert!(
            text.contains("fleetset_agent_frames_sent_total 7"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE fleetset_agent_spool_frames gauge"),
            "{text}"
        );
        assert!(text.contains("fleetset_agent_spool_frames 3"), "{text}");
        assert!(
            text.contains("fleetset_agent_frames_rejected_total{reason=\"checksum\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("fleetset_agent_ack_latency_count 1"),
            "{text}"
        );
        assert!(
            text.contains("fleetset_agent_ack_latency_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
        assert_eq!(
            metric_name("aggregator", "frames_received"),
            "fleetset.aggregator.frames.received"
        );
    }
}
