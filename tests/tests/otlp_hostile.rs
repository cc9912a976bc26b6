//! The OTLP receiver against hostile or broken exporters, on the real binary (issue #11):
//! - a bad point in a victim's window is refused alone, the victim's acknowledged points land;
//!   a window that would outgrow `ingest.max_frame_bytes` refuses its newest points instead of
//!   being dropped after the answer;
//! - points in the year 2500 or across 1,500 days are refused, no partitions beyond the
//!   accepted points' are created;
//! - a histogram of 100 attributes × 10,000 buckets is refused, WAL and RSS stay small;
//! - a failed WAL append (file size limit) is answered UNAVAILABLE and leaves no partial line:
//!   the next Export's points survive SIGKILL + restart exactly once;
//! - windows starting at 0 and 2,000 ms get distinct seqs, both are stored.

use fleetset_tests::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric, Histogram, HistogramDataPoint, Metric};
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

const DAY_NS: u64 = 86_400_000_000_000;

async fn client(agg: &Aggregator) -> MetricsServiceClient<Channel> {
    MetricsServiceClient::connect(agg.otlp.clone())
        .await
        .unwrap()
}

/// (rejected data points, error message) of an answer.
fn partial(resp: ExportMetricsServiceResponse) -> (i64, String) {
    let p = resp.partial_success.unwrap_or_default();
    (p.rejected_data_points, p.error_message)
}

async fn export(
    c: &mut MetricsServiceClient<Channel>,
    req: ExportMetricsServiceRequest,
) -> (i64, String) {
    partial(c.export(req).await.unwrap().into_inner())
}

fn host(name: &str) -> Option<Vec<KeyValue>> {
    Some(vec![kv("host.name", name.into())])
}

/// Waits until the aggregator committed at least `n` frames.
fn wait_committed(agg: &Aggregator, n: f64) {
    wait_for(
        &format!("{n} frames committed"),
        Duration::from_secs(30),
        || {
            let text = http_get(&agg.metrics, "/metrics").ok()?;
            (prom_value(&text, "fleetset_aggregator_frames_committed_total")? >= n).then_some(())
        },
    )
    .unwrap();
}

fn counter(agg: &Aggregator, name: &str) -> f64 {
    let text = http_get(&agg.metrics, "/metrics").unwrap();
    prom_value(&text, &format!("fleetset_aggregator_{name}_total")).unwrap_or(0.0)
}

/// Total bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

