//! Hot reload: on SIGHUP, or when the `--config` file changes (`--watch-config`), the binary
//! loads its configuration again from the same sources (file, environment, command line),
//! checks it as `validate` does, and applies the keys declared `#[key(live)]`.
//!
//! - An invalid configuration changes nothing: the running one stays, the error is logged,
//!   counted (`config_reload_failures`) and shown by `/healthz?verbose` until a good reload.
//! - Changed keys that are not live are reported as pending a restart (`/healthz?verbose`, the
//!   log) and keep their running value: the binary never runs a half-applied configuration.
//! - `--watch-config` polls the file's content every [`WATCH_POLL`] and reloads once the new
//!   content has stayed the same for one poll (debounced: an editor's partial writes and a
//!   Kubernetes ConfigMap's symlink swap are one reload). Polling, not inotify, because a
//!   ConfigMap update replaces the directory the file's symlink points into.

use super::{ConfigArgs, ConfigCommand, ConfigError, KeyDoc};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often `--watch-config` reads the configuration file.
pub const WATCH_POLL: Duration = Duration::from_millis(500);

/// What a reload did, for `/healthz?verbose` and the counters; shared by the reload loop and
/// the telemetry endpoint.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    /// Configurations in use since start: 1 at start, +1 per applied reload.
    generation: AtomicU64,
    /// Reloads that applied a changed configuration.
    reloads: AtomicU64,
    /// Reloads refused because the new configuration was invalid.
    failures: AtomicU64,
    /// The last reload's error, until a reload succeeds.
    last_error: Mutex<Option<String>>,
    /// Changed keys that need a restart to take effect (from the last good reload).
    pending_restart: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReloadStatus {
    /// Generation (1 before any reload), applied reloads, refused reloads.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.generation.load(Ordering::Relaxed).max(1),
            self.reloads.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// `/healthz?verbose` lines, Kubernetes style (`[+]name ok`, `[-]name failed: …`); with
    /// `reasons` false the error text is withheld (the caller is not authorised for
    /// `/metrics`). The process is alive either way: a refused reload keeps the old
    /// configuration running.
    pub fn verbose(&self, reasons: bool) -> String {
        let (generation, reloads, failures) = self.counts();
        let mut out = format!(
            "[+]ping ok\n[+]config generation={generation} reloads={reloads} reload_failures={failures}\n"
        );
        if let Some(e) = lock(&self.last_error).as_deref() {
            let why = if reasons {
                e
            } else {
                "reason withheld (needs the /metrics token)"
            };
            out.push_str(&format!(
                "[-]config-reload failed, generation {generation} still running: {why}\n"
            ));
        }
        let pending = lock(&self.pending_restart);
        if !pending.is_empty() {
            out.push_str(&format!(
                "[-]config-restart-pending keys changed that need a restart: {}\n",
                pending.join(", ")
            ));
        }
        out
    }
}

/// The result of one reload.
#[derive(Debug)]
pub struct Reloaded<C> {
    /// The configuration to run now: the running one with the changed live keys applied.
    pub config: C,
    /// Live keys that changed (applied).
    pub applied: Vec<String>,
    /// Changed keys that need a restart (not applied).
    pub pending_restart: Vec<String>,
}

/// Reloads one binary's configuration from its command line's sources.
pub struct Reloader<C> {
    args: ConfigArgs<C>,
    running: C,
    status: Arc<ReloadStatus>,
}

impl<C: ConfigCommand + Clone + PartialEq> Reloader<C> {
    /// A reloader for the configuration `running` that `args` produced; `status` starts at
    /// generation 1.
    pub fn new(args: ConfigArgs<C>, running: C, status: Arc<ReloadStatus>) -> Self {
        status.generation.store(1, Ordering::Relaxed);
        Reloader {
            args,
            running,
            status,
        }
    }

    /// The configuration now running.
    pub fn running(&self) -> &C {
        &self.running
    }

    /// The sources this reloader loads from.
    pub fn args(&self) -> &ConfigArgs<C> {
        &self.args
    }

    /// Replaces the remote configuration layered over the file (the control plane's; `None`:
    /// the local sources only) for the next and later reloads.
    pub fn set_remote(&mut self, remote: Option<super::Remote>) {
        self.args.remote = remote;
    }

    /// [`Reloader::reload`] for `trigger`, logged: `Ok(Some)` is the configuration to apply now
    /// (live keys changed), `Ok(None)` that nothing is to be applied. Errors: the new
    /// configuration is invalid (already recorded in the [`ReloadStatus`]; the caller counts it
    /// in its own `config_reload_failures`).
    pub fn reload_logged(&mut self, trigger: Trigger) -> Result<Option<C>, ConfigError> {
        match self.reload() {
            Ok(Some(r)) => {
                tracing::info!(?trigger, applied = ?r.applied, pending_restart = ?r.pending_restart,
                    "configuration reloaded");
                Ok(Some(r.config))
            }
            Ok(None) => {
                tracing::info!(?trigger, "configuration reloaded: no live key changed");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(?trigger, error = %e,
                    "configuration reload refused; the running configuration stays");
                Err(e)
            }
        }
    }

