//! TLS and mTLS on the aggregator's gRPC listeners, against the real binaries with certificates
//! made by rcgen: grpcio with a secure channel publishes its own agent's frame (without a client
//! certificate the handshake fails, nothing stored) and subscribes; `openssl s_client` sees TLS 1.2 and 1.3
//! accepted, 1.1 refused, and no handshake without a client certificate; the real agent streams
//! over mTLS while the server certificate is rotated on disk (no window lost or duplicated, new
//! connections see the new certificate); the OpenTelemetry Python SDK and the agent export OTLP
//! over TLS; `/metrics` `/healthz` answer HTTPS only; and
//! `serve` on 0.0.0.0 without security settings refuses to start.

use fleetset_proto::pb::{self, AckStatus};
use fleetset_tests::*;
use prost::Message;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// An aggregator serving TLS with `server` and requiring client certificates of `ca`.
fn tls_aggregator(dir: &Path, ca: &TestCa, server: &CertFiles, extra: &[&str]) -> Aggregator {
    let set = |k: &str, p: &Path| format!("security.tls.{k}={}", p.display());
    let owned = [
        set("cert_file", &server.cert),
        set("key_file", &server.key),
        set("client_ca_file", &ca.cert_file),
    ];
    let mut args: Vec<&str> = Vec::new();
    for s in &owned {
        args.extend(["--set", s]);
    }
    args.extend_from_slice(extra);
    Aggregator::start(dir, &args).unwrap()
}

fn hostport(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// `openssl s_client` against `addr` with `args`; (handshake succeeded, stdout).
fn s_client(addr: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout)
}

/// The serial number of the certificate `addr` presents to a new connection (`openssl x509`).
fn served_serial(addr: &str, ca: &TestCa, client: &CertFiles) -> Option<String> {
    let (ok, pem) = s_client(
        addr,
        &[
            "-CAfile",
            ca.cert_file.to_str()?,
            "-cert",
            client.cert.to_str()?,
            "-key",
            client.key.to_str()?,
        ],
    );
    if !ok {
        return None;
    }
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    x509.stdin.take()?.write_all(pem.as_bytes()).ok()?;
    let out = x509.wait_with_output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `GET path` over TLS with a client certificate (`openssl s_client`, HTTP/1.0); the response.
fn https_get(addr: &str, path: &str, ca: &TestCa, client: &CertFiles) -> Option<String> {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            addr,
            "-servername",
            "localhost",
        ])
        .args(["-CAfile", ca.cert_file.to_str()?, "-verify_return_error"])
        .args(["-cert", client.cert.to_str()?, "-key", client.key.to_str()?])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    write!(
        c.stdin.take()?,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    .ok()?;
    let out = c.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text.starts_with("HTTP/1.") && text.contains(" 200 ")).then_some(text)
}

/// A valid one-window frame of `agent_id`.
fn frame(agent_id: &str) -> pb::Frame {
    signed_frame(agent_id, None)
}

/// [`frame`] signed with `key`.
fn signed_frame(agent_id: &str, key: Option<Vec<u8>>) -> pb::Frame {
    one_window_frame(agent_id, key)
}

fn counter(data_dir: &Path, name: &str) -> u64 {
    aggregator_counters(data_dir)
        .and_then(|c| c[name].as_u64())
        .unwrap_or(0)
}

#[test]
fn grpcio_over_mtls_publishes_its_frame_and_without_a_client_certificate_is_refused() {
    let dir = TempDir::new("tls-grpcio");
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server(dir.path(), 1);
    let client = ca.agent(dir.path(), "py-1");
    let mut agg = tls_aggregator(dir.path(), &ca, &server, &[]);
    let frame_file = dir.path().join("frame.bin");
    std::fs::write(&frame_file, frame("py-1").encode_to_vec()).unwrap();
    let target = hostport(&agg.grpc);
    let (ca_file, frame_arg) = (ca.cert_file.to_str().unwrap(), frame_file.to_str().unwrap());

    let out = run_python_script("grpc_tls_publish.py", &[&target, ca_file, frame_arg]);
    let refused: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        refused["code"], "UNAVAILABLE",
        "no client certificate: {refused}"
    );
    assert_eq!(refused["acks"].as_array().unwrap().len(), 0);
    assert!(stored_windows(&agg.data_dir, "py-1").unwrap().is_empty());

    let out = run_python_script(
        "grpc_tls_publish.py",
        &[
            &target,
            ca_file,
            frame_arg,
            client.cert.to_str().unwrap(),
            client.key.to_str().unwrap(),
        ],
    );
    let sent: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let acks = sent["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 1, "{sent}");
    let ack = pb::Ack::decode(hex::decode(acks[0].as_str().unwrap()).unwrap().as_slice()).unwrap();
    assert_eq!(ack.status(), AckStatus::Committed, "{ack:?}");
    assert_eq!(stored_windows(&agg.data_dir, "py-1").unwrap().len(), 1);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    assert!(counter(&agg.data_dir, "tls_handshake_failures") >= 1);
    assert_eq!(counter(&agg.data_dir, "frames_received"), 1);
}

