//! Wiring: the broker connection (or our own nats-server), the workers of
//! this process, and an orderly shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::broker::connect::jetstream_context;
use crate::broker::{connect, ensure_streams, BrokerError, NatsServer, NatsServerOptions};
use crate::config::Config;
use crate::workers::collect::{Collector, PackSet, PublisherReport};
use crate::workers::data::{run_data, DataError, DataMetrics};

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
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
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
}

impl WorkerSet {
    /// Every worker: `packgate run`.
    pub const ALL: WorkerSet = WorkerSet {
        collect: true,
        data: true,
    };
}

/// What a run did, for the final log line, tests and benchmarks.
#[derive(Debug)]
pub struct RunReport {
    /// The collector's counters, if it ran.
    pub collect: Option<Arc<crate::workers::collect::CollectMetrics>>,
    /// What the publisher left unpublished.
    pub publisher: PublisherReport,
    /// The data worker's counters, if it ran.
    pub data: Option<Arc<DataMetrics>>,
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
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Runs `workers` against `broker` until `shutdown`, then stops them in
/// order: polling stops, in-flight publishes are flushed, the data worker
/// commits and acks its batch.
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
    let collector = workers.collect.then(|| {
        Collector::start(
            &config.collect,
            packs,
            broker.js.clone(),
            broker.client.clone(),
            shutdown.clone(),
        )
    });
    let data_metrics = Arc::new(DataMetrics::default());
    // The data worker stops after the collector has flushed, so it stores
    // what the last publishes put on the stream.
    let data_shutdown = CancellationToken::new();
    let data = workers.data.then(|| {
        tokio::spawn(run_data(
            config.data.clone(),
            config.database_path(),
            broker.js.clone(),
            Arc::clone(&data_metrics),
            data_shutdown.clone(),
        ))
    });
    if let Some(collector) = &collector {
        tracing::info!(boot_id = %collector.boot_id, packs = config.packs.len(), "collect worker started");
    }
    shutdown.cancelled().await;
    let mut report = RunReport {
        collect: collector.as_ref().map(|c| Arc::clone(&c.metrics)),
        publisher: PublisherReport::default(),
        data: workers.data.then(|| Arc::clone(&data_metrics)),
    };
    if let Some(collector) = collector {
        report.publisher = collector.finish().await;
    }
    if let Some(data) = data {
        if workers.collect {
            // Give the data worker a moment to take what was just flushed.
            let patience = Duration::from_millis(config.data.shutdown_drain_ms);
            wait_for_drain(&data_metrics, report.collect.as_deref(), patience).await;
        }
        data_shutdown.cancel();
        match data.await {
            Ok(result) => result?,
            Err(error) => tracing::error!(%error, "data worker task failed"),
        }
    }
    Ok(report)
}

/// Waits up to `patience` for the data worker to have stored as many
/// samples as the collector published in this run.
async fn wait_for_drain(
    data: &DataMetrics,
    collect: Option<&crate::workers::collect::CollectMetrics>,
    patience: Duration,
) {
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
