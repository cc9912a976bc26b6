//! OpenTelemetry both ways, on real processes:
//! - the OpenTelemetry Python SDK pushes a gauge, a monotonic sum and a histogram; the store and
//!   a training-set export hold them under the documented names with the right values, and
//!   flushing twice (plus shutdown) adds no row;
//! - malformed OTLP requests (no resource, NaN, empty data points, huge attributes) get clear
//!   partial-success answers and the receiver keeps working;
//! - `/metrics` moves consistently with the store while a replay runs;
//! - agent → OTLP → aggregator → Parquet, both `--transport otlp` and the `--otlp-endpoint`
//!   side export.
//!
//! Needs `FLEETSET_PYTHON` (scripts/test.sh).

use arrow::array::{Array, Float64Array, StringArray};
use fleetset_tests::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use std::collections::BTreeMap;
use std::time::Duration;

const OTLP_FLAGS: [&str; 6] = [
    "--set",
    "otlp.window=1s",
    "--set",
    "otlp.grace=300ms",
    "--commit-interval",
    "100ms",
];

#[test]
fn python_sdk_metrics_land_once_in_the_store_and_a_training_set() {
    let dir = TempDir::new("otlp-sdk");
    let mut agg = Aggregator::start(dir.path(), &OTLP_FLAGS).unwrap();
    let out = run_python_script("otel_sdk_push.py", &[&agg.otlp]);
    assert!(out.contains("pushed"), "{out}");
    // The last window closes 300 ms after its end; then one commit.
    wait_for("3 OTLP windows committed", Duration::from_secs(20), || {
        let text = http_get(&agg.metrics, "/metrics").ok()?;
        (prom_value(&text, "fleetset_aggregator_frames_committed_total")? >= 3.0).then_some(())
    })
    .unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let s = series_of(&agg.data_dir, "otel-otel-sdk-host-");
    assert_eq!(values(&s, "app.requests"), [5.0, 12.0, 20.0]);
    assert_eq!(values(&s, "system.cpu.utilization"), [0.25, 0.5, 0.75]);
    assert_eq!(values(&s, "app.latency.count"), [2.0, 3.0, 5.0]);
    assert_eq!(values(&s, "app.latency.sum"), [10.0, 30.0, 33.0]);
    assert_eq!(values(&s, "app.latency.max"), [7.0, 20.0, 20.0]);
    assert_eq!(values(&s, "app.latency.bucket.le_5"), [1.0, 1.0, 3.0]);
    // The exponential histogram (the SDK picks the scale: 4 for 1..=100 in 160 buckets):
    // count, and quantiles within one bucket width (2^(2^-4) − 1 = 4.4 %) of the exact ones.
    assert_eq!(values(&s, "app.payload.size.count"), [100.0; 3]);
    assert_eq!(values(&s, "app.payload.size.max"), [100.0; 3]);
    for (q, exact) in [("0_5", 50.0), ("0_9", 90.0), ("0_99", 99.0)] {
        let got = values(&s, &format!("app.payload.size.quantile_{q}"));
        assert_eq!(got.len(), 3, "quantile {q}: {got:?}");
        for v in got {
            assert!(
                (v - exact).abs() <= exact * 0.045,
                "quantile {q}: {v} vs {exact}"
            );
        }
    }
    let windows = read_table(&agg.data_dir, "windows").unwrap();
    let rows: usize = windows.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows, 3,
        "one windows row per 1 s window, none from the repeated flushes"
    );
    let b = &windows[0];
    assert_eq!(str_col(b, "hostname").value(0), "otel-sdk-host");
    assert_eq!(str_col(b, "label_service_name").value(0), "checkout");

    // A training set from OTLP data: features under the same names.
    let set = dir.path().join("set");
    export_ok(
        &agg.data_dir,
        &[
            "--training",
            "--no-anonymize",
            "--split",
            "1",
            "--label-threshold",
            "app.requests__max>10",
            "--output",
            set.to_str().unwrap(),
        ],
    );
    let file = std::fs::File::open(set.join("train.parquet")).unwrap();
    let train: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let t = &train[0];
    assert_eq!(t.num_rows(), 2, "two windows have a following window");
    let col = |name: &str| -> Vec<f64> {
        let c = t
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        (0..c.len()).map(|i| c.value(i)).collect()
    };
    assert_eq!(col("app.requests__mean"), [5.0, 12.0]);
    assert_eq!(col("system.cpu.utilization__max"), [0.25, 0.5]);
    assert_eq!(col("app.latency.count__last"), [2.0, 3.0]);
    let labels = t
        .column_by_name("label")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((labels.value(0), labels.value(1)), ("Positive", "Positive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_otlp_requests_get_clear_answers_and_nothing_breaks() {
    let dir = TempDir::new("otlp-bad");
    let mut agg = Aggregator::start(dir.path(), &OTLP_FLAGS).unwrap();
    let mut client = MetricsServiceClient::connect(agg.otlp.clone())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let host = || Some(vec![kv("host.name", "bad-client".into())]);
    let cases: Vec<(&str, ExportMetricsServiceRequest, i64, &str)> = vec![
        (
            "missing resource",
            request(None, vec![gauge("x.y", vec![(now, 1.0, vec![])])]),
            1,
            "host.name",
        ),
        (
            "NaN value",
            request(
                host(),
                vec![gauge(
                    "x.nan",
                    vec![(now, f64::NAN, vec![]), (now, 2.0, vec![])],
                )],
            ),
            1,
            "not finite",
        ),
        (
            "zero timestamp",
            request(host(), vec![gauge("x.zero", vec![(0, 1.0, vec![])])]),
            1,
            "time_unix_nano",
        ),
        (
            "huge attribute value",
            request(
                host(),
                vec![gauge(
                    "x.huge",
                    vec![(now, 1.0, vec![kv("blob", "z".repeat(100_000))])],
                )],
            ),
            1,
            "longer than",
        ),
        (
            "huge resource attribute",
            request(
                Some(vec![
                    kv("host.name", "h".into()),
                    kv("note", "q".repeat(100_000)),
                ]),
                vec![gauge("x.res", vec![(now, 1.0, vec![])])],
            ),
            1,
            "longer than",
        ),
        (
            "empty data points",
            request(host(), vec![gauge("x.empty", vec![])]),
            0,
            "",
        ),
        (
            "metric without data",
            request(
                host(),
                vec![Metric {
                    name: "x.nodata".into(),
                    ..Default::default()
                }],
            ),
            0,
            "",
        ),
        (
            "no resource metrics",
            ExportMetricsServiceRequest::default(),
            0,
            "",
        ),
    ];
    for (what, req, rejected, message) in cases {
        let resp = client
            .export(req)
            .await
            .unwrap_or_else(|s| panic!("{what}: {s}"))
            .into_inner();
        let partial = resp.partial_success.unwrap_or_default();
        assert_eq!(
            partial.rejected_data_points, rejected,
            "{what}: {partial:?}"
        );
        assert!(
            partial.error_message.contains(message),
            "{what}: {:?}",
            partial.error_message
        );
    }
    // Still serving: a good point lands in the store.
    let good = request(
        host(),
        vec![gauge(
            "x.good",
            vec![(now, 42.0, vec![kv("core", "0".into())])],
        )],
    );
    let resp = client.export(good).await.unwrap().into_inner();
    assert_eq!(
        resp.partial_success
            .unwrap_or_default()
            .rejected_data_points,
        0
    );
    let metrics_addr = agg.metrics.clone();
    // The store is read only after the aggregator stopped (a live store has temp files).
    let text = wait_for("the good point committed", Duration::from_secs(20), || {
        let text = http_get(&metrics_addr, "/metrics").ok()?;
        (prom_value(&text, "fleetset_aggregator_frames_committed_total")? >= 1.0).then_some(text)
    })
    .unwrap();
    assert_eq!(
        prom_value(&text, "fleetset_aggregator_otlp_points_rejected_total"),
        Some(5.0),
        "{text}"
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-bad-client-");
    assert_eq!(values(&s, "x.good.core_0"), [42.0]);
    assert_eq!(
        values(&s, "x.nan"),
        [2.0],
        "the finite point of the NaN request landed"
    );
    assert!(
        !s.contains_key("x.huge") && !s.contains_key("x.zero"),
        "{:?}",
        s.keys()
    );
}

#[test]
fn metrics_endpoint_moves_with_the_store_during_a_replay() {
    let dir = TempDir::new("otlp-metrics");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "50ms"]).unwrap();
    let metrics_addr = agg.metrics.clone();
    let csv = dir.path().join("load.csv");
    write_csv(&csv, 1_700_000_040, 300, 60, 6).unwrap();
    let mut p = replay_agent(
        dir.path(),
        &csv,
        "scraped",
        &agg.zmq,
        "1m",
        &["--rate", "100"],
    );
    let mut seen = Vec::new();
    let mut agent_metrics = None;
    // `wait` errs while the replay still runs.
    while let Err(_running) = p.wait(Duration::from_millis(200)) {
        // The agent serves its own /metrics too, at the address its events report.
        if agent_metrics.is_none() {
            if let Some(t) = of_kind(&p.events(), "telemetry", "").first() {
                agent_metrics = Some(http_get(&t.addr, "/metrics").unwrap());
            }
        }
        let text = http_get(&metrics_addr, "/metrics").unwrap();
        let committed = prom_value(&text, "fleetset_aggregator_frames_committed_total").unwrap();
        let received = prom_value(&text, "fleetset_aggregator_frames_received_total").unwrap();
        assert!(committed <= received, "{committed} > {received}");
        seen.push(committed);
        assert!(seen.len() < 600, "replay did not finish");
    }
    assert!(p.wait(Duration::from_secs(1)).unwrap(), "{}", p.log_text());
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "counter went down: {seen:?}"
    );
    assert!(
        seen.iter().any(|v| *v > 0.0 && *v < 300.0),
        "no scrape saw the replay in progress: {seen:?}"
    );
    let text = http_get(&metrics_addr, "/metrics").unwrap();
    let stored: usize = read_table(&agg.data_dir, "windows")
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(stored, 300);
    assert_eq!(
        prom_value(&text, "fleetset_aggregator_frames_committed_total"),
        Some(stored as f64)
    );
    assert_eq!(
        prom_value(&text, "fleetset_aggregator_window_rows_total"),
        Some(stored as f64)
    );
    assert!(
        text.contains("fleetset_aggregator_commit_duration_count"),
        "{text}"
    );
    assert_eq!(http_get(&metrics_addr, "/healthz").unwrap().trim(), "ok");
    let agent_metrics = agent_metrics.expect("the agent reported no /metrics address");
    assert!(
        agent_metrics.contains("fleetset_agent_"),
        "agent /metrics: {agent_metrics}"
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn agent_windows_reach_the_aggregator_over_otlp() {
    let dir = TempDir::new("otlp-agent");
    let mut agg = Aggregator::start(dir.path(), &OTLP_FLAGS).unwrap();
    let spawn =
        |id: &str, extra: &[&str]| synthetic_agent_with(dir.path(), id, ("1s", "100ms"), extra);
    // Only OTLP, spooled and acked; and ZeroMQ frames plus a best-effort OTLP copy.
    let mut only = spawn(
        "otlp-only",
        &["--transport", "otlp", "--aggregator", &agg.otlp],
    );
    let mut both = spawn(
        "zmq-and-otlp",
        &["--aggregator", &agg.zmq, "--otlp-endpoint", &agg.otlp],
    );
    wait_for("4 acked windows each", Duration::from_secs(60), || {
        (only.acked().len() >= 4 && both.acked().len() >= 4).then_some(())
    })
    .unwrap();
    only.stop(Duration::from_secs(20)).unwrap();
    both.stop(Duration::from_secs(20)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    // The best-effort OTLP copy never failed (status file written at exit).
    let c = agent_counters(&dir.path().join("zmq-and-otlp")).expect("agent status.json");
    assert_eq!(c["otlp_export_failures"], 0, "{c}");
    assert!(c["otlp_exported"].as_u64() >= Some(4), "{c}");

    // Both OTLP sources landed, told apart by service.instance.id (the agent id).
    let mut otel_agent_of: BTreeMap<String, String> = BTreeMap::new();
    for b in read_table(&agg.data_dir, "windows").unwrap() {
        let Some(c) = b.column_by_name("label_service_instance_id") else {
            continue;
        };
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        let agents = str_col(&b, "agent_id");
        for i in (0..c.len()).filter(|i| c.is_valid(*i)) {
            otel_agent_of.insert(c.value(i).to_string(), agents.value(i).to_string());
        }
    }
    assert!(
        otel_agent_of.contains_key("otlp-only") && otel_agent_of.contains_key("zmq-and-otlp"),
        "{otel_agent_of:?}"
    );
    assert!(!series_of(&agg.data_dir, &otel_agent_of["otlp-only"]).is_empty());

    // The frame path and the OTLP copy of the same agent carry the same downsampled points.
    let frames = series_of(&agg.data_dir, "zmq-and-otlp");
    let copy = series_of(&agg.data_dir, &otel_agent_of["zmq-and-otlp"]);
    let (a, b) = (&frames["cpu_percent"], &copy["cpu_percent"]);
    let common: Vec<_> = a.keys().filter(|t| b.contains_key(t)).collect();
    assert!(common.len() >= 10, "{} common points", common.len());
    for t in common {
        assert_eq!(a[t], b[t], "cpu_percent at {t}");
    }
}

#[test]
fn own_telemetry_pushed_over_otlp_lands_in_another_aggregator() {
    let dir = TempDir::new("otlp-self");
    let (sink_dir, source_dir) = (dir.path().join("sink"), dir.path().join("source"));
    std::fs::create_dir_all(&sink_dir).unwrap();
    std::fs::create_dir_all(&source_dir).unwrap();
    let mut sink = Aggregator::start(&sink_dir, &OTLP_FLAGS).unwrap();
    let mut source = Aggregator::start(&source_dir, &["--telemetry-otlp", &sink.otlp]).unwrap();
    // Shutdown flushes the OTLP exporter (the periodic export is every 10 s).
    source.proc.stop(Duration::from_secs(20)).unwrap();
    wait_for(
        "the pushed telemetry committed",
        Duration::from_secs(20),
        || {
            let text = http_get(&sink.metrics, "/metrics").ok()?;
            (prom_value(&text, "fleetset_aggregator_frames_committed_total")? >= 1.0).then_some(())
        },
    )
    .unwrap();
    sink.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&sink.data_dir, "otel-");
    for name in [
        "fleetset.aggregator.frames.received",
        "fleetset.aggregator.otlp.points_received",
        "fleetset.aggregator.window.rows",
    ] {
        assert!(s.contains_key(name), "{name} missing: {:?}", s.keys());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_otlp_points_survive_sigkill_exactly_once() {
    let dir = TempDir::new("otlp-kill");
    let flags = [
        "--set",
        "otlp.window=10s",
        "--set",
        "otlp.grace=300ms",
        "--commit-interval",
        "100ms",
    ];
    let mut agg = Aggregator::start(dir.path(), &flags).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let req = request(
        Some(vec![kv("host.name", "kill-host".into())]),
        vec![gauge(
            "x.durable",
            vec![(now, 1.0, vec![]), (now + 1_000_000, 2.0, vec![])],
        )],
    );
    let mut client = MetricsServiceClient::connect(agg.otlp.clone())
        .await
        .unwrap();
    let resp = client.export(req.clone()).await.unwrap().into_inner();
    assert_eq!(
        resp.partial_success
            .unwrap_or_default()
            .rejected_data_points,
        0
    );
    // Answered means logged: the window is still open (nothing committed) and in the WAL. Kill
    // now, then restart on the same data.
    let text = http_get(&agg.metrics, "/metrics").unwrap();
    let open_window = prom_value(&text, "fleetset_aggregator_frames_committed_total") == Some(0.0);
    let logged = std::fs::read_dir(agg.data_dir.join("otlp-wal"))
        .unwrap()
        .count();
    agg.proc.signal("KILL").unwrap();
    assert!(agg.proc.wait(Duration::from_secs(10)).is_ok());
    if !open_window {
        // The 10 s window closed in the few ms since the Export: too late to test recovery.
        eprintln!("window closed before the kill; recovery not exercised this run");
    } else {
        assert_eq!(logged, 1, "one WAL file for the open window");
    }
    let mut agg = Aggregator::start(dir.path(), &flags).unwrap();
    if open_window {
        let text = http_get(&agg.metrics, "/metrics").unwrap();
        assert_eq!(
            prom_value(&text, "fleetset_aggregator_otlp_wal_replayed_total"),
            Some(1.0),
            "one WAL record replayed at start:\n{text}"
        );
    }
    // The exporter retries the same request (it never saw... or did see the answer): no duplicate.
    let mut client = MetricsServiceClient::connect(agg.otlp.clone())
        .await
        .unwrap();
    let resp = client.export(req).await.unwrap().into_inner();
    let rejected = resp
        .partial_success
        .unwrap_or_default()
        .rejected_data_points;
    wait_for(
        "the recovered window committed",
        Duration::from_secs(20),
        || {
            let text = http_get(&agg.metrics, "/metrics").ok()?;
            (prom_value(&text, "fleetset_aggregator_frames_committed_total")? >= 1.0).then_some(())
        },
    )
    .unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-kill-host-");
    assert_eq!(
        values(&s, "x.durable"),
        [1.0, 2.0],
        "rejected on retry: {rejected}"
    );
    let wal: Vec<_> = std::fs::read_dir(agg.data_dir.join("otlp-wal"))
        .unwrap()
        .flatten()
        .collect();
    assert!(wal.is_empty(), "WAL not trimmed after the commit: {wal:?}");
}
