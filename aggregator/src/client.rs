//! Connection flags shared by the commands that talk to a running aggregator (`tail`, `fleet`,
//! `export --stream`): TLS (`--ca-file`, `--cert-file`/`--key-file` for mTLS, `--server-name`)
//! and the bearer token (`--token-file` or `FLEETSET_TOKEN`, never a flag value — it would show
//! in `ps` — and never printed); and the gRPC `Live/Subscribe` call those commands make
//! ([`subscribe`]).

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use fleetset_proto::pb::{self, live_client::LiveClient};
use std::path::PathBuf;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// TLS and token flags of a client command.
#[derive(Debug, Clone, Args)]
pub struct ClientFlags {
    /// CA certificates (PEM) the aggregator's certificate must chain to (`https://` only).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS, with `--key-file`.
    #[arg(long, requires = "key_file", global = true)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert_file", global = true)]
    pub key_file: Option<PathBuf>,
    /// Name the server certificate must carry (and SNI); default: the endpoint's host.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
    /// File holding a bearer token (needed when the aggregator has `security.tokens.file`; the
    /// scope each command needs is in its help); or set FLEETSET_TOKEN.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

impl ClientFlags {
    /// The token from `--token-file` or `FLEETSET_TOKEN`, trimmed (None: neither). Errors name
    /// the file, never the token.
    pub fn token(&self) -> Result<Option<String>> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading token file {}", path.display()))?,
            ),
            None => std::env::var("FLEETSET_TOKEN").ok(),
        };
        Ok(token.map(|t| t.trim().to_string()))
    }

    /// Refuses TLS flags with a plaintext `endpoint`. Errors: one of them is set and the
    /// endpoint is not `https://`.
    pub fn check_scheme(&self, endpoint: &str) -> Result<()> {
        let tls = self.ca_file.is_some() || self.cert_file.is_some() || self.server_name.is_some();
        if tls && !endpoint.starts_with("https://") {
            bail!("--ca-file, --cert-file and --server-name need an https:// --endpoint (got {endpoint:?})");
        }
        Ok(())
    }
}

/// Reads `path` (flag `--what`); errors name the flag and the file.
fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("--{what} {}", path.display()))
}

impl ClientFlags {
    /// The `authorization` metadata value of the token (None: no token). Errors name the
    /// file, never the token.
    fn grpc_bearer(
        &self,
    ) -> Result<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>> {
        let Some(token) = self.token()? else {
            return Ok(None);
        };
        format!("Bearer {token}")
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("the bearer token is not printable ASCII"))
    }

    /// The gRPC channel endpoint of `url`: plaintext for `http://`, TLS for `https://` (the CA
    /// file checked to hold PEM certificates). Errors: a bad URL, TLS flags with `http://`, an
    /// unreadable or non-PEM file (named).
    fn grpc_endpoint(&self, url: &str) -> Result<Endpoint> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("--endpoint {url:?}"))?
            .connect_timeout(std::time::Duration::from_secs(10));
        self.check_scheme(url)?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &self.ca_file {
            let pem = read(ca, "ca-file")?;
            fleetset_core::tls::pem_certs(&pem, ca).context("--ca-file")?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(Identity::from_pem(
                read(cert, "cert-file")?,
                read(key, "key-file")?,
            ));
        }
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        endpoint
            .tls_config(tls)
            .with_context(|| format!("TLS for {url}"))
    }
}

/// What a failed connect or Subscribe means for the user: UNAUTHENTICATED and
/// PERMISSION_DENIED named as such, with the fix.
pub fn explain_status(status: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    match status.code() {
        Code::Unauthenticated => anyhow!(
            "authentication failed (UNAUTHENTICATED): {} — pass a valid token with --token-file or FLEETSET_TOKEN",
            status.message()
        ),
        Code::PermissionDenied => anyhow!(
            "permission denied (PERMISSION_DENIED): {} — the token needs scope `subscribe`",
            status.message()
        ),
        _ => anyhow!("Subscribe failed ({:?}): {}", status.code(), status.message()),
    }
}

/// A connect error with its causes; a TLS one says so and hints at the TLS flags.
fn explain_connect(e: tonic::transport::Error, endpoint: &str) -> anyhow::Error {
    let chain = format!("{:#}", anyhow::Error::new(e));
    if endpoint.starts_with("https://") {
        anyhow!(
            "TLS handshake with {endpoint} failed: {chain} (check --ca-file, --server-name and, with mTLS, --cert-file/--key-file)"
        )
    } else {
        anyhow!("connecting to {endpoint}: {chain}")
    }
}

/// Opens a gRPC `Live/Subscribe` stream on the aggregator at `endpoint` (`http://` or
/// `https://host:port`, its `ingest.grpc.listen`) with `client`'s TLS and token. Errors: connect
/// or TLS failures and refusals, explained ([`explain_status`]).
pub async fn subscribe(
    endpoint: &str,
    client: &ClientFlags,
    request: pb::SubscribeRequest,
) -> Result<tonic::Streaming<pb::SubscribeResponse>> {
    let auth = client.grpc_bearer()?;
    let channel = client
        .grpc_endpoint(endpoint)?
        .connect()
        .await
        .map_err(|e| explain_connect(e, endpoint))?;
    let mut request = tonic::Request::new(request);
    if let Some(value) = auth {
        request.metadata_mut().insert("authorization", value);
    }
    Ok(LiveClient::new(channel)
        .subscribe(request)
        .await
        .map_err(explain_status)?
        .into_inner())
}
