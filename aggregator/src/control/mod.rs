//! The fleet control plane (`[control]`): an OpAMP server ([`opamp`]), the inventory of agents
//! ([`inventory`]), the promotion registry with staged rollout and automatic rollback
//! ([`registry`]), and the admin API the `fleet` commands use ([`admin`]), on one HTTP/1.1
//! listener (TLS with `security.tls`, like every listener):
//!
//! - `POST /v1/opamp`: OpAMP `AgentToServer` → `ServerToAgent` (protobuf);
//! - `GET /v1/fleet/agents[?selector=k=v,…]`: the inventory (JSON);
//! - `POST /v1/fleet/config/promote`, `POST /v1/fleet/config/rollback`,
//!   `GET /v1/fleet/config/history`, `GET /v1/fleet/config/status[?generation=N]` (JSON).
//!
//! The admin routes need a token with scope `admin` when `security.tokens.file` is set. The
//! registry is advanced every [`TICK`] (rollout batches, the health gate, catch-up of new and
//! returning agents); the inventory is persisted every [`PERSIST_INTERVAL`] and at stop.

pub mod admin;
pub mod config;
pub mod inventory;
pub mod opamp;
pub mod registry;

use crate::counters::{Counters, Listener};
use crate::security::tokens::Tokens;
use anyhow::{Context, Result};
use fleetset_core::config::reload::Live;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::ControlConfig;

/// How often rollouts advance.
pub const TICK: Duration = Duration::from_millis(500);
/// How often the inventory is written to disk.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(5);

/// The control plane's state, shared by its routes, the Fleet gRPC service and the ingest path.
pub struct ControlPlane {
    /// The agents.
    pub inventory: Arc<inventory::Inventory>,
    registry: Mutex<registry::Registry>,
    /// OpAMP instance uid → agent id (bounded: cleared when it reaches twice `max_agents`).
    instances: Mutex<HashMap<Vec<u8>, String>>,
    tokens: Arc<Tokens>,
    counters: Arc<Counters>,
    /// mTLS on (client certificates verified): agents must prove their id.
    mtls: bool,
    /// `[control]` (its live keys replaced by a reload).
    pub config: Live<ControlConfig>,
}

impl ControlPlane {
    /// The control plane with its state under `data_dir/control`. Errors: the directory or a
    /// state file cannot be read (named).
    pub fn open(
        data_dir: &std::path::Path,
        cfg: &ControlConfig,
        tokens: Arc<Tokens>,
        counters: Arc<Counters>,
        mtls: bool,
    ) -> Result<Arc<ControlPlane>> {
        let dir = data_dir.join("control");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Arc::new(ControlPlane {
            inventory: Arc::new(inventory::Inventory::open(&dir, cfg.max_agents)?),
            registry: Mutex::new(registry::Registry::open(&dir, cfg.max_history)?),
            instances: Mutex::default(),
            tokens,
            counters,
            mtls,
            config: Live::new(cfg.clone()),
        }))
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, registry::Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn instance_agent(&self, uid: &[u8]) -> Option<String> {
        let m = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        m.get(uid).cloned()
    }

    fn remember_instance(&self, uid: &[u8], agent_id: &str) {
        let mut m = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(uid).map(String::as_str) == Some(agent_id) {
            return;
        }
        if m.len() >= self.config.get().max_agents.saturating_mul(2) {
            m.clear(); // unknown instances are asked for their full state again
        }
        m.insert(uid.to_vec(), agent_id.to_string());
    }

    /// `control.stale_after` in ms.
    pub fn stale_after_ms(&self) -> i64 {
        i64::try_from(self.config.get().stale_after.as_millis()).unwrap_or(i64::MAX)
    }

    /// Every agent matching `selector`, with its state now.
    pub fn agents(
        &self,
        selector: &std::collections::BTreeMap<String, String>,
    ) -> Vec<inventory::AgentRecord> {
        self.inventory.list(
            selector,
            fleetset_core::time::now_ms(),
            self.stale_after_ms(),
        )
    }

    /// Records a verified frame of `agent_id` (the ingest path); an untracked agent is counted.
    pub fn observe_frame(&self, snapshot: &fleetset_proto::Snapshot) {
        let labels = &snapshot.host.labels;
        let now = fleetset_core::time::now_ms();
        if self
            .inventory
            .observe_frame(&snapshot.agent_id, snapshot.start, labels, now)
            .is_err()
        {
            Counters::add(&self.counters.control_agents_untracked, 1);
        }
    }

    /// Records a rejected frame of a valid `agent_id` for `reason`.
    pub fn observe_reject(&self, agent_id: &str, reason: fleetset_proto::RejectReason) {
        let name = reason.as_str_name().trim_start_matches("REJECT_REASON_");
        let now = fleetset_core::time::now_ms();
        if self.inventory.observe_reject(agent_id, name, now).is_err() {
            Counters::add(&self.counters.control_agents_untracked, 1);
        }
    }

    /// One step of every rollout; counts automatic rollbacks.
    fn tick(&self) {
        let agents = self.agents(&Default::default());
        match self.registry().tick(&agents, fleetset_core::time::now_ms()) {
            Ok(changed) => {
                for g in changed
                    .iter()
                    .filter(|g| g.outcome == registry::Outcome::RolledBack)
                {
                    Counters::add(&self.counters.control_rollbacks_automatic, 1);
                    tracing::warn!(generation = g.generation, reason = %g.reason, "rollout stopped and rolled back");
                }
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "could not write the promotion registry"
            ),
        }
    }
}

/// Serves the control plane on `cfg.listen` until `stop`; returns the bound address and the
/// task (which persists the inventory once more when it ends). Errors: the address cannot be
/// bound.
pub async fn start(
    plane: Arc<ControlPlane>,
    cfg: &ControlConfig,
    tls: Option<Arc<crate::security::tls::TlsServer>>,
    stop: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding control.listen {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let listener = fleetset_core::net::BoundedListener::new(
        listener,
        cfg.limits(),
        plane.counters.on_conn_event(Listener::Control),
    );
    let app = admin::router(plane.clone(), cfg.max_request_bytes);
    let serve_stop = stop.clone();
    let server = tokio::spawn(async move {
        let served = match tls {
            None => {
                let app = app.into_make_service_with_connect_info::<admin::PeerAgent>();
                axum::serve(listener, app)
                    .with_graceful_shutdown(serve_stop.cancelled_owned())
                    .await
            }
            Some(tls) => {
                let l = tls.http_listener(listener, serve_stop.clone());
                let app = app.into_make_service_with_connect_info::<admin::PeerAgent>();
                axum::serve(l, app)
                    .with_graceful_shutdown(serve_stop.cancelled_owned())
                    .await
            }
        };
        if let Err(e) = served {
            tracing::warn!(error = %e, "control plane listener stopped");
        }
    });
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut persist = tokio::time::interval(PERSIST_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => plane.tick(),
                _ = persist.tick() => {
                    if let Err(e) = plane.inventory.persist() {
                        tracing::warn!(error = format!("{e:#}"), "could not write the inventory");
                    }
                }
            }
        }
        let _ = server.await;
        if let Err(e) = plane.inventory.persist() {
            tracing::warn!(error = format!("{e:#}"), "could not write the inventory");
        }
    });
    Ok((addr, task))
}
