//! The inventory: every agent the control plane knows, from its OpAMP reports (description,
//! health, configuration, spool) and its frames (last window, frames per second, rejects).
//! Kept in memory, bounded by `control.max_agents`; first-seen times and labels are persisted
//! (`DATA_DIR/control/agents.json`, written atomically) so a restart keeps them.

use anyhow::{Context, Result};
use fleetset_core::secret::replace_private;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One agent in the inventory (what `fleet agents` shows; JSON field names are the API's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentRecord {
    /// The agent id.
    pub agent_id: String,
    /// The agent's version (OpAMP `service.version`).
    pub version: String,
    /// The agent's labels (OpAMP non-identifying attributes `fleetset.label.<key>`, or the
    /// labels of its windows).
    pub labels: BTreeMap<String, String>,
    /// First time anything was heard from it, ms since the Unix epoch.
    pub first_seen_ms: i64,
    /// Last time anything was heard from it, ms.
    pub last_seen_ms: i64,
    /// Last OpAMP report, ms (0: never).
    pub last_report_ms: i64,
    /// Start of the newest window received, ms (0: none).
    pub last_window_start_ms: i64,
    /// When its last frame arrived, ms (0: none).
    pub last_frame_ms: i64,
    /// Frames received per second over the last full minute (within the first: so far).
    pub frames_per_second: f64,
    /// Fleet configuration generation it applied (0: its local file only).
    pub config_generation: u64,
    /// SHA-256 of the remote configuration it last reported, hex (empty: none).
    pub config_hash: String,
    /// SHA-256 of its effective configuration (TOML), hex.
    pub effective_config_hash: String,
    /// The remote configuration's status: UNSET, APPLYING, APPLIED or FAILED.
    pub remote_config_status: String,
    /// Why the remote configuration failed.
    pub remote_config_error: String,
    /// Health it reported (None: never reported).
    pub healthy: Option<bool>,
    /// Its last health error.
    pub last_error: String,
    /// Frames in its spool, and frames it dropped, as it reported.
    pub spool_frames: u64,
    /// See `spool_frames`.
    pub spool_dropped_frames: u64,
    /// Its frames rejected, by reject reason name.
    pub rejects: BTreeMap<String, u64>,
    /// healthy, unhealthy, stale or unknown (computed when listed).
    pub state: String,
    /// The OpAMP instance uid it reports with, hex.
    pub instance_uid: String,
    /// Frames counted in the current minute, and the minute's start (ms).
    #[serde(skip)]
    minute: (i64, u64),
    /// Frames of the minute before `minute`, if it was the one just before.
    #[serde(skip)]
    previous_minute: Option<u64>,
}

impl AgentRecord {
    /// True when every `selector` label is on the agent.
    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    /// Not heard from for `control.stale_after` (as of the listing that computed `state`).
    pub fn is_stale(&self) -> bool {
        self.state == "stale"
    }
}

/// What is persisted of an agent.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    agent_id: String,
    first_seen_ms: i64,
    labels: BTreeMap<String, String>,
    version: String,
}

/// Why an agent could not be added.
#[derive(Debug, thiserror::Error)]
#[error("the inventory holds control.max_agents = {0} agents")]
pub struct Full(pub usize);

/// The inventory. All methods are short critical sections on one mutex.
pub struct Inventory {
    agents: Mutex<HashMap<String, AgentRecord>>,
    max_agents: usize,
    path: PathBuf,
}

