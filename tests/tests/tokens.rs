//! Scoped bearer tokens, with clients we did not write: tokens made by `fleetset-aggregator pki
//! issue-token`; the OpenTelemetry Python SDK exporter and grpcio send
//! `authorization: Bearer …`; a `subscribe` token restricted to `site=eu-1` never gets a
//! `site=us-1` window; `/metrics` needs a `metrics` token and `/healthz` stays open.
//! Needs `FLEETSET_PYTHON` (grpcio, grpcio-tools, the OpenTelemetry SDK).

use fleetset_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `pki issue-token --dir dir ARGS…`: the token it printed.
fn issue(dir: &Path, args: &[&str]) -> String {
    let dir = dir.to_str().unwrap();
    let token = run_pki(&[&["issue-token", "--dir", dir], args].concat());
    assert!(token.starts_with("fst_") && token.len() > 40, "{token}");
    token
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim().lines().last().unwrap()).unwrap()
}

fn counter(agg: &Aggregator, name: &str) -> u64 {
    aggregator_counters(&agg.data_dir)
        .and_then(|c| c[name].as_u64())
        .unwrap_or(0)
}

#[test]
fn tokens_gate_otlp_live_and_metrics_by_scope_and_selector() {
    let dir = TempDir::new("tokens");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let otlp = issue(&keys, &["--scope", "otlp", "--name", "sdk"]);
    let eu = issue(
        &keys,
        &[
            "--scope",
            "subscribe",
            "--selector",
            "site=eu-1",
            "--name",
            "eu",
        ],
    );
    let metrics = issue(&keys, &["--scope", "metrics"]);
    let file = std::fs::read_to_string(keys.join("tokens.toml")).unwrap();
    for t in [&otlp, &eu, &metrics] {
        assert!(
            !file.contains(t.as_str()),
            "only digests are stored: {file}"
        );
    }
    let file_set = format!(
        "security.tokens.file={}",
        keys.join("tokens.toml").display()
    );
    let mut agg = Aggregator::start(dir.path(), &["--set", &file_set]).unwrap();
    let spawn = |id: &str, site: &str| synthetic_agent(dir.path(), id, site, &agg.zmq, "300ms");
    let mut a1 = spawn("a1", "eu-1");
    let mut a2 = spawn("a2", "us-1");
    let otlp_addr = agg.otlp.trim_start_matches("http://").to_string();
    let grpc = agg.grpc.trim_start_matches("http://").to_string();

    // OTLP: the SDK exporter with the otlp token succeeds; a wrong or missing token, or a
    // token without the scope, is refused with the documented status.
    let ok = json(&run_python_script(
        "bearer_tokens.py",
        &["sdk-push", &agg.otlp, &otlp],
    ));
    assert_eq!(ok["result"], "SUCCESS", "{ok}");
    let wrong = json(&run_python_script(
        "bearer_tokens.py",
        &["sdk-push", &agg.otlp, "fst_wrong"],
    ));
    assert_eq!(wrong["result"], "FAILURE", "{wrong}");
    for (token, code) in [
        ("fst_wrong", "UNAUTHENTICATED"),
        ("-", "UNAUTHENTICATED"),
        (eu.as_str(), "PERMISSION_DENIED"),
        (otlp.as_str(), "OK"),
    ] {
        let got = json(&run_python_script(
            "bearer_tokens.py",
            &["otlp-status", &otlp_addr, token],
        ));
        assert_eq!(got["code"], code, "token {token}: {got}");
    }

    // Live: the eu-1 token sees only eu-1 windows, whatever it asks for; with no token,
    // UNAUTHENTICATED.
    let mine = json(&run_python_script(
        "bearer_tokens.py",
        &["live", &grpc, &eu, "3"],
    ));
    let sites = mine["sites"].as_array().unwrap();
    assert!(sites.len() >= 3, "eu-1 windows arrive: {mine}");
    assert!(sites.iter().all(|s| s == "eu-1"), "{mine}");
    let other = json(&run_python_script(
        "bearer_tokens.py",
        &["live", &grpc, &eu, "2", "site=us-1"],
    ));
    assert_eq!(other["sites"], serde_json::json!([]), "{other}");
    assert_eq!(other["code"], "DEADLINE_EXCEEDED", "{other}");
    // History too: stored windows of other sites are never replayed to it.
    wait_for(
        "windows of both sites stored",
        Duration::from_secs(30),
        || (a1.acked().len() >= 3 && a2.acked().len() >= 3).then_some(()),
    )
    .unwrap();
    let history = json(&run_python_script(
        "bearer_tokens.py",
        &["live", &grpc, &eu, "8", "since:3600"],
    ));
    let sites = history["sites"].as_array().unwrap();
    assert!(history["historical"].as_u64() >= Some(3), "{history}");
    assert!(sites.iter().all(|s| s == "eu-1"), "{history}");
    // Our own client: `tail` sends FLEETSET_TOKEN; without it, UNAUTHENTICATED.
    let tail = |token: Option<&str>| {
        let mut cmd = Command::new(bin("fleetset-aggregator"));
        cmd.args(["tail", "--endpoint", &agg.grpc, "--count", "3"]);
        match token {
            Some(t) => cmd.env("FLEETSET_TOKEN", t),
            None => cmd.env_remove("FLEETSET_TOKEN"),
        };
        let out = cmd.output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    let (ok, said) = tail(Some(&eu));
    assert!(ok, "{said}");
    assert_eq!(
        said.lines().filter(|l| l.starts_with("a1 ")).count(),
        3,
        "{said}"
    );
    let (ok, said) = tail(None);
    assert!(!ok && said.contains("bearer token"), "{said}");
    let none = json(&run_python_script(
        "bearer_tokens.py",
        &["live", &grpc, "-", "2"],
    ));
    assert_eq!(none["code"], "UNAUTHENTICATED", "{none}");

    // /metrics: 401 without a token, 403 with one lacking the scope, 200 with `metrics`;
    // /healthz is open.
    let get = |h: &[(&str, &str)]| http_get_with(&agg.metrics, "/metrics", h).unwrap().0;
    assert_eq!(get(&[]), 401);
    let (bearer_eu, bearer_m) = (format!("Bearer {eu}"), format!("Bearer {metrics}"));
    assert_eq!(get(&[("authorization", &bearer_eu)]), 403);
    assert_eq!(get(&[("authorization", &bearer_m)]), 200);
    assert_eq!(http_get_with(&agg.metrics, "/healthz", &[]).unwrap().0, 200);

    wait_for("refusals counted", Duration::from_secs(15), || {
        (counter(&agg, "auth_unauthenticated") >= 4 && counter(&agg, "auth_permission_denied") >= 2)
            .then_some(())
    })
    .unwrap();
    a1.stop(Duration::from_secs(20)).unwrap();
    a2.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

/// The token file is reloaded on change; a broken file keeps the old tokens and is counted.
#[test]
fn token_file_reloads_and_a_broken_one_keeps_the_old_set() {
    let dir = TempDir::new("tokens-reload");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let first = issue(&keys, &["--scope", "metrics"]);
    let file = keys.join("tokens.toml");
    let mut agg = Aggregator::start(
        dir.path(),
        &[
            "--set",
            &format!("security.tokens.file={}", file.display()),
            "--set",
            "security.tokens.reload_interval=200ms",
        ],
    )
    .unwrap();
    let status = |t: &str| {
        let h = format!("Bearer {t}");
        http_get_with(&agg.metrics, "/metrics", &[("authorization", &h)])
            .unwrap()
            .0
    };
    assert_eq!(status(&first), 200);
    let second = issue(&keys, &["--scope", "admin"]);
    wait_for("new token in force", Duration::from_secs(10), || {
        (status(&second) == 200).then_some(())
    })
    .unwrap();
    std::fs::write(&file, "[[token]]\nsha256 = \"nope\"\n").unwrap();
    wait_for("bad reload counted", Duration::from_secs(15), || {
        (counter(&agg, "tokens_reload_failures") >= 1).then_some(())
    })
    .unwrap();
    assert_eq!(status(&first), 200, "old set kept");
    assert_eq!(status(&second), 200, "old set kept");
    assert_eq!(status("fst_other"), 401);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}
