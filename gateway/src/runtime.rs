//! Wiring: the broker connection (or our own nats-server), the workers of
//! this process, and an orderly shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::connect::jetstream_context;
use crate::broker::{connect, ensure_streams, BrokerError, NatsServer, NatsServerOptions};
use crate::config::Config;
use crate::telemetry::snapshot::{spawn_metrics_publisher, MetricsSource};
use crate::workers::cloud::{run_cloud, CloudMetrics};
use crate::workers::collect::{CollectMetrics, Collector, PackSet, PublisherReport};
use crate::workers::control::{run_control, ControlMetrics};
use crate::workers::data::{run_data, DataError, DataMetrics};
use crate::workers::monitor::{run_monitor, MonitorMetrics};

/// File in the data directory naming the embedded broker's URL while it
/// runs, so `packgate watch` finds it.
pub const BROKER_URL_FILE: &str = "broker-url";

/// A connection to the local broker, and the server if we started it.
#[derive(Debug)]
pub struct Broker {
    /// The NATS client.
    pub client: async_nats::Client,
    /// JetStream on it.
    pub js: jetstream::Context,
    /// The URL connected to.
    pub url: String,
    /// Our own nats-server, when none was configured.
    pub server: Option<NatsServer>,
}

impl Broker {
    /// Connects to the configured broker, or starts a nats-server of our own
    /// with its store in `data_dir/nats` when none is configured.
    pub async fn open(config: &Config, name: &str) -> Result<Self, BrokerError> {
        let (url, server) = match &config.broker.url {
            Some(url) => (url.clone(), None),
            None => {
                let mut options = NatsServerOptions::new(config.data_dir.join("nats"));
                options.executable = config.broker.nats_server_path.clone();
                options.startup_timeout =
                    Duration::from_millis(config.broker.embedded_startup_timeout_ms);
                let server = NatsServer::start(options).await?;
                tracing::info!(url = %server.url(), pid = ?server.pid(), "started embedded nats-server");
                let _ = std::fs::write(config.data_dir.join(BROKER_URL_FILE), server.url());
                (server.url(), Some(server))
            }
        };
        let client = connect(&url, name, &config.broker).await?;
        let url = crate::broker::connect::redact_url(&url);
        let js = jetstream_context(
            client.clone(),
            &config.broker,
            config.collect.inflight_max + 64,
        );
        Ok(Self {
            client,
            js,
            url,
            server,
        })
    }

