//! The remote configuration's life on the agent: the last known good one, the one on trial,
//! and the ones that failed here, persisted in the state directory ([`STATE_FILE`], replaced
//! atomically) so that a bad configuration — or a crash loop after one — falls back by itself.
//!
//! - An offered configuration that does not validate over the local file is refused (FAILED,
//!   with the validation error) and the running one stays.
//! - One that validates is applied (at the next window boundary) and goes on **trial**. It
//!   becomes the **last known good** after the agent has run it for `control.confirm_after`.
//! - An agent that stops uncleanly (crash, `kill -9`, OOM) while a configuration is on trial
//!   starts again on the last known good one (or its local file alone) and reports the trial
//!   configuration FAILED. A clean stop (SIGTERM) keeps the trial going at the next start.
//! - A configuration that failed here is not applied again on this agent (at most
//!   [`MAX_FAILED`] are remembered): promote a changed body instead.
//!
//! Hashes are the server's `config_hash` (OpAMP `AgentRemoteConfig`), hex.

use crate::state::StateDir;
use anyhow::{Context, Result};
use fleetset_core::config::Remote;
use serde::{Deserialize, Serialize};

/// The state file in `--state-dir`.
pub const STATE_FILE: &str = "remote_config.json";
/// Failed configurations remembered (the oldest are forgotten).
pub const MAX_FAILED: usize = 16;

/// A remote configuration: the server's hash (hex) and the TOML body (empty: none, the local
/// file alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The server's `config_hash`, hex.
    pub hash: String,
    /// TOML, live keys only.
    pub body: String,
}

impl Body {
    /// The layer for `ConfigArgs::remote` (`None` for an empty body).
    pub fn layer(&self) -> Option<Remote> {
        (!self.body.trim().is_empty()).then(|| Remote {
            toml: self.body.clone(),
            name: format!("config_hash {}", short(&self.hash)),
        })
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The configuration on trial.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trial {
    #[serde(flatten)]
    config: Body,
    /// When it was applied (this run), ms since the Unix epoch.
    applied_ms: i64,
    /// The agent stopped cleanly while it ran.
    clean_exit: bool,
}

/// A configuration that failed on this agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failed {
    hash: String,
    error: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    good: Option<Body>,
    trial: Option<Trial>,
    failed: Vec<Failed>,
}

/// OpAMP `RemoteConfigStatuses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No remote configuration received.
    Unset,
    /// Running it.
    Applied,
    /// Checked; it applies at the next window boundary.
    Applying,
    /// Refused or fallen back from.
    Failed,
}

/// What the agent reports as `remote_config_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The hash (hex) of the configuration it is about.
    pub hash: String,
    /// Where it stands.
    pub phase: Phase,
    /// Why it failed (empty otherwise).
    pub error: String,
}

/// The remote configuration state of one agent.
pub struct RemoteState {
    state: StateDir,
    file: StateFile,
    status: Status,
}

impl RemoteState {
    /// Reads [`STATE_FILE`] at start and decides what runs: a trial the agent did not stop
    /// cleanly from is failed (returned `true`: a fallback) in favour of the last known good.
    /// A state file that does not parse is set aside as `remote_config.json.corrupt` (the
    /// agent starts on its local file). Errors: the state directory cannot be written.
    pub fn open(state: StateDir, now_ms: i64) -> Result<(RemoteState, bool)> {
        let path = state.path(STATE_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e,
                    "remote configuration state unreadable; starting on the local file");
                let _ = std::fs::rename(&path, state.path("remote_config.json.corrupt"));
                StateFile::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut s = RemoteState {
            state,
            file,
            status: Status {
                hash: String::new(),
                phase: Phase::Unset,
                error: String::new(),
            },
        };
        let mut fell_back = false;
        match s.file.trial.take() {
            Some(t) if !t.clean_exit => {
                fell_back = true;
                s.fail(
                    &t.config.hash,
                    "the agent stopped uncleanly (crash, kill, OOM) within control.confirm_after \
                     of applying it; running the last known good configuration",
                );
            }
            Some(mut t) => {
                t.clean_exit = false;
                t.applied_ms = now_ms;
                s.file.trial = Some(t);
            }
            None => {}
        }
        if let (false, Some(running)) = (fell_back, s.running().cloned()) {
            s.status = Status {
                hash: running.hash,
                phase: Phase::Applied,
                error: String::new(),
            };
        }
        s.save()?;
        Ok((s, fell_back))
    }

    fn save(&self) -> Result<()> {
        self.state
            .write(STATE_FILE, &serde_json::to_string_pretty(&self.file)?)
    }

    /// The configuration running now: the trial, else the last known good.
    pub fn running(&self) -> Option<&Body> {
        self.file
            .trial
            .as_ref()
            .map(|t| &t.config)
            .or(self.file.good.as_ref())
    }

    /// The status to report.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Why the configuration with `hash` failed here before, if it did.
    pub fn failed_before(&self, hash: &str) -> Option<&str> {
        self.file
            .failed
            .iter()
            .find(|f| f.hash == hash)
            .map(|f| f.error.as_str())
    }

