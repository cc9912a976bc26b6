//! Hot reload on the real binaries (README "Reloading the configuration"): SIGHUP and
//! `--watch-config` apply the live keys from the next window on, an invalid file keeps the
//! running configuration (counted, shown by `/healthz?verbose`), and nothing is lost or
//! duplicated across a reload.

use fleetset_aggregator::store::reader::{self, Query};
use fleetset_tests::*;
use std::path::Path;
use std::time::Duration;

/// An agent config file: synthetic source, 1 s windows of 50 ms samples, `site` label and
/// LTTB `threshold`, sending to `endpoint` with at most `in_flight` unacked frames.
fn agent_toml(
    state: &Path,
    (endpoint, in_flight): (&str, usize),
    site: &str,
    threshold: usize,
) -> String {
    format!(
        r#"agent_id = "reloader"
state_dir = "{}"
labels = {{ site = "{site}" }}

[collect]
source = "synthetic"
sample_interval = "50ms"
process_interval = "300ms"

[window]
length = "1s"

[window.lttb]
threshold = {threshold}

[transport]
aggregator = "{endpoint}"
max_in_flight = {in_flight}
"#,
        state.display()
    )
}

/// Every stored window of `agent`: (start ms, seq, `site` label, points per series).
fn stored(data: &Path, agent: &str) -> Vec<(i64, u64, String, Vec<usize>)> {
    let query = Query {
        agents: vec![agent.to_string()],
        ..Default::default()
    };
    let mut out: Vec<_> = reader::windows(data, &query)
        .unwrap_or_default()
        .into_iter()
        .map(|w| {
            let s = w.snapshot;
            let site = s.host.labels.get("site").cloned().unwrap_or_default();
            (
                s.start,
                s.seq,
                site,
                s.data.values().map(Vec::len).collect(),
            )
        })
        .collect();
    out.sort_by_key(|w| w.0);
    out
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and ConfigMap updates do: the file is never half-written.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn counter(state: &Path, name: &str) -> u64 {
    agent_counters(state)
        .and_then(|c| c[name].as_u64())
        .unwrap_or(0)
}

#[test]
fn sighup_applies_labels_and_lttb_threshold_from_the_next_window_and_refuses_an_invalid_file() {
    let dir = TempDir::new("reload-agent");
    let mut agg = Aggregator::start(dir.path(), &["--commit-interval", "200ms"]).unwrap();
    let state = dir.path().join("state");
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("agent.toml");
    let endpoint = agg.zmq.clone();
    write(&config, &agent_toml(&state, (&endpoint, 64), "a", 8));
    let mut agent = agent(
        dir.path(),
        "agent",
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            &metrics,
        ],
    );
    agent.wait_acked(3, Duration::from_secs(30)).unwrap();

    // A valid change of two live keys and one restart key.
    write(&config, &agent_toml(&state, (&endpoint, 32), "b", 12));
    agent.signal("HUP").unwrap();
    wait_for(
        "a window under the new labels",
        Duration::from_secs(30),
        || {
            stored(&agg.data_dir, "reloader")
                .iter()
                .any(|w| w.2 == "b")
                .then_some(())
        },
    )
    .unwrap();
    let verbose = http_get(&metrics, "/healthz?verbose").unwrap();
    assert!(verbose.contains("generation=2"), "{verbose}");
    assert!(
        verbose.contains("config-restart-pending") && verbose.contains("transport.max_in_flight"),
        "a changed restart key is reported, not applied: {verbose}"
    );

    // An invalid file (threshold below its minimum 3): the running configuration stays.
    write(&config, &agent_toml(&state, (&endpoint, 32), "c", 1));
    agent.signal("HUP").unwrap();
    wait_for(
        "the refused reload counted",
        Duration::from_secs(15),
        || (counter(&state, "config_reload_failures") == 1).then_some(()),
    )
    .unwrap();
    let verbose = http_get(&metrics, "/healthz?verbose").unwrap();
    assert!(
        verbose.contains("[-]config-reload failed") && verbose.contains("window.lttb.threshold"),
        "{verbose}"
    );
    assert_eq!(http_get(&metrics, "/healthz").unwrap().trim(), "ok");
    let before = agent.acked().len();
    agent
        .wait_acked(before + 3, Duration::from_secs(30))
        .unwrap();
    agent.stop(Duration::from_secs(20)).unwrap();
    let acked = agent.acked().len();
    wait_for("every acked window stored", Duration::from_secs(20), || {
        (stored(&agg.data_dir, "reloader").len() >= acked).then_some(())
    })
    .unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let windows = stored(&agg.data_dir, "reloader");
    assert_eq!(
        counter(&state, "config_reloads"),
        1,
        "one reload applied, one refused"
    );
    // Nothing lost or duplicated: seqs 1..=n, one window per second, none twice.
    let seqs: Vec<u64> = windows.iter().map(|w| w.1).collect();
    assert_eq!(seqs, (1..=windows.len() as u64).collect::<Vec<_>>());
    let starts: Vec<i64> = windows.iter().map(|w| w.0).collect();
    assert!(
        starts.windows(2).all(|p| p[1] - p[0] == 1000),
        "windows contiguous across the reload: {starts:?}"
    );
    // Each window is framed under one configuration: old (a, 8 points) then new (b, 12),
    // never mixed, never the refused one (c).
    let first_b = windows.iter().position(|w| w.2 == "b").unwrap();
    for (i, (start, _, site, points)) in windows.iter().enumerate() {
        // The first window and the one cut short at shutdown may hold fewer samples.
        let full = i > 0 && i + 1 < windows.len();
        let want = if i < first_b { ("a", 8) } else { ("b", 12) };
        assert_eq!(site, want.0, "window {start}");
        if full {
            assert!(
                points.iter().all(|&n| n == want.1),
                "window {start} ({site}): {points:?} points per series, want {}",
                want.1
            );
        }
    }
}

