//! Scoped bearer tokens (the OpenTelemetry Collector `bearertokenauth` convention: gRPC metadata
//! or HTTP header `authorization: Bearer <token>`).
//!
//! With `security.tokens.file` set, Live `Subscribe` and the WebSocket `/v1/stream` need scope
//! `subscribe` (the stream also takes the token as subprotocol `bearer.<token>`), OTLP `Export`
//! needs `otlp`, `/metrics` needs `metrics`; `admin` implies every scope; `/healthz` stays open
//! for probes. A `subscribe` grant may carry a label selector: the subscription then only ever
//! gets windows carrying every selector label (live and history). Missing or unknown token:
//! UNAUTHENTICATED / HTTP 401 (counted `auth_unauthenticated`); a known token without the
//! scope: PERMISSION_DENIED / HTTP 403 (`auth_permission_denied`).
//!
//! The file (written by `fleetset-aggregator pki issue-token`) holds only SHA-256 digests of the
//! tokens, never a token:
//!
//! ```toml
//! [[token]]
//! name = "grafana-eu"
//! sha256 = "<64 hex>"
//! scopes = ["subscribe"]
//! selector = { site = "eu-1" }
//! ```
//!
//! A presented token is hashed and the digest looked up, so comparison time does not depend on
//! how much of a guess matches a real token. The file is re-read every
//! `security.tokens.reload_interval` when its size or mtime changed; a file that cannot be read
//! or parsed keeps the previous set and counts `tokens_reload_failures` (the error names the
//! file and the problem, never token material). At start a bad file is an error.

use crate::counters::Counters;
use anyhow::{bail, Context, Result};
use fleetset_core::config::Section;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// `[security.tokens]`: the token file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Section)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// Token file (SHA-256 digests, scopes, selectors; see `pki issue-token`). Set: Live Subscribe and `/v1/stream`, OTLP Export and `/metrics` need a bearer token; unset: they are open.
    pub file: Option<PathBuf>,
    /// How often the token file is checked for changes (size, mtime) and re-read.
    #[key(default = Duration::from_secs(5), unit = "duration", min = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Largest token file read; a larger one is refused like a malformed one (kept: the old set).
    #[key(default = 1 << 20, unit = "bytes", min = 1, limit = "tokens_reload_failures")]
    pub max_file_bytes: u64,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Live `Subscribe` (optionally restricted by a selector).
    Subscribe,
    /// OTLP `Export`.
    Otlp,
    /// `GET /metrics`.
    Metrics,
    /// OpAMP reports (`POST /v1/opamp`) of the one agent named by the token's `agent_id`.
    Agent,
    /// Everything.
    Admin,
}

/// One line of the token file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who the token is for (shown in logs and errors; not a secret).
    #[serde(default)]
    pub name: String,
    /// SHA-256 of the token text, 64 hex digits.
    pub sha256: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Labels every window sent to this token's subscriptions must carry.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// The agent a token with scope `agent` speaks for (OpAMP reports as any other agent id
    /// are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// The token file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// The tokens.
    #[serde(default)]
    pub token: Vec<TokenEntry>,
}

