//! TLS on a listener, shared by the aggregator (gRPC listeners, OTLP, `/metrics`) and the agent
//! (`/metrics`), with rustls (ring provider): the certificate chain, key and optional client CA
//! (mTLS) from PEM files, re-read every `reload_interval` and swapped in for new connections
//! when their content changed (open connections keep theirs); TLS 1.2 and 1.3 only (or 1.3
//! only). Handshakes run one task per connection, bounded by the listener's `max_connections`
//! and by `handshake_timeout`, so a slow client never blocks accepting others. What happens is
//! reported to an [`OnTlsEvent`] callback (each binary counts it in its own counters).

use crate::config::Section;
use crate::net::{BoundedConn, BoundedListener};
use anyhow::{anyhow, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Accepted TLS connections waiting for the server (gRPC or HTTP) to take them.
const HANDSHAKEN_QUEUE: usize = 64;

/// A server TLS section (the aggregator's `[security.tls]`, the agent's `[security.tls]`). TLS is
/// on when `cert_file` and `key_file` are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM, leaf first); with `key_file`, the listeners this section covers speak TLS only.
    pub cert_file: Option<PathBuf>,
    /// The server certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; set → mTLS required (a client without a valid certificate fails the handshake).
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `1.2` or `1.3`.
    #[key(default = "1.2".into())]
    pub min_version: String,
    /// The files are re-read this often and the new certificates used for new connections when their content changed (a bad new file is counted `tls_reload_failures`; the old ones stay).
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// A TLS handshake not finished within this is dropped and counted (`tls_handshake_failures`).
    #[key(default = Duration::from_secs(10), unit = "duration", min = Duration::from_millis(100), limit = "tls_handshake_failures")]
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl TlsConfig {
    /// Whether TLS is configured (certificate and key both set).
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// What a [`TlsServer`] reports (counted by the binary: `tls_reloads`,
/// `tls_reload_failures`, `tls_handshake_failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsEvent {
    /// Changed files were loaded and are used for new connections.
    Reloaded,
    /// Changed files could not be read or used; the previous ones stay in use.
    ReloadFailed,
    /// A handshake failed or did not finish within `handshake_timeout`.
    HandshakeFailed,
}

/// Callback for [`TlsEvent`]s (called on handshake or reload tasks; must be cheap).
pub type OnTlsEvent = Arc<dyn Fn(TlsEvent) + Send + Sync>;

/// A TLS server configuration that follows its files on disk.
pub struct TlsServer {
    files: Vec<PathBuf>,
    cfg: TlsConfig,
    /// The configuration's key prefix in errors, e.g. `security.tls`.
    section: &'static str,
    current: RwLock<Configs>,
    /// Hash of the file contents last tried (loaded or failed), so a bad file is reported once.
    seen: Mutex<[u8; 32]>,
    on_event: OnTlsEvent,
}

/// The files' contents, in `files` order.
fn read_all(files: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect()
}

fn hash(contents: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in contents {
        h.update(u64::try_from(c.len()).unwrap_or(u64::MAX).to_le_bytes());
        h.update(c);
    }
    h.finalize().into()
}

/// The certificates of a PEM file's contents. Errors (naming `path`): not PEM, or none in it.
pub fn pem_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The rustls configuration of `cfg` from the files' `contents` (cert, key, then client CA).
fn build(
    cfg: &TlsConfig,
    section: &str,
    files: &[PathBuf],
    contents: &[Vec<u8>],
) -> Result<rustls::ServerConfig> {
    let (Some(cert_pem), Some(key_pem), Some(cert_path), Some(key_path)) = (
        contents.first(),
        contents.get(1),
        files.first(),
        files.get(1),
    ) else {
        return Err(anyhow!("{section}.cert_file and key_file are required"));
    };
    let chain = pem_certs(cert_pem, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .with_context(|| format!("{}: no PEM private key", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version.as_str() {
        "1.2" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        "1.3" => &[&rustls::version::TLS13],
        other => {
            return Err(anyhow!(
                "{section}.min_version = {other:?}: expected \"1.2\" or \"1.3\""
            ))
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS versions")?;
    let builder = match (contents.get(2), files.get(2)) {
        (Some(ca_pem), Some(ca_path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in pem_certs(ca_pem, ca_path)? {
                roots
                    .add(c)
                    .with_context(|| format!("{}: bad CA certificate", ca_path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{}: client CA", ca_path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .with_context(|| format!("{} with {}", cert_path.display(), key_path.display()))?;
    Ok(config)
}

/// The configurations of one set of files: gRPC (ALPN `h2`, which grpc-core and grpc-go
/// require) and HTTP/1.1 (`/metrics`).
#[derive(Clone)]
struct Configs {
    grpc: Arc<rustls::ServerConfig>,
    http: Arc<rustls::ServerConfig>,
}

fn build_both(
    cfg: &TlsConfig,
    section: &str,
    files: &[PathBuf],
    contents: &[Vec<u8>],
) -> Result<Configs> {
    let mut grpc = build(cfg, section, files, contents)?;
    let mut http = grpc.clone();
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Configs {
        grpc: Arc::new(grpc),
        http: Arc::new(http),
    })
}

/// Which protocol a listener speaks over TLS.
#[derive(Debug, Clone, Copy)]
enum Alpn {
    Grpc,
    Http,
}

impl TlsServer {
    /// Loads `cfg`'s files (`section` is its key prefix in errors, e.g. `security.tls`); `None`
    /// when TLS is not configured. Errors: a file is missing or not usable (named), the key does
    /// not match the certificate, an unknown `min_version`.
    pub fn load(
        cfg: &TlsConfig,
        section: &'static str,
        on_event: OnTlsEvent,
    ) -> Result<Option<Arc<TlsServer>>> {
        let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) else {
            return Ok(None);
        };
        let mut files = vec![cert.clone(), key.clone()];
        files.extend(cfg.client_ca_file.clone());
        let contents = read_all(&files).context(section)?;
        let configs = build_both(cfg, section, &files, &contents).context(section)?;
        Ok(Some(Arc::new(TlsServer {
            seen: Mutex::new(hash(&contents)),
            current: RwLock::new(configs),
            files,
            cfg: cfg.clone(),
            section,
            on_event,
        })))
    }

    /// Whether client certificates are required (mTLS).
    pub fn mtls(&self) -> bool {
        self.cfg.client_ca_file.is_some()
    }

    fn current(&self, alpn: Alpn) -> Arc<rustls::ServerConfig> {
        let c = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        match alpn {
            Alpn::Grpc => c.grpc,
            Alpn::Http => c.http,
        }
    }

    /// Re-reads the files; swaps the configuration in if their content changed and loads.
    /// Returns whether a new configuration is in use.
    pub fn reload_if_changed(&self) -> bool {
        let contents = match read_all(&self.files) {
            Ok(c) => c,
            Err(e) => {
                // Mid-rotation a file may be briefly missing: retried at the next tick.
                (self.on_event)(TlsEvent::ReloadFailed);
                warn!(
                    error = format!("{e:#}"),
                    "TLS files not reloaded; the previous ones stay in use"
                );
                return false;
            }
        };
        let h = hash(&contents);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == h {
                return false;
            }
            *seen = h;
        }
        match build_both(&self.cfg, self.section, &self.files, &contents) {
            Ok(configs) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = configs;
                (self.on_event)(TlsEvent::Reloaded);
                info!("TLS certificates reloaded");
                true
            }
            Err(e) => {
                (self.on_event)(TlsEvent::ReloadFailed);
                warn!(
                    error = format!("{e:#}"),
                    "TLS files not reloaded; the previous ones stay in use"
                );
                false
            }
        }
    }

    /// Reloads every `reload_interval` until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
                }
            }
        }
    }

    /// The TLS connections of `listener` for `alpn`: each accepted connection's handshake runs
    /// in its own task (failures and timeouts reported as [`TlsEvent::HandshakeFailed`] and
    /// dropped).
    fn handshaken(
        self: Arc<Self>,
        mut listener: BoundedListener,
        alpn: Alpn,
        stop: CancellationToken,
    ) -> tokio::sync::mpsc::Receiver<TlsStream<BoundedConn>> {
        let (tx, rx) = tokio::sync::mpsc::channel(HANDSHAKEN_QUEUE);
        let timeout = self.cfg.handshake_timeout;
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = stop.cancelled() => break,
                    (conn, _) = axum::serve::Listener::accept(&mut listener) => conn,
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(self.current(alpn));
                let (tx, on_event) = (tx.clone(), self.on_event.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(stream).await;
                        }
                        Ok(Err(e)) => {
                            on_event(TlsEvent::HandshakeFailed);
                            tracing::debug!(error = %e, "TLS handshake failed");
                        }
                        Err(_) => on_event(TlsEvent::HandshakeFailed),
                    }
                });
            }
        });
        rx
    }

    /// The gRPC (ALPN `h2`) TLS connections of `listener`, for tonic's
    /// `serve_with_incoming_shutdown`.
    pub fn incoming(
        self: Arc<Self>,
        listener: BoundedListener,
        stop: CancellationToken,
    ) -> impl futures::Stream<Item = std::io::Result<TlsStream<BoundedConn>>> {
        use futures::StreamExt;
        tokio_stream::wrappers::ReceiverStream::new(self.handshaken(listener, Alpn::Grpc, stop))
            .map(Ok)
    }

    /// `listener` as an HTTP/1.1-over-TLS listener for `/metrics` `/healthz` (axum).
    pub fn http_listener(
        self: Arc<Self>,
        listener: BoundedListener,
        stop: CancellationToken,
    ) -> TlsListener {
        // Only a fallback for a peer address tonic cannot read.
        let addr = axum::serve::Listener::local_addr(&listener)
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        TlsListener {
            rx: self.handshaken(listener, Alpn::Http, stop),
            addr,
        }
    }
}

