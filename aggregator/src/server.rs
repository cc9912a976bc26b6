//! `fleetset-aggregator serve`: recover the store, start the store task, the ZeroMQ ROUTER and
//! the gRPC server, and stop them in order (listeners first, then a final commit whose acks are
//! still delivered).

use crate::config::{ServeFlags, ServerConfig};
use crate::counters::{Counters, Listener};
use crate::ingest::{grpc::IngestService, zmq, Admission, LiveContract};
use crate::live::subscription::{SubscriberSettings, Subscriptions};
use crate::live::{grpc::LiveService, zmq_pub, Hub};
use crate::security::curve::{read_secret, ServerKey};
use crate::security::tokens::Tokens;
use crate::security::zap::ZapHandler;
use crate::store::{self, files};
use anyhow::{Context, Result};
use fleetset_core::config::reload::{self, Live};
use fleetset_core::config::{ReloadStatus, Reloader};
use fleetset_core::net::BoundedListener;
use fleetset_proto::pb::ingest_server::IngestServer;
use fleetset_proto::pb::live_server::LiveServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the counters go to `DATA_DIR/status.json` (and every 60 s to the log).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Name of the status file in the data directory.
pub const STATUS_FILE: &str = "status.json";

/// Writes the counters as JSON to `data_dir/status.json` (atomically).
fn write_status(data_dir: &std::path::Path, counters: &Counters) -> Result<()> {
    let body = serde_json::json!({
        "updated_ms": fleetset_core::time::now_ms(),
        "counters": counters.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    let tmp = data_dir.join(".status.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&body)?)?;
    std::fs::rename(&tmp, data_dir.join(STATUS_FILE))?;
    Ok(())
}

/// The status file of the aggregator using `data_dir`, for `fleetset-aggregator status`.
pub fn read_status(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join(STATUS_FILE);
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no status at {} (is an aggregator using this data dir?)",
            path.display()
        )
    })
}

/// A running aggregator.
pub struct Server {
    /// The bound ZeroMQ endpoint (port resolved), if ZeroMQ is on.
    pub zmq_endpoint: Option<String>,
    /// The bound gRPC address (ingest and live Subscribe), if gRPC is on.
    pub grpc_addr: Option<SocketAddr>,
    /// The bound ZeroMQ PUB endpoint for live consumers, if on.
    pub zmq_pub_endpoint: Option<String>,
    /// The bound OTLP/gRPC receiver address, if on.
    pub otlp_addr: Option<SocketAddr>,
    /// The bound Prometheus `/metrics` address, if on.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound control-plane address (OpAMP, fleet admin API), if on.
    pub control_addr: Option<SocketAddr>,
    /// The control plane, if on.
    pub control: Option<Arc<crate::control::ControlPlane>>,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Configuration reloads (shown by `/healthz?verbose`).
    pub reload: Arc<ReloadStatus>,
    contract: LiveContract,
    subscribers: Live<SubscriberSettings>,
    telemetry: fleetset_core::telemetry::Telemetry,
    data_dir: std::path::PathBuf,
    ingest_stop: CancellationToken,
    store_stop: CancellationToken,
    ingest_tasks: Vec<JoinHandle<()>>,
    store_task: JoinHandle<()>,
    /// The ZAP handler of the ZeroMQ sockets (CURVE on); stops when the server is dropped.
    _zap: Option<ZapHandler>,
}

