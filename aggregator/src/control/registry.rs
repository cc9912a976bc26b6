//! The promotion registry (seed 003's model, for agent configuration): every promotion is a
//! generation — body, hash, selector, rollout policy, who promoted it, note, time, outcome —
//! kept in an append-only history, with each agent's assigned generation. Persisted atomically
//! (`DATA_DIR/control/registry.json`: temporary file, fsync, rename, directory fsync; mode 0600) after every change, so a restart keeps the history, the
//! current generation and every rollout's progress.
//!
//! Generation 0 is "no remote configuration": the agent's local file alone.

use super::inventory::AgentRecord;
use anyhow::{anyhow, bail, Context, Result};
use fleetset_core::secret::replace_private;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a promotion was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `fleet config promote`.
    Promote,
    /// `fleet config rollback`: an earlier generation's body, to every matching agent at once.
    Rollback,
}

/// Where a generation's rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Canaries have it; the health gate is being watched.
    Canary,
    /// The gate passed; the rest of the selector gets it in batches.
    RollingOut,
    /// Every matching agent has it.
    Complete,
    /// The gate failed: every agent that got it went back to its previous generation.
    RolledBack,
    /// A later promotion or rollback replaced it before it completed.
    Superseded,
}

/// The rollout policy of a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Canaries: `N%` of the matching agents (at least one) or a count `N`.
    pub canary: String,
    /// How long every canary must stay healthy after applying it, ms.
    pub bake_ms: i64,
    /// Agents per batch after the gate: `N%` of the matching agents (at least one) or `N`.
    pub batch: String,
    /// A canary whose newest window is older than this is stalled (the gate fails), ms.
    pub stall_ms: i64,
}

/// One generation of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// 1, 2, …
    pub generation: u64,
    /// The configuration body (TOML; only keys that reload live).
    pub body: String,
    /// SHA-256 of `body`, hex (OpAMP `config_hash`).
    pub hash: String,
    /// Labels an agent must carry to get it (empty: every agent).
    pub selector: BTreeMap<String, String>,
    /// How it is rolled out.
    pub policy: Policy,
    /// Name of the token that promoted it (empty with tokens off).
    pub promoted_by: String,
    /// Why.
    pub note: String,
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
    /// Promote or rollback.
    pub kind: Kind,
    /// For a rollback: the generation whose body it restores.
    pub restores: Option<u64>,
    /// Where its rollout stands.
    pub outcome: Outcome,
    /// Why it was rolled back (or what superseded it).
    pub reason: String,
    /// When the outcome last changed, ms.
    pub outcome_ms: i64,
    /// Agents chosen as canaries.
    pub canaries: Vec<String>,
    /// Agents given it, with the generation each had before (for an automatic rollback).
    pub previous: BTreeMap<String, u64>,
    /// When every canary had applied it (the bake started), ms (0: not yet).
    pub baking_since_ms: i64,
    /// Rejected frames of each canary when it got the generation ("rejects not rising").
    pub rejects_at_start: BTreeMap<String, u64>,
}

/// What a promotion asks for (`fleet config promote`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The configuration body (TOML; only keys that reload live).
    pub body: String,
    /// Labels an agent must carry to get it (empty: every agent).
    pub selector: BTreeMap<String, String>,
    /// How it is rolled out.
    pub policy: Policy,
    /// Name of the token that promoted it (empty with tokens off).
    pub promoted_by: String,
    /// Why.
    pub note: String,
}

/// The registry file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    generations: Vec<Generation>,
    /// The generation each agent must run (absent: 0).
    assigned: BTreeMap<String, u64>,
}

/// The promotion registry.
pub struct Registry {
    file: RegistryFile,
    path: PathBuf,
    max_history: usize,
}

/// SHA-256 of a configuration body, hex.
pub fn body_hash(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// `N%` of `of` (at least 1) or the count `N`, at most `of`. Errors: neither form.
pub fn parse_share(spec: &str, of: usize) -> Result<usize> {
    let n = match spec.trim().strip_suffix('%') {
        Some(p) => {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| anyhow!("{spec:?}: expected N% or N"))?;
            if !(p > 0.0 && p <= 100.0) {
                bail!("{spec:?}: a percentage in (0, 100]");
            }
            ((of as f64) * p / 100.0).ceil() as usize
        }
        None => spec
            .trim()
            .parse()
            .map_err(|_| anyhow!("{spec:?}: expected N% or N"))?,
    };
    Ok(n.max(1).min(of))
}