    /// Loads and checks the configuration again. `Ok(None)`: nothing live changed (pending
    /// restart keys are still recorded). Errors: the new configuration is invalid (named as
    /// `validate` names it); the running configuration stays and the failure is counted.
    pub fn reload(&mut self) -> Result<Option<Reloaded<C>>, ConfigError> {
        match self.try_reload() {
            Ok(r) => {
                *lock(&self.status.last_error) = None;
                Ok(r)
            }
            Err(e) => {
                self.status.failures.fetch_add(1, Ordering::Relaxed);
                *lock(&self.status.last_error) = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn try_reload(&mut self) -> Result<Option<Reloaded<C>>, ConfigError> {
        let new = self.args.load()?;
        let (applied, pending_restart): (Vec<KeyDoc>, Vec<KeyDoc>) =
            changed_keys(&self.running, &new)
                .into_iter()
                .partition(|k| k.live);
        let names = |ks: &[KeyDoc]| ks.iter().map(|k| k.path.clone()).collect::<Vec<_>>();
        if applied.is_empty() {
            *lock(&self.status.pending_restart) = names(&pending_restart);
            return Ok(None);
        }
        let config = with_keys(&self.running, &new, &applied)?;
        // The running configuration with the live keys applied must be valid by itself too.
        config.check()?;
        *lock(&self.status.pending_restart) = names(&pending_restart);
        self.running = config.clone();
        self.status.reloads.fetch_add(1, Ordering::Relaxed);
        self.status.generation.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Reloaded {
            config,
            applied: names(&applied),
            pending_restart: names(&pending_restart),
        }))
    }
}

/// The declared keys (not section headers) whose values differ between `old` and `new`, in
/// declaration order.
pub fn changed_keys<C: ConfigCommand>(old: &C, new: &C) -> Vec<KeyDoc> {
    let (a, b) = (as_table(old), as_table(new));
    C::keys()
        .into_iter()
        .filter(|k| {
            !k.section && super::render::lookup(&a, &k.path) != super::render::lookup(&b, &k.path)
        })
        .collect()
}

fn as_table<C: serde::Serialize>(c: &C) -> toml::Table {
    toml::Table::try_from(c).unwrap_or_default()
}

/// `base` with the values of `keys` taken from `from`.
fn with_keys<C: ConfigCommand>(base: &C, from: &C, keys: &[KeyDoc]) -> Result<C, ConfigError> {
    let mut table = as_table(base);
    let src = as_table(from);
    for k in keys {
        let value = super::render::lookup(&src, &k.path).cloned();
        put(&mut table, &k.path, value);
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Type {
            key: "(reloaded configuration)".into(),
            origin: super::Source::Set,
            value: String::new(),
            why: e.message().to_string(),
        })
}

/// Sets (or with `None` removes) the value at dotted `path` in `table`.
fn put(table: &mut toml::Table, path: &str, value: Option<toml::Value>) {
    match path.split_once('.') {
        None => {
            match value {
                Some(v) => table.insert(path.to_string(), v),
                None => table.remove(path),
            };
        }
        Some((head, rest)) => {
            let child = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = child {
                put(t, rest, value);
            }
        }
    }
}

/// A setting that a reload replaces while readers hold it: every clone sees the value last
/// [`Live::set`]; readers take a copy ([`Live::get`]) per use (a frame, a new stream).
#[derive(Debug, Clone, Default)]
pub struct Live<T>(Arc<std::sync::RwLock<T>>);

impl<T: Clone> Live<T> {
    /// A shared `value`.
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(std::sync::RwLock::new(value)))
    }

    /// The value now.
    pub fn get(&self) -> T {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the value for every later [`Live::get`].
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP (`systemctl reload`, `kill -HUP`).
    Signal,
    /// `--watch-config` saw the file's content change.
    FileChanged,
    /// The control plane offered a new remote configuration (OpAMP).
    Remote,
}

/// Starts the reload triggers (from inside a tokio runtime): SIGHUP always (on Unix), and with
/// `watch` a poll of `file` every [`WATCH_POLL`]. They stop with `shutdown`. The channel holds
/// one pending trigger: reloads asked for while one waits are the same reload.
pub fn triggers(
    file: Option<PathBuf>,
    watch: bool,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Trigger> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                let (tx, stop) = (tx.clone(), shutdown.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            got = hup.recv() => match got {
                                Some(()) => { let _ = tx.try_send(Trigger::Signal); }
                                None => break,
                            },
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP: reload by signal is off"),
        }
    }
    if let (true, Some(path)) = (watch, file) {
        tokio::spawn(async move {
            let digest = |p: &PathBuf| std::fs::read(p).ok().map(|b| Sha256::digest(&b));
            let mut applied = digest(&path);
            let mut seen = applied;
            let mut tick = tokio::time::interval(WATCH_POLL);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let now = digest(&path);
                // Reload once the content differs from the last one reloaded and has stayed
                // the same for one poll.
                if now.is_some() && now == seen && now != applied {
                    applied = now;
                    let _ = tx.try_send(Trigger::FileChanged);
                }
                seen = now;
            }
        });
    }
    rx
}