/// TLS connections for axum (`/metrics`), handshaken by [`TlsServer::http_listener`].
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<TlsStream<BoundedConn>>,
    addr: std::net::SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<BoundedConn>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => {
                use tonic::transport::server::Connected;
                let peer = conn.get_ref().0.connect_info().remote_addr();
                (conn, peer.unwrap_or(self.addr))
            }
            // The handshake task ended (shutdown): no further connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A self-signed certificate for `localhost` and its key, PEM.
    fn cert_and_key() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_bad_one_reported_and_ignored() {
        let dir = std::env::temp_dir().join(format!("fleetset-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let (c, k) = cert_and_key();
        std::fs::write(&cert, c).unwrap();
        std::fs::write(&key, k).unwrap();
        let cfg = TlsConfig {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            ..TlsConfig::default()
        };
        let (reloads, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (r, f) = (reloads.clone(), failures.clone());
        let on_event: OnTlsEvent = Arc::new(move |e| {
            match e {
                TlsEvent::Reloaded => &r,
                TlsEvent::ReloadFailed => &f,
                TlsEvent::HandshakeFailed => return,
            }
            .fetch_add(1, Ordering::Relaxed);
        });
        let tls = TlsServer::load(&cfg, "security.tls", on_event)
            .unwrap()
            .unwrap();
        let first = tls.current(Alpn::Grpc);
        assert!(!tls.reload_if_changed(), "unchanged files: nothing to do");

        // Garbage in the certificate file: reported once, the old configuration stays.
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(!tls.reload_if_changed());
        assert!(!tls.reload_if_changed());
        assert_eq!(failures.load(Ordering::Relaxed), 1);
        assert!(Arc::ptr_eq(&first, &tls.current(Alpn::Grpc)));

        // A new valid pair: swapped in.
        let (c, k) = cert_and_key();
        std::fs::write(&key, k).unwrap();
        std::fs::write(&cert, c).unwrap();
        assert!(tls.reload_if_changed());
        assert_eq!(reloads.load(Ordering::Relaxed), 1);
        assert!(!Arc::ptr_eq(&first, &tls.current(Alpn::Grpc)));
        assert_eq!(tls.current(Alpn::Grpc).alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(
            tls.current(Alpn::Http).alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );

        // A key that does not match the certificate is refused too.
        let (_, other_key) = cert_and_key();
        std::fs::write(&key, other_key).unwrap();
        assert!(!tls.reload_if_changed());
        assert_eq!(failures.load(Ordering::Relaxed), 2);

        // An unknown minimum version is named at load.
        let bad = TlsConfig {
            min_version: "1.1".into(),
            ..cfg
        };
        let (c, k) = cert_and_key();
        std::fs::write(&key, k).unwrap();
        std::fs::write(&cert, c).unwrap();
        let e = TlsServer::load(&bad, "security.tls", Arc::new(|_| {}))
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("security.tls.min_version"),
            "{e:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