/// Recovers the data directory and starts listening; returns once every listener is bound.
pub async fn start(cfg: &ServerConfig) -> Result<Server> {
    let data_dir = cfg.store.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let recovery = {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || files::recover(&dir)).await??
    };
    let counters = Arc::new(Counters::default());
    Counters::add(&counters.recovered_duplicate_keys, recovery.duplicate_keys);
    let ingest_stop = CancellationToken::new();
    let tokens = Tokens::start(&cfg.security.tokens, counters.clone(), ingest_stop.clone())?;
    let tls = crate::security::tls::load(&cfg.security.tls, counters.clone())?;
    if let Some(tls) = &tls {
        info!(
            mtls = tls.mtls(),
            "gRPC, OTLP and /metrics listeners serve TLS only"
        );
        tokio::spawn(tls.clone().watch(ingest_stop.clone()));
    }
    let (store_tx, store_rx) = tokio::sync::mpsc::channel(4096);
    let hub = Hub::new(cfg.live.queue);
    let subscribers = Live::new(cfg.live.subscriber_settings());
    let store_stop = CancellationToken::new();
    let store_task = tokio::spawn(store::run(
        cfg.store.clone(),
        store_rx,
        recovery.index,
        recovery.names,
        counters.clone(),
        store_stop.clone(),
    ));
    let mut admission = Admission::new(
        cfg.ingest.verify_options()?,
        cfg.ingest.contract(),
        store_tx.clone(),
        hub.clone(),
        counters.clone(),
        cfg.ingest.admission_limits(),
    );
    let mut ingest_tasks = Vec::new();
    let (control, control_addr) = if cfg.control.enabled {
        let plane = crate::control::ControlPlane::open(
            &data_dir,
            &cfg.control,
            tokens.clone(),
            counters.clone(),
            tls.as_ref().is_some_and(|t| t.mtls()),
        )?;
        let (addr, task) = crate::control::start(
            plane.clone(),
            &cfg.control,
            tls.clone(),
            ingest_stop.clone(),
        )
        .await?;
        ingest_tasks.push(task);
        admission = admission.with_control(plane.clone());
        (Some(plane), Some(addr))
    } else {
        (None, None)
    };

    // One live.max_subscribers pool for gRPC Subscribe and the WebSocket stream.
    let subscriptions = Subscriptions {
        hub: hub.clone(),
        settings: subscribers.clone(),
        shutdown: ingest_stop.clone(),
        data_dir: data_dir.clone(),
        store: store_tx.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(cfg.live.max_subscribers)),
        counters: counters.clone(),
        tokens: tokens.clone(),
    };
    let web = crate::web::routes(crate::web::WebState {
        live: subscriptions.clone(),
        idle_timeout: cfg.telemetry.idle_timeout,
        data_dir: data_dir.clone(),
        counters: counters.clone(),
        tokens: tokens.clone(),
        control: control.clone(),
    });
    let reload = Arc::new(ReloadStatus::default());
    let (telemetry, metrics_addr) = start_telemetry(
        cfg,
        &counters,
        &tokens,
        tls.clone(),
        &reload,
        web,
        ingest_stop.clone(),
    )?;

    // One libzmq context for the ROUTER and the PUB, so one ZAP handler serves both.
    let zmq_ctx = ::zmq::Context::new();
    let (curve, zap) = start_curve(cfg, &zmq_ctx, &counters)?;
    let mut zmq_endpoint = None;
    if cfg.ingest.zmq.enabled {
        let (endpoint, task) = zmq::start(
            &zmq_ctx,
            &cfg.ingest.zmq,
            curve.as_ref(),
            admission.clone(),
            counters.clone(),
            ingest_stop.clone(),
        )
        .await?;
        zmq_endpoint = Some(endpoint);
        ingest_tasks.push(task);
    }
    let mut zmq_pub_endpoint = None;
    if cfg.live.zmq.enabled {
        let (endpoint, task) = zmq_pub::start(
            &zmq_ctx,
            &cfg.live.zmq.bind,
            cfg.live.zmq.hwm,
            curve.as_ref(),
            &hub,
            ingest_stop.clone(),
        )
        .await?;
        zmq_pub_endpoint = Some(endpoint);
        ingest_tasks.push(task);
    }
    let mut grpc_addr = None;
    if cfg.ingest.grpc.enabled {
        let addr: SocketAddr = cfg
            .ingest
            .grpc
            .listen
            .parse()
            .context("ingest.grpc.listen")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("grpc listen {addr}"))?;
        grpc_addr = Some(listener.local_addr()?);
        // Frames up to twice the limit reach verification (and get a REJECTED OVERSIZE ack);
        // larger messages end the stream with RESOURCE_EXHAUSTED.
        let max_msg = admission
            .max_frame_bytes()
            .saturating_mul(2)
            .saturating_add(4096);
        let service = IngestServer::new(IngestService {
            admission: admission.clone(),
            shutdown: ingest_stop.clone(),
        })
        .max_decoding_message_size(max_msg);
        let live = LiveServer::new(LiveService {
            subscriptions: subscriptions.clone(),
        });
        // gRPC health (grpc.health.v1) and server reflection, for load balancers and grpcurl.
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<IngestServer<IngestService>>().await;
        health.set_serving::<LiveServer<LiveService>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(fleetset_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("gRPC reflection service")?;
        let fleet = control.clone().map(|plane| {
            fleetset_proto::pb::fleet_server::FleetServer::new(
                crate::control::admin::FleetService { plane },
            )
        });
        let stop = ingest_stop.clone();
        let (grpc_cfg, grpc_counters) = (cfg.ingest.grpc.connections.clone(), counters.clone());
        let tls = tls.clone();
        ingest_tasks.push(tokio::spawn(async move {
            let listener = BoundedListener::new(
                listener,
                grpc_cfg.limits(),
                grpc_counters.on_conn_event(Listener::Grpc),
            );
            let router = grpc_cfg
                .server()
                .add_service(service)
                .add_service(live)
                .add_optional_service(fleet)
                .add_service(health_service)
                .add_service(reflection);
            if let Err(e) = crate::security::tls::serve(router, listener, tls, stop).await {
                warn!(error = %e, "grpc server ended");
            }
        }));
    }
    let otlp_addr = if !cfg.otlp.enabled {
        None
    } else {
        let (addr, task) = start_otlp(
            cfg,
            &admission,
            &counters,
            &tokens,
            tls.clone(),
            ingest_stop.clone(),
        )
        .await?;
        ingest_tasks.push(task);
        Some(addr)
    };
    let contract = admission.live_contract();
    drop(admission);

    let (log_counters, log_stop, log_dir) =
        (counters.clone(), store_stop.clone(), data_dir.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STATUS_INTERVAL);
        for n in 1u64.. {
            tokio::select! {
                _ = log_stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = write_status(&log_dir, &log_counters) {
                        warn!(error = format!("{e:#}"), "could not write the status file");
                    }
                    if n.is_multiple_of(12) {
                        info!(counters = %log_counters.summary(), "aggregator counters");
                    }
                }
            }
        }
    });

    info!(data_dir = %data_dir.display(), zmq = ?zmq_endpoint, zmq_pub = ?zmq_pub_endpoint, grpc = ?grpc_addr, otlp = ?otlp_addr, metrics = ?metrics_addr, control = ?control_addr, "aggregator listening");
    if let Some(path) = &cfg.ready_file {
        let body = serde_json::json!({
            "zmq": zmq_endpoint,
            "grpc": grpc_addr.map(|a| a.to_string()),
            "zmq_pub": zmq_pub_endpoint,
            "otlp": otlp_addr.map(|a| a.to_string()),
            "metrics": metrics_addr.map(|a| a.to_string()),
            "control": control_addr.map(|a| a.to_string()),
            "data_dir": data_dir,
            "pid": std::process::id(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&body)?)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(Server {
        zmq_endpoint,
        grpc_addr,
        zmq_pub_endpoint,
        otlp_addr,
        metrics_addr,
        control_addr,
        control,
        counters,
        reload,
        contract,
        subscribers,
        telemetry,
        data_dir,
        ingest_stop,
        store_stop,
        ingest_tasks,
        store_task,
        _zap: zap,
    })
}

/// With `[security.curve]` configured: the server key (read now) and the ZAP handler on `ctx`
/// (the allow file read now); errors name the file. Neither when CURVE is off.
fn start_curve(
    cfg: &ServerConfig,
    ctx: &::zmq::Context,
    counters: &Arc<Counters>,
) -> Result<(Option<ServerKey>, Option<ZapHandler>)> {
    let curve = &cfg.security.curve;
    let Some(secret) = curve.secret_file.as_ref().filter(|_| curve.enabled()) else {
        return Ok((None, None));
    };
    let key = ServerKey(read_secret(secret).context("security.curve.secret_file")?);
    let zap = crate::security::zap::start(ctx, curve, counters.clone())?;
    info!("ZeroMQ ROUTER and PUB speak CURVE only; clients checked against the allow file");
    Ok((Some(key), Some(zap)))
}

impl Server {
    /// Stops accepting frames, commits what is buffered (acking it), and waits for the tasks.
    pub async fn stop(self) {
        self.ingest_stop.cancel();
        self.store_stop.cancel();
        if self.store_task.await.is_err() {
            warn!("store task panicked");
        }
        for t in self.ingest_tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                warn!("a listener did not stop in time");
            }
        }
        if let Err(e) = write_status(&self.data_dir, &self.counters) {
            warn!(error = format!("{e:#}"), "could not write the status file");
        }
        self.telemetry.shutdown().await;
        info!(counters = %self.counters.summary(), "aggregator stopped");
    }
}