/// What a checked token grants.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grant {
    /// The token's name (empty when tokens are off).
    pub name: String,
    /// Labels every window sent under this grant must carry (empty: all).
    pub selector: Vec<(String, String)>,
    /// The agent the token speaks for (scope `agent`).
    pub agent_id: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer …`, or a token that is not in the file.
    #[error("missing or unknown bearer token (send `authorization: Bearer <token>`)")]
    Unauthenticated,
    /// A known token without the scope.
    #[error("token {name:?} lacks scope {scope:?}")]
    PermissionDenied {
        /// The token's name.
        name: String,
        /// The scope needed.
        scope: Scope,
    },
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            AuthError::PermissionDenied { .. } => tonic::Status::permission_denied(e.to_string()),
        }
    }
}

/// SHA-256 of a token, hex (what the token file stores).
pub fn digest_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Token entries by the SHA-256 of the token.
pub type TokenSet = HashMap<[u8; 32], TokenEntry>;

/// The token set in force (reloaded from the file) or "no tokens configured: all open".
pub struct Tokens {
    set: RwLock<Option<Arc<TokenSet>>>,
    counters: Arc<Counters>,
}

impl Tokens {
    /// Tokens off: every check passes with an empty grant.
    pub fn open(counters: Arc<Counters>) -> Arc<Tokens> {
        Arc::new(Tokens {
            set: RwLock::new(None),
            counters,
        })
    }

    /// The tokens of `cfg.file` (if set), and a task re-reading it until `stop`.
    /// Errors: the file cannot be read or parsed at start (names the file and the problem).
    pub fn start(
        cfg: &TokensConfig,
        counters: Arc<Counters>,
        stop: CancellationToken,
    ) -> Result<Arc<Tokens>> {
        let tokens = Tokens::open(counters);
        let Some(path) = cfg.file.clone() else {
            return Ok(tokens);
        };
        let set = load(&path, cfg.max_file_bytes)?;
        tracing::info!(file = %path.display(), tokens = set.len(), "bearer tokens loaded");
        tokens.replace(set);
        let (me, every, max) = (tokens.clone(), cfg.reload_interval, cfg.max_file_bytes);
        tokio::spawn(async move {
            let mut seen = stamp(&path);
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match load(&path, max) {
                    Ok(set) => {
                        tracing::info!(file = %path.display(), tokens = set.len(), "bearer tokens reloaded");
                        me.replace(set);
                    }
                    Err(e) => {
                        Counters::add(&me.counters.tokens_reload_failures, 1);
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "token file not reloaded; the previous tokens stay in force"
                        );
                    }
                }
            }
        });
        Ok(tokens)
    }

    fn replace(&self, set: TokenSet) {
        let mut w = self.set.write().unwrap_or_else(|p| p.into_inner());
        *w = Some(Arc::new(set));
    }

    /// True when a token file is configured (requests need tokens).
    pub fn enabled(&self) -> bool {
        self.set.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Checks an `authorization` header value for `scope`; counts refusals.
    pub fn check(&self, authorization: Option<&[u8]>, scope: Scope) -> Result<Grant, AuthError> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(set) = set else {
            return Ok(Grant::default());
        };
        let result = authorize(&set, authorization, scope);
        match &result {
            Err(AuthError::Unauthenticated) => {
                Counters::add(&self.counters.auth_unauthenticated, 1)
            }
            Err(AuthError::PermissionDenied { .. }) => {
                Counters::add(&self.counters.auth_permission_denied, 1)
            }
            Ok(_) => {}
        }
        result
    }

    /// The `/metrics` guard: scope `metrics`; 401 without a known token, 403 without the scope.
    pub fn metrics_auth(tokens: &Arc<Tokens>) -> fleetset_core::telemetry::MetricsAuth {
        let tokens = tokens.clone();
        Arc::new(move |header| {
            tokens
                .check(header, Scope::Metrics)
                .map(|_| ())
                .map_err(|e| match e {
                    AuthError::Unauthenticated => 401,
                    AuthError::PermissionDenied { .. } => 403,
                })
        })
    }

    /// [`Tokens::check`] on a gRPC request's metadata.
    pub fn check_grpc<T>(
        &self,
        request: &tonic::Request<T>,
        scope: Scope,
    ) -> Result<Grant, tonic::Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        Ok(self.check(header, scope)?)
    }
}

/// The grant of `authorization` in `set` for `scope`.
fn authorize(
    set: &TokenSet,
    authorization: Option<&[u8]>,
    scope: Scope,
) -> Result<Grant, AuthError> {
    let token = authorization
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| {
            let (kind, token) = h.trim().split_once(' ')?;
            kind.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(AuthError::Unauthenticated)?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let entry = set.get(&digest).ok_or(AuthError::Unauthenticated)?;
    if !entry
        .scopes
        .iter()
        .any(|s| *s == scope || *s == Scope::Admin)
    {
        return Err(AuthError::PermissionDenied {
            name: entry.name.clone(),
            scope,
        });
    }
    let admin = entry.scopes.contains(&Scope::Admin);
    Ok(Grant {
        name: entry.name.clone(),
        selector: match admin {
            true => Vec::new(),
            false => entry.selector.clone().into_iter().collect(),
        },
        agent_id: entry.agent_id.clone(),
    })
}

/// Size and mtime of `path` (None: unreadable), to notice changes.
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Reads and checks the token file. Errors name the file and the entry, never a digest.
pub fn load(path: &Path, max_bytes: u64) -> Result<TokenSet> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("token file {}", path.display()))?
        .len();
    if len > max_bytes {
        bail!(
            "token file {} is {len} bytes, over security.tokens.max_file_bytes = {max_bytes}",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    let file: TokenFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "token file {} is not valid: {}",
            path.display(),
            e.message()
        )
    })?;
    let mut set = HashMap::new();
    for (i, entry) in file.token.into_iter().enumerate() {
        let digest: [u8; 32] = hex::decode(&entry.sha256)
            .ok()
            .and_then(|d| d.try_into().ok())
            .with_context(|| {
                format!(
                    "token file {}: token #{} ({:?}): sha256 is not 64 hex digits",
                    path.display(),
                    i.saturating_add(1),
                    entry.name
                )
            })?;
        if entry.scopes.is_empty() {
            bail!(
                "token file {}: token #{} ({:?}) has no scopes",
                path.display(),
                i.saturating_add(1),
                entry.name
            );
        }
        set.insert(digest, entry);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: Vec<TokenEntry>) -> TokenSet {
        let text = toml::to_string(&TokenFile { token: entries }).unwrap();
        let dir = std::env::temp_dir().join(format!("fleetset-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        std::fs::write(&path, text).unwrap();
        let s = load(&path, 1 << 20).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        s
    }

    fn entry(token: &str, scopes: &[Scope], selector: &[(&str, &str)]) -> TokenEntry {
        TokenEntry {
            name: token.into(),
            sha256: digest_hex(token),
            scopes: scopes.to_vec(),
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            agent_id: None,
        }
    }

    #[test]
    fn scopes_selectors_and_refusals() {
        let s = set(vec![
            entry("fst_sub", &[Scope::Subscribe], &[("site", "eu-1")]),
            entry("fst_adm", &[Scope::Admin], &[("site", "eu-1")]),
        ]);
        let g = authorize(&s, Some(b"Bearer fst_sub"), Scope::Subscribe).unwrap();
        assert_eq!(g.selector, vec![("site".into(), "eu-1".into())]);
        assert!(matches!(
            authorize(&s, Some(b"Bearer fst_sub"), Scope::Otlp),
            Err(AuthError::PermissionDenied { .. })
        ));
        let g = authorize(&s, Some(b"bearer fst_adm"), Scope::Metrics).unwrap();
        assert!(g.selector.is_empty());
        for bad in [
            None,
            Some(&b"Bearer fst_nope"[..]),
            Some(b"fst_sub"),
            Some(b"Basic fst_sub"),
            Some(b"\xff"),
        ] {
            assert_eq!(
                authorize(&s, bad, Scope::Subscribe),
                Err(AuthError::Unauthenticated)
            );
        }
    }

    #[test]
    fn bad_files_are_named_without_material() {
        let dir = std::env::temp_dir().join(format!("fleetset-tokens-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\nname = \"x\"\nsha256 = \"abcd1234\"\nscopes = [\"otlp\"]\n",
        )
        .unwrap();
        let e = format!("{:#}", load(&path, 1 << 20).unwrap_err());
        assert!(e.contains("64 hex") && !e.contains("abcd1234"), "{e}");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        let e = format!("{:#}", load(&path, 10).unwrap_err());
        assert!(e.contains("max_file_bytes"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