/// grpcio with `pki issue-agent`'s certificate `cert_agent` publishes `frame`; its acks.
fn grpcio_publish(
    agg: &Aggregator,
    pki: &Path,
    cert_agent: &str,
    frame: &pb::Frame,
) -> Vec<pb::Ack> {
    let frame_file = pki.join(format!("frame-{cert_agent}.bin"));
    std::fs::write(&frame_file, frame.encode_to_vec()).unwrap();
    let agent_dir = pki.join("agents").join(cert_agent);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let out = run_python_script(
        "grpc_tls_publish.py",
        &[
            &hostport(&agg.grpc),
            &path(&pki.join("ca.pem")),
            &path(&frame_file),
            &path(&agent_dir.join("agent.pem")),
            &path(&agent_dir.join("agent.key")),
        ],
    );
    let sent: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    sent["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| pb::Ack::decode(hex::decode(a.as_str().unwrap()).unwrap().as_slice()).unwrap())
        .collect()
}

#[test]
fn grpcio_with_another_agents_pki_certificate_gets_wrong_identity_and_its_own_is_committed() {
    let dir = TempDir::new("tls-identity");
    let pki = fleetset_pki(dir.path(), &["agent-1", "other-agent"]);
    let set = |k: &str, f: &str| format!("{k}={}", pki.join(f).display());
    let owned = [
        set("security.tls.cert_file", "server.pem"),
        set("security.tls.key_file", "server.key"),
        set("security.tls.client_ca_file", "ca.pem"),
        set("ingest.hmac_master_key_file", "master.key"),
    ];
    let mut args: Vec<&str> = Vec::new();
    for s in &owned {
        args.extend(["--set", s]);
    }
    let mut agg = Aggregator::start(dir.path(), &args).unwrap();
    let key = hex::decode(issued_hmac_key_hex(&pki, "agent-1")).unwrap();
    let f = signed_frame("agent-1", Some(key.clone()));
    let sha = f.header.as_ref().unwrap().payload_sha256.clone();

    let acks = grpcio_publish(&agg, &pki, "other-agent", &f);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (acks[0].status(), acks[0].reason),
        (AckStatus::Rejected, 14),
        "{acks:?}"
    );
    assert_eq!(acks[0].reason(), pb::RejectReason::WrongIdentity);
    assert!(stored_windows(&agg.data_dir, "agent-1").unwrap().is_empty());

    let acks = grpcio_publish(&agg, &pki, "agent-1", &f);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].status(), AckStatus::Committed, "{acks:?}");
    assert!(
        fleetset_proto::ack_verifies(&key, &acks[0], &sha),
        "the ack is signed with agent-1's key: {acks:?}"
    );
    assert_eq!(stored_windows(&agg.data_dir, "agent-1").unwrap().len(), 1);
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    assert_eq!(counter(&agg.data_dir, "rejected_wrong_identity"), 1);
}

