//! The monitor worker: reads every worker's metrics snapshots and every
//! pack event from their streams through durable pull consumers, commits
//! each batch to its own SQLite database in one transaction and acks after
//! the commit. A message that cannot be decoded is counted, logged and
//! terminated. Old rows go after `retention_days`.

mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use packgate_protocol::names::{self, ConsumerSpec};
use packgate_protocol::{decode, DecodeError, Event, MetricsSnapshot};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use store::{
    event_detail, BatchOutcome, MonitorStore, MonitorStoreError, StoredEvent, StoredSnapshot,
};

use super::batch::BatchPuller;
use super::retention::prune_expired;
use crate::broker::{ensure_consumer, BrokerError};
use crate::telemetry::snapshot::MetricsSource;
use crate::telemetry::Counter;

/// The monitor's consumer of metrics snapshots.
pub const METRICS_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-monitor-metrics",
    stream: names::METRICS_STREAM.name,
    ack_wait: Duration::from_secs(30),
    max_ack_pending: 2_000,
};

/// The monitor's consumer of pack events.
pub const EVENTS_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-monitor-events",
    stream: names::EVENTS_STREAM.name,
    ack_wait: Duration::from_secs(30),
    max_ack_pending: 2_000,
};

/// Most messages committed in one transaction.
const BATCH_MAX: usize = 200;
/// Longest a received message waits for its batch to fill.
const BATCH_LINGER: Duration = Duration::from_millis(50);
/// How often retention runs.
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);
/// Rows deleted per retention step, so the writer is never held long.
const RETENTION_STEP_ROWS: usize = 5_000;

/// The monitor worker and the metrics snapshots of every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// The monitor's database file; relative paths are under `data_dir`.
    pub database: PathBuf,
    /// Snapshots and events older than this are deleted, days; 0 keeps
    /// everything.
    pub retention_days: u32,
    /// How often every worker publishes its metrics snapshot, seconds; a
    /// worker with no snapshot in three intervals is shown as missing.
    pub snapshot_interval_s: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("monitor.db"),
            retention_days: 30,
            snapshot_interval_s: 10,
        }
    }
}

impl MonitorConfig {
    /// The database file, under `data_dir` unless absolute.
    pub fn database_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.database)
    }

    /// The snapshot period (at least one second).
    pub fn snapshot_interval(&self) -> Duration {
        Duration::from_secs(self.snapshot_interval_s.max(1))
    }
}

/// Why the monitor worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The database could not be opened.
    #[error("cannot open the monitor database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The error.
        source: MonitorStoreError,
    },
    /// A consumer could not be set up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The task opening the database failed.
    #[error("the monitor database task failed: {0}")]
    Task(String),
}

/// What the monitor worker has done.
#[derive(Debug, Default)]
pub struct MonitorMetrics {
    /// Snapshots committed (new rows).
    pub snapshots_stored: Counter,
    /// Events committed (new rows).
    pub events_stored: Counter,
    /// Redelivered messages already in the database.
    pub duplicates: Counter,
    /// Messages that could not be decoded, terminated.
    pub messages_malformed: Counter,
    /// Batches committed.
    pub batches_committed: Counter,
    /// Commits that failed (the batch is redelivered).
    pub store_failures: Counter,
    /// Acks that could not be sent.
    pub ack_failures: Counter,
    /// Rows removed by retention.
    pub rows_pruned: Counter,
}

impl MetricsSource for MonitorMetrics {
    fn counters(&self) -> Vec<(String, u64)> {
        [
            ("snapshots_stored", &self.snapshots_stored),
            ("events_stored", &self.events_stored),
            ("duplicates", &self.duplicates),
            ("messages_malformed", &self.messages_malformed),
            ("batches_committed", &self.batches_committed),
            ("store_failures", &self.store_failures),
            ("ack_failures", &self.ack_failures),
            ("rows_pruned", &self.rows_pruned),
        ]
        .into_iter()
        .map(|(name, counter)| (name.to_owned(), counter.get()))
        .collect()
    }
}

/// A decoded message of either stream.
#[derive(Debug)]
enum Record {
    Snapshot(MetricsSnapshot),
    Event(Event),
}

type Decoder = fn(&[u8]) -> Result<Record, DecodeError>;

fn decode_snapshot(bytes: &[u8]) -> Result<Record, DecodeError> {
    decode::<MetricsSnapshot>(bytes).map(Record::Snapshot)
}

fn decode_event(bytes: &[u8]) -> Result<Record, DecodeError> {
    decode::<Event>(bytes).map(Record::Event)
}

type SharedStore = Arc<Mutex<MonitorStore>>;

