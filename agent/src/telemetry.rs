//! The agent's own `/metrics` `/healthz` endpoint, secured: TLS from `[security.tls]` (the shared
//! [`fleetset_core::tls`] server: certificates reloaded from disk, TLS >= 1.2, optional client
//! CA), a bearer token whose SHA-256 is `security.metrics_token_sha256` (missing or wrong: 401,
//! `/healthz` open), and the secure-by-default check: `/metrics` on a non-loopback address
//! without TLS and a token refuses to start, naming the missing keys, unless
//! `security.allow_insecure` (then a warning at every start).

use crate::config::AgentConfig;
use crate::counters::Counters;
use anyhow::{anyhow, Context, Result};
use fleetset_core::telemetry::{MetricsAuth, Telemetry};
use fleetset_core::tls::{OnTlsEvent, TlsEvent, TlsServer};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `Ok` when `/metrics` is loopback-only or secured, or `security.allow_insecure` is set (then
/// logged as a warning). Errors: the listen address and every missing key.
pub fn enforce(cfg: &AgentConfig) -> Result<()> {
    if !cfg.telemetry.enabled {
        return Ok(());
    }
    let missing = cfg.security.metrics_missing(&cfg.telemetry.listen);
    if missing.is_empty() {
        return Ok(());
    }
    let what = format!(
        "telemetry.listen = {:?}: /metrics off loopback without TLS and a token (set {})",
        cfg.telemetry.listen,
        missing.join(", ")
    );
    if cfg.security.allow_insecure {
        tracing::warn!(listener = %what, "insecure listener allowed by security.allow_insecure");
        return Ok(());
    }
    Err(anyhow!(
        "refusing to start: {what}; secure it, bind it to 127.0.0.1, or set security.allow_insecure = true"
    ))
}

/// The `/metrics` guard for the token digest `digest_hex` (checked by
/// [`AgentConfig`]'s `check`): 401 unless `authorization: Bearer <token>` hashes to it,
/// counted `auth_unauthenticated`.
fn token_guard(digest_hex: &str, counters: Arc<Counters>) -> Result<MetricsAuth> {
    let want: [u8; 32] = hex::decode(digest_hex)
        .ok()
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| anyhow!("security.metrics_token_sha256: not 64 hex digits"))?;
    Ok(Arc::new(move |header: Option<&[u8]>| {
        let ok = header
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .is_some_and(|token| <[u8; 32]>::from(Sha256::digest(token.trim_ascii())) == want);
        if ok {
            Ok(())
        } else {
            Counters::add(&counters.auth_unauthenticated, 1);
            Err(401)
        }
    }))
}

/// Loads `[security.tls]` (None: plaintext), its events counted `tls_reloads`,
/// `tls_reload_failures`, `tls_handshake_failures`. Errors: the files cannot be used (named).
pub fn load_tls(cfg: &AgentConfig, counters: &Arc<Counters>) -> Result<Option<Arc<TlsServer>>> {
    let c = counters.clone();
    let on_tls: OnTlsEvent = Arc::new(move |e| {
        let counter = match e {
            TlsEvent::Reloaded => &c.tls_reloads,
            TlsEvent::ReloadFailed => &c.tls_reload_failures,
            TlsEvent::HandshakeFailed => &c.tls_handshake_failures,
        };
        Counters::add(counter, 1);
    });
    TlsServer::load(&cfg.security.tls, "security.tls", on_tls)
}

/// Serves `/metrics` `/healthz` of `t` as `cfg` says until `stop`, over `tls` if given (its
/// files then watched for changes); returns the bound address. Errors: the address cannot be
/// bound.
pub fn serve(
    t: &Telemetry,
    cfg: &AgentConfig,
    tls: Option<Arc<TlsServer>>,
    counters: &Arc<Counters>,
    on_conn: fleetset_core::net::OnConnEvent,
    stop: CancellationToken,
) -> Result<SocketAddr> {
    let auth = cfg
        .security
        .metrics_token_sha256
        .as_deref()
        .map(|d| token_guard(d, counters.clone()))
        .transpose()?;
    match tls {
        None => t.serve_with(&cfg.telemetry, stop, on_conn, auth, |l| l),
        Some(tls) => {
            tokio::spawn(tls.clone().watch(stop.clone()));
            let s = stop.clone();
            t.serve_with(&cfg.telemetry, stop, on_conn, auth, move |l| {
                tls.http_listener(l, s)
            })
        }
    }
    .context("own telemetry")
}
