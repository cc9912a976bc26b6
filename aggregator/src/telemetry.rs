//! The aggregator's own instruments beyond its counters (which are observed as OTel counters
//! by `fleetset_core::telemetry`): histograms created from the global meter provider that
//! `server::start` installs. Before that (unit tests, benches) they are no-ops.

use opentelemetry::metrics::Histogram;
use std::sync::LazyLock;

/// `fleetset.aggregator.commit.duration` (ms): time to write and fsync one Parquet commit.
pub static COMMIT_DURATION: LazyLock<Histogram<f64>> = LazyLock::new(|| {
    opentelemetry::global::meter("fleetset")
        .f64_histogram("fleetset.aggregator.commit.duration")
        .with_unit("ms")
        .with_description("Parquet commit duration (write, fsync, rename), ms")
        .build()
});

/// `fleetset.aggregator.subscriber.lag` (windows): windows a live subscriber skipped because
/// it fell behind, one record per Lag event.
pub static SUBSCRIBER_LAG: LazyLock<Histogram<u64>> = LazyLock::new(|| {
    opentelemetry::global::meter("fleetset")
        .u64_histogram("fleetset.aggregator.subscriber.lag")
        .with_unit("{window}")
        .with_description("windows skipped by a slow live subscriber, per lag event")
        .build()
});
