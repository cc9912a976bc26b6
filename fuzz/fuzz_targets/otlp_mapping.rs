//! OTLP metrics: the input decoded as an `ExportMetricsServiceRequest` (as the gRPC receiver's
//! prost codec does) and mapped by the aggregator (`ingest::otlp::mapping::map_request`) with
//! the `[otlp]` default limits; what it accepts must be what its docs promise: valid agent ids
//! and metric names, finite values, times not before the epoch, no more series points than the request limit.
#![no_main]

use fleetset_aggregator::ingest::otlp::mapping::{map_request, MapLimits};
use fleetset_proto::contract::is_valid_agent_id;
use fleetset_proto::model::{is_valid_metric_name, MAX_METRIC_NAME_LEN};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

const LIMITS: MapLimits = MapLimits {
    max_attributes: 16,
    max_buckets: 160,
    max_request_points: 100_000,
};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ExportMetricsServiceRequest::decode(data) else {
        return;
    };
    let mapped = map_request(&req, b"fuzz-salt", LIMITS);
    let mut points = 0usize;
    for s in &mapped.sources {
        assert!(
            is_valid_agent_id(&s.agent_id),
            "invalid agent id {:?}",
            s.agent_id
        );
        for dp in &s.points {
            assert!(
                !dp.is_empty(),
                "an accepted data point without series points"
            );
            for p in dp {
                points += 1;
                assert!(
                    is_valid_metric_name(&p.metric) && p.metric.len() <= MAX_METRIC_NAME_LEN,
                    "invalid series name {:?}",
                    p.metric
                );
                assert!(p.value.is_finite(), "non-finite value of {}", p.metric);
                // Time 0 is refused as an OTLP field; under 1 ms it maps to ts 0, which the window
                // buffer's max_age refuses (found by this target: not a mapping rule).
                assert!(p.ts_ms >= 0, "negative time accepted for {}", p.metric);
            }
        }
    }
    assert!(
        points <= LIMITS.max_request_points,
        "{points} series points accepted"
    );
    assert!(mapped.rejected.reasons.len() <= 5);
});