impl Inventory {
    /// The inventory persisted under `dir` (`agents.json`), at most `max_agents` agents.
    /// Errors: the file exists and cannot be read or parsed (named).
    pub fn open(dir: &Path, max_agents: usize) -> Result<Inventory> {
        let path = dir.join("agents.json");
        let mut agents = HashMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let saved: Vec<Persisted> = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an agent list", path.display()))?;
            for p in saved.into_iter().take(max_agents) {
                let record = AgentRecord {
                    agent_id: p.agent_id.clone(),
                    first_seen_ms: p.first_seen_ms,
                    last_seen_ms: p.first_seen_ms,
                    labels: p.labels,
                    version: p.version,
                    ..AgentRecord::default()
                };
                agents.insert(p.agent_id, record);
            }
        }
        Ok(Inventory {
            agents: Mutex::new(agents),
            max_agents,
            path,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentRecord>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the record of `agent_id` (created, first seen now, if new), heard from at
    /// `now_ms`. Errors: a new agent while the inventory is full.
    pub fn update<R>(
        &self,
        agent_id: &str,
        now_ms: i64,
        f: impl FnOnce(&mut AgentRecord) -> R,
    ) -> Result<R, Full> {
        let mut agents = self.lock();
        if !agents.contains_key(agent_id) && agents.len() >= self.max_agents {
            return Err(Full(self.max_agents));
        }
        let r = agents
            .entry(agent_id.to_string())
            .or_insert_with(|| AgentRecord {
                agent_id: agent_id.to_string(),
                first_seen_ms: now_ms,
                ..AgentRecord::default()
            });
        r.last_seen_ms = r.last_seen_ms.max(now_ms);
        Ok(f(r))
    }

    /// Records a verified frame of `agent_id` for the window starting at `window_start_ms`,
    /// carrying `labels`.
    pub fn observe_frame(
        &self,
        agent_id: &str,
        window_start_ms: i64,
        labels: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<(), Full> {
        self.update(agent_id, now_ms, |r| {
            r.last_window_start_ms = r.last_window_start_ms.max(window_start_ms);
            r.last_frame_ms = now_ms;
            if r.last_report_ms == 0 && r.labels != *labels {
                r.labels = labels.clone();
            }
            count_frame(r, now_ms);
        })
    }

    /// Records a rejected frame of (valid) `agent_id` for `reason`.
    pub fn observe_reject(&self, agent_id: &str, reason: &str, now_ms: i64) -> Result<(), Full> {
        self.update(agent_id, now_ms, |r| {
            let n = r.rejects.entry(reason.to_string()).or_insert(0);
            *n = n.saturating_add(1);
        })
    }

    /// Every agent matching `selector`, sorted by id, with `state` computed: stale when not
    /// heard from for `stale_after_ms`.
    pub fn list(
        &self,
        selector: &BTreeMap<String, String>,
        now_ms: i64,
        stale_after_ms: i64,
    ) -> Vec<AgentRecord> {
        let agents = self.lock();
        let mut out: Vec<AgentRecord> = agents
            .values()
            .filter(|r| r.matches(selector))
            .cloned()
            .map(|mut r| {
                r.state = state(&r, now_ms, stale_after_ms).to_string();
                r.frames_per_second = rate(&r, now_ms);
                r
            })
            .collect();
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        out
    }

    /// One agent, with `state` computed.
    pub fn get(&self, agent_id: &str, now_ms: i64, stale_after_ms: i64) -> Option<AgentRecord> {
        let agents = self.lock();
        agents.get(agent_id).cloned().map(|mut r| {
            r.state = state(&r, now_ms, stale_after_ms).to_string();
            r.frames_per_second = rate(&r, now_ms);
            r
        })
    }

    /// Writes first-seen times, labels and versions atomically. Errors name the file.
    pub fn persist(&self) -> Result<()> {
        let saved: Vec<Persisted> = {
            let agents = self.lock();
            let mut v: Vec<Persisted> = agents
                .values()
                .map(|r| Persisted {
                    agent_id: r.agent_id.clone(),
                    first_seen_ms: r.first_seen_ms,
                    labels: r.labels.clone(),
                    version: r.version.clone(),
                })
                .collect();
            v.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
            v
        };
        replace_private(&self.path, &serde_json::to_string(&saved)?)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Counts one frame in the agent's per-minute counts.
fn count_frame(r: &mut AgentRecord, now_ms: i64) {
    let minute = now_ms.div_euclid(60_000).saturating_mul(60_000);
    if minute == r.minute.0 {
        r.minute.1 = r.minute.1.saturating_add(1);
    } else if minute > r.minute.0 {
        r.previous_minute = (minute.saturating_sub(r.minute.0) == 60_000).then_some(r.minute.1);
        r.minute = (minute, 1);
    }
}

/// Frames per second: over the last full minute, or within the first minute so far.
fn rate(r: &AgentRecord, now_ms: i64) -> f64 {
    let minute = now_ms.div_euclid(60_000).saturating_mul(60_000);
    if r.minute.0 == minute {
        match r.previous_minute {
            Some(n) => n as f64 / 60.0,
            None => r.minute.1 as f64 / (now_ms.saturating_sub(minute).max(1_000) as f64 / 1e3),
        }
    } else if r.minute.0 == minute.saturating_sub(60_000) {
        r.minute.1 as f64 / 60.0
    } else {
        0.0
    }
}

/// healthy | unhealthy | stale | unknown.
fn state(r: &AgentRecord, now_ms: i64, stale_after_ms: i64) -> &'static str {
    if now_ms.saturating_sub(r.last_seen_ms) > stale_after_ms {
        return "stale";
    }
    match r.healthy {
        Some(true) => "healthy",
        Some(false) => "unhealthy",
        None => "unknown",
    }
}
