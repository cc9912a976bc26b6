//! Connection flags shared by the commands that talk to a running aggregator (`tail`, `fleet`):
//! TLS (`--ca-file`, `--cert-file`/`--key-file` for mTLS, `--server-name`) and the bearer token
//! (`--token-file` or `FLEETSET_TOKEN`, never a flag value — it would show in `ps` — and never
//! printed).

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

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