/// The canary order: agents sorted by SHA-256 of their id (deterministic, spread across sites).
fn by_hash(ids: &mut [String]) {
    ids.sort_by_cached_key(|id| Sha256::digest(id.as_bytes()));
}

impl Registry {
    /// The registry persisted under `dir`. Errors: the file exists and cannot be read or parsed.
    pub fn open(dir: &Path, max_history: usize) -> Result<Registry> {
        let path = dir.join("registry.json");
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{}: not a promotion registry", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistryFile::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Registry {
            file,
            path,
            max_history,
        })
    }

    fn save(&mut self) -> Result<()> {
        let active = |g: &Generation| matches!(g.outcome, Outcome::Canary | Outcome::RollingOut);
        let assigned: std::collections::BTreeSet<u64> =
            self.file.assigned.values().copied().collect();
        while self.file.generations.len() > self.max_history {
            // Drop the oldest generation no agent runs and no rollout uses.
            let Some(i) = self
                .file
                .generations
                .iter()
                .position(|g| !active(g) && !assigned.contains(&g.generation))
            else {
                break;
            };
            self.file.generations.remove(i);
        }
        replace_private(&self.path, &serde_json::to_string_pretty(&self.file)?)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The history, oldest first.
    pub fn history(&self) -> &[Generation] {
        &self.file.generations
    }

    /// Generation `n`.
    pub fn generation(&self, n: u64) -> Option<&Generation> {
        self.file.generations.iter().find(|g| g.generation == n)
    }

    /// The generation `agent_id` must run (0: none) and its body and hash.
    pub fn target(&self, agent_id: &str) -> (u64, String, String) {
        let n = self.file.assigned.get(agent_id).copied().unwrap_or(0);
        match self.generation(n) {
            Some(g) => (n, g.body.clone(), g.hash.clone()),
            None => (0, String::new(), body_hash("")),
        }
    }

    /// The generation whose body hashes to `hash` that `agent_id` was given, if any (the
    /// newest), else the newest with that hash.
    pub fn generation_of_hash(&self, agent_id: &str, hash: &str) -> u64 {
        let mut with_hash = self
            .file
            .generations
            .iter()
            .rev()
            .filter(|g| g.hash == hash);
        let all: Vec<&Generation> = with_hash.by_ref().collect();
        all.iter()
            .find(|g| g.previous.contains_key(agent_id))
            .or(all.first())
            .map_or(0, |g| g.generation)
    }

    fn next_number(&self) -> u64 {
        self.file
            .generations
            .iter()
            .map(|g| g.generation)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Supersedes every rollout in progress (at `now_ms`, naming `by`).
    fn supersede_active(&mut self, by: u64, now_ms: i64) {
        for g in &mut self.file.generations {
            if matches!(g.outcome, Outcome::Canary | Outcome::RollingOut) {
                g.outcome = Outcome::Superseded;
                g.reason = format!("superseded by generation {by}");
                g.outcome_ms = now_ms;
            }
        }
    }

    /// Records a promotion `r` to the agents matching its selector (among `agents`) and
    /// assigns it to its canaries. Returns the generation. Errors: no agent matches, a bad
    /// share, or the registry cannot be written.
    pub fn promote(
        &mut self,
        r: Request,
        agents: &[AgentRecord],
        now_ms: i64,
    ) -> Result<Generation> {
        let (selector, policy) = (&r.selector, &r.policy);
        let mut ids: Vec<String> = agents
            .iter()
            .filter(|a| a.matches(selector) && !a.is_stale())
            .map(|a| a.agent_id.clone())
            .collect();
        if ids.is_empty() {
            bail!("no agent that is not stale matches the selector {selector:?}");
        }
        let canaries = parse_share(&policy.canary, ids.len()).context("--canary")?;
        parse_share(&policy.batch, ids.len()).context("--batch")?;
        by_hash(&mut ids);
        ids.truncate(canaries);
        self.record(r, Kind::Promote, None, ids.clone(), &ids, agents, now_ms)
    }

    /// Appends a new generation for `r` (superseding rollouts in progress), given at once to
    /// `give_to`; persists it.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        r: Request,
        kind: Kind,
        restores: Option<u64>,
        canaries: Vec<String>,
        give_to: &[String],
        agents: &[AgentRecord],
        now_ms: i64,
    ) -> Result<Generation> {
        let n = self.next_number();
        self.supersede_active(n, now_ms);
        let mut g = Generation {
            generation: n,
            hash: body_hash(&r.body),
            body: r.body,
            selector: r.selector,
            policy: r.policy,
            promoted_by: r.promoted_by,
            note: r.note,
            time_ms: now_ms,
            kind,
            restores,
            outcome: match kind {
                Kind::Promote => Outcome::Canary,
                Kind::Rollback => Outcome::Complete,
            },
            reason: String::new(),
            outcome_ms: now_ms,
            canaries,
            previous: BTreeMap::new(),
            baking_since_ms: 0,
            rejects_at_start: BTreeMap::new(),
        };
        for id in give_to {
            self.give(&mut g, id, agents);
        }
        self.file.generations.push(g.clone());
        self.save()?;
        Ok(g)
    }

    /// Assigns `g` to `agent_id`, remembering what it had.
    fn give(&mut self, g: &mut Generation, agent_id: &str, agents: &[AgentRecord]) {
        let had = self
            .file
            .assigned
            .insert(agent_id.to_string(), g.generation)
            .unwrap_or(0);
        g.previous.entry(agent_id.to_string()).or_insert(had);
        let rejects = agents
            .iter()
            .find(|a| a.agent_id == agent_id)
            .map_or(0, |a| a.rejects.values().sum());
        g.rejects_at_start.insert(agent_id.to_string(), rejects);
    }

    /// `fleet config rollback`: a new generation restoring generation `to` (default: the one
    /// before the newest promotion; 0: no remote configuration) to every agent matching its
    /// selector at once. Errors: no such generation, or the registry cannot be written.
    pub fn rollback(
        &mut self,
        to: Option<u64>,
        promoted_by: String,
        note: String,
        agents: &[AgentRecord],
        now_ms: i64,
    ) -> Result<Generation> {
        let to = match to {
            Some(n) => n,
            None => {
                let latest = self
                    .file
                    .generations
                    .iter()
                    .rev()
                    .find(|g| g.outcome != Outcome::RolledBack)
                    .ok_or_else(|| anyhow!("nothing to roll back: the history is empty"))?;
                self.file
                    .generations
                    .iter()
                    .rev()
                    .find(|g| {
                        g.generation < latest.generation
                            && g.hash != latest.hash
                            && g.outcome == Outcome::Complete
                    })
                    .map_or(0, |g| g.generation)
            }
        };
        let (body, selector) = match to {
            0 => (String::new(), BTreeMap::new()),
            n => {
                let g = self
                    .generation(n)
                    .ok_or_else(|| anyhow!("no generation {n} in the history"))?;
                (g.body.clone(), g.selector.clone())
            }
        };
        // Every agent matching `to`'s selector (with 0: every agent), all at once.
        let ids: Vec<String> = agents
            .iter()
            .filter(|a| a.matches(&selector))
            .map(|a| a.agent_id.clone())
            .collect();
        let r = Request {
            body,
            selector,
            policy: Policy {
                canary: "100%".into(),
                bake_ms: 0,
                batch: "100%".into(),
                stall_ms: i64::MAX,
            },
            promoted_by,
            note,
        };
        self.record(
            r,
            Kind::Rollback,
            Some(to),
            Vec::new(),
            &ids,
            agents,
            now_ms,
        )
    }

    /// Advances every rollout in progress and gives completed generations to matching agents
    /// that are not stale and have an older one (new or returning agents catch up); persists if
    /// anything changed.
    /// Returns the generations whose outcome changed.
    pub fn tick(&mut self, agents: &[AgentRecord], now_ms: i64) -> Result<Vec<Generation>> {
        let mut changed = Vec::new();
        let mut gens = std::mem::take(&mut self.file.generations);
        for g in gens
            .iter_mut()
            .filter(|g| matches!(g.outcome, Outcome::Canary | Outcome::RollingOut))
        {
            let before = g.outcome;
            let given = g.previous.len();
            self.advance(g, agents, now_ms);
            if g.outcome != before || g.previous.len() != given {
                changed.push(g.clone());
            }
        }
        // Catch-up: an agent that is back (or new) and matches a completed generation newer
        // than the one it has, unless a rollout in progress has it.
        for a in agents.iter().filter(|a| !a.is_stale()) {
            let current = self.file.assigned.get(&a.agent_id).copied().unwrap_or(0);
            let busy = gens.iter().any(|g| {
                g.generation == current
                    && matches!(g.outcome, Outcome::Canary | Outcome::RollingOut)
            });
            if busy {
                continue;
            }
            if let Some(g) = gens.iter_mut().rev().find(|g| {
                g.outcome == Outcome::Complete && g.generation > current && a.matches(&g.selector)
            }) {
                self.give(g, &a.agent_id, agents);
                changed.push(g.clone());
            }
        }
        self.file.generations = gens;
        if !changed.is_empty() {
            self.save()?;
        }
        Ok(changed)
    }

    /// One step of `g`'s rollout: fail it (rolling every agent that got it back), start or
    /// finish the bake, or give the next batch.
    fn advance(&mut self, g: &mut Generation, agents: &[AgentRecord], now_ms: i64) {
        let record = |id: &str| agents.iter().find(|a| a.agent_id == id);
        let given: Vec<String> = g.previous.keys().cloned().collect();
        let watched: &[String] = match g.outcome {
            Outcome::Canary => &g.canaries,
            _ => &given,
        };
        let mut all_applied = true;
        for id in watched {
            let Some(a) = record(id) else {
                all_applied = false;
                continue;
            };
            if let Some(why) = gate_failure(g, a, now_ms) {
                self.roll_back(g, format!("agent {id}: {why}"), now_ms);
                return;
            }
            all_applied &= a.config_hash == g.hash
                && a.remote_config_status == "APPLIED"
                && a.healthy != Some(false);
        }
        if !all_applied {
            return;
        }
        if g.outcome == Outcome::Canary {
            if g.baking_since_ms == 0 {
                g.baking_since_ms = now_ms;
            }
            if now_ms.saturating_sub(g.baking_since_ms) < g.policy.bake_ms {
                return;
            }
            g.outcome = Outcome::RollingOut;
            g.outcome_ms = now_ms;
        }
        // Agents that are stale now catch up when they return (see `tick`).
        let live = |a: &&AgentRecord| a.matches(&g.selector) && !a.is_stale();
        let mut rest: Vec<String> = agents
            .iter()
            .filter(live)
            .filter(|a| !g.previous.contains_key(&a.agent_id))
            .map(|a| a.agent_id.clone())
            .collect();
        if rest.is_empty() {
            g.outcome = Outcome::Complete;
            g.outcome_ms = now_ms;
            return;
        }
        let total = agents.iter().filter(live).count();
        let batch = parse_share(&g.policy.batch, total).unwrap_or(1);
        by_hash(&mut rest);
        for id in rest.into_iter().take(batch) {
            self.give(g, &id, agents);
        }
    }

    /// Every agent that got `g` goes back to the generation it had before.
    fn roll_back(&mut self, g: &mut Generation, reason: String, now_ms: i64) {
        for (id, had) in &g.previous {
            match had {
                0 => self.file.assigned.remove(id),
                n => self.file.assigned.insert(id.clone(), *n),
            };
        }
        g.outcome = Outcome::RolledBack;
        g.reason = format!("automatic rollback: {reason}");
        g.outcome_ms = now_ms;
    }

    /// Per-agent status counts of generation `n`: (given, applying, applied, failed, healthy).
    pub fn status_counts(&self, n: u64, agents: &[AgentRecord]) -> BTreeMap<&'static str, usize> {
        let mut c: BTreeMap<&'static str, usize> =
            ["assigned", "pending", "applied", "failed", "healthy"]
                .into_iter()
                .map(|k| (k, 0))
                .collect();
        let Some(g) = self.generation(n) else {
            return c;
        };
        for a in agents
            .iter()
            .filter(|a| self.file.assigned.get(&a.agent_id) == Some(&n))
        {
            *c.entry("assigned").or_default() += 1;
            let has = a.config_hash == g.hash;
            let key = match (has, a.remote_config_status.as_str()) {
                (true, "APPLIED") => "applied",
                (true, "FAILED") => "failed",
                _ => "pending",
            };
            *c.entry(key).or_default() += 1;
            if has && a.remote_config_status == "APPLIED" && a.healthy == Some(true) {
                *c.entry("healthy").or_default() += 1;
            }
        }
        c
    }
}