#[test]
fn openssl_sees_tls_1_2_and_1_3_only_and_no_handshake_without_a_client_certificate() {
    let dir = TempDir::new("tls-openssl");
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server(dir.path(), 1);
    let client = ca.agent(dir.path(), "ossl");
    let mut agg = tls_aggregator(dir.path(), &ca, &server, &[]);
    let cafile = ca.cert_file.to_str().unwrap();
    let with_cert = [
        "-CAfile",
        cafile,
        "-verify_return_error",
        "-cert",
        client.cert.to_str().unwrap(),
        "-key",
        client.key.to_str().unwrap(),
    ];
    for (addr, what) in [(hostport(&agg.grpc), "gRPC"), (hostport(&agg.otlp), "OTLP")] {
        for (version, protocol) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            let mut args = with_cert.to_vec();
            args.push(version);
            let (ok, out) = s_client(&addr, &args);
            assert!(ok, "{what} {version}: {out}");
            assert!(
                out.contains(&format!("Protocol: {protocol}")) || out.contains(protocol),
                "{out}"
            );
            assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        }
        // TLS 1.1, even with the client willing (security level 0): refused.
        let mut args = with_cert.to_vec();
        args.extend(["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
        let (ok, out) = s_client(&addr, &args);
        assert!(!ok, "{what} TLS 1.1 accepted: {out}");
        // No client certificate: the TLS 1.2 handshake fails.
        let (ok, out) = s_client(&addr, &["-CAfile", cafile, "-tls1_2"]);
        assert!(!ok, "{what} handshake without a client certificate: {out}");
    }
    // /metrics /healthz: HTTPS with a client certificate; plain HTTP gets nothing.
    let health = https_get(&agg.metrics, "/healthz", &ca, &client).expect("/healthz over TLS");
    assert!(health.ends_with("ok\n"), "{health}");
    assert!(http_get(&agg.metrics, "/healthz").is_err());
    let (ok, out) = s_client(&agg.metrics, &["-CAfile", cafile, "-tls1_2"]);
    assert!(
        !ok,
        "/metrics handshake without a client certificate: {out}"
    );
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    assert!(counter(&agg.data_dir, "tls_handshake_failures") >= 4);

    // min_version = "1.3": TLS 1.2 refused too.
    let dir13 = TempDir::new("tls-openssl13");
    let mut agg = tls_aggregator(
        dir13.path(),
        &ca,
        &server,
        &["--set", "security.tls.min_version=1.3"],
    );
    let addr = hostport(&agg.grpc);
    let (ok, out) = s_client(&addr, &[&with_cert[..], &["-tls1_2"]].concat());
    assert!(!ok, "TLS 1.2 with min_version 1.3: {out}");
    let (ok, out) = s_client(&addr, &[&with_cert[..], &["-tls1_3"]].concat());
    assert!(ok, "TLS 1.3: {out}");
    agg.proc.stop(Duration::from_secs(20)).unwrap();
}

#[test]
fn the_agent_streams_over_mtls_through_a_server_certificate_rotation() {
    let dir = TempDir::new("tls-rotate");
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server(dir.path(), 1);
    let client = ca.agent(dir.path(), "tls-a");
    let probe = ca.agent(dir.path(), "probe");
    let mut agg = tls_aggregator(
        dir.path(),
        &ca,
        &server,
        &["--set", "security.tls.reload_interval=200ms"],
    );
    let port = agg.grpc.rsplit(':').next().unwrap().to_string();
    let endpoint = format!("https://127.0.0.1:{port}");
    let tls_sets = [
        format!("transport.tls.ca_file={}", ca.cert_file.display()),
        format!("transport.tls.cert_file={}", client.cert.display()),
        format!("transport.tls.key_file={}", client.key.display()),
    ];
    let mut args = vec!["--transport", "grpc", "--aggregator", &endpoint];
    for s in &tls_sets {
        args.extend(["--set", s]);
    }
    let mut a = synthetic_agent_with(dir.path(), "tls-a", ("300ms", "50ms"), &args);
    a.wait_acked(5, Duration::from_secs(30)).unwrap();
    let addr = hostport(&agg.grpc);
    assert_eq!(
        served_serial(&addr, &ca, &probe).as_deref(),
        Some("serial=01")
    );
    // grpcio subscribes over mTLS (examples/grpc_subscriber.py) and gets the agent's live windows.
    let sub = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grpc_subscriber.py"))
        .args([
            "--endpoint",
            &addr,
            "--agent",
            "tls-a",
            "--count",
            "2",
            "--timeout",
            "30",
        ])
        .args(["--ca", ca.cert_file.to_str().unwrap()])
        .args(["--cert", probe.cert.to_str().unwrap()])
        .args(["--key", probe.key.to_str().unwrap()])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&sub.stdout);
    assert!(
        sub.status.success(),
        "{lines}{}",
        String::from_utf8_lossy(&sub.stderr)
    );
    assert_eq!(
        lines.lines().filter(|l| l.contains("\"tls-a\"")).count(),
        2,
        "{lines}"
    );

    // Rotate: a new server certificate from the same CA replaces the files while the agent streams.
    let before = a.acked().len();
    ca.server(dir.path(), 2);
    wait_for(
        "new connections see the new certificate",
        Duration::from_secs(10),
        || (served_serial(&addr, &ca, &probe).as_deref() == Some("serial=02")).then_some(()),
    )
    .unwrap();
    a.wait_acked(before + 5, Duration::from_secs(30)).unwrap();
    a.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();

    let acked: Vec<u64> = a.acked().iter().map(|x| x.seq).collect();
    let stored: Vec<u64> = stored_windows(&agg.data_dir, "tls-a")
        .unwrap()
        .iter()
        .map(|w| w.1)
        .collect();
    let mut sorted = acked.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), acked.len(), "no frame acked twice: {acked:?}");
    assert_eq!(stored, sorted, "every acked window stored exactly once");
    assert!(
        stored.windows(2).all(|w| w[1] == w[0] + 1),
        "no window lost: {stored:?}"
    );
    assert!(counter(&agg.data_dir, "tls_reloads") >= 1);
}

