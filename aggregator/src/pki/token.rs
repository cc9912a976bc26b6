//! `pki issue-token`: a random bearer token (`fst_` + 32 random bytes base64url), printed once
//! on stdout; its SHA-256, scopes, selector and name are appended to `tokens.toml`.

use crate::security::tokens::{digest_hex, Scope, TokenEntry, TokenFile};
use anyhow::{Context, Result};
use base64::Engine;
use clap::Args;
use std::path::PathBuf;

/// `pki issue-token`.
#[derive(Args, Debug)]
pub struct TokenFlags {
    /// The key directory (its `tokens.toml` gets the new token's digest).
    #[arg(long)]
    pub dir: PathBuf,
    /// What the token may do (repeatable): subscribe, otlp, metrics, agent, admin.
    #[arg(long = "scope", value_enum, required = true)]
    pub scopes: Vec<Scope>,
    /// A label the token's subscriptions are restricted to, `key=value` (repeatable).
    #[arg(long = "selector", value_parser = fleetset_core::names::parse_label)]
    pub selector: Vec<(String, String)>,
    /// Who the token is for (shown in logs; not a secret).
    #[arg(long, default_value = "")]
    pub name: String,
    /// The agent a token with scope `agent` speaks for (its OpAMP reports as another id are
    /// refused); required with `--scope agent`.
    #[arg(long)]
    pub agent_id: Option<String>,
}

/// Issues the token (see module docs).
pub fn issue(f: &TokenFlags) -> Result<()> {
    let token = add(f)?;
    println!("{token}");
    eprintln!(
        "pki: token {:?} with scopes {:?} added to {} (its SHA-256 only; this is the only time it is shown)",
        f.name,
        f.scopes,
        f.dir.join("tokens.toml").display()
    );
    Ok(())
}

/// Appends a new token's entry to `DIR/tokens.toml`; returns the token.
pub(super) fn add(f: &TokenFlags) -> Result<String> {
    if f.scopes.contains(&Scope::Agent) != f.agent_id.is_some() {
        anyhow::bail!("--agent-id goes with --scope agent, and --scope agent needs --agent-id");
    }
    if let Some(id) = f.agent_id.as_deref() {
        if !fleetset_proto::contract::is_valid_agent_id(id) {
            anyhow::bail!(
                "--agent-id {}: not a valid agent id",
                fleetset_proto::contract::shown(id)
            );
        }
    }
    let path = f.dir.join("tokens.toml");
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // Checked, then appended to as text: comments and hand edits stay.
    toml::from_str::<TokenFile>(&old)
        .map_err(|e| anyhow::anyhow!("{} is not valid: {}", path.display(), e.message()))?;
    let token = format!(
        "fst_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let entry = TokenFile {
        token: vec![TokenEntry {
            name: f.name.clone(),
            sha256: digest_hex(&token),
            scopes: f.scopes.clone(),
            selector: f.selector.iter().cloned().collect(),
            agent_id: f.agent_id.clone(),
        }],
    };
    let mut text = old;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&toml::to_string(&entry).context("serializing the token entry")?);
    fleetset_core::secret::replace_private(&path, &text)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}
