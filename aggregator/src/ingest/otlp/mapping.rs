//! OTLP metrics → fleetset points (the mapping README "OpenTelemetry" documents).
//!
//! Identity: a resource is one fleetset source ("agent"); its identity is the resource's
//! `host.name`, `service.name` and `service.instance.id` (those present, joined by `/`), and at
//! least one of `host.name` / `service.instance.id` is required. Its `agent_id` is
//! `otel-<host.name or service.instance.id, sanitized>-<8 hex digits of SHA-256(salt ‖
//! identity)>`, the salt being the aggregator's (`DATA_DIR/otlp.salt`) — stable for one
//! aggregator, not guessable across fleets. The other resource attributes become operator
//! labels with `.` made `_` (`service.name` → `label_service_name`).
//!
//! Series names keep the OpenTelemetry metric name (`system.cpu.utilization`), made a valid
//! fleetset metric name (`[a-z][a-z0-9_.]*`: lower case, any other character `_`); data point
//! attributes, if any, are appended sorted by key as `.<key>_<value>` with `.` inside keys and
//! values made `_` (`system.cpu.utilization.cpu_0.state_user`). Values:
//! - gauge, and sum of any temporality and monotonicity: the point's value as sent
//!   (cumulative sums stay cumulative, delta sums stay deltas);
//! - histogram: `<name>.count`, `<name>.sum`, `<name>.min`, `<name>.max` (those present) and
//!   one series per bucket, `<name>.bucket.le_<upper bound>` (`le_2_5`, `le_inf`; the bucket's
//!   own count, not cumulative);
//! - exponential histogram: `.count`, `.sum`, `.min`, `.max`, `.zero_count` and the estimated
//!   quantiles `<name>.quantile_0_5`, `quantile_0_9`, `quantile_0_99` (see [`super::quantiles`];
//!   its buckets, whose bounds move with the scale, are not stored one series each);
//! - summary: `.count`, `.sum` and `<name>.quantile_<q>` (`quantile_0_99`).
//!
//! Rejected per data point (all the series points of an OTLP data point together), counted and
//! reported in the partial-success response, never fatal — checked here, before anything is
//! logged, so a window never fails the frame admission after its points were acknowledged:
//! a resource without identity, a point with time 0, a NaN or infinite value, a final series
//! name (attributes appended) that is not a valid fleetset metric name of at most 128 bytes, an
//! attribute key or value over 4096 bytes, more than `otlp.max_attributes` attributes, more than
//! `otlp.max_buckets` buckets or quantiles, and the data points past `otlp.max_request_points`
//! series points in one request. A metric without data is reported, with nothing to count.

use fleetset_core::names::{metric_component, metric_stem};
use fleetset_proto::model::{is_valid_metric_name, MAX_METRIC_NAME_LEN};
use fleetset_proto::HostInfo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point, metric, number_data_point, NumberDataPoint,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Longest attribute key or value accepted, bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// One series point of a data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Series name.
    pub metric: String,
    /// Time, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
    /// The OTLP point's `start_time_unix_nano` (0 if unset): with the value, it tells a
    /// re-export of an unchanged cumulative state from a new observation.
    pub start_ns: u64,
}

/// The series points of one OTLP data point (one for a gauge or sum, several for a histogram
/// or summary; all at the same time): accepted or refused together.
pub type DataPoint = Vec<Point>;

/// The points of one resource.
#[derive(Debug, Clone)]
pub struct SourcePoints {
    /// fleetset agent id of the resource.
    pub agent_id: String,
    /// Host attributes and labels.
    pub host: HostInfo,
    /// Accepted data points.
    pub points: Vec<DataPoint>,
}

/// The rule that refused data points; each has its own counter (`otlp_refused_<rule>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// No identity, time 0, no value, non-finite value, oversized attribute.
    Malformed,
    /// The series name is not a valid fleetset metric name (≤ 128 bytes).
    Name,
    /// More than `otlp.max_attributes` attributes.
    Attributes,
    /// More than `otlp.max_buckets` buckets or quantiles.
    Buckets,
    /// Past `otlp.max_request_points` series points in one request.
    RequestPoints,
    /// Later than now + `otlp.max_skew` or older than now − `otlp.max_age`.
    Time,
    /// For a window of its source already closed (later than `otlp.grace`).
    Late,
    /// Would open more than `otlp.max_open_windows` windows.
    OpenWindows,
    /// Would make more than `otlp.max_series` series in its source's window.
    Series,
    /// Would make its window's frame larger than `ingest.max_frame_bytes`.
    FrameBytes,
}