/// Own telemetry: the counters through the OpenTelemetry SDK, `/metrics` unless `telemetry.enabled = false`,
/// OTLP push with `telemetry.otlp`, and the `web` routes on the same listener. Errors: the
/// metrics address cannot be bound.
fn start_telemetry(
    cfg: &ServerConfig,
    counters: &Arc<Counters>,
    tokens: &Arc<Tokens>,
    tls: Option<Arc<crate::security::tls::TlsServer>>,
    reload: &Arc<ReloadStatus>,
    web: axum::Router,
    stop: CancellationToken,
) -> Result<(fleetset_core::telemetry::Telemetry, Option<SocketAddr>)> {
    let telemetry = fleetset_core::telemetry::Telemetry::start(
        "aggregator",
        &format!("aggregator:{}", cfg.telemetry.listen),
        cfg.telemetry.otlp.as_deref(),
        fleetset_core::telemetry::EXPORT_INTERVAL,
    )?
    .with_reload_status(reload.clone())
    .with_routes(web);
    let names: Vec<String> = counters
        .snapshot()
        .into_iter()
        .map(|(k, _)| k)
        .chain(["rejected_".to_string()])
        .collect();
    let c = counters.clone();
    telemetry.observe_counters(&names, &["config_generation"], move || c.snapshot());
    let addr = if !cfg.telemetry.enabled {
        None
    } else {
        let on_event = counters.on_conn_event(Listener::Metrics);
        let auth = Some(Tokens::metrics_auth(tokens));
        Some(match tls {
            None => telemetry.serve_with(&cfg.telemetry, stop, on_event, auth, |l| l)?,
            Some(tls) => {
                let tls_stop = stop.clone();
                telemetry.serve_with(&cfg.telemetry, stop, on_event, auth, |l| {
                    tls.http_listener(l, tls_stop)
                })?
            }
        })
    };
    Ok((telemetry, addr))
}