    /// Records `hash` as failed with `error` (status FAILED); the running configuration stays.
    /// A failing trial or last known good is dropped (the next one down runs).
    pub fn fail(&mut self, hash: &str, error: &str) {
        self.file.failed.retain(|f| f.hash != hash);
        self.file.failed.push(Failed {
            hash: hash.to_string(),
            error: error.to_string(),
        });
        let excess = self.file.failed.len().saturating_sub(MAX_FAILED);
        self.file.failed.drain(..excess);
        if self
            .file
            .trial
            .as_ref()
            .is_some_and(|t| t.config.hash == hash)
        {
            self.file.trial = None;
        }
        if self.file.good.as_ref().is_some_and(|g| g.hash == hash) {
            self.file.good = None;
        }
        self.status = Status {
            hash: hash.to_string(),
            phase: Phase::Failed,
            error: error.to_string(),
        };
        self.persist();
    }

    /// Status APPLYING for `hash` (checked; waiting for the window boundary).
    pub fn applying(&mut self, hash: &str) {
        self.status = Status {
            hash: hash.to_string(),
            phase: Phase::Applying,
            error: String::new(),
        };
    }

    /// `config` runs from now on (`now_ms`), on trial unless it is already running.
    pub fn applied(&mut self, config: Body, now_ms: i64) {
        self.status = Status {
            hash: config.hash.clone(),
            phase: Phase::Applied,
            error: String::new(),
        };
        if self.running() == Some(&config) {
            return;
        }
        self.file.trial = Some(Trial {
            config,
            applied_ms: now_ms,
            clean_exit: false,
        });
        self.persist();
    }

    /// When the trial becomes the last known good, ms since the Unix epoch.
    pub fn confirm_at(&self, confirm_after_ms: i64) -> Option<i64> {
        let t = self.file.trial.as_ref()?;
        Some(t.applied_ms.saturating_add(confirm_after_ms))
    }

    /// The trial becomes the last known good.
    pub fn confirm(&mut self) {
        if let Some(t) = self.file.trial.take() {
            tracing::info!(
                config_hash = short(&t.config.hash),
                "remote configuration confirmed as last known good"
            );
            self.file.good = Some(t.config);
            self.persist();
        }
    }

    /// A clean stop: the trial goes on at the next start.
    pub fn clean_exit(&mut self) {
        if let Some(t) = self.file.trial.as_mut() {
            t.clean_exit = true;
            self.persist();
        }
    }

    fn persist(&self) {
        if let Err(e) = self.save() {
            tracing::warn!(error = format!("{e:#}"), "could not write {STATE_FILE}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &str) -> Body {
        Body {
            hash: hex::encode(sha2::Digest::finalize(
                <sha2::Sha256 as sha2::Digest>::new_with_prefix(b),
            )),
            body: b.into(),
        }
    }

    fn dir(name: &str) -> StateDir {
        let d = std::env::temp_dir().join(format!("fleetset-remote-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        StateDir::open(&d).unwrap()
    }

    #[test]
    fn an_unclean_stop_during_a_trial_falls_back_to_the_last_known_good() {
        let d = dir("fallback");
        let (mut s, fell_back) = RemoteState::open(d.clone(), 0).unwrap();
        assert!(!fell_back);
        assert_eq!(s.status().phase, Phase::Unset);
        let (good, bad) = (
            body("[labels]\nsite = \"a\"\n"),
            body("[labels]\nsite = \"b\"\n"),
        );
        s.applied(good.clone(), 1_000);
        assert_eq!(s.confirm_at(500), Some(1_500));
        s.confirm();
        s.applied(bad.clone(), 2_000);
        assert_eq!(s.running(), Some(&bad));
        drop(s); // no clean_exit: as after kill -9

        let (s, fell_back) = RemoteState::open(d.clone(), 3_000).unwrap();
        assert!(fell_back);
        assert_eq!(s.running(), Some(&good));
        assert_eq!(s.status().phase, Phase::Failed);
        assert_eq!(s.status().hash, bad.hash);
        assert!(s.failed_before(&bad.hash).unwrap().contains("uncleanly"));
        assert!(s.failed_before(&good.hash).is_none());
    }

    #[test]
    fn a_clean_stop_keeps_the_trial_and_failures_are_bounded() {
        let d = dir("clean");
        let (mut s, _) = RemoteState::open(d.clone(), 0).unwrap();
        let trial = body("[collect]\ntop_processes = 3\n");
        s.applied(trial.clone(), 10);
        s.clean_exit();
        let (mut s, fell_back) = RemoteState::open(d.clone(), 99).unwrap();
        assert!(!fell_back);
        assert_eq!(s.running(), Some(&trial));
        assert_eq!(s.status().phase, Phase::Applied);
        assert_eq!(s.confirm_at(1), Some(100), "the trial restarts its clock");
        for i in 0..MAX_FAILED + 5 {
            s.fail(&format!("{i:02}"), "invalid");
        }
        assert!(s.failed_before("00").is_none());
        assert!(s.failed_before(&format!("{:02}", MAX_FAILED + 4)).is_some());
        assert_eq!(s.running(), Some(&trial));
        // A corrupt state file is set aside, not fatal.
        std::fs::write(d.path(STATE_FILE), "{not json").unwrap();
        let (s, _) = RemoteState::open(d.clone(), 0).unwrap();
        assert!(s.running().is_none());
        assert!(d.path("remote_config.json.corrupt").exists());
    }
}