/// Data points refused while handling one request.
#[derive(Debug, Default)]
pub struct Rejections {
    /// OTLP data points refused.
    pub count: u64,
    /// Per rule.
    pub by: BTreeMap<Refusal, u64>,
    /// Why (first few distinct reasons).
    pub reasons: Vec<String>,
}

impl Rejections {
    /// Counts `n` data points refused by `rule`, saying `why`.
    pub fn add(&mut self, rule: Refusal, n: u64, why: String) {
        self.count_as(rule, n);
        self.say(why);
    }

    fn count_as(&mut self, rule: Refusal, n: u64) {
        self.count = self.count.saturating_add(n);
        let c = self.by.entry(rule).or_default();
        *c = c.saturating_add(n);
    }

    fn say(&mut self, why: String) {
        if self.reasons.len() < 5 && !self.reasons.contains(&why) {
            self.reasons.push(why);
        }
    }

    /// Adds `other`'s counts and reasons.
    pub fn merge(&mut self, other: Rejections) {
        for (rule, n) in other.by {
            self.count_as(rule, n);
        }
        for why in other.reasons {
            self.say(why);
        }
    }
}

/// Per-request limits of the mapping (`[otlp]` keys of the same names).
#[derive(Debug, Clone, Copy)]
pub struct MapLimits {
    /// Attributes per data point.
    pub max_attributes: usize,
    /// Buckets (per side) or quantiles per data point.
    pub max_buckets: usize,
    /// Series points per request.
    pub max_request_points: usize,
}

/// A mapped request.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Accepted points per resource.
    pub sources: Vec<SourcePoints>,
    /// Data points refused.
    pub rejected: Rejections,
}

impl Mapped {
    fn reject(&mut self, n: u64, why: String) {
        self.rejected.add(Refusal::Malformed, n, why);
    }
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The series name of `name` with sorted attributes appended as `.<key>_<value>`; `Err`
/// names an oversized attribute.
fn series_name(
    name: &str,
    attrs: &[KeyValue],
    extra: Option<(&str, String)>,
) -> Result<String, String> {
    let mut kv: BTreeMap<String, String> = BTreeMap::new();
    for a in attrs {
        let v = text(&a.value);
        if v.len() > MAX_ATTRIBUTE_BYTES || a.key.len() > MAX_ATTRIBUTE_BYTES {
            return Err(format!(
                "metric {name}: attribute {} is longer than {MAX_ATTRIBUTE_BYTES} bytes",
                a.key.chars().take(40).collect::<String>()
            ));
        }
        kv.insert(metric_component(&a.key, false), metric_component(&v, false));
    }
    if let Some((k, v)) = extra {
        kv.insert(k.to_string(), metric_component(&v, false));
    }
    let mut out = metric_stem(name);
    for (k, v) in kv {
        out.push('.');
        out.push_str(&k);
        out.push('_');
        out.push_str(&v);
    }
    Ok(out)
}

/// One value derived from an OTLP data point: (series-name suffix, extra attribute, value).
type Derived<'a> = (&'a str, Option<(&'a str, String)>, f64);

/// The `.sum`, `.min`, `.max` series of a histogram point, those present.
fn sum_min_max(sum: Option<f64>, min: Option<f64>, max: Option<f64>) -> Vec<Derived<'static>> {
    [(".sum", sum), (".min", min), (".max", max)]
        .into_iter()
        .filter_map(|(suffix, v)| v.map(|v| (suffix, None, v)))
        .collect()
}

/// Collects the points of one OTLP data point into `out`, or rejects it in `m`.
struct Collector<'a> {
    m: &'a mut Mapped,
    limits: MapLimits,
    /// Series points this request may still add.
    left: &'a mut usize,
    out: Vec<DataPoint>,
}

