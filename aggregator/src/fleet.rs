//! `fleetset-aggregator fleet`: the control plane's admin commands, over its HTTP JSON API
//! (`[control] listen`, routes in [`crate::control`]); they need a token with scope `admin`
//! when the aggregator has `security.tokens.file`.
//!
//! - `fleet agents [--selector site=eu-1] [--format table|json]`: the inventory;
//! - `fleet config promote FILE --selector … --canary 5% --bake 10m --note "…"`: a new
//!   generation, rolled out to canaries first, then in batches, behind the health gate;
//! - `fleet config status [GEN]`, `fleet config history`: the promotion registry;
//! - `fleet config rollback [--to GEN] --note "…"`: an earlier generation to every agent at once.

use crate::client::ClientFlags;
use crate::control::admin::{parse_selector, GenerationStatus, PromoteRequest, RollbackRequest};
use crate::control::inventory::AgentRecord;
use crate::control::registry::{Generation, Policy};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fleetset_core::http::{ClientTls, HttpClient};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `fleetset-aggregator fleet`.
#[derive(Debug, Args)]
pub struct FleetFlags {
    /// The aggregator's control-plane endpoint (`control.listen`): `http://host:port`, or
    /// `https://host:port` with TLS.
    #[arg(long, default_value = "http://127.0.0.1:4320", global = true)]
    pub endpoint: String,
    /// TLS and the token (scope `admin`).
    #[command(flatten)]
    pub client: ClientFlags,
    /// Give up on an answer after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: FleetCommand,
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for programs.
    Json,
}

