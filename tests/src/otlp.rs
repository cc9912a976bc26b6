//! OTLP requests for the receiver tests, and reading what they left in the store.

use crate::store::{f64_col, read_table, str_col, ts_col};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::BTreeMap;
use std::path::Path;

/// Now, Unix ns.
pub fn now_ns() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// metric → (ts ms → value) of the `series` rows of agents whose id starts with `prefix`.
pub fn series_of(data: &Path, prefix: &str) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut rows = 0;
    for b in read_table(data, "series").unwrap() {
        let (agent, metric) = (str_col(&b, "agent_id"), str_col(&b, "metric"));
        let (ts, value) = (ts_col(&b, "ts"), f64_col(&b, "value").unwrap());
        for i in 0..b.num_rows() {
            if agent.value(i).starts_with(prefix) {
                rows += 1;
                out.entry(metric.value(i).to_string())
                    .or_default()
                    .insert(ts.value(i), value.value(i));
            }
        }
    }
    let distinct: usize = out.values().map(BTreeMap::len).sum();
    assert_eq!(rows, distinct, "duplicate (metric, ts) rows for {prefix}");
    out
}

/// The values of `metric` in [`series_of`]'s result, by time; panics naming the series present if absent.
pub fn values(series: &BTreeMap<String, BTreeMap<i64, f64>>, metric: &str) -> Vec<f64> {
    series
        .get(metric)
        .unwrap_or_else(|| panic!("no series {metric}: {:?}", series.keys()))
        .values()
        .copied()
        .collect()
}

/// A string attribute.
pub fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// A request of one resource (`None`: no resource) with `metrics` in one scope.
pub fn request(
    resource: Option<Vec<KeyValue>>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource.map(|attributes| Resource {
                attributes,
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

/// A gauge of (time ns, value, attributes) points.
pub fn gauge(name: &str, points: Vec<(u64, f64, Vec<KeyValue>)>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points
                .into_iter()
                .map(|(t, v, attributes)| NumberDataPoint {
                    attributes,
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}
