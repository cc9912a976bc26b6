//! Clients of secured endpoints, against the real binaries: `fleetset-aggregator tail` over
//! mTLS with a `subscribe` token (from `pki init`, `pki issue-agent`, `pki issue-token`) prints
//! a window a real agent published; a wrong token exits non-zero naming UNAUTHENTICATED;
//! without the CA the TLS handshake fails. The agent's own `/metrics` over TLS with a bearer
//! token, read by Python's `ssl`/urllib: 200 with the token, 401 without, `/healthz` open, no
//! handshake without the CA (all counted); and an agent with `/metrics` on 0.0.0.0 without TLS
//! and a token refuses to start, naming the missing keys.
//! Needs `FLEETSET_PYTHON`.

use fleetset_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `fleetset-aggregator pki ARGS… --dir dir`; its stdout.
fn pki(dir: &Path, args: &[&str]) -> String {
    let dir = dir.to_str().unwrap();
    run_pki(&[args, &["--dir", dir]].concat())
}

/// Runs `program args…` (stdin closed) for at most `timeout`; (exit success, stdout, stderr).
fn run_bounded(program: &Path, args: &[String], dir: &Path, tag: &str) -> (bool, String, String) {
    let (out, err) = (
        dir.join(format!("{tag}.out")),
        dir.join(format!("{tag}.err")),
    );
    let mut child = Command::new(program)
        .args(args)
        .env_remove("FLEETSET_TOKEN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_for(tag, Duration::from_secs(30), || {
        child.try_wait().ok().flatten()
    });
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    (status.unwrap().success(), read(&out), read(&err))
}

#[test]
fn tail_over_mtls_with_a_token_prints_a_window_and_names_what_failed() {
    let dir = TempDir::new("tail-tls");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    pki(&keys, &["init"]);
    pki(&keys, &["issue-agent", "tailer"]);
    let token = pki(&keys, &["issue-token", "--scope", "subscribe"]);
    let good = dir.path().join("good.token");
    std::fs::write(&good, &token).unwrap();
    let bad = dir.path().join("bad.token");
    std::fs::write(&bad, format!("{token}x")).unwrap();

    let k = |name: &str| keys.join(name).display().to_string();
    let sets = [
        format!("security.tls.cert_file={}", k("server.pem")),
        format!("security.tls.key_file={}", k("server.key")),
        format!("security.tls.client_ca_file={}", k("ca.pem")),
        format!("security.tokens.file={}", k("tokens.toml")),
    ];
    let mut args: Vec<&str> = Vec::new();
    for s in &sets {
        args.extend(["--set", s]);
    }
    let mut agg = Aggregator::start(dir.path(), &args).unwrap();
    let mut agent = synthetic_agent(dir.path(), "a1", "eu-1", &agg.zmq, "300ms");
    let endpoint = agg.grpc.replace("http://", "https://");
    let client = keys.join("agents/tailer");
    let tail = |token: &Path, ca: bool, tag: &str| {
        let mut a: Vec<String> = ["tail", "--count", "1", "--endpoint", &endpoint]
            .map(String::from)
            .to_vec();
        if ca {
            a.extend(["--ca-file".into(), k("ca.pem")]);
        }
        for (flag, file) in [("--cert-file", "agent.pem"), ("--key-file", "agent.key")] {
            a.extend([flag.to_string(), client.join(file).display().to_string()]);
        }
        a.extend(["--token-file".into(), token.display().to_string()]);
        run_bounded(&bin("fleetset-aggregator"), &a, dir.path(), tag)
    };

    let (ok, out, err) = tail(&good, true, "tail-good");
    assert!(ok, "tail with the token failed: {err}");
    assert!(out.starts_with("a1 seq="), "one window line: {out}");
    assert_eq!(out.lines().count(), 1, "--count 1: {out}");
    assert!(
        !err.contains(&token) && !out.contains(&token),
        "token printed"
    );

    let (ok, _, err) = tail(&bad, true, "tail-bad-token");
    assert!(!ok, "a wrong token must fail");
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    assert!(!err.contains(&token), "token printed: {err}");

    let (ok, _, err) = tail(&good, false, "tail-no-ca");
    assert!(!ok, "without the CA the server is not trusted");
    assert!(err.contains("TLS handshake"), "{err}");

    // A CA file that holds no certificate is named before connecting.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let a = [
        "tail",
        "--endpoint",
        &endpoint,
        "--ca-file",
        junk.to_str().unwrap(),
    ]
    .map(String::from);
    let (ok, _, err) = run_bounded(&bin("fleetset-aggregator"), &a, dir.path(), "tail-junk-ca");
    assert!(
        !ok && err.contains("--ca-file") && err.contains("junk.pem"),
        "{err}"
    );

    wait_for(
        "auth_unauthenticated counted",
        Duration::from_secs(20),
        || {
            let c = aggregator_counters(&agg.data_dir)?;
            (c["auth_unauthenticated"].as_u64()? >= 1).then_some(())
        },
    )
    .unwrap();
    agent.stop(Duration::from_secs(10)).unwrap();
    agg.proc.stop(Duration::from_secs(10)).unwrap();
}

