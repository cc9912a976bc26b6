//! Secure by default: `serve` refuses to start while a listener on a non-loopback address lacks
//! transport security and client authentication, naming each listener and the missing settings,
//! unless `security.allow_insecure = true` (then each is logged as a warning at every start).
//! Loopback binds (127.0.0.0/8, `::1`, `localhost`) and `ipc://` need nothing.
//!
//! What each listener needs off loopback:
//! - gRPC (`ingest.grpc.listen`: Ingest, Live, health, reflection), OTLP (`otlp.listen`) and
//!   `/metrics` `/healthz` (`telemetry.listen`) and the control plane (`control.listen`): `security.tls.cert_file`, `key_file` and
//!   `client_ca_file` (TLS with client certificates).
//! - ZeroMQ ROUTER (`ingest.zmq.bind`) and PUB (`live.zmq.bind`): CURVE
//!   (`security.curve.secret_file` and `allow_file`: encryption, and only listed client keys).

use crate::config::ServerConfig;
use anyhow::{anyhow, Result};
use fleetset_core::net::is_loopback_addr;

/// Whether a ZeroMQ endpoint is local: `ipc://`/`inproc://`, or `tcp://` on loopback.
fn is_local_zmq(endpoint: &str) -> bool {
    match endpoint.strip_prefix("tcp://") {
        Some(addr) => is_loopback_addr(addr),
        None => true,
    }
}

/// Every enabled listener that is reachable off this host without transport security and
/// authentication: `key = value: what is missing`.
pub fn insecure_listeners(cfg: &ServerConfig) -> Vec<String> {
    let tls = &cfg.security.tls;
    let mut missing_tls: Vec<&str> = Vec::new();
    if tls.cert_file.is_none() {
        missing_tls.push("security.tls.cert_file");
    }
    if tls.key_file.is_none() {
        missing_tls.push("security.tls.key_file");
    }
    if tls.client_ca_file.is_none() {
        missing_tls.push("security.tls.client_ca_file");
    }
    let mut out = Vec::new();
    let mut grpc = |key: &str, on: bool, addr: &str| {
        if on && !is_loopback_addr(addr) && !missing_tls.is_empty() {
            out.push(format!(
                "{key} = {addr:?}: no TLS with client certificates (set {})",
                missing_tls.join(", ")
            ));
        }
    };
    grpc(
        "ingest.grpc.listen",
        cfg.ingest.grpc.enabled,
        &cfg.ingest.grpc.listen,
    );
    grpc("otlp.listen", cfg.otlp.enabled, &cfg.otlp.listen);
    grpc("control.listen", cfg.control.enabled, &cfg.control.listen);
    grpc(
        "telemetry.listen",
        cfg.telemetry.enabled,
        &cfg.telemetry.listen,
    );
    for (key, on, endpoint) in [
        (
            "ingest.zmq.bind",
            cfg.ingest.zmq.enabled,
            &cfg.ingest.zmq.bind,
        ),
        ("live.zmq.bind", cfg.live.zmq.enabled, &cfg.live.zmq.bind),
    ] {
        if on && !is_local_zmq(endpoint) && !cfg.security.curve.enabled() {
            out.push(format!(
                "{key} = {endpoint:?}: ZeroMQ without CURVE (set security.curve.secret_file and security.curve.allow_file)"
            ));
        }
    }
    out
}

/// `Ok` when every listener is secured or loopback, or `security.allow_insecure` is set (each
/// insecure listener then logged as a warning). Errors: one message naming every insecure
/// listener and the settings it lacks.
pub fn enforce(cfg: &ServerConfig) -> Result<()> {
    let insecure = insecure_listeners(cfg);
    if insecure.is_empty() {
        return Ok(());
    }
    if cfg.security.allow_insecure {
        for l in &insecure {
            tracing::warn!(listener = %l, "insecure listener allowed by security.allow_insecure");
        }
        return Ok(());
    }
    Err(anyhow!(
        "refusing to start: listeners on non-loopback addresses without transport security and authentication:\n  - {}\nsecure them, bind them to 127.0.0.1, or set security.allow_insecure = true",
        insecure.join("\n  - ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_refuse_and_loopback_or_allow_insecure_start() {
        let mut cfg = ServerConfig::default();
        let e = enforce(&cfg).unwrap_err().to_string();
        for key in [
            "ingest.grpc.listen",
            "otlp.listen",
            "ingest.zmq.bind",
            "live.zmq.bind",
            "telemetry.listen",
            "security.tls.client_ca_file",
            "security.allow_insecure",
        ] {
            assert!(e.contains(key), "{key} in {e}");
        }
        cfg.security.allow_insecure = true;
        enforce(&cfg).unwrap();
        let mut lo = ServerConfig::loopback("/tmp/x".into());
        enforce(&lo).unwrap();
        lo.otlp.listen = "[::]:4317".into();
        lo.telemetry.listen = "0.0.0.0:9464".into();
        assert_eq!(insecure_listeners(&lo).len(), 2);
        lo.security.tls.cert_file = Some("c".into());
        lo.security.tls.key_file = Some("k".into());
        lo.security.tls.client_ca_file = Some("ca".into());
        enforce(&lo).unwrap();
        lo.ingest.zmq.bind = "tcp://0.0.0.0:5555".into();
        lo.live.zmq.bind = "tcp://*:5556".into();
        let e = enforce(&lo).unwrap_err().to_string();
        assert!(e.contains("security.curve.allow_file"), "{e}");
        lo.security.curve.secret_file = Some("s".into());
        assert_eq!(insecure_listeners(&lo).len(), 2);
        lo.security.curve.allow_file = Some("a".into());
        enforce(&lo).unwrap();
        assert!(is_local_zmq("ipc:///run/x") && !is_local_zmq("tcp://*:5555"));
        assert!(is_loopback_addr("[::1]:1") && is_loopback_addr("localhost:1"));
    }
}
