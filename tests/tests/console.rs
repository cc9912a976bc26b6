//! The web console (`GET /` on the aggregator's HTTP listener) end to end: a real aggregator and
//! real agents, the page driven in headless Chromium (Debian's `chromium` through
//! `playwright-core`, `tests/browser/console.mjs`: `scripts/test.sh` installs both) behind a
//! `subscribe` token with a selector; the chart's points and bands checked against the store
//! read back with the aggregator's reader; and the JSON API (open on loopback without tokens,
//! bounded, refusing bad parameters) read over plain HTTP with the control plane off.

use fleetset_aggregator::store::reader::{self, Query};
use fleetset_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The window length of the agents in the browser test.
const WINDOW_MS: u64 = 3_000;

/// `tests/browser`, with its `node_modules` (`npm ci`, done by scripts/test.sh).
fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{}/node_modules lacks playwright-core: run scripts/test.sh (npm ci there)",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run scripts/test.sh (apt-get install chromium)"
    );
    dir
}

/// Runs `tests/browser/console.mjs` with `args` (bounded: the script bounds each step, this
/// kills it after 3 minutes); its JSON result.
fn run_console_script(args: &[&str]) -> serde_json::Value {
    let dir = browser_dir();
    let mut child = Command::new("node")
        .arg(dir.join("console.mjs"))
        .args(args)
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node (scripts/test.sh installs it with chromium's test tools)");
    let status = wait_for("console.mjs", Duration::from_secs(180), || {
        child.try_wait().ok().flatten()
    });
    if status.is_err() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("console.mjs output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.is_ok_and(|s| s.success()),
        "console.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("console.mjs printed no JSON ({e}):\n{stdout}"))
}

/// The stored windows of `agent` with `metric` whose start lies in `[from, to)`, and their
/// stored points of `metric`.
fn stored(data_dir: &Path, agent: &str, metric: &str, from: i64, to: i64) -> (usize, usize) {
    let q = Query {
        from_ms: Some(from),
        to_ms: Some(to),
        agents: vec![agent.into()],
        metrics: vec![metric.into()],
        ..Query::default()
    };
    let windows = reader::windows(data_dir, &q).unwrap();
    let with = windows
        .iter()
        .filter(|w| w.snapshot.stats.contains_key(metric))
        .count();
    let points = windows
        .iter()
        .map(|w| w.snapshot.data.get(metric).map_or(0, Vec::len))
        .sum();
    (with, points)
}

/// `GET path` with `headers`: status, response headers, body.
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    http_get_headers(addr, path, headers).unwrap()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn api_json(addr: &str, path: &str) -> serde_json::Value {
    let (status, _, body) = get(addr, path, &[]);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn counter(agg: &Aggregator, name: &str, at_least: u64) -> u64 {
    wait_for(
        &format!("{name} >= {at_least}"),
        Duration::from_secs(15),
        || {
            let v = aggregator_counters(&agg.data_dir)?[name].as_u64()?;
            (v >= at_least).then_some(v)
        },
    )
    .unwrap()
}

#[test]
fn chromium_sees_live_windows_and_every_stored_point_behind_a_selector_token() {
    let dir = TempDir::new("console");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let keys_s = keys.to_str().unwrap();
    let issue = |args: &[&str]| run_pki(&[&["issue-token", "--dir", keys_s], args].concat());
    let eu = issue(&["--scope", "subscribe", "--selector", "site=eu-1"]);
    let otlp = issue(&["--scope", "otlp"]);
    let tokens = format!(
        "security.tokens.file={}",
        keys.join("tokens.toml").display()
    );
    let mut agg =
        Aggregator::start(dir.path(), &["--commit-interval", "1s", "--set", &tokens]).unwrap();
    let window = format!("{WINDOW_MS}ms");
    let mut a1 = synthetic_agent(dir.path(), "a1", "eu-1", &agg.zmq, &window);
    let mut a2 = synthetic_agent(dir.path(), "a2", "us-1", &agg.zmq, &window);

    // The API needs a subscribe token; the page itself is served to anyone.
    let (status, headers, _) = get(&agg.metrics, "/v1/console/agents", &[]);
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), "Bearer");
    let bearer = |t: &str| format!("Bearer {t}");
    let (status, _, _) = get(
        &agg.metrics,
        "/v1/console/agents",
        &[("authorization", &bearer(&otlp))],
    );
    assert_eq!(status, 403, "an otlp token lacks scope subscribe");
    assert_eq!(get(&agg.metrics, "/", &[]).0, 200);

    // Something stored to chart before the page opens.
    wait_for("two stored windows of a1", Duration::from_secs(30), || {
        (stored_windows(&agg.data_dir, "a1").ok()?.len() >= 2).then_some(())
    })
    .unwrap();

    let url = format!("http://{}/", agg.metrics);
    let shot = dir.path().join("console.png");
    let live_timeout = (2 * WINDOW_MS).to_string();
    let r = run_console_script(&[
        "--url",
        &url,
        "--token",
        &eu,
        "--agent",
        "a1",
        "--metric",
        "cpu_percent",
        "--live-timeout-ms",
        &live_timeout,
        "--screenshot",
        shot.to_str().unwrap(),
    ]);
    assert_eq!(r["error"], serde_json::Value::Null, "{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(
        r["token_asked"], true,
        "the page asked for the token: {r:#}"
    );
    assert_eq!(
        r["console_errors"],
        serde_json::json!([]),
        "no script, CSP or connection error: {r:#}"
    );
    let live = &r["live"];
    assert!(
        live.is_object(),
        "a live window appeared within two window lengths: {r:#}"
    );
    assert_eq!(live["agent_id"], "a1", "the token's selector: eu-1 only");

    let c = &r["chart"];
    assert_eq!(c["agent"], "a1");
    assert_eq!(c["metric"], "cpu_percent");
    assert_eq!(c["fleet_rows"], 1, "a2 (site=us-1) is outside the selector");
    let (first, last) = (
        c["first_start"].as_i64().unwrap(),
        c["last_start"].as_i64().unwrap(),
    );
    let (windows, points) = stored(&agg.data_dir, "a1", "cpu_percent", first, last + 1);
    assert!(
        windows >= 2 && points >= windows,
        "{windows} windows, {points} points"
    );
    assert_eq!(
        c["polyline_points"], points,
        "every stored point drawn: {c:#}"
    );
    assert_eq!(c["dots"], points, "{c:#}");
    assert_eq!(c["points_reported"], points, "{c:#}");
    assert_eq!(c["bands"], windows, "one min–max band per window: {c:#}");
    assert_eq!(c["means"], windows, "{c:#}");
    assert_eq!(c["windows"], windows, "{c:#}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a screenshot"
    );
    assert!(counter(&agg, "auth_unauthenticated", 2) >= 2);

    a1.stop(Duration::from_secs(10)).unwrap();
    a2.stop(Duration::from_secs(10)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn console_api_is_open_on_loopback_bounded_and_reads_the_store_without_the_control_plane() {
    let dir = TempDir::new("console-api");
    let mut agg = Aggregator::start(
        dir.path(),
        &["--commit-interval", "1s", "--set", "control.enabled=false"],
    )
    .unwrap();

    // The page and its assets: content types and the strict CSP.
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = get(&agg.metrics, path, &[]);
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&headers, "content-type"), ty, "{path}");
        let csp = header(&headers, "content-security-policy");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'")
                && !csp.contains("unsafe")
                && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        let outside = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !outside.contains("http://") && !outside.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }

    // Ten one-minute windows replayed half an hour ago.
    let now_s = (fleetset_core::time::now_ms() / 1000) / 60 * 60;
    let csv = dir.path().join("r1.csv");
    write_csv(&csv, now_s - 1800, 10, 60, 30).unwrap();
    let mut replay = replay_agent(dir.path(), &csv, "r1", &agg.zmq, "60s", &[]);
    assert!(replay.wait(Duration::from_secs(60)).unwrap(), "replay");
    let starts = wait_for("ten stored windows", Duration::from_secs(30), || {
        let w = stored_windows(&agg.data_dir, "r1").ok()?;
        (w.len() == 10).then_some(w)
    })
    .unwrap();

    let fleet = api_json(&agg.metrics, "/v1/console/agents");
    assert_eq!(fleet["source"], "store");
    let agents = fleet["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{fleet:#}");
    assert_eq!(agents[0]["agent_id"], "r1");
    assert_eq!(agents[0]["last_window_start_ms"], starts[9].0);
    assert!(agents[0]["last_seen_ms"].as_i64().unwrap() > 0);
    assert!(fleet["totals"]["frames_committed"].as_u64().unwrap() >= 10);

    let metrics = api_json(&agg.metrics, "/v1/console/metrics?agent=r1");
    assert_eq!(metrics["window_start_ms"], starts[9].0);
    let names: Vec<&str> = metrics["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert!(
        names.contains(&"cpu") && names.contains(&"mem"),
        "{names:?}"
    );

    let series = api_json(&agg.metrics, "/v1/console/series?agent=r1&metric=cpu");
    let windows = series["windows"].as_array().unwrap();
    let (n, points) = stored(&agg.data_dir, "r1", "cpu", 0, starts[9].0 + 1);
    assert_eq!(windows.len(), n);
    assert_eq!(series["points"], points);
    assert_eq!(series["truncated"], false);
    let q = Query {
        agents: vec!["r1".into()],
        metrics: vec!["cpu".into()],
        ..Query::default()
    };
    for (got, want) in windows
        .iter()
        .zip(reader::windows(&agg.data_dir, &q).unwrap())
    {
        let s = &want.snapshot.stats["cpu"];
        assert_eq!(got["start"], want.snapshot.start);
        assert_eq!(got["stats"]["count"], s.count);
        assert_eq!(
            got["stats"]["min"].as_f64(),
            Some(s.min),
            "exact statistics"
        );
        assert_eq!(got["stats"]["max"].as_f64(), Some(s.max));
        assert_eq!(got["stats"]["mean"].as_f64(), Some(s.mean));
        assert_eq!(
            got["points"].as_array().unwrap().len(),
            want.snapshot.data["cpu"].len()
        );
        assert_eq!(got["payload_sha256"], hex::encode(&want.payload_sha256));
    }
    // A range before the windows: nothing.
    let early = api_json(
        &agg.metrics,
        &format!(
            "/v1/console/series?agent=r1&metric=cpu&from={}&to={}",
            starts[0].0 - 3_600_000,
            starts[0].0
        ),
    );
    assert_eq!(early["windows"], serde_json::json!([]));

    // Bad parameters: 400 naming the problem, counted.
    let before = counter(&agg, "console_requests_refused", 0);
    for (path, says) in [
        (
            "/v1/console/series?metric=cpu",
            "agent parameter is missing",
        ),
        ("/v1/console/series?agent=r1", "metric parameter is missing"),
        (
            "/v1/console/series?agent=r1&metric=CPU%25",
            "not a valid metric name",
        ),
        (
            "/v1/console/series?agent=..%2Fetc&metric=cpu",
            "not a valid agent id",
        ),
        ("/v1/console/series?agent=r1&metric=cpu&from=x", "from"),
        (
            "/v1/console/series?agent=r1&metric=cpu&from=0&to=4000000000000",
            "days",
        ),
        ("/v1/console/agents?from=9&to=9", "not before"),
    ] {
        let (status, headers, body) = get(&agg.metrics, path, &[]);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(header(&headers, "cache-control"), "no-store");
        assert!(body.contains(says), "{path}: {body}");
    }
    assert_eq!(
        counter(&agg, "console_requests_refused", before + 7),
        before + 7
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}
