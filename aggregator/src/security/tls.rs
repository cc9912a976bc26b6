//! TLS on the aggregator's gRPC listeners and `/metrics` (rustls, ring): the certificate chain, key and
//! optional client CA (mTLS) from PEM files, re-read every `reload_interval` and swapped in for
//! new connections when their content changed (open connections keep theirs). Handshakes run
//! one task per connection, bounded by the listener's `max_connections` and by
//! `handshake_timeout`, so a slow client never blocks accepting others.

use super::config::TlsConfig;
use crate::counters::Counters;
use anyhow::{anyhow, Context, Result};
use fleetset_core::net::{BoundedConn, BoundedListener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Accepted TLS connections waiting for the gRPC server to take them.
const HANDSHAKEN_QUEUE: usize = 64;

/// A TLS server configuration that follows its files on disk.
pub struct TlsServer {
    files: Vec<PathBuf>,
    cfg: TlsConfig,
    current: RwLock<Configs>,
    /// Hash of the file contents last tried (loaded or failed), so a bad file is counted once.
    seen: Mutex<[u8; 32]>,
    counters: Arc<Counters>,
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

fn certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

/// The rustls configuration of `cfg` from the files' `contents` (cert, key, then client CA).
fn build(cfg: &TlsConfig, files: &[PathBuf], contents: &[Vec<u8>]) -> Result<rustls::ServerConfig> {
    let (Some(cert_pem), Some(key_pem)) = (contents.first(), contents.get(1)) else {
        return Err(anyhow!("security.tls.cert_file and key_file are required"));
    };
    let chain = certs(cert_pem, &files[0])?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .with_context(|| format!("{}: no PEM private key", files[1].display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version.as_str() {
        "1.3" => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS versions")?;
    let builder = match (contents.get(2), files.get(2)) {
        (Some(ca_pem), Some(ca_path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca_pem, ca_path)? {
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
        .with_context(|| format!("{} with {}", files[0].display(), files[1].display()))?;
    Ok(config)
}

/// The configurations of one set of files: gRPC (ALPN `h2`, which grpc-core and grpc-go
/// require) and `/metrics` (ALPN `http/1.1`).
#[derive(Clone)]
struct Configs {
    grpc: Arc<rustls::ServerConfig>,
    http: Arc<rustls::ServerConfig>,
}

fn build_both(cfg: &TlsConfig, files: &[PathBuf], contents: &[Vec<u8>]) -> Result<Configs> {
    let mut grpc = build(cfg, files, contents)?;
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
    /// Loads `cfg`'s files; `None` when TLS is not configured. Errors: a file is missing or not
    /// usable (named), the key does not match the certificate.
    pub fn load(cfg: &TlsConfig, counters: Arc<Counters>) -> Result<Option<Arc<TlsServer>>> {
        let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) else {
            return Ok(None);
        };
        let mut files = vec![cert.clone(), key.clone()];
        files.extend(cfg.client_ca_file.clone());
        let contents = read_all(&files)?;
        let configs = build_both(cfg, &files, &contents).context("security.tls")?;
        Ok(Some(Arc::new(TlsServer {
            seen: Mutex::new(hash(&contents)),
            current: RwLock::new(configs),
            files,
            cfg: cfg.clone(),
            counters,
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
                Counters::add(&self.counters.tls_reload_failures, 1);
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
        match build_both(&self.cfg, &self.files, &contents) {
            Ok(configs) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = configs;
                Counters::add(&self.counters.tls_reloads, 1);
                info!("TLS certificates reloaded");
                true
            }
            Err(e) => {
                Counters::add(&self.counters.tls_reload_failures, 1);
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
    /// in its own task (failures and timeouts counted `tls_handshake_failures` and dropped).
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
                let (tx, counters) = (tx.clone(), self.counters.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(conn)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(stream).await;
                        }
                        Ok(Err(e)) => {
                            Counters::add(&counters.tls_handshake_failures, 1);
                            tracing::debug!(error = %e, "TLS handshake failed");
                        }
                        Err(_) => Counters::add(&counters.tls_handshake_failures, 1),
                    }
                });
            }
        });
        rx
    }

    /// The gRPC TLS connections of `listener` (see [`TlsServer::handshaken`]).
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

/// Serves `router` on `listener` until `stop`: over TLS with `tls` (whose [`TlsServer::watch`]
/// the caller runs once for all listeners), else plaintext.
pub async fn serve(
    router: tonic::transport::server::Router,
    listener: BoundedListener,
    tls: Option<Arc<TlsServer>>,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    match tls {
        None => {
            router
                .serve_with_incoming_shutdown(listener.into_stream(), stop.cancelled_owned())
                .await
        }
        Some(tls) => {
            let incoming = tls.incoming(listener, stop.clone());
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and its key, PEM.
    fn cert_and_key() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_bad_one_counted_and_ignored() {
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
        let counters = Arc::new(Counters::default());
        let tls = TlsServer::load(&cfg, counters.clone()).unwrap().unwrap();
        let first = tls.current(Alpn::Grpc);
        assert!(!tls.reload_if_changed(), "unchanged files: nothing to do");

        // Garbage in the certificate file: counted once, the old configuration stays.
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(!tls.reload_if_changed());
        assert!(!tls.reload_if_changed());
        assert_eq!(
            counters
                .tls_reload_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(Arc::ptr_eq(&first, &tls.current(Alpn::Grpc)));

        // A new valid pair: swapped in.
        let (c, k) = cert_and_key();
        std::fs::write(&key, k).unwrap();
        std::fs::write(&cert, c).unwrap();
        assert!(tls.reload_if_changed());
        assert_eq!(
            counters
                .tls_reloads
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
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
        assert_eq!(
            counters
                .tls_reload_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