    /// Creates or updates the streams, retrying while the broker is not
    /// reachable yet, until `shutdown`.
    pub async fn ensure_streams(
        &self,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Result<(), BrokerError> {
        let mut delay = Duration::from_millis(100);
        loop {
            match ensure_streams(&self.js, &config.streams).await {
                Ok(actions) => {
                    for (stream, action) in actions {
                        tracing::debug!(stream, ?action, "stream ready");
                    }
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(%error, url = %self.url, "broker not ready; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Err(error),
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Flushes the connection and stops our own server, if any.
    pub async fn close(mut self, data_dir: &Path) {
        // Drain closes the connection for every clone of the client, so
        // stopping our own server below is not seen as a lost broker.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.drain()).await;
        drop(self.client);
        if let Some(server) = self.server.as_mut() {
            server.stop().await;
            let _ = std::fs::remove_file(data_dir.join(BROKER_URL_FILE));
        }
    }
}

/// Which workers run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSet {
    /// Poll the packs and publish.
    pub collect: bool,
    /// Store samples in SQLite.
    pub data: bool,
    /// Validate, audit and dispatch commands to packs.
    pub control: bool,
    /// Store every worker's metrics and the pack events.
    pub monitor: bool,
    /// Upload to the cloud and bring its commands in (when `cloud.enabled`).
    pub cloud: bool,
}

impl WorkerSet {
    /// Every worker: `packgate run`.
    pub const ALL: WorkerSet = WorkerSet {
        collect: true,
        data: true,
        control: true,
        monitor: true,
        cloud: true,
    };
    /// No worker; set the ones wanted.
    pub const NONE: WorkerSet = WorkerSet {
        collect: false,
        data: false,
        control: false,
        monitor: false,
        cloud: false,
    };
}

/// What a run did, for the final log line, tests and benchmarks.
#[derive(Debug)]
pub struct RunReport {
    /// The collector's counters, if it ran.
    pub collect: Option<Arc<CollectMetrics>>,
    /// What the publisher left unpublished.
    pub publisher: PublisherReport,
    /// The data worker's counters, if it ran.
    pub data: Option<Arc<DataMetrics>>,
    /// The control worker's counters, if it ran.
    pub control: Option<Arc<ControlMetrics>>,
    /// The monitor worker's counters, if it ran.
    pub monitor: Option<Arc<MonitorMetrics>>,
    /// The cloud worker's counters, if it ran.
    pub cloud: Option<Arc<CloudMetrics>>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The broker could not be reached or set up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The data worker failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A driver could not be built.
    #[error(transparent)]
    Packs(#[from] crate::workers::collect::PackSetError),
    /// A worker failed.
    #[error("{worker} worker failed: {reason}")]
    Worker {
        /// The worker.
        worker: &'static str,
        /// Its error.
        reason: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A worker running in its own task; its error stops the whole process
/// (the service manager restarts it), so a failing component is never
/// silently absent.
type WorkerTask = JoinHandle<Result<(), RunError>>;

fn spawn_worker<E: std::fmt::Display + Send + 'static>(
    worker: &'static str,
    run: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    on_failure: CancellationToken,
) -> WorkerTask {
    tokio::spawn(async move {
        run.await.map_err(|error| {
            tracing::error!(worker, %error, "worker failed; stopping");
            on_failure.cancel();
            RunError::Worker {
                worker,
                reason: error.to_string(),
            }
        })
    })
}

async fn join_worker(task: WorkerTask, errors: &mut Vec<RunError>) {
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => errors.push(error),
        Err(error) => tracing::error!(%error, "worker task panicked"),
    }
}

/// Runs `workers` against `broker` until `shutdown`, then stops them in
/// order: polling stops and in-flight publishes are flushed, the data
/// worker stores what was flushed and acks its batch, the other workers
/// finish what they hold, and each worker's last metrics snapshot goes out.
pub async fn run_workers(
    config: &Config,
    workers: WorkerSet,
    packs: PackSet,
    broker: &Broker,
    shutdown: CancellationToken,
) -> Result<RunReport, RunError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    broker.ensure_streams(config, &shutdown).await?;
    let interval = config.monitor.snapshot_interval();
    // Snapshots stop last, so the final one holds the final counters.
    let snapshots_stop = CancellationToken::new();
    let mut snapshots = Vec::new();
    let mut publish_snapshots = |worker: &'static str, source: Arc<dyn MetricsSource>| {
        snapshots.push(spawn_metrics_publisher(
            broker.js.clone(),
            worker,
            interval,
            source,
            snapshots_stop.clone(),
        ));
    };

    let collector = workers.collect.then(|| {
        Collector::start(
            &config.collect,
            packs,
            broker.js.clone(),
            broker.client.clone(),
            shutdown.clone(),
        )
    });
    if let Some(collector) = &collector {
        tracing::info!(boot_id = %collector.boot_id, packs = config.packs.len(), "collect worker started");
        publish_snapshots(
            "collect",
            Arc::clone(&collector.metrics) as Arc<dyn MetricsSource>,
        );
    }
    // The data worker stops after the collector has flushed, so it stores
    // what the last publishes put on the stream; the others after it.
    let data_stop = CancellationToken::new();
    let others_stop = CancellationToken::new();
    let data_metrics = Arc::new(DataMetrics::default());
    let data = workers.data.then(|| {
        publish_snapshots("data", Arc::clone(&data_metrics) as Arc<dyn MetricsSource>);
        spawn_worker(
            "data",
            run_data(
                config.data.clone(),
                config.database_path(),
                broker.js.clone(),
                Arc::clone(&data_metrics),
                data_stop.clone(),
            ),
            shutdown.clone(),
        )
    });
    let mut others = Vec::new();
    let control_metrics = workers.control.then(|| Arc::new(ControlMetrics::default()));
    if let Some(metrics) = &control_metrics {
        publish_snapshots("control", Arc::clone(metrics) as Arc<dyn MetricsSource>);
        let (config, client, metrics, stop) = (
            config.clone(),
            broker.client.clone(),
            Arc::clone(metrics),
            others_stop.clone(),
        );
        others.push(spawn_worker(
            "control",
            async move { run_control(&config, client, metrics, stop).await },
            shutdown.clone(),
        ));
    }
    let monitor_metrics = workers.monitor.then(|| Arc::new(MonitorMetrics::default()));
    if let Some(metrics) = &monitor_metrics {
        publish_snapshots("monitor", Arc::clone(metrics) as Arc<dyn MetricsSource>);
        let (config, js, metrics, stop) = (
            config.clone(),
            broker.js.clone(),
            Arc::clone(metrics),
            others_stop.clone(),
        );
        others.push(spawn_worker(
            "monitor",
            async move { run_monitor(&config, js, metrics, stop).await },
            shutdown.clone(),
        ));
    }
    let cloud_metrics =
        (workers.cloud && config.cloud.enabled).then(|| Arc::new(CloudMetrics::default()));
    if let Some(metrics) = &cloud_metrics {
        publish_snapshots("cloud", Arc::clone(metrics) as Arc<dyn MetricsSource>);
        let (cloud, client, js, metrics, stop) = (
            config.cloud.clone(),
            broker.client.clone(),
            broker.js.clone(),
            Arc::clone(metrics),
            others_stop.clone(),
        );
        others.push(spawn_worker(
            "cloud",
            async move { run_cloud(&cloud, client, js, metrics, stop).await },
            shutdown.clone(),
        ));
    }

    if workers.collect {
        match crate::outputs::cdev::open_outputs(
            &config.outputs,
            config.packs.iter().map(|p| p.id.clone()),
        ) {
            Ok(Some(driver)) => {
                let (client, stop) = (broker.client.clone(), others_stop.clone());
                others.push(spawn_worker(
                    "outputs",
                    async move { crate::outputs::run_outputs(driver, client, stop).await },
                    shutdown.clone(),
                ));
            }
            Ok(None) => {}
            Err(error) => {
                shutdown.cancel();
                return Err(RunError::Worker {
                    worker: "outputs",
                    reason: error.to_string(),
                });
            }
        }
    }

    supervise(broker, &shutdown, data.as_ref(), &others).await;
    let mut report = RunReport {
        collect: collector.as_ref().map(|c| Arc::clone(&c.metrics)),
        publisher: PublisherReport::default(),
        data: workers.data.then(|| Arc::clone(&data_metrics)),
        control: control_metrics,
        monitor: monitor_metrics,
        cloud: cloud_metrics,
    };
    if let Some(collector) = collector {
        report.publisher = collector.finish().await;
    }
    let mut errors = Vec::new();
    if let Some(data) = data {
        if workers.collect {
            // Give the data worker a moment to take what was just flushed.
            let patience = Duration::from_millis(config.data.shutdown_drain_ms);
            wait_for_drain(&data_metrics, report.collect.as_deref(), patience).await;
        }
        data_stop.cancel();
        join_worker(data, &mut errors).await;
    }
    others_stop.cancel();
    for task in others {
        join_worker(task, &mut errors).await;
    }
    snapshots_stop.cancel();
    for task in snapshots {
        let _ = task.await;
    }
    match errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

/// Tells systemd (when it started us with `Type=notify`) that the gateway
/// is ready, then pets its watchdog while the broker is connected and
/// every worker task is running, until `shutdown`. A stuck or failed
/// worker stops the petting, and systemd restarts the service.
async fn supervise(
    broker: &Broker,
    shutdown: &CancellationToken,
    data: Option<&WorkerTask>,
    others: &[WorkerTask],
) {
    let notifier = match crate::sd_notify::Notifier::from_env() {
        Ok(notifier) => notifier,
        Err(error) => {
            tracing::warn!(%error, "cannot talk to systemd's notify socket");
            None
        }
    };
    let Some(notifier) = notifier else {
        shutdown.cancelled().await;
        return;
    };
    if let Err(error) = notifier.ready() {
        tracing::warn!(%error, "cannot notify systemd");
    }
    let every = crate::sd_notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {
                let connected = broker.client.connection_state() == async_nats::connection::State::Connected;
                let running = data.iter().copied().chain(others).all(|task| !task.is_finished());
                if connected && running {
                    let _ = notifier.watchdog();
                } else {
                    let _ = notifier.status(if connected { "a worker stopped" } else { "broker unreachable" });
                }
            }
        }
    }
    let _ = notifier.stopping();
}

/// Waits up to `patience` for the data worker to have stored as many
/// samples as the collector published in this run.
async fn wait_for_drain(data: &DataMetrics, collect: Option<&CollectMetrics>, patience: Duration) {
    let Some(collect) = collect else { return };
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        let published = collect.samples_published.get();
        let seen = data.samples_stored.get() + data.samples_duplicate.get();
        if seen >= published {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        token.cancel();
    });
}
