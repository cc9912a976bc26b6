//! The agent's side of the fleet control plane (`[control]`, off unless `control.endpoint`
//! is set): an OpAMP client ([`client`]) that reports the agent's description, effective
//! configuration, health and remote configuration status, and the remote configuration's
//! lifecycle ([`remote`]: trial, last known good, fallback after a failure or a crash).
//!
//! The local file stays the base. A remote configuration is a TOML fragment layered over it
//! (`fleetset_core::config::Sources::remote`) that may set only keys declared live
//! (`print-config` says `Reload: live.`): labels, the sampling and process settings, the LTTB
//! threshold and ratio. Where the agent sends its data, its credentials and every other
//! restart key always come from the local file; a body naming one is refused (FAILED).
//! An accepted one goes through the hot-reload path and applies at the next window boundary.

pub mod client;
pub mod config;
pub mod remote;

use crate::config::{AgentConfig, RunFlags};
use crate::counters::Counters;
use crate::state::StateDir;
use anyhow::Result;
use client::{Handle, Offer, Report};
use fleetset_core::config::reload::Trigger;
use fleetset_core::config::Reloader;
use fleetset_core::time::now_ms;
use remote::{Body, RemoteState};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use config::ControlConfig;

/// The state file holding the OpAMP `instance_uid` (32 hex digits).
pub const INSTANCE_UID_FILE: &str = "opamp_instance_uid";

/// The remote state read at start, before the pipeline (and its counters) exist.
pub struct Prepared {
    remote: RemoteState,
    fell_back: bool,
    state: StateDir,
}

/// Layers the remote configuration that should run now over `local` (the local sources'
/// configuration): the trial, else the last known good; one that no longer validates over the
/// local file is failed and the next one down is tried. Sets `flags.remote` to what runs.
/// Without `control.endpoint` nothing is layered (`None`). Errors: the state directory.
pub fn prepare(
    flags: &mut RunFlags,
    local: AgentConfig,
) -> Result<(AgentConfig, Option<Prepared>)> {
    flags.remote = None;
    if local.control.endpoint.is_none() {
        return Ok((local, None));
    }
    let state = StateDir::open(&local.state_dir)?;
    let (mut remote, fell_back) = RemoteState::open(state.clone(), now_ms())?;
    let mut cfg = local;
    while let Some(running) = remote.running().cloned() {
        flags.remote = running.layer();
        match flags.load() {
            Ok(c) => {
                cfg = c;
                break;
            }
            Err(e) => {
                flags.remote = None;
                remote.fail(&running.hash, &e.to_string());
            }
        }
    }
    Ok((
        cfg,
        Some(Prepared {
            remote,
            fell_back,
            state,
        }),
    ))
}

/// The instance uid kept in the state directory (created once: 16 random bytes, UUID v4
/// layout; a file that does not hold one is replaced).
fn instance_uid(state: &StateDir) -> Result<[u8; 16]> {
    let fresh = || {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        hex::encode(b)
    };
    let text = state.get_or_init(INSTANCE_UID_FILE, fresh)?;
    match hex::decode(&text)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
    {
        Some(uid) => Ok(uid),
        None => {
            tracing::warn!("{INSTANCE_UID_FILE} does not hold 32 hex digits; replaced");
            let text = fresh();
            state.write(INSTANCE_UID_FILE, &text)?;
            instance_uid(state)
        }
    }
}

/// What [`Control::next`] saw.
pub enum Event {
    /// The server offered a configuration.
    Offer(Offer),
    /// The trial has run for `control.confirm_after`.
    Confirm,
}

/// The control plane as the run loop sees it.
pub struct Control {
    remote: RemoteState,
    client: Handle,
    offers_open: bool,
    confirm_after_ms: i64,
    /// The accepted offer waiting for the window boundary.
    applying: Option<Body>,
}