/// Python urllib `GET url` trusting `ca` ("-": system roots only) with the token in
/// `token_file` ("-": none): the JSON line it printed.
fn python_get(url: &str, ca: &str, token_file: &str) -> serde_json::Value {
    let out = run_python_script("https_get.py", &[url, ca, token_file]);
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn agent_metrics_over_tls_need_the_token_and_the_ca() {
    let dir = TempDir::new("agent-metrics-tls");
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server(dir.path(), 1);
    let token = "fst_agent_metrics_test_token_0123456789abcdef";
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, token).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    let sets = [
        format!("security.tls.cert_file={}", server.cert.display()),
        format!("security.tls.key_file={}", server.key.display()),
        format!("security.metrics_token_sha256={digest}"),
    ];
    let mut extra = vec!["--aggregator", "tcp://127.0.0.1:9"];
    for s in &sets {
        extra.extend(["--set", s]);
    }
    let agent = synthetic_agent_with(dir.path(), "m1", ("300ms", "50ms"), &extra);
    let addr = wait_for("telemetry event", Duration::from_secs(20), || {
        of_kind(&agent.events(), "telemetry", "")
            .first()
            .map(|e| e.addr.clone())
    })
    .unwrap();
    let port = addr.rsplit_once(':').unwrap().1;
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let ca_file = ca.cert_file.to_str().unwrap();
    let tf = token_file.to_str().unwrap();

    let ok = python_get(&url("/metrics"), ca_file, tf);
    assert_eq!(ok["status"], 200, "{ok}");
    assert!(
        ok["body"].as_str().unwrap().contains("fleetset_agent_"),
        "{ok}"
    );
    let no_token = python_get(&url("/metrics"), ca_file, "-");
    assert_eq!(no_token["status"], 401, "{no_token}");
    let health = python_get(&url("/healthz"), ca_file, "-");
    assert_eq!(health["status"], 200, "{health}");
    let no_ca = python_get(&url("/metrics"), "-", tf);
    assert_eq!(no_ca["error"], "ssl", "{no_ca}");
    // Plain HTTP gets no answer from a TLS listener.
    assert!(http_get(&addr, "/healthz").is_err());

    let state = dir.path().join("m1");
    wait_for("counted", Duration::from_secs(20), || {
        let c = agent_counters(&state)?;
        (c["auth_unauthenticated"].as_u64()? >= 1 && c["tls_handshake_failures"].as_u64()? >= 1)
            .then_some(())
    })
    .unwrap();
    // Its aggregator does not exist, so it would drain its spool at SIGTERM: killed on drop.
    drop(agent);
}

#[test]
fn agent_metrics_on_all_interfaces_without_tls_and_token_refuse_to_start() {
    let dir = TempDir::new("agent-metrics-refuse");
    let state = dir.path().join("state");
    let args: Vec<String> = [
        "run",
        "--source",
        "synthetic",
        "--agent-id",
        "r1",
        "--state-dir",
        state.to_str().unwrap(),
        "--aggregator",
        "tcp://127.0.0.1:9",
        "--metrics-listen",
        "0.0.0.0:0",
    ]
    .map(String::from)
    .to_vec();
    let (ok, _, err) = run_bounded(&bin("fleetset-agent"), &args, dir.path(), "refuse");
    assert!(!ok, "must refuse: {err}");
    for key in [
        "telemetry.listen",
        "security.tls.cert_file",
        "security.tls.key_file",
        "security.metrics_token_sha256",
        "security.allow_insecure",
    ] {
        assert!(err.contains(key), "{key} in {err}");
    }
}