impl Collector<'_> {
    /// Whether a point of `name` with `n` buckets or quantiles is within `otlp.max_buckets`
    /// (rejecting it if not).
    fn buckets_ok(&mut self, name: &str, n: usize) -> bool {
        let max = self.limits.max_buckets;
        if n > max {
            self.m.rejected.add(
                Refusal::Buckets,
                1,
                format!(
                    "metric {name}: {n} buckets or quantiles, more than otlp.max_buckets = {max}"
                ),
            );
        }
        n <= max
    }

    /// One OTLP data point with `values` = (name suffix, extra attribute, value).
    fn point(
        &mut self,
        name: &str,
        attrs: &[KeyValue],
        (start_ns, time_unix_nano): (u64, u64),
        values: Vec<Derived<'_>>,
    ) {
        if time_unix_nano == 0 {
            self.m.reject(
                1,
                format!("metric {name}: a data point has time_unix_nano 0"),
            );
            return;
        }
        if attrs.len() > self.limits.max_attributes {
            self.m.rejected.add(
                Refusal::Attributes,
                1,
                format!(
                    "metric {name}: {} attributes, more than otlp.max_attributes = {}",
                    attrs.len(),
                    self.limits.max_attributes
                ),
            );
            return;
        }
        if let Some((_, _, v)) = values.iter().find(|(_, _, v)| !v.is_finite()) {
            self.m
                .reject(1, format!("metric {name}: value {v} is not finite"));
            return;
        }
        if values.len() > *self.left {
            self.m.rejected.add(
                Refusal::RequestPoints,
                1,
                format!(
                    "the request expands to more than otlp.max_request_points = {} series points",
                    self.limits.max_request_points
                ),
            );
            return;
        }
        // Nanoseconds / 10^6 fit i64 (u64::MAX / 10^6 < 2^63).
        let ts_ms = i64::try_from(time_unix_nano / 1_000_000).unwrap_or(i64::MAX);
        let mut points = Vec::with_capacity(values.len());
        for (suffix, extra, value) in values {
            match series_name(&format!("{name}{suffix}"), attrs, extra) {
                Ok(metric) if is_valid_metric_name(&metric) => points.push(Point {
                    metric,
                    ts_ms,
                    value,
                    start_ns,
                }),
                Ok(metric) => {
                    self.m.rejected.add(
                        Refusal::Name,
                        1,
                        format!(
                            "series {}…: longer than {MAX_METRIC_NAME_LEN} bytes with its attributes",
                            metric.chars().take(60).collect::<String>()
                        ),
                    );
                    return;
                }
                Err(why) => {
                    self.m.reject(1, why);
                    return;
                }
            }
        }
        *self.left = self.left.saturating_sub(points.len());
        self.out.push(points);
    }

    fn numbers(&mut self, name: &str, points: &[NumberDataPoint]) {
        for p in points {
            let v = match p.value {
                Some(number_data_point::Value::AsDouble(d)) => d,
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                None => {
                    self.m
                        .reject(1, format!("metric {name}: a data point has no value"));
                    continue;
                }
            };
            let times = (p.start_time_unix_nano, p.time_unix_nano);
            self.point(name, &p.attributes, times, vec![("", None, v)]);
        }
    }
}

