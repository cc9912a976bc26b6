//! The agent's TLS client side (`[transport.tls]`): a tonic endpoint for the gRPC Ingest client
//! and the OTLP exporter, verifying the server's certificate against `ca_file` and its name
//! (`server_name`, else the endpoint's host), presenting `cert_file`/`key_file` for mTLS. The
//! files are read at each connect, so certificates rotated on disk are used from the next
//! connection on.

use crate::config::ClientTlsConfig;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig as TonicTls, Endpoint, Identity};

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading transport.tls.{what} {}: {e}", path.display()))
}

/// A tonic endpoint for `url` (`http://…` plaintext, or `https://…` with `tls.ca_file`) with
/// connect timeout `timeout`. Errors name the endpoint or the unreadable file.
pub fn endpoint(url: &str, tls: &ClientTlsConfig, timeout: Duration) -> Result<Endpoint, String> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("endpoint {url:?}: {e}"))?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    if let Some(ca) = &tls.ca_file {
        let mut config =
            TonicTls::new().ca_certificate(Certificate::from_pem(read(ca, "ca_file")?));
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            config = config.identity(Identity::from_pem(
                read(cert, "cert_file")?,
                read(key, "key_file")?,
            ));
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("TLS for {url}: {e}"))?;
    }
    Ok(endpoint)
}