/// `d` in ms, saturating at `i64::MAX`.
fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The OTLP/gRPC receiver on its own port, with its window buffer and flush task.
async fn start_otlp(
    cfg: &ServerConfig,
    admission: &Admission,
    counters: &Arc<Counters>,
    tokens: &Arc<Tokens>,
    tls: Option<Arc<crate::security::tls::TlsServer>>,
    stop: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    use crate::ingest::otlp::{load_salt, windows, OtlpReceiver};
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
    let addr: SocketAddr = cfg.otlp.listen.parse().context("otlp.listen")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("otlp listen {addr}"))?;
    let bound = listener.local_addr()?;
    let buffer = Arc::new(windows::OtlpWindows::open(
        windows::OtlpWindowConfig {
            window_ms: ms(cfg.otlp.window),
            grace_ms: ms(cfg.otlp.grace),
            wal_dir: cfg.store.data_dir.join("otlp-wal"),
            lttb: cfg.otlp.lttb,
            keys: cfg.ingest.hmac_keys()?,
            limits: windows::WindowLimits {
                max_skew_ms: ms(cfg.otlp.max_skew),
                max_age_ms: ms(cfg.otlp.max_age),
                max_open_windows: cfg.otlp.max_open_windows,
                max_series: cfg.otlp.max_series,
                max_wal_bytes: cfg.otlp.max_wal_bytes,
                max_frame_bytes: admission.max_frame_bytes(),
            },
        },
        counters.clone(),
    )?);
    let receiver = OtlpReceiver {
        windows: buffer.clone(),
        salt: load_salt(&cfg.store.data_dir)?,
        counters: counters.clone(),
        limits: crate::ingest::otlp::mapping::MapLimits {
            max_attributes: cfg.otlp.max_attributes,
            max_buckets: cfg.otlp.max_buckets,
            max_request_points: cfg.otlp.max_request_points,
        },
        memory: admission.memory_limit(),
        tokens: tokens.clone(),
    };
    let flusher = tokio::spawn(buffer.run(admission.clone(), stop.clone()));
    let listener = BoundedListener::new(
        listener,
        cfg.otlp.connections.limits(),
        counters.on_conn_event(Listener::Otlp),
    );
    let (server_cfg, max_request) = (cfg.otlp.connections.clone(), cfg.otlp.max_request_bytes);
    let task = tokio::spawn(async move {
        let router = server_cfg.server().add_service(
            MetricsServiceServer::new(receiver).max_decoding_message_size(max_request),
        );
        if let Err(e) = crate::security::tls::serve(router, listener, tls, stop.clone()).await {
            warn!(error = %e, "OTLP server ended");
        }
        let _ = flusher.await;
    });
    Ok((bound, task))
}