/// Maps `req` with the aggregator's identity `salt`, within `limits`.
pub fn map_request(req: &ExportMetricsServiceRequest, salt: &[u8], limits: MapLimits) -> Mapped {
    let mut m = Mapped::default();
    let mut left = limits.max_request_points;
    for rm in &req.resource_metrics {
        let total: u64 = rm
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .map(count_points)
            .sum();
        let attrs: BTreeMap<&str, String> = rm
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| (kv.key.as_str(), text(&kv.value)))
            .collect();
        let host_name = attrs.get("host.name").filter(|s| !s.is_empty());
        let instance = attrs.get("service.instance.id").filter(|s| !s.is_empty());
        let Some(primary) = host_name.or(instance) else {
            m.reject(
                total,
                "a resource has neither host.name nor service.instance.id; its points are rejected"
                    .into(),
            );
            continue;
        };
        if attrs.values().any(|v| v.len() > MAX_ATTRIBUTE_BYTES) {
            m.reject(
                total,
                format!("a resource attribute is longer than {MAX_ATTRIBUTE_BYTES} bytes"),
            );
            continue;
        }
        let identity: Vec<&str> = ["host.name", "service.name", "service.instance.id"]
            .iter()
            .filter_map(|k| attrs.get(k).map(String::as_str))
            .collect();
        let mut h = Sha256::new();
        h.update(salt);
        h.update(identity.join("/").as_bytes());
        let agent_id = format!(
            "otel-{}-{}",
            fleetset_core::names::id_component(primary, 40),
            hex::encode(&h.finalize()[..4])
        );
        let host = HostInfo {
            hostname: host_name.cloned().unwrap_or_default(),
            os: attrs.get("os.type").cloned().unwrap_or_default(),
            kernel: attrs.get("os.description").cloned().unwrap_or_default(),
            agent_version: attrs
                .get("telemetry.sdk.name")
                .map(|n| {
                    format!(
                        "{n} {}",
                        attrs
                            .get("telemetry.sdk.version")
                            .map_or("", |s| s.as_str())
                    )
                })
                .unwrap_or_default(),
            labels: attrs
                .iter()
                .filter(|(k, _)| **k != "host.name")
                .map(|(k, v)| (k.replace('.', "_"), v.clone()))
                .collect(),
            ..Default::default()
        };
        let mut c = Collector {
            m: &mut m,
            limits,
            left: &mut left,
            out: Vec::new(),
        };
        for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let name = metric.name.as_str();
            if name.is_empty() || name.len() > MAX_METRIC_NAME_LEN {
                c.m.rejected.add(
                    Refusal::Name,
                    count_points(metric),
                    format!("a metric name is empty or longer than {MAX_METRIC_NAME_LEN} bytes"),
                );
                continue;
            }
            match &metric.data {
                None => c.m.reject(0, format!("metric {name} has no data")),
                Some(metric::Data::Gauge(g)) => c.numbers(name, &g.data_points),
                Some(metric::Data::Sum(s)) => c.numbers(name, &s.data_points),
                Some(metric::Data::Histogram(h)) => {
                    for p in &h.data_points {
                        let n = p.bucket_counts.len().max(p.explicit_bounds.len());
                        if !c.buckets_ok(name, n) {
                            continue;
                        }
                        let mut v = vec![(".count", None, p.count as f64)];
                        v.extend(sum_min_max(p.sum, p.min, p.max));
                        for (i, n) in p.bucket_counts.iter().enumerate() {
                            let le = p
                                .explicit_bounds
                                .get(i)
                                .map_or_else(|| "inf".to_string(), |b| b.to_string());
                            v.push((".bucket", Some(("le", le)), *n as f64));
                        }
                        c.point(
                            name,
                            &p.attributes,
                            (p.start_time_unix_nano, p.time_unix_nano),
                            v,
                        );
                    }
                }
                Some(metric::Data::ExponentialHistogram(h)) => {
                    for p in &h.data_points {
                        let side = |b: &Option<_>| {
                            b.as_ref()
                                .map_or(0, |b: &exponential_histogram_data_point::Buckets| {
                                    b.bucket_counts.len()
                                })
                        };
                        if !c.buckets_ok(name, side(&p.positive).max(side(&p.negative))) {
                            continue;
                        }
                        let mut v = vec![
                            (".count", None, p.count as f64),
                            (".zero_count", None, p.zero_count as f64),
                        ];
                        v.extend(sum_min_max(p.sum, p.min, p.max));
                        for q in super::quantiles::QUANTILES {
                            if let Some(x) = super::quantiles::estimate(p, q) {
                                v.push(("", Some(("quantile", q.to_string())), x));
                            }
                        }
                        c.point(
                            name,
                            &p.attributes,
                            (p.start_time_unix_nano, p.time_unix_nano),
                            v,
                        );
                    }
                }
                Some(metric::Data::Summary(s)) => {
                    for p in &s.data_points {
                        if !c.buckets_ok(name, p.quantile_values.len()) {
                            continue;
                        }
                        let mut v = vec![(".count", None, p.count as f64), (".sum", None, p.sum)];
                        for q in &p.quantile_values {
                            v.push(("", Some(("quantile", q.quantile.to_string())), q.value));
                        }
                        c.point(
                            name,
                            &p.attributes,
                            (p.start_time_unix_nano, p.time_unix_nano),
                            v,
                        );
                    }
                }
            }
        }
        let points = c.out;
        if !points.is_empty() {
            m.sources.push(SourcePoints {
                agent_id,
                host,
                points,
            });
        }
    }
    m
}

