//! `fleetset-aggregator pki`: key material for a fleet in one directory.
//!
//! - `pki init --dir D`: a CA (`ca.pem`, `ca.key`), a server certificate for `--server-name` /
//!   `--server-ip` (`server.pem`, `server.key`; default `localhost` and `127.0.0.1`), a CURVE
//!   server key pair (`curve_server.public`, `curve_server.secret`, Z85), the fleet master key
//!   (`master.key`, 32 random bytes hex), an empty CURVE allow file (`curve_allow.txt`, lines
//!   `<client public key Z85> <agent_id>`) and an empty token file (`tokens.toml`).
//! - `pki issue-agent --dir D AGENT_ID`: the agent's client certificate (URI SAN
//!   [`spiffe_id`]), key, CURVE key pair (its public key appended to `curve_allow.txt`) and
//!   derived HMAC key ([`agent_key`]) in `D/agents/AGENT_ID` (or `--out`).
//! - `pki issue-token --dir D --scope …`: a bearer token printed once; only its SHA-256 goes
//!   to `tokens.toml` (see [`crate::security::tokens`]).
//!
//! Every file is created mode 0600 and fsynced (`fleetset_core::secret`), the directory 0700;
//! an existing file is never overwritten without `--force`. No secret is ever printed except
//! the new token of `issue-token`, once, on stdout.

mod certs;
mod files;
mod token;

use anyhow::Result;
use clap::{Args, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

pub use certs::spiffe_id;
pub use files::read_master_file;

/// `fleetset-aggregator pki …`.
#[derive(Args, Debug)]
pub struct PkiFlags {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Subcommand, Debug)]
enum PkiCommand {
    /// Create a CA, a server certificate, a CURVE server key pair, the fleet master key, an
    /// empty CURVE allow file and an empty token file in a directory.
    Init(InitFlags),
    /// Issue an agent's client certificate, CURVE key pair and derived HMAC key.
    IssueAgent(AgentFlags),
    /// Issue a scoped bearer token: printed once; its SHA-256 is appended to tokens.toml.
    IssueToken(token::TokenFlags),
}

/// `pki init`.
#[derive(Args, Debug)]
pub struct InitFlags {
    /// The key directory (created 0700).
    #[arg(long)]
    pub dir: PathBuf,
    /// DNS name the server certificate is valid for (repeatable; default: localhost).
    #[arg(long = "server-name")]
    pub server_names: Vec<String>,
    /// IP address the server certificate is valid for (repeatable; default: 127.0.0.1).
    #[arg(long = "server-ip")]
    pub server_ips: Vec<IpAddr>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `pki issue-agent`.
#[derive(Args, Debug)]
pub struct AgentFlags {
    /// The key directory made by `pki init`.
    #[arg(long)]
    pub dir: PathBuf,
    /// The agent id the certificate, CURVE key and HMAC key speak for.
    pub agent_id: String,
    /// Where the agent's files go (default: DIR/agents/AGENT_ID).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite the agent's existing files (and replace its line in curve_allow.txt).
    #[arg(long)]
    pub force: bool,
}

/// The per-agent HMAC key, derived in one place: [`fleetset_proto::keys::agent_key`]. The
/// aggregator holds only the master key (`ingest.hmac_master_key_file`); a host holding its own
/// key can sign only for itself.
pub use fleetset_proto::keys::agent_key;

/// Runs a `pki` subcommand; what it made goes to stderr (the token of `issue-token` alone to
/// stdout). Errors name the file or argument at fault, never a key.
pub fn run(flags: &PkiFlags) -> Result<()> {
    match &flags.command {
        PkiCommand::Init(f) => init(f),
        PkiCommand::IssueAgent(f) => issue_agent(f),
        PkiCommand::IssueToken(f) => token::issue(f),
    }
}

fn init(f: &InitFlags) -> Result<()> {
    let mut names = f.server_names.clone();
    let mut ips = f.server_ips.clone();
    if names.is_empty() && ips.is_empty() {
        names.push("localhost".into());
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    let ca = certs::new_ca()?;
    let server = certs::server_cert(&ca, &names, &ips)?;
    let curve = files::curve_pair()?;
    let master = hex::encode(rand::random::<[u8; 32]>());
    let mut out = vec![
        ("ca.pem", ca.cert_pem),
        ("ca.key", ca.key_pem),
        ("server.pem", server.cert_pem),
        ("server.key", server.key_pem),
        ("master.key", master),
        ("curve_allow.txt", String::new()),
        ("tokens.toml", String::new()),
    ];
    if let Some((public, secret)) = curve {
        out.push(("curve_server.public", public));
        out.push(("curve_server.secret", secret));
    }
    files::write_all(&f.dir, &out, f.force)?;
    eprintln!(
        "pki: wrote {} files in {} (server certificate for {names:?} {ips:?})",
        out.len(),
        f.dir.display()
    );
    Ok(())
}

fn issue_agent(f: &AgentFlags) -> Result<()> {
    if !fleetset_proto::contract::is_valid_agent_id(&f.agent_id) {
        anyhow::bail!(
            "agent id {:?} is not valid: 1-128 bytes of [A-Za-z0-9._:-], not starting with '.'",
            f.agent_id
        );
    }
    let ca = certs::load_ca(&f.dir)?;
    let cert = certs::agent_cert(&ca, &f.agent_id)?;
    let master = files::read_master(&f.dir)?;
    let key = hex::encode(agent_key(&master, &f.agent_id));
    let out_dir = f
        .out
        .clone()
        .unwrap_or_else(|| f.dir.join("agents").join(&f.agent_id));
    let mut out = vec![
        ("agent.pem", cert.cert_pem),
        ("agent.key", cert.key_pem),
        ("ca.pem", ca.cert_pem.clone()),
        ("hmac.key", key),
    ];
    let curve = files::curve_pair()?;
    if let Some((public, secret)) = &curve {
        out.push(("curve_client.public", public.clone()));
        out.push(("curve_client.secret", secret.clone()));
        if let Ok(server) = std::fs::read_to_string(f.dir.join("curve_server.public")) {
            out.push(("curve_server.public", server));
        }
    }
    files::write_all(&out_dir, &out, f.force)?;
    if let Some((public, _)) = &curve {
        files::allow_curve_key(&f.dir, public, &f.agent_id, f.force)?;
    }
    let d = out_dir.display();
    eprintln!(
        "pki: agent {id} ({san}) in {d}\n\
         Agent configuration (the [transport.tls] / [transport.curve] key names are those of the\n\
         TLS and CURVE transports; check `fleetset-agent print-config`):\n\
         \n\
         agent_id = \"{id}\"\n\
         [transport.tls]\n\
         ca_file = \"{d}/ca.pem\"\n\
         cert_file = \"{d}/agent.pem\"\n\
         key_file = \"{d}/agent.key\"\n\
         [transport.curve]\n\
         server_public_file = \"{d}/curve_server.public\"\n\
         public_file = \"{d}/curve_client.public\"\n\
         secret_file = \"{d}/curve_client.secret\"\n\
         \n\
         HMAC key (per-agent, derived from the master key): {d}/hmac.key; the agent takes it\n\
         as transport.hmac_key_hex, e.g. in its environment:\n\
         FLEETSET_TRANSPORT_HMAC_KEY_HEX=\"$(cat {d}/hmac.key)\"\n\
         and the aggregator verifies it with the master key:\n\
         [ingest]\n\
         hmac_master_key_file = \"{master}\"",
        id = f.agent_id,
        san = spiffe_id(&f.agent_id),
        master = f.dir.join("master.key").display(),
    );
    Ok(())
}

#[cfg(test)]
mod tests;