impl Server {
    /// Applies the live keys of a reloaded configuration: the snapshot limits (`ingest.max_*`)
    /// for frames admitted from now on, the subscriber settings for streams opened from now on. (Certificates, token files and CURVE allow files are
    /// re-read by their own watchers when they change on disk.)
    pub fn apply_reload(&self, cfg: &ServerConfig) {
        self.contract.set(cfg.ingest.contract());
        self.subscribers.set(cfg.live.subscriber_settings());
        if let Some(c) = &self.control {
            c.config.set(cfg.control.clone());
        }
        Counters::add(&self.counters.config_reloads, 1);
        let (generation, _, _) = self.reload.counts();
        self.counters
            .config_generation
            .store(generation, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs the aggregator with the configuration from `flags` until SIGINT/SIGTERM (`shutdown`),
/// reloading it on SIGHUP and (with `--watch-config`) when the file changes
/// (`fleetset_core::config::reload`): an invalid configuration keeps the running one (counted
/// `config_reload_failures`, shown by `/healthz?verbose`); changed keys that need a restart are
/// reported, not applied. Errors: an invalid configuration at start, a listener off loopback
/// that is not secured (see [`crate::security::exposure`]), or [`start`] failed.
pub async fn serve(flags: ServeFlags, shutdown: CancellationToken) -> Result<()> {
    let cfg = flags.load()?;
    crate::security::exposure::enforce(&cfg)?;
    let server = start(&cfg).await?;
    server
        .counters
        .config_generation
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let mut triggers = reload::triggers(flags.file.clone(), flags.watch, shutdown.clone());
    let mut reloader = Reloader::new(flags, cfg, server.reload.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(trigger) = triggers.recv() => match reloader.reload_logged(trigger) {
                Ok(Some(config)) => server.apply_reload(&config),
                Ok(None) => {}
                Err(_) => Counters::add(&server.counters.config_reload_failures, 1),
            },
        }
    }
    server.stop().await;
    Ok(())
}
