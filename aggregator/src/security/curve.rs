//! ZeroMQ CURVE (RFC 26, libzmq built with libsodium) on the ingest ROUTER and the live PUB:
//! the `[security.curve]` section, the server's secret key and the allow file of client keys.
//!
//! The allow file (`curve_allow.txt`, written by `pki init` / `pki issue-agent`) has one client
//! per line, `<public key, 40 characters Z85> <who>`: `<who>` is an agent id (the key may
//! connect to the ROUTER and publish only that agent's windows) or `subscriber:<name>` (the key
//! may subscribe to the PUB). A line whose first word is not a 40-character Z85 key and that
//! starts with `#` is a comment (Z85 itself uses `#`); blank lines are skipped; anything else is
//! an error naming the line. [`super::zap`] answers libzmq's ZAP requests from it.

use anyhow::{bail, Context, Result};
use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[security.curve]`: CURVE on the ZeroMQ ROUTER (`ingest.zmq`) and PUB (`live.zmq`). On when
/// `secret_file` and `allow_file` are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct CurveConfig {
    /// The aggregator's CURVE secret key (Z85, 40 characters; `curve_server.secret` of `pki init`); with `allow_file`, the ROUTER and PUB speak CURVE only.
    pub secret_file: Option<PathBuf>,
    /// Admitted client keys, one `<public key Z85> <agent_id>` or `<public key Z85> subscriber:<name>` per line (`curve_allow.txt` of `pki`).
    pub allow_file: Option<PathBuf>,
    /// The allow file is checked this often (size, mtime) and re-read when it changed; a bad new file keeps the old list (counted `curve_allow_reload_failures`).
    #[key(default = Duration::from_secs(5), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Largest allow file read; a larger one is refused like a malformed one.
    #[key(default = 4 << 20, unit = "bytes", min = 1, limit = "curve_allow_reload_failures")]
    pub max_allow_bytes: u64,
    /// ZAP requests (one per CURVE handshake) queued for the one ZAP thread; a handshake beyond it waits in libzmq.
    #[key(default = 1000, unit = "messages", min = 1)]
    pub zap_queue: i32,
}

impl CurveConfig {
    /// Whether CURVE is configured (secret key and allow file both set).
    pub fn enabled(&self) -> bool {
        self.secret_file.is_some() && self.allow_file.is_some()
    }
}

/// Whom an admitted key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// An agent: may connect to the ingest ROUTER and publish only this id's frames.
    Agent(String),
    /// A live subscriber (`subscriber:<name>`): may connect to the PUB.
    Subscriber(String),
}

impl Client {
    /// The ZAP User-Id of this client: the agent id, or `subscriber:<name>`.
    pub fn user_id(&self) -> String {
        match self {
            Client::Agent(id) => id.clone(),
            Client::Subscriber(name) => format!("subscriber:{name}"),
        }
    }
}

/// Admitted clients by their 32-byte public key.
pub type AllowList = HashMap<[u8; 32], Client>;

/// A 32-byte CURVE key from its text: 40 characters Z85 or 64 hex digits. None otherwise.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = match text.len() {
        40 => zmq::z85_decode(text).ok()?,
        64 => hex::decode(text).ok()?,
        _ => return None,
    };
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Parses an allow file's text. Errors name the line (never more of it than the number).
pub fn parse_allow(text: &str) -> Result<AllowList> {
    let mut out = AllowList::new();
    for (n, line) in text.lines().enumerate() {
        let n = n.saturating_add(1);
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let key = match parse_key(first) {
            Some(k) if first.len() == 40 => k,
            _ if first.starts_with('#') => continue,
            _ => bail!("line {n}: the first word is not a 40-character Z85 public key"),
        };
        let (Some(who), None) = (words.next(), words.next()) else {
            bail!(
                "line {n}: expected `<public key> <agent_id>` or `<public key> subscriber:<name>`"
            );
        };
        let client = match who.strip_prefix("subscriber:") {
            Some(name) if !name.is_empty() => Client::Subscriber(name.to_string()),
            Some(_) => bail!("line {n}: `subscriber:` needs a name"),
            None if fleetset_proto::contract::is_valid_agent_id(who) => {
                Client::Agent(who.to_string())
            }
            None => bail!("line {n}: not a valid agent id (1-128 bytes of [A-Za-z0-9._:-])"),
        };
        if out.insert(key, client).is_some() {
            bail!("line {n}: this public key is listed twice");
        }
    }
    Ok(out)
}

/// Reads and parses the allow file at `path` (at most `max_bytes`). Errors name the file.
pub fn read_allow(path: &Path, max_bytes: u64) -> Result<AllowList> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > max_bytes {
        bail!(
            "{} is {len} bytes, over security.curve.max_allow_bytes ({max_bytes})",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_allow(&text).with_context(|| format!("{}", path.display()))
}

/// The server's secret key from `path` (Z85 or hex). Errors name the file, never its content.
pub fn read_secret(path: &Path) -> Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_key(&text).with_context(|| {
        format!(
            "{} is not a CURVE secret key (40 characters Z85 or 64 hex digits)",
            path.display()
        )
    })
}

/// What a CURVE server socket needs: its secret key (never logged; `Debug` shows `***`) and
/// the ZAP domain its clients are checked in.
#[derive(Clone)]
pub struct ServerKey(pub [u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(***)")
    }
}

/// The ZAP domain of the ingest ROUTER: agent keys only.
pub const INGEST_DOMAIN: &str = "fleetset-ingest";
/// The ZAP domain of the live PUB: subscriber keys only.
pub const LIVE_DOMAIN: &str = "fleetset-live";

impl ServerKey {
    /// Makes `socket` a CURVE server with this key, its clients checked by ZAP in `domain`.
    /// Errors: libzmq's (e.g. built without CURVE).
    pub fn apply(&self, socket: &zmq::Socket, domain: &str) -> Result<()> {
        if zmq::has("curve") != Some(true) {
            bail!("security.curve is set but this libzmq has no CURVE");
        }
        socket.set_zap_domain(domain)?;
        socket.set_curve_server(true)?;
        socket.set_curve_secretkey(&self.0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_file_lines() {
        let pair = zmq::CurveKeyPair::new().unwrap();
        let public = zmq::z85_encode(&pair.public_key).unwrap();
        let sub = zmq::CurveKeyPair::new().unwrap();
        let sub_public = zmq::z85_encode(&sub.public_key).unwrap();
        let text = format!("# fleet\n\n{public} host-1\n  {sub_public} subscriber:grafana\n");
        let list = parse_allow(&text).unwrap();
        assert_eq!(list[&pair.public_key], Client::Agent("host-1".into()));
        assert_eq!(
            list[&sub.public_key].user_id(),
            "subscriber:grafana".to_string()
        );
        for (bad, why) in [
            (public.clone(), "line 1: expected"),
            (format!("{public} a b"), "line 1: expected"),
            (format!("x\n{public} .bad"), "line 1: the first word"),
            (format!("{public} .bad"), "not a valid agent id"),
            (format!("{public} subscriber:"), "needs a name"),
            (format!("{public} a\n{public} b"), "line 2: this public key"),
        ] {
            let e = parse_allow(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(
            parse_key(&hex::encode(pair.secret_key)),
            Some(pair.secret_key)
        );
        assert_eq!(parse_key("short"), None);
        assert_eq!(
            format!("{:?}", ServerKey(pair.secret_key)),
            "ServerKey(***)"
        );
    }
}