/// `fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// The agents: id, version, state, labels, last seen, last window, frames/s, configuration
    /// generation and hash, remote configuration status, spool, drops, rejects.
    Agents {
        /// Only agents carrying these labels: `key=value[,key=value…]`.
        #[arg(long, default_value = "")]
        selector: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Agent configuration: promote, status, history, rollback.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `fleet config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Promote FILE (agent TOML, keys that reload live) as a new generation.
    Promote {
        /// The configuration file.
        file: PathBuf,
        /// Agents carrying these labels get it: `key=value[,key=value…]` (default: every agent).
        #[arg(long, default_value = "")]
        selector: String,
        /// Canaries: `N%` of the selected agents (at least one) or a count `N`.
        #[arg(long, default_value = "10%")]
        canary: String,
        /// How long every canary must stay healthy and keep sending windows before the rest
        /// get it (e.g. 30s, 10m).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        bake: Duration,
        /// Agents per batch after the gate: `N%` of the selected agents or a count `N`.
        #[arg(long, default_value = "25%")]
        batch: String,
        /// A canary whose newest window is older than this has stalled: the gate fails.
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        stall: Duration,
        /// Why (kept in the history).
        #[arg(long)]
        note: String,
    },
    /// One generation's rollout (default: the newest): pending / applied / failed / healthy.
    Status {
        /// The generation.
        generation: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Every generation: who promoted it, when, why, and its outcome.
    History {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Restore an earlier generation on every agent it selects, at once.
    Rollback {
        /// The generation to restore (default: the last complete one before the newest; 0: the
        /// agents' local files alone).
        #[arg(long)]
        to: Option<u64>,
        /// Why (kept in the history).
        #[arg(long)]
        note: String,
    },
}

/// A connection to the control plane's admin API.
struct Admin {
    http: HttpClient,
    endpoint: String,
    authorization: Option<String>,
}

impl Admin {
    fn new(flags: &FleetFlags) -> Result<Admin> {
        flags.client.check_scheme(&flags.endpoint)?;
        let c = &flags.client;
        let tls = match &c.ca_file {
            Some(ca) => Some(ClientTls::load(
                ca,
                c.cert_file.as_deref().zip(c.key_file.as_deref()),
                c.server_name.clone(),
            )?),
            None if flags.endpoint.starts_with("https://") => {
                bail!("an https:// --endpoint needs --ca-file")
            }
            None => None,
        };
        Ok(Admin {
            http: HttpClient {
                tls,
                timeout: flags.timeout,
                max_response_bytes: 256 << 20,
            },
            endpoint: flags.endpoint.trim_end_matches('/').to_string(),
            authorization: c.token()?.map(|t| format!("Bearer {t}")),
        })
    }

    /// `method path` with a JSON body; the answer's JSON. Errors: no answer, or an error status
    /// with the server's `error` text (401/403 explained).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.endpoint);
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &self.authorization {
            headers.push(("authorization", a.as_str()));
        }
        let r = self
            .http
            .request(method, &url, &headers, body.unwrap_or_default())
            .await?;
        if r.status != 200 {
            let why = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
            let hint = match r.status {
                401 => " — pass a token with scope `admin` (--token-file or FLEETSET_TOKEN)",
                403 => " — the token needs scope `admin`",
                _ => "",
            };
            bail!("{method} {url}: HTTP {}: {why}{hint}", r.status);
        }
        serde_json::from_slice(&r.body)
            .with_context(|| format!("{method} {url}: not the API's JSON"))
    }
}

/// Runs a `fleet` command, printing its answer.
pub async fn run(flags: FleetFlags) -> Result<()> {
    let admin = Admin::new(&flags)?;
    match flags.command {
        FleetCommand::Agents { selector, format } => {
            parse_selector(&selector).map_err(|e| anyhow!("--selector: {e}"))?;
            let q = url_query("selector", &selector);
            let agents: Vec<AgentRecord> = admin
                .call("GET", &format!("/v1/fleet/agents{q}"), None)
                .await?;
            match format {
                Format::Json => print_json(&agents)?,
                Format::Table => print_agents(&agents),
            }
        }
        FleetCommand::Config(ConfigCommand::Promote {
            file,
            selector,
            canary,
            bake,
            batch,
            stall,
            note,
        }) => {
            let body = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            toml::from_str::<toml::Table>(&body)
                .map_err(|e| anyhow!("{}: not TOML: {}", file.display(), e.message()))?;
            let selector = parse_selector(&selector).map_err(|e| anyhow!("--selector: {e}"))?;
            let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let req = PromoteRequest {
                body,
                selector,
                policy: Policy {
                    canary,
                    bake_ms: ms(bake),
                    batch,
                    stall_ms: ms(stall),
                },
                note,
            };
            let g: Generation = admin
                .call(
                    "POST",
                    "/v1/fleet/config/promote",
                    Some(serde_json::to_vec(&req)?),
                )
                .await?;
            println!(
                "generation {} promoted (hash {}): {} canaries: {}",
                g.generation,
                short(&g.hash),
                g.canaries.len(),
                g.canaries.join(", ")
            );
        }
        FleetCommand::Config(ConfigCommand::Status { generation, format }) => {
            let q = generation.map_or(String::new(), |n| format!("?generation={n}"));
            let s: GenerationStatus = admin
                .call("GET", &format!("/v1/fleet/config/status{q}"), None)
                .await?;
            match format {
                Format::Json => print_json(&s)?,
                Format::Table => {
                    print_history(std::slice::from_ref(&s.generation));
                    let counts: Vec<String> =
                        s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    println!("\n{}", counts.join(", "));
                }
            }
        }
        FleetCommand::Config(ConfigCommand::History { format }) => {
            let h: Vec<Generation> = admin.call("GET", "/v1/fleet/config/history", None).await?;
            match format {
                Format::Json => print_json(&h)?,
                Format::Table => print_history(&h),
            }
        }
        FleetCommand::Config(ConfigCommand::Rollback { to, note }) => {
            let req = RollbackRequest { to, note };
            let g: Generation = admin
                .call(
                    "POST",
                    "/v1/fleet/config/rollback",
                    Some(serde_json::to_vec(&req)?),
                )
                .await?;
            println!(
                "generation {} restores generation {} (hash {})",
                g.generation,
                g.restores.unwrap_or(0),
                short(&g.hash)
            );
        }
    }
    Ok(())
}

/// `?key=value`, percent-encoded (empty when `value` is).
fn url_query(key: &str, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    let encoded: String = value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("?{key}={encoded}")
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The first 12 hex digits of a hash.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A time in ms as RFC 3339 seconds, `-` for 0.
fn time(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn pairs<V: std::fmt::Display>(m: &BTreeMap<String, V>) -> String {
    let v: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// Prints `rows` under `headers`, columns padded to their widest cell.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

fn print_agents(agents: &[AgentRecord]) {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.agent_id.clone(),
                a.version.clone(),
                a.state.clone(),
                pairs(&a.labels),
                time(a.first_seen_ms),
                time(a.last_seen_ms),
                time(a.last_window_start_ms),
                format!("{:.2}", a.frames_per_second),
                a.config_generation.to_string(),
                short(&a.config_hash).to_string(),
                a.remote_config_status.clone(),
                a.spool_frames.to_string(),
                a.spool_dropped_frames.to_string(),
                pairs(&a.rejects),
            ]
        })
        .collect();
    print_table(
        &[
            "AGENT",
            "VERSION",
            "STATE",
            "LABELS",
            "FIRST SEEN",
            "LAST SEEN",
            "LAST WINDOW",
            "FRAMES/S",
            "GEN",
            "HASH",
            "REMOTE",
            "SPOOL",
            "DROPS",
            "REJECTS",
        ],
        &rows,
    );
}

fn print_history(h: &[Generation]) {
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|g| {
            let kind = match g.restores {
                Some(n) => format!("rollback to {n}"),
                None => "promote".into(),
            };
            vec![
                g.generation.to_string(),
                time(g.time_ms),
                kind,
                short(&g.hash).to_string(),
                pairs(&g.selector),
                if g.promoted_by.is_empty() {
                    "-".into()
                } else {
                    g.promoted_by.clone()
                },
                serde_json::to_value(g.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                g.reason.clone(),
                g.note.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "GEN", "TIME", "KIND", "HASH", "SELECTOR", "BY", "OUTCOME", "REASON", "NOTE",
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_percent_encoded_in_the_query() {
        assert_eq!(url_query("selector", ""), "");
        assert_eq!(
            url_query("selector", "site=eu-1,rack=r 2"),
            "?selector=site%3Deu-1%2Crack%3Dr%202"
        );
    }
}