impl Control {
    /// Starts the OpAMP client for the configuration `cfg` now running. Errors: the instance
    /// uid cannot be kept in the state directory.
    pub fn start(
        prepared: Prepared,
        cfg: &AgentConfig,
        agent_id: String,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> Result<Control> {
        if prepared.fell_back {
            Counters::add(&counters.remote_configs_fallback, 1);
        }
        let report = Report {
            labels: cfg.labels.clone(),
            effective: client::effective_toml(cfg),
            remote: prepared.remote.status().clone(),
        };
        let uid = instance_uid(&prepared.state)?;
        let client = client::start(cfg, agent_id, uid, report, counters, shutdown);
        Ok(Control {
            remote: prepared.remote,
            client,
            offers_open: true,
            confirm_after_ms: i64::try_from(cfg.control.confirm_after.as_millis())
                .unwrap_or(i64::MAX),
            applying: None,
        })
    }

    /// The next offer or confirmation (pending forever when there is none to wait for).
    pub async fn next(&mut self) -> Event {
        let confirm_at = self.remote.confirm_at(self.confirm_after_ms);
        let confirm = async {
            match confirm_at {
                Some(at) => {
                    let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = confirm => Event::Confirm,
            offer = next_offer(&mut self.client, &mut self.offers_open) => Event::Offer(offer),
        }
    }

    /// Handles `event`: returns a configuration to apply at the next window boundary, if an
    /// offer was accepted and changes live keys.
    pub fn handle(
        &mut self,
        event: Event,
        reloader: &mut Reloader<AgentConfig>,
        counters: &Counters,
    ) -> Option<AgentConfig> {
        match event {
            Event::Confirm => {
                self.remote.confirm();
                None
            }
            Event::Offer(offer) => {
                let next = self.offer(offer, reloader, counters);
                let status = self.remote.status().clone();
                self.client.report(|r| r.remote = status);
                next
            }
        }
    }

    fn offer(
        &mut self,
        offer: Offer,
        reloader: &mut Reloader<AgentConfig>,
        counters: &Counters,
    ) -> Option<AgentConfig> {
        let body = match offer.body {
            Ok(b) => b,
            Err(why) => return self.refuse(&offer.hash, &why, counters),
        };
        let config = Body {
            hash: offer.hash,
            body,
        };
        if self.applying.as_ref() == Some(&config) {
            return None;
        }
        if self.remote.running() == Some(&config) {
            self.applying = None;
            self.remote.applied(config, now_ms());
            return None;
        }
        if let Some(why) = self.remote.failed_before(&config.hash).map(str::to_string) {
            return self.refuse(&config.hash, &why, counters);
        }
        let previous = reloader.args().remote.clone();
        reloader.set_remote(config.layer());
        match reloader.reload_logged(Trigger::Remote) {
            Err(e) => {
                reloader.set_remote(previous);
                self.refuse(&config.hash, &e.to_string(), counters)
            }
            Ok(Some(next)) => {
                self.remote.applying(&config.hash);
                self.applying = Some(config);
                Some(next)
            }
            Ok(None) => {
                self.applying = None;
                self.remote.applied(config, now_ms());
                Counters::add(&counters.remote_configs_applied, 1);
                None
            }
        }
    }

    fn refuse(&mut self, hash: &str, why: &str, counters: &Counters) -> Option<AgentConfig> {
        tracing::warn!(
            config_hash = hash,
            error = why,
            "remote configuration refused"
        );
        Counters::add(&counters.remote_configs_failed, 1);
        self.remote.fail(hash, why);
        None
    }

    /// `cfg` now runs (a window boundary): an accepted offer goes on trial; the report follows.
    pub fn applied(&mut self, cfg: &AgentConfig, counters: &Counters) {
        if let Some(config) = self.applying.take() {
            self.remote.applied(config, now_ms());
            Counters::add(&counters.remote_configs_applied, 1);
        }
        self.publish(cfg);
    }

    fn publish(&self, cfg: &AgentConfig) {
        let status = self.remote.status().clone();
        self.client.report(|r| {
            r.labels = cfg.labels.clone();
            r.effective = client::effective_toml(cfg);
            r.remote = status;
        });
    }

    /// A clean stop: a trial goes on at the next start.
    pub fn stop(&mut self) {
        self.remote.clean_exit();
    }
}

async fn next_offer(client: &mut Handle, open: &mut bool) -> Offer {
    while *open {
        if client.offers.changed().await.is_err() {
            *open = false;
            break;
        }
        if let Some(offer) = client.offers.borrow_and_update().clone() {
            return offer;
        }
    }
    std::future::pending().await
}