#[test]
fn the_opentelemetry_python_sdk_exports_over_tls() {
    let dir = TempDir::new("tls-otel");
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server(dir.path(), 1);
    let client = ca.agent(dir.path(), "otel");
    let mut agg = tls_aggregator(
        dir.path(),
        &ca,
        &server,
        &[
            "--set",
            "otlp.window=1s",
            "--set",
            "otlp.grace=300ms",
            "--commit-interval",
            "100ms",
        ],
    );
    let endpoint = agg.otlp.replace("http://", "https://");
    let out = run_python_script(
        "otel_sdk_push.py",
        &[
            &endpoint,
            ca.cert_file.to_str().unwrap(),
            client.cert.to_str().unwrap(),
            client.key.to_str().unwrap(),
        ],
    );
    assert!(out.contains("pushed"), "{out}");
    wait_for("3 OTLP windows committed", Duration::from_secs(20), || {
        let text = https_get(&agg.metrics, "/metrics", &ca, &client)?;
        (prom_value(&text, "fleetset_aggregator_frames_committed_total")? >= 3.0).then_some(())
    })
    .unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    let s = series_of(&agg.data_dir, "otel-otel-sdk-host-");
    assert_eq!(values(&s, "app.requests"), [5.0, 12.0, 20.0]);
}

#[test]
fn serve_on_all_interfaces_without_security_settings_refuses_to_start() {
    let dir = TempDir::new("tls-refuse");
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // The shipped defaults: every listener on 0.0.0.0.
    let mut serve = Command::new(bin("fleetset-aggregator"))
        .args(["serve", "--data-dir", data])
        .env_remove("FLEETSET_TELEMETRY_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for("serve exits", Duration::from_secs(20), || {
        serve.try_wait().ok().flatten()
    });
    if status.is_err() {
        let _ = serve.kill();
        let _ = serve.wait();
    }
    assert!(!status.unwrap().success());

    let validate = |extra: &[&str]| {
        Command::new(bin("fleetset-aggregator"))
            .args(["validate", "--data-dir", data])
            .args(extra)
            .env_remove("FLEETSET_TELEMETRY_LISTEN")
            .output()
            .unwrap()
    };
    let out = validate(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for named in [
        "ingest.grpc.listen",
        "otlp.listen",
        "control.listen",
        "ingest.zmq.bind",
        "live.zmq.bind",
        "telemetry.listen",
        "security.tls.cert_file",
        "security.allow_insecure",
    ] {
        assert!(err.contains(named), "{named} in {err}");
    }
    assert!(validate(&["--set", "security.allow_insecure=true"])
        .status
        .success());
}

#[test]
fn the_agent_exports_otlp_over_mtls() {
    let dir = TempDir::new("tls-agent-otlp");
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.server(dir.path(), 1);
    let client = ca.agent(dir.path(), "otlp-a");
    let mut agg = tls_aggregator(dir.path(), &ca, &server, &[]);
    let endpoint = agg.otlp.replace("http://", "https://");
    let sets = [
        format!("transport.tls.ca_file={}", ca.cert_file.display()),
        format!("transport.tls.cert_file={}", client.cert.display()),
        format!("transport.tls.key_file={}", client.key.display()),
    ];
    let mut args = vec!["--transport", "otlp", "--aggregator", &endpoint];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let mut a = synthetic_agent_with(dir.path(), "otlp-a", ("300ms", "50ms"), &args);
    a.wait_acked(3, Duration::from_secs(30)).unwrap();
    a.stop(Duration::from_secs(20)).unwrap();

    // The agent verifies the server's name: a certificate not for `server_name` gets nothing.
    let wrong = "transport.tls.server_name=other.example";
    args.extend(["--set", wrong]);
    let mut b = synthetic_agent_with(dir.path(), "otlp-b", ("300ms", "50ms"), &args);
    std::thread::sleep(Duration::from_secs(3));
    assert!(b.acked().is_empty(), "{:?}", b.acked());
    b.stop(Duration::from_secs(20)).unwrap();
    agg.proc.stop(Duration::from_secs(20)).unwrap();
    assert!(counter(&agg.data_dir, "otlp_points_received") > 0);
}
