//! The monitor worker: reads every worker's metrics snapshots and every
//! pack event from their streams through durable pull consumers, commits
//! each batch to its own SQLite database in one transaction and acks after
//! the commit. A message that cannot be decoded, or that the database
//! refuses as one row, is counted, logged and terminated alone; the rest of
//! its batch is stored. Old rows go after `retention_days`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use packgate_protocol::names::{self, ConsumerSpec};
use packgate_protocol::{decode, DecodeError, Event, MetricsSnapshot};
use tokio_util::sync::CancellationToken;

pub use crate::store::monitor::{
    event_detail, BatchOutcome, MonitorStore, MonitorStoreError, StoredEvent, StoredSnapshot,
};

use super::batch::BatchPuller;
use super::retention::prune_expired;
use super::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use crate::broker::{ensure_consumer, BrokerError};
use crate::config::Durability;
pub use crate::config::MonitorConfig;
use crate::retry::{retry_until_shutdown, Backoff};
use futures_util::future::BoxFuture;

/// Malformed messages log one line per interval, with the count.
static MALFORMED_LOG: crate::telemetry::events::LogLimiter =
    crate::telemetry::events::LogLimiter::named(
        "messages the monitor terminated (malformed, or refused by its database)",
        crate::telemetry::events::LIMITED_LOG_INTERVAL,
    );

/// Most messages committed in one transaction.
const BATCH_MAX: usize = 200;
/// Longest a received message waits for its batch to fill: the workers'
/// snapshots of one interval, and a burst of events, make one transaction.
const BATCH_LINGER: Duration = Duration::from_millis(500);
/// Pause between attempts at a failing commit.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// How often a batch kept in hand while the database fails tells the broker
/// it is still being worked on (well within the consumers' `ack_wait`).
const RETRY_PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often retention runs.
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);
/// Rows deleted per retention step, so the writer is never held long.
const RETENTION_STEP_ROWS: usize = 5_000;

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

crate::worker_metrics! {
    /// What the monitor worker has done.
    pub struct MonitorMetrics {
        counters {
            /// Snapshots committed (new rows).
            snapshots_stored,
            /// Events committed (new rows).
            events_stored,
            /// Redelivered messages already in the database.
            duplicates,
            /// Messages that could not be decoded, terminated.
            messages_malformed,
            /// Decoded messages the database refused as one row, terminated.
            rows_refused,
            /// Batches committed.
            batches_committed,
            /// Commits that failed (the batch is kept and retried).
            store_failures,
            /// Acks that could not be sent.
            ack_failures,
            /// Rows removed by retention.
            rows_pruned,
        }
        gauges {}
        latencies {}
    }
}

/// The monitor worker, built from its `[monitor]` section.
#[derive(Debug)]
pub struct MonitorWorker {
    config: MonitorConfig,
    metrics: Arc<MonitorMetrics>,
}

impl MonitorWorker {
    /// A monitor storing into `config.database`.
    pub fn new(config: MonitorConfig) -> Self {
        Self {
            config,
            metrics: Arc::new(MonitorMetrics::default()),
        }
    }
}