/// Why `a` fails `g`'s health gate, if it does: it reported FAILED for this configuration,
/// went stale, stopped delivering windows, or its rejects rose since it got the generation.
fn gate_failure(g: &Generation, a: &AgentRecord, now_ms: i64) -> Option<String> {
    if a.config_hash == g.hash && a.remote_config_status == "FAILED" {
        return Some(format!("reported FAILED: {}", a.remote_config_error));
    }
    if a.is_stale() {
        return Some("went stale (no report or frame)".into());
    }
    let since = g.previous.contains_key(&a.agent_id);
    if since
        && a.config_hash == g.hash
        && a.last_window_start_ms > 0
        && now_ms.saturating_sub(a.last_frame_ms) > g.policy.stall_ms
    {
        return Some(format!(
            "no window for {} ms",
            now_ms.saturating_sub(a.last_frame_ms)
        ));
    }
    let start = g.rejects_at_start.get(&a.agent_id).copied().unwrap_or(0);
    let now: u64 = a.rejects.values().sum();
    (now > start).then(|| {
        format!(
            "{} frames rejected since it got the generation",
            now - start
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, site: &str) -> AgentRecord {
        let mut a = AgentRecord::default();
        a.agent_id = id.into();
        a.labels = BTreeMap::from([("site".to_string(), site.to_string())]);
        a.state = "healthy".into();
        a.healthy = Some(true);
        a
    }

    fn policy(canary: &str, bake_ms: i64) -> Policy {
        Policy {
            canary: canary.into(),
            bake_ms,
            batch: "50%".into(),
            stall_ms: 10_000,
        }
    }

    fn req(
        body: String,
        selector: BTreeMap<String, String>,
        policy: Policy,
        by: String,
    ) -> Request {
        Request {
            body,
            selector,
            policy,
            promoted_by: by,
            note: "n".into(),
        }
    }

    fn site(s: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("site".to_string(), s.to_string())])
    }

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("fleetset-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Every agent given generation `g` reports it applied (and delivers a window at `now`).
    fn apply(reg: &Registry, agents: &mut [AgentRecord], now: i64) {
        for a in agents.iter_mut() {
            let (_, _, hash) = reg.target(&a.agent_id);
            a.config_hash = hash;
            a.remote_config_status = "APPLIED".into();
            a.last_frame_ms = now;
            a.last_window_start_ms = now;
        }
    }

    #[test]
    fn canaries_first_then_batches_after_the_bake_and_a_restart_keeps_it_all() {
        let d = dir("rollout");
        let mut reg = Registry::open(&d, 100).unwrap();
        let mut agents: Vec<AgentRecord> = (0..10)
            .map(|i| agent(&format!("a{i}"), "a"))
            .chain((0..5).map(|i| agent(&format!("b{i}"), "b")))
            .collect();
        let g = reg
            .promote(
                req(
                    "x = 1\n".into(),
                    site("a"),
                    policy("20%", 1_000),
                    "ops".into(),
                ),
                &agents,
                0,
            )
            .unwrap();
        assert_eq!(g.canaries.len(), 2);
        assert!(g.canaries.iter().all(|c| c.starts_with('a')));
        // Deterministic: the same agents would be chosen again.
        let mut ids: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
        by_hash(&mut ids);
        assert_eq!(g.canaries, ids[..2]);
        // Not applied yet: nothing moves.
        reg.tick(&agents, 100).unwrap();
        assert_eq!(reg.status_counts(1, &agents)["assigned"], 2);
        apply(&reg, &mut agents, 200);
        reg.tick(&agents, 200).unwrap(); // the bake starts
        reg.tick(&agents, 900).unwrap();
        assert_eq!(reg.status_counts(1, &agents)["assigned"], 2, "still baking");
        reg.tick(&agents, 1_300).unwrap(); // gate passed: first batch (50 % of 10)
        assert_eq!(reg.generation(1).unwrap().outcome, Outcome::RollingOut);
        assert_eq!(reg.status_counts(1, &agents)["assigned"], 7);
        apply(&reg, &mut agents, 1_400);
        reg.tick(&agents, 1_400).unwrap();
        assert_eq!(reg.status_counts(1, &agents)["assigned"], 10);
        apply(&reg, &mut agents, 1_500);
        reg.tick(&agents, 1_500).unwrap();
        assert_eq!(reg.generation(1).unwrap().outcome, Outcome::Complete);
        assert_eq!(reg.status_counts(1, &agents)["applied"], 10);
        assert_eq!(reg.target("b0").0, 0, "outside the selector");

        let reg = Registry::open(&d, 100).unwrap();
        assert_eq!(reg.history().len(), 1);
        assert_eq!(reg.history()[0].promoted_by, "ops");
        assert_eq!(reg.target("a3").0, 1);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_gate_rolls_back_on_failed_stale_stalled_or_rising_rejects() {
        type Break = fn(&mut AgentRecord);
        let cases: [(&str, Break); 4] = [
            ("reported FAILED", |a| {
                a.remote_config_status = "FAILED".into()
            }),
            ("went stale", |a| a.state = "stale".into()),
            ("no window for", |a| a.last_frame_ms = 0),
            ("frames rejected", |a| {
                a.rejects.insert("BAD_CHECKSUM".into(), 3);
            }),
        ];
        for (why, breaks) in cases {
            let d = dir("gate");
            let mut reg = Registry::open(&d, 100).unwrap();
            let mut agents: Vec<AgentRecord> =
                (0..4).map(|i| agent(&format!("a{i}"), "a")).collect();
            reg.promote(
                req(
                    "x = 1\n".into(),
                    site("a"),
                    policy("100%", 0),
                    String::new(),
                ),
                &agents,
                0,
            )
            .unwrap();
            apply(&reg, &mut agents, 0);
            reg.tick(&agents, 0).unwrap();
            assert_eq!(reg.generation(1).unwrap().outcome, Outcome::Complete);
            let g2 = reg
                .promote(
                    req(
                        "x = 2\n".into(),
                        site("a"),
                        policy("1", 60_000),
                        String::new(),
                    ),
                    &agents,
                    1_000,
                )
                .unwrap();
            let canary = g2.canaries[0].clone();
            apply(&reg, &mut agents, 20_000);
            let c = agents.iter_mut().find(|a| a.agent_id == canary).unwrap();
            breaks(c);
            reg.tick(&agents, 20_000).unwrap();
            let g = reg.generation(2).unwrap();
            assert_eq!(g.outcome, Outcome::RolledBack, "{why}");
            assert!(
                g.reason.contains(why) && g.reason.contains(&canary),
                "{why}: {}",
                g.reason
            );
            assert_eq!(g.previous.len(), 1, "the rest never got it");
            assert!(
                agents.iter().all(|a| reg.target(&a.agent_id).0 == 1),
                "{why}"
            );
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn stale_agents_are_skipped_then_catch_up_and_rollback_restores_a_generation() {
        let d = dir("catch-up");
        let mut reg = Registry::open(&d, 3).unwrap();
        let mut agents: Vec<AgentRecord> = (0..3).map(|i| agent(&format!("a{i}"), "a")).collect();
        agents[2].state = "stale".into();
        reg.promote(
            req("x = 1\n".into(), site("a"), policy("1", 0), String::new()),
            &agents,
            0,
        )
        .unwrap();
        for now in [0, 1, 2, 3] {
            apply(&reg, &mut agents[..2], now);
            reg.tick(&agents, now).unwrap();
        }
        assert_eq!(reg.generation(1).unwrap().outcome, Outcome::Complete);
        assert_eq!(reg.target("a2").0, 0, "offline during the rollout");
        agents[2].state = "healthy".into();
        reg.tick(&agents, 10).unwrap();
        assert_eq!(reg.target("a2").0, 1, "caught up when it came back");
        apply(&reg, &mut agents, 10);

        reg.promote(
            req(
                "x = 2\n".into(),
                site("a"),
                policy("100%", 0),
                String::new(),
            ),
            &agents,
            20,
        )
        .unwrap();
        apply(&reg, &mut agents, 20);
        reg.tick(&agents, 20).unwrap();
        reg.tick(&agents, 21).unwrap();
        assert_eq!(reg.generation(2).unwrap().outcome, Outcome::Complete);
        // Default rollback: the completed generation before the newest one.
        let r = reg
            .rollback(None, "ops".into(), "back".into(), &agents, 30)
            .unwrap();
        assert_eq!(r.restores, Some(1));
        assert!(agents
            .iter()
            .all(|a| reg.target(&a.agent_id).2 == body_hash("x = 1\n")));
        let r = reg
            .rollback(Some(0), "ops".into(), "local".into(), &agents, 40)
            .unwrap();
        assert_eq!(r.hash, body_hash(""));
        assert!(reg
            .rollback(Some(99), "ops".into(), "n".into(), &agents, 50)
            .is_err());
        // max_history 3: the oldest generation no agent runs was dropped.
        assert_eq!(reg.history().len(), 3);
        assert_eq!(reg.history()[0].generation, 2);
        std::fs::remove_dir_all(d).unwrap();
    }
}
