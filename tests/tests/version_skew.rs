//! Version skew (README "Version skew"): an aggregator accepts frames of the previous frame
//! version, so agents not yet upgraded keep delivering, and an upgraded agent seals the
//! previous version (`transport.frame_version`) while its aggregators are older.

use fleetset_aggregator::store::reader::{self, Query};
use fleetset_tests::*;
use std::time::Duration;

#[test]
fn frames_sealed_at_the_previous_version_are_committed_and_counted() {
    assert_eq!(
        fleetset_proto::OLDEST_FRAME_VERSION + 1,
        fleetset_proto::FRAME_VERSION,
        "the policy: the current version and the one before it"
    );
    let dir = TempDir::new("version-skew");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "200ms"]).unwrap();
    let previous = format!(
        "transport.frame_version={}",
        fleetset_proto::OLDEST_FRAME_VERSION
    );
    let mut old = synthetic_agent_with(
        dir.path(),
        "old-agent",
        ("1s", "50ms"),
        &["--aggregator", &agg.zmq, "--set", &previous],
    );
    let mut new = synthetic_agent_with(
        dir.path(),
        "new-agent",
        ("1s", "50ms"),
        &["--aggregator", &agg.grpc, "--transport", "grpc"],
    );
    old.wait_acked(3, Duration::from_secs(30)).unwrap();
    new.wait_acked(3, Duration::from_secs(30)).unwrap();
    old.stop(Duration::from_secs(20)).unwrap();
    new.stop(Duration::from_secs(20)).unwrap();
    let old_acked = old.acked();
    let rejected: Vec<_> = old
        .events()
        .into_iter()
        .filter(|e| e.event == "acked" && e.status == "REJECTED")
        .collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    let text = http_get(&agg.metrics, "/metrics").unwrap();
    let previous_frames =
        prom_value(&text, "fleetset_aggregator_frames_previous_version_total").unwrap_or(0.0);
    let committed = prom_value(&text, "fleetset_aggregator_frames_committed_total").unwrap_or(0.0);
    // Every frame of the old agent (resends included) and none of the new one's.
    assert!(
        previous_frames >= old_acked.len() as f64 && previous_frames < committed,
        "previous-version frames {previous_frames}, committed {committed}, old agent acked {}",
        old_acked.len()
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    for agent in ["old-agent", "new-agent"] {
        let query = Query {
            agents: vec![agent.to_string()],
            ..Default::default()
        };
        let stored = reader::windows(&agg.data_dir, &query).unwrap();
        assert!(
            stored.len() >= 3,
            "{agent}: {} windows stored",
            stored.len()
        );
    }
}