impl Worker for MonitorWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Monitor
    }

    fn consumers(&self) -> Vec<ConsumerSpec> {
        vec![
            names::MONITOR_METRICS_CONSUMER,
            names::MONITOR_EVENTS_CONSUMER,
        ]
    }

    fn metrics(&self) -> WorkerMetrics {
        WorkerMetrics::new(Arc::clone(&self.metrics))
    }

    fn run(
        self: Box<Self>,
        ctx: WorkerContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), WorkerError>> {
        Box::pin(async move {
            let database = self.config.database_path(&ctx.data_dir);
            run(
                &self.config,
                (database, ctx.durability),
                ctx.js,
                self.metrics,
                shutdown,
            )
            .await
            .map_err(|error| WorkerError::new(WorkerKind::Monitor, error))
        })
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

/// Runs a monitor worker of `config` with `metrics` given, apart from the
/// supervisor (tests that stage it alone).
pub async fn run_monitor(
    config: &crate::config::Config,
    js: jetstream::Context,
    metrics: Arc<MonitorMetrics>,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    let database = config.monitor.database_path(&config.data_dir);
    let store = (database, config.durability);
    run(&config.monitor, store, js, metrics, shutdown).await
}

/// Runs the monitor worker until `shutdown`; the batches in hand are
/// committed and acked before it returns.
async fn run(
    monitor: &MonitorConfig,
    (database, durability): (PathBuf, Durability),
    js: jetstream::Context,
    metrics: Arc<MonitorMetrics>,
    shutdown: CancellationToken,
) -> Result<(), MonitorError> {
    let path = database.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let store = MonitorStore::open(&path)?;
        store.set_durability(durability)?;
        Ok(store)
    })
    .await;
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
        &names::MONITOR_METRICS_CONSUMER,
        decode_snapshot,
        Arc::clone(&store),
        Arc::clone(&metrics),
        shutdown.clone(),
    );
    let events_loop = consume(
        js,
        &names::MONITOR_EVENTS_CONSUMER,
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
    retry_until_shutdown(
        &format!("monitor consumer {} not ready", spec.durable),
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        shutdown,
        || ensure_consumer(js, spec),
    )
    .await
    .map(|(consumer, _)| consumer)
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
        commit_batch(&mut batch, decoder, &store, &metrics, &shutdown).await;
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

/// Decodes, commits and acks one batch. A message that does not decode,
/// or a row the database refuses, is counted, logged and terminated alone;
/// the rest of the batch is stored. A failure of the file or the disk
/// keeps the batch in hand (progress is signalled, so no delivery is
/// spent) and retries it; on `shutdown` it is handed back.
async fn commit_batch(
    batch: &mut Vec<jetstream::Message>,
    decoder: Decoder,
    store: &SharedStore,
    metrics: &MonitorMetrics,
    shutdown: &CancellationToken,
) {
    let (snapshots, events, kept) = decode_batch(batch, decoder, metrics).await;
    if kept.is_empty() {
        return;
    }
    let Some((outcome, refused)) =
        store_retrying(snapshots, events, &kept, store, metrics, shutdown).await
    else {
        return;
    };
    metrics.snapshots_stored.add(outcome.snapshots as u64);
    metrics.events_stored.add(outcome.events as u64);
    metrics.duplicates.add(outcome.duplicates as u64);
    metrics.rows_refused.add(refused.len() as u64);
    metrics.batches_committed.inc();
    if !refused.is_empty() {
        if let Some(held_back) = MALFORMED_LOG.allow() {
            tracing::warn!(
                refused = refused.len(),
                held_back,
                "the monitor database refused messages: terminated, the rest stored"
            );
        }
    }
    for (index, message) in kept.iter().enumerate() {
        let kind = if refused.contains(&index) {
            AckKind::Term
        } else {
            AckKind::Ack
        };
        ack(message, kind, metrics).await;
    }
}

/// Decodes a batch: the snapshots, the events and their messages
/// (snapshots first, then events, as the store numbers refused rows); a
/// message that does not decode is counted, logged and terminated.
async fn decode_batch(
    batch: &mut Vec<jetstream::Message>,
    decoder: Decoder,
    metrics: &MonitorMetrics,
) -> (Vec<MetricsSnapshot>, Vec<Event>, Vec<jetstream::Message>) {
    let mut snapshots = Vec::new();
    let mut events = Vec::new();
    let (mut kept, mut kept_events) = (Vec::new(), Vec::new());
    for message in batch.drain(..) {
        match decoder(&message.payload) {
            Ok(Record::Snapshot(snapshot)) => {
                snapshots.push(snapshot);
                kept.push(message);
            }
            Ok(Record::Event(event)) => {
                events.push(event);
                kept_events.push(message);
            }
            Err(error) => {
                metrics.messages_malformed.inc();
                if let Some(held_back) = MALFORMED_LOG.allow() {
                    tracing::warn!(
                        subject = %message.subject,
                        %error,
                        kind = error.kind_name(),
                        held_back,
                        "malformed message on a monitored stream: terminated"
                    );
                }
                ack(&message, AckKind::Term, metrics).await;
            }
        }
    }
    kept.append(&mut kept_events);
    (snapshots, events, kept)
}

/// Stores the rows, retrying while the file or the disk fails, with
/// progress signalled for `kept`; `None` when `shutdown` came first (the
/// messages are handed back).
async fn store_retrying(
    snapshots: Vec<MetricsSnapshot>,
    events: Vec<Event>,
    kept: &[jetstream::Message],
    store: &SharedStore,
    metrics: &MonitorMetrics,
    shutdown: &CancellationToken,
) -> Option<(BatchOutcome, Vec<usize>)> {
    let (snapshots, events) = (Arc::new(snapshots), Arc::new(events));
    let mut last_progress = tokio::time::Instant::now();
    loop {
        let (store, snapshots, events) = (
            Arc::clone(store),
            Arc::clone(&snapshots),
            Arc::clone(&events),
        );
        let committed = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert_isolating(&snapshots, &events)
        })
        .await;
        match committed {
            Ok(Ok(done)) => return Some(done),
            Ok(Err(error)) => {
                metrics.store_failures.inc();
                tracing::error!(%error, messages = kept.len(), "cannot commit to the monitor database; retried");
            }
            Err(error) => {
                metrics.store_failures.inc();
                tracing::error!(%error, "monitor store task failed");
            }
        }
        if shutdown.is_cancelled() {
            for message in kept {
                ack(message, AckKind::Nak(None), metrics).await;
            }
            return None;
        }
        if last_progress.elapsed() >= RETRY_PROGRESS_EVERY {
            for message in kept {
                ack(message, AckKind::Progress, metrics).await;
            }
            last_progress = tokio::time::Instant::now();
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_PAUSE) => {}
            () = shutdown.cancelled() => {}
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