const FAST: [&str; 6] = [
    "--set",
    "otlp.window=1s",
    "--set",
    "otlp.grace=300ms",
    "--commit-interval",
    "100ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_point_is_refused_alone_and_the_victims_points_land() {
    let dir = TempDir::new("otlp-victim");
    let mut agg = Aggregator::start(dir.path(), &FAST).unwrap();
    let mut c = client(&agg).await;
    let t = now_ns();
    let good = request(
        host("victim"),
        vec![gauge(
            "x.good",
            vec![(t, 1.0, vec![]), (t + 1_000_000, 2.0, vec![])],
        )],
    );
    assert_eq!(export(&mut c, good).await.0, 0);
    // Another exporter claims the victim's host.name and sends a point whose series name is
    // over 128 bytes with its attribute, next to a good one.
    let hostile = request(
        host("victim"),
        vec![
            gauge("x.good", vec![(t + 2_000_000, 3.0, vec![])]),
            gauge(
                "x.bad",
                vec![(t + 3_000_000, 9.0, vec![kv("blob", "n".repeat(200))])],
            ),
        ],
    );
    let (rejected, message) = export(&mut c, hostile).await;
    assert_eq!(rejected, 1, "{message}");
    assert!(message.contains("128"), "{message}");
    wait_committed(&agg, 1.0);
    assert_eq!(counter(&agg, "otlp_refused_name"), 1.0);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-victim-");
    assert_eq!(
        values(&s, "x.good"),
        [1.0, 2.0, 3.0],
        "every acknowledged point"
    );
    assert_eq!(s.len(), 1, "{:?}", s.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_at_the_frame_limit_refuses_its_newest_points_and_keeps_the_rest() {
    let dir = TempDir::new("otlp-frame");
    let mut flags = FAST.to_vec();
    flags.extend(["--set", "ingest.max_frame_bytes=65536"]);
    let mut agg = Aggregator::start(dir.path(), &flags).unwrap();
    let mut c = client(&agg).await;
    let t = now_ns();
    // 1,000 series of one point each: far more than 64 KiB of frame.
    let metrics: Vec<Metric> = (0..1000)
        .map(|i| gauge(&format!("x.wide.s{i:04}"), vec![(t, f64::from(i), vec![])]))
        .collect();
    let (rejected, message) = export(&mut c, request(host("wide"), metrics)).await;
    assert!(rejected > 0 && rejected < 1000, "{rejected}: {message}");
    assert!(message.contains("ingest.max_frame_bytes"), "{message}");
    wait_committed(&agg, 1.0);
    assert_eq!(counter(&agg, "otlp_refused_frame_bytes"), rejected as f64);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-wide-");
    assert_eq!(
        s.len() as i64,
        1000 - rejected,
        "every accepted series stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_far_in_the_future_or_past_are_refused() {
    let dir = TempDir::new("otlp-time");
    let mut agg = Aggregator::start(dir.path(), &FAST).unwrap();
    let mut c = client(&agg).await;
    let t = now_ns();
    let year_2500 = 16_725_225_600 * 1_000_000_000u64;
    // One point a day over 1,500 days back (plus an hour, off the 7 d bound): days 0..=6 are
    // within otlp.max_age.
    let mut points: Vec<(u64, f64, Vec<KeyValue>)> = (0..1500u64)
        .map(|d| (t - d * DAY_NS - 3_600_000_000_000, d as f64, vec![]))
        .collect();
    points.push((year_2500, -1.0, vec![]));
    let (rejected, message) =
        export(&mut c, request(host("timey"), vec![gauge("x.t", points)])).await;
    assert_eq!(rejected, 1494, "{message}");
    assert!(message.contains("otlp.max_age"), "{message}");
    let wal = agg.data_dir.join("otlp-wal");
    assert!(
        std::fs::read_dir(&wal).unwrap().count() <= 7,
        "one WAL file per accepted window"
    );
    wait_committed(&agg, 7.0);
    assert_eq!(counter(&agg, "otlp_refused_time"), 1494.0);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let partitions = std::fs::read_dir(agg.data_dir.join("series"))
        .unwrap()
        .count();
    assert!(
        partitions <= 8,
        "{partitions} day partitions for 7 days of points"
    );
    let s = series_of(&agg.data_dir, "otel-timey-");
    assert_eq!(values(&s, "x.t"), [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
}

fn histogram(name: &str, t: u64, attrs: usize, buckets: usize) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: (0..attrs)
                    .map(|i| kv(&format!("attribute_{i}"), format!("value_{i}")))
                    .collect(),
                time_unix_nano: t,
                count: buckets as u64,
                bucket_counts: vec![1; buckets],
                explicit_bounds: (1..buckets).map(|b| b as f64).collect(),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_histogram_is_refused_and_memory_and_wal_stay_bounded() {
    let dir = TempDir::new("otlp-huge");
    let mut agg = Aggregator::start(dir.path(), &FAST).unwrap();
    let mut c = client(&agg).await;
    let t = now_ns();
    let cases = [
        // The finding: 100 attributes repeated in each of 10,000 buckets' series names.
        (100, 10_000, "otlp.max_buckets"),
        (100, 10, "otlp.max_attributes"),
        (10, 10_000, "otlp.max_buckets"),
    ];
    for (attrs, buckets, key) in cases {
        let req = request(host("huge"), vec![histogram("x.h", t, attrs, buckets)]);
        let (rejected, message) = export(&mut c, req).await;
        assert_eq!(rejected, 1, "{attrs} × {buckets}: {message}");
        assert!(message.contains(key), "{message}");
    }
    // Within the limits: accepted.
    let req = request(host("huge"), vec![histogram("x.h", t, 4, 20)]);
    assert_eq!(export(&mut c, req).await.0, 0);
    let wal = dir_bytes(&agg.data_dir.join("otlp-wal"));
    assert!(wal < 64 << 10, "WAL {wal} bytes");
    let rss = peak_rss_kib(agg.pid).unwrap();
    assert!(rss < 200 << 10, "peak RSS {rss} KiB");
    wait_committed(&agg, 1.0);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-huge-");
    assert_eq!(s.len(), 1 + 20, "count and 20 buckets: {:?}", s.keys());
}

/// Sets the soft file size limit of `pid` (`prlimit`, util-linux; the hard limit stays).
fn file_size_limit(pid: u32, limit: &str) {
    let ok = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={limit}:"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit --fsize={limit} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_append_is_retryable_and_leaves_no_partial_line() {
    // Writes past the file size limit fail with EFBIG instead of killing the aggregator: an
    // ignored signal stays ignored across exec.
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory effects.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = TempDir::new("otlp-efbig");
    // The window stays open (long grace) until the restart closes it.
    let open_flags = ["--set", "otlp.window=10s", "--set", "otlp.grace=1h"];
    let mut agg = Aggregator::start(dir.path(), &open_flags).unwrap();
    let mut c = client(&agg).await;
    let t = now_ns();
    let point = |i: u64, v: f64| (t + i * 1_000_000, v, vec![]);
    let first = request(host("efbig"), vec![gauge("x.d", vec![point(0, 1.0)])]);
    assert_eq!(export(&mut c, first).await.0, 0);
    let wal = agg.data_dir.join("otlp-wal");
    let file = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let before = std::fs::metadata(&file).unwrap().len();
    // The disk "fills": the file may grow 4 KiB more; a 100 KiB append fails part-way.
    file_size_limit(agg.pid, &(before + 4096).to_string());
    let big = request(
        host("efbig"),
        vec![gauge("x.d", (1..3000).map(|i| point(i, 5.0)).collect())],
    );
    let status = c.export(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        before,
        "truncated back"
    );
    // The next, small Export fits and is acknowledged.
    let next = request(host("efbig"), vec![gauge("x.d", vec![point(3001, 2.0)])]);
    assert_eq!(export(&mut c, next).await.0, 0);
    file_size_limit(agg.pid, "unlimited");
    assert_eq!(counter(&agg, "otlp_wal_write_failures"), 1.0);
    agg.proc.signal("KILL").unwrap();
    assert!(agg.proc.wait(Duration::from_secs(10)).is_ok());

    let restart = [
        "--set",
        "otlp.window=10s",
        "--set",
        "otlp.grace=300ms",
        "--commit-interval",
        "100ms",
    ];
    let mut agg = Aggregator::start(dir.path(), &restart).unwrap();
    assert_eq!(counter(&agg, "otlp_wal_torn"), 0.0, "no partial line");
    assert_eq!(counter(&agg, "otlp_wal_replayed"), 2.0);
    // The points may straddle two windows: done once every window is acked and its WAL gone.
    wait_for("the WAL emptied", Duration::from_secs(30), || {
        (std::fs::read_dir(&wal).ok()?.count() == 0).then_some(())
    })
    .unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-efbig-");
    assert_eq!(
        values(&s, "x.d"),
        [1.0, 2.0],
        "both acknowledged points, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_at_0_and_2000_ms_get_distinct_seqs() {
    let dir = TempDir::new("otlp-seq");
    let flags = [
        "--set",
        "otlp.window=2s",
        "--set",
        "otlp.grace=300ms",
        "--set",
        "otlp.max_age=40000d",
        "--commit-interval",
        "100ms",
    ];
    let mut agg = Aggregator::start(dir.path(), &flags).unwrap();
    let mut c = client(&agg).await;
    // Windows [0, 2000) and [2000, 4000) ms: seq 1 and 2 (start / length + 1).
    let req = request(
        host("epoch"),
        vec![gauge(
            "x.e",
            vec![(1_000_000, 1.0, vec![]), (2_001_000_000, 2.0, vec![])],
        )],
    );
    assert_eq!(export(&mut c, req).await.0, 0);
    wait_committed(&agg, 2.0);
    assert_eq!(counter(&agg, "frames_duplicate"), 0.0);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-epoch-");
    assert_eq!(values(&s, "x.e"), [1.0, 2.0]);
}