#[test]
fn watch_config_reloads_the_aggregators_snapshot_limits_and_keeps_them_on_an_invalid_edit() {
    let dir = TempDir::new("reload-aggregator");
    let config = dir.path().join("aggregator.toml");
    write(&config, "[ingest]\nmax_labels = 32\n");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--commit-interval",
            "200ms",
            "--config",
            config.to_str().unwrap(),
            "--watch-config",
        ],
    )
    .unwrap();
    let prom = |name: &str| {
        http_get(&agg.metrics, "/metrics")
            .ok()
            .and_then(|t| prom_value(&t, &format!("fleetset_aggregator_{name}")))
            .unwrap_or(0.0)
    };
    let mut agent = synthetic_agent(dir.path(), "labelled", "eu-1", &agg.zmq, "1s");
    agent.wait_acked(2, Duration::from_secs(30)).unwrap();
    assert_eq!(
        prom("frames_rejected_total{reason=\"invalid_snapshot\"}"),
        0.0
    );

    // No labels allowed any more: the agent's next frames are rejected, without a restart.
    write(&config, "[ingest]\nmax_labels = 0\n");
    wait_for(
        "frames rejected under the new limit",
        Duration::from_secs(30),
        || {
            let text = http_get(&agg.metrics, "/metrics").ok()?;
            let rejected =
                r#"fleetset_aggregator_frames_rejected_total{reason="invalid_snapshot"}"#;
            (prom_value(&text, "fleetset_aggregator_config_reloads_total")? >= 1.0
                && prom_value(&text, rejected)? >= 1.0)
                .then_some(())
        },
    )
    .unwrap();
    assert_eq!(prom("config_generation"), 2.0);

    // An edit that does not parse: counted, shown, and the running limits stay.
    write(&config, "[ingest]\nmax_labels = \"none\"\n");
    wait_for(
        "the refused reload counted",
        Duration::from_secs(15),
        || (prom("config_reload_failures_total") >= 1.0).then_some(()),
    )
    .unwrap();
    let verbose = http_get(&agg.metrics, "/healthz?verbose").unwrap();
    assert!(
        verbose.contains("[-]config-reload failed") && verbose.contains("ingest.max_labels"),
        "{verbose}"
    );
    assert_eq!(
        prom("config_generation"),
        2.0,
        "the running configuration stays"
    );
    agent.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}