/// OTLP data points of a metric (for partial-success counts).
fn count_points(metric: &opentelemetry_proto::tonic::metrics::v1::Metric) -> u64 {
    (match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile,
        AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Metric,
        ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    const LIMITS: MapLimits = MapLimits {
        max_attributes: 16,
        max_buckets: 160,
        max_request_points: 100_000,
    };

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn req(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("host.name", "Web_1.example"), kv("service.name", "api")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn every_otlp_type_maps_to_documented_series() {
        let t = 1_700_000_000_123_000_000u64;
        let metrics = vec![
            Metric {
                name: "http.server.requests".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        attributes: vec![kv("http.method", "GET")],
                        time_unix_nano: t,
                        value: Some(number_data_point::Value::AsInt(7)),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "rpc.latency".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        time_unix_nano: t,
                        count: 4,
                        sum: Some(10.0),
                        zero_count: 1,
                        min: Some(0.0),
                        max: Some(6.0),
                        scale: 0,
                        // (1, 2], (2, 4], (4, 8]: one value each.
                        positive: Some(Buckets {
                            offset: 0,
                            bucket_counts: vec![1, 1, 1],
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                ..Default::default()
            },
            Metric {
                name: "gc.pause".into(),
                data: Some(metric::Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        time_unix_nano: t,
                        count: 3,
                        sum: 1.5,
                        quantile_values: vec![ValueAtQuantile {
                            quantile: 0.99,
                            value: 0.9,
                        }],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
        ];
        let m = map_request(&req(metrics), b"salt", LIMITS);
        assert_eq!((m.rejected.count, m.sources.len()), (0, 1));
        let s = &m.sources[0];
        assert!(
            s.agent_id.starts_with("otel-web-1-example-"),
            "{}",
            s.agent_id
        );
        assert_eq!(s.host.hostname, "Web_1.example");
        assert_eq!(s.host.labels["service_name"], "api");
        let got: BTreeMap<&str, f64> = s
            .points
            .iter()
            .flatten()
            .map(|p| (p.metric.as_str(), p.value))
            .collect();
        let want: BTreeMap<&str, f64> = [
            ("http.server.requests.http_method_get", 7.0),
            ("rpc.latency.count", 4.0),
            ("rpc.latency.zero_count", 1.0),
            ("rpc.latency.sum", 10.0),
            ("rpc.latency.min", 0.0),
            ("rpc.latency.max", 6.0),
            // Rank 2 of 4 is the (1, 2] bucket's only value: its upper bound.
            ("rpc.latency.quantile_0_5", 2.0),
            // Rank 3.6 is 0.6 into (4, 8]: 2^2.6 = 6.06, clamped to max 6.
            ("rpc.latency.quantile_0_9", 6.0),
            ("rpc.latency.quantile_0_99", 6.0),
            ("gc.pause.count", 3.0),
            ("gc.pause.sum", 1.5),
            ("gc.pause.quantile_0_99", 0.9),
        ]
        .into();
        assert_eq!(got, want);
        assert!(s
            .points
            .iter()
            .flatten()
            .all(|p| p.ts_ms == 1_700_000_000_123));
    }

    #[test]
    fn a_bad_point_is_refused_alone_with_its_rule() {
        use opentelemetry_proto::tonic::metrics::v1::{Gauge, Histogram, HistogramDataPoint};
        let t = 1_700_000_000_123_000_000u64;
        let gauge = |attrs: Vec<KeyValue>| NumberDataPoint {
            attributes: attrs,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(1.0)),
            ..Default::default()
        };
        let many: Vec<KeyValue> = (0..17).map(|i| kv(&format!("k{i}"), "v")).collect();
        let metrics = vec![
            Metric {
                name: "x.g".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![
                        gauge(vec![]),
                        gauge(vec![kv("long", &"n".repeat(200))]),
                        gauge(many),
                    ],
                })),
                ..Default::default()
            },
            Metric {
                name: "x.h".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: t,
                        bucket_counts: vec![1; 161],
                        explicit_bounds: (0..160).map(f64::from).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                ..Default::default()
            },
        ];
        let m = map_request(&req(metrics.clone()), b"salt", LIMITS);
        let by: Vec<(Refusal, u64)> = m.rejected.by.clone().into_iter().collect();
        assert_eq!(
            by,
            [
                (Refusal::Name, 1),
                (Refusal::Attributes, 1),
                (Refusal::Buckets, 1)
            ]
        );
        assert_eq!(m.sources[0].points.len(), 1, "the good point stays");
        assert_eq!(m.sources[0].points[0][0].metric, "x.g");
        // The request's expansion is bounded: past it, data points are refused.
        let m = map_request(
            &req(metrics),
            b"salt",
            MapLimits {
                max_request_points: 0,
                ..LIMITS
            },
        );
        assert_eq!(m.rejected.by.get(&Refusal::RequestPoints), Some(&2));
        assert!(m.sources.is_empty());
    }
}
