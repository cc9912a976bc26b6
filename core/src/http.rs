//! A small HTTP/1.1 client (hyper) for the OpAMP HTTP transport (the agent's control-plane
//! client) and the aggregator's `fleet` commands: one request per connection, `http://` or
//! `https://` (rustls, ring), every wait bounded by a timeout and the response body by a size
//! limit, so a hostile or stuck server can neither wedge nor exhaust the caller.

use anyhow::{anyhow, Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// TLS of a client: the CA the server's certificate must chain to, an optional client
/// certificate and key (mTLS) and the name the server's certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Reads the PEM files. Errors name the file that cannot be read or holds no certificate or
    /// key.
    pub fn load(
        ca_file: &Path,
        identity: Option<(&Path, &Path)>,
        server_name: Option<String>,
    ) -> Result<ClientTls> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::tls::pem_certs(&read(ca_file)?, ca_file)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: not a CA certificate", ca_file.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    crate::tls::pem_certs(&read(cert)?, cert)?;
                let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                    .with_context(|| format!("{}: no PEM private key", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("client certificate and key do not match")?
            }
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// A client: TLS for `https://` URLs, a timeout for the whole exchange, a response size limit.
#[derive(Clone)]
pub struct HttpClient {
    /// TLS for `https://` (required for them).
    pub tls: Option<ClientTls>,
    /// Connect, send and receive, all of it, within this.
    pub timeout: Duration,
    /// Largest response body read, bytes; a larger one is an error.
    pub max_response_bytes: usize,
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body (at most `max_response_bytes`).
    pub body: Vec<u8>,
}

impl HttpClient {
    /// Sends `method url` with `headers` and `body`. Errors: a bad URL, `https://` without TLS,
    /// a connection, TLS or protocol failure, the timeout, or a body over the limit — each
    /// naming the URL (never a header value: they may carry tokens).
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response> {
        tokio::time::timeout(self.timeout, self.exchange(method, url, headers, body))
            .await
            .map_err(|_| anyhow!("{method} {url}: no answer within {:?}", self.timeout))?
            .with_context(|| format!("{method} {url}"))
    }

    async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response> {
        let uri: hyper::Uri = url.parse().context("not a URL")?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(anyhow!("the URL must start with http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| anyhow!("no host in the URL"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        tcp.set_nodelay(true)?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(
                hyper::header::HOST,
                uri.authority().map_or(host, |a| a.as_str()),
            );
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| anyhow!("invalid request header"))?;
        let response = if https {
            let tls = self
                .tls
                .as_ref()
                .ok_or_else(|| anyhow!("https:// needs a CA file (TLS settings)"))?;
            let name = ServerName::try_from(tls.server_name.as_deref().unwrap_or(host).to_string())
                .context("server name")?;
            let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(name, tcp)
                .await?;
            send(stream, request, self.timeout).await?
        } else {
            send(tcp, request, self.timeout).await?
        };
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the response: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(Response { status, body })
    }
}

/// Sends `request` on a new HTTP/1.1 connection over `stream`; the connection's task ends
/// with the exchange and at the latest after `timeout`.
async fn send<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<hyper::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(tokio::time::timeout(timeout, conn));
    Ok(sender.send_request(request).await?)
}