/// Runs the monitor worker until `shutdown`; the batches in hand are
/// committed and acked before it returns. Its own metrics snapshots are
/// published by the caller, like every worker's
/// ([`spawn_metrics_publisher`](crate::telemetry::snapshot::spawn_metrics_publisher)
/// with `metrics` as the source).
pub async fn run_monitor(
    config: &crate::config::Config,
    js: jetstream::Context,
    metrics: Arc<MonitorMetrics>,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    let monitor = &config.monitor;
    let database = monitor.database_path(&config.data_dir);
    let path = database.clone();
    let opened = tokio::task::spawn_blocking(move || MonitorStore::open(&path)).await;
    let store = match opened {
        Ok(Ok(store)) => Arc::new(Mutex::new(store)),
        Ok(Err(source)) => {
            return Err(MonitorError::Open {
                path: database,
                source,
            })
        }
        Err(error) => return Err(MonitorError::Task(error.to_string())),
    };
    let retention = tokio::spawn(run_retention(
        monitor.retention_days,
        Arc::clone(&store),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let metrics_loop = consume(
        js.clone(),
        &METRICS_CONSUMER,
        decode_snapshot,
        Arc::clone(&store),
        Arc::clone(&metrics),
        shutdown.clone(),
    );
    let events_loop = consume(
        js,
        &EVENTS_CONSUMER,
        decode_event,
        Arc::clone(&store),
        Arc::clone(&metrics),
        shutdown.clone(),
    );
    tokio::join!(metrics_loop, events_loop);
    let _ = retention.await;
    Ok(())
}

/// Creates the consumer, retrying until the broker answers or `shutdown`.
async fn open_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    shutdown: &CancellationToken,
) -> Option<PullConsumer> {
    let mut delay = Duration::from_millis(200);
    loop {
        match ensure_consumer(js, spec).await {
            Ok((consumer, _)) => return Some(consumer),
            Err(error) => {
                tracing::warn!(%error, consumer = spec.durable, "monitor consumer not ready; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return None,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Pulls one stream in batches until `shutdown`.
async fn consume(
    js: jetstream::Context,
    spec: &'static ConsumerSpec,
    decoder: Decoder,
    store: SharedStore,
    metrics: Arc<MonitorMetrics>,
    shutdown: CancellationToken,
) {
    let Some(consumer) = open_consumer(&js, spec, &shutdown).await else {
        return;
    };
    let mut batches = BatchPuller::new(consumer, BATCH_MAX, BATCH_LINGER, spec.stream);
    while let Some(mut batch) = batches.next_batch(&shutdown).await {
        commit_batch(&mut batch, decoder, &store, &metrics).await;
    }
}

/// Acks (or terminates) one message under a timeout; failures are counted.
async fn ack(message: &jetstream::Message, kind: AckKind, metrics: &MonitorMetrics) {
    match tokio::time::timeout(Duration::from_secs(5), message.ack_with(kind)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            metrics.ack_failures.inc();
            tracing::debug!(%error, "ack failed; the message will be redelivered");
        }
        Err(_) => {
            metrics.ack_failures.inc();
            tracing::debug!("ack timed out; the message will be redelivered");
        }
    }
}

/// Decodes, commits and acks one batch; on a failed commit nothing is
/// acked and the messages come back after a delay.
async fn commit_batch(
    batch: &mut Vec<jetstream::Message>,
    decoder: Decoder,
    store: &SharedStore,
    metrics: &MonitorMetrics,
) {
    let mut snapshots = Vec::new();
    let mut events = Vec::new();
    let mut kept = Vec::with_capacity(batch.len());
    for message in batch.drain(..) {
        match decoder(&message.payload) {
            Ok(Record::Snapshot(snapshot)) => snapshots.push(snapshot),
            Ok(Record::Event(event)) => events.push(event),
            Err(error) => {
                metrics.messages_malformed.inc();
                tracing::warn!(
                    subject = %message.subject,
                    %error,
                    kind = error.kind_name(),
                    "malformed message on a monitored stream: terminated"
                );
                ack(&message, AckKind::Term, metrics).await;
                continue;
            }
        }
        kept.push(message);
    }
    if kept.is_empty() {
        return;
    }
    let store = Arc::clone(store);
    let committed = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert_batch(&snapshots, &events)
    })
    .await;
    match committed {
        Ok(Ok(outcome)) => {
            metrics.snapshots_stored.add(outcome.snapshots as u64);
            metrics.events_stored.add(outcome.events as u64);
            metrics.duplicates.add(outcome.duplicates as u64);
            metrics.batches_committed.inc();
            for message in &kept {
                ack(message, AckKind::Ack, metrics).await;
            }
        }
        Ok(Err(error)) => {
            metrics.store_failures.inc();
            tracing::error!(%error, messages = kept.len(), "cannot commit to the monitor database; retried");
            for message in &kept {
                ack(message, AckKind::Nak(Some(Duration::from_secs(2))), metrics).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(error) => {
            metrics.store_failures.inc();
            tracing::error!(%error, "monitor store task failed");
        }
    }
}

/// Deletes rows older than `retention_days`, a bounded number at a time,
/// at start and then every [`RETENTION_PERIOD`].
async fn run_retention(
    retention_days: u32,
    store: SharedStore,
    metrics: Arc<MonitorMetrics>,
    shutdown: CancellationToken,
) {
    if retention_days == 0 {
        return;
    }
    loop {
        if !prune_expired(
            &store,
            retention_days,
            RETENTION_STEP_ROWS,
            &metrics.rows_pruned,
            "monitor",
            &shutdown,
        )
        .await
        {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(RETENTION_PERIOD) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: MonitorConfig = toml::from_str("").unwrap();
        assert_eq!(config, MonitorConfig::default());
        assert_eq!(config.snapshot_interval(), Duration::from_secs(10));
        assert_eq!(
            config.database_path(Path::new("/d")),
            PathBuf::from("/d/monitor.db")
        );
        let err = toml::from_str::<MonitorConfig>("retention = 3").unwrap_err();
        assert!(err.to_string().contains("retention"), "{err}");
    }
}
