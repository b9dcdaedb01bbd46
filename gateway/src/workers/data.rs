//! The data worker: reads samples from its durable pull consumer in
//! batches, commits each batch to SQLite in one transaction, and acks the
//! messages only after the commit. A redelivered sample hits the unique key
//! and is not stored twice; a message that cannot be decoded is counted,
//! logged and terminated so it is not redelivered forever.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use packgate_protocol::names::ConsumerSpec;
use packgate_protocol::{decode, names, DecodeError, Sample};
use tokio_util::sync::CancellationToken;

use futures_util::future::BoxFuture;

use super::batch::BatchPuller;
use super::retention::prune_expired;
use super::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use crate::broker::{ensure_consumer, BrokerError};
use crate::config::DataConfig;
use crate::retry::{retry_until_shutdown, Backoff};
use crate::store::{SampleStore, StoreError};
use crate::telemetry::events::{InternalEvent, LogLimiter};
use crate::telemetry::now_ms;

/// Why the data worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The database could not be opened.
    #[error("cannot open the sample database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The error.
        source: StoreError,
    },
    /// The consumer could not be set up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

crate::worker_metrics! {
    /// What the data worker has done.
    pub struct DataMetrics {
        counters {
            /// Samples committed (new rows).
            samples_stored,
            /// Redelivered samples already in the database.
            samples_duplicate,
            /// Messages that could not be decoded, terminated.
            messages_malformed,
            /// Batches committed.
            batches_committed,
            /// Commits that failed (the batch is redelivered).
            store_failures,
            /// Of `store_failures`, those for want of room: the disk, or the
            /// file-size limit, is full. Storing resumes when space returns.
            disk_full,
            /// Acks that could not be sent (the sample will be redelivered and
            /// recognised as a duplicate).
            ack_failures,
            /// Rows removed by retention.
            rows_pruned,
        }
        gauges {}
        latencies {
            /// From poll to commit.
            poll_to_commit: "poll_to_commit",
        }
    }
}

/// The data worker, built from its `[data]` section.
#[derive(Debug)]
pub struct DataWorker {
    config: DataConfig,
    metrics: Arc<DataMetrics>,
}

impl DataWorker {
    /// A data worker storing into `config.database` (under the data
    /// directory unless absolute).
    pub fn new(config: DataConfig) -> Self {
        Self {
            config,
            metrics: Arc::new(DataMetrics::default()),
        }
    }
}

impl Worker for DataWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Data
    }

    fn consumers(&self) -> Vec<ConsumerSpec> {
        vec![names::DATA_CONSUMER]
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
            let database = ctx.data_dir.join(&self.config.database);
            run(self.config, database, ctx.js, self.metrics, shutdown)
                .await
                .map_err(|error| WorkerError::new(WorkerKind::Data, error))
        })
    }
}

/// Runs a data worker storing into `database` with `metrics` given, apart
/// from the supervisor (tests that stage one worker alone).
pub async fn run_data(
    config: DataConfig,
    database: PathBuf,
    js: jetstream::Context,
    metrics: Arc<DataMetrics>,
    shutdown: CancellationToken,
) -> Result<(), DataError> {
    run(config, database, js, metrics, shutdown).await
}

/// Runs the data worker until `shutdown`, then takes what is still
/// arriving (what stopped sources flushed last) for up to
/// `shutdown_drain_ms`; the batch in hand is committed and acked before it
/// returns.
async fn run(
    config: DataConfig,
    database: PathBuf,
    js: jetstream::Context,
    metrics: Arc<DataMetrics>,
    shutdown: CancellationToken,
) -> Result<(), DataError> {
    let store = SampleStore::open(&database).map_err(|source| DataError::Open {
        path: database.clone(),
        source,
    })?;
    let store = Arc::new(Mutex::new(store));
    let Some(consumer) = retry_until_shutdown(
        "data consumer not ready",
        Backoff::new(Duration::from_millis(200), Duration::from_secs(2)),
        &shutdown,
        || ensure_consumer(&js, &names::DATA_CONSUMER),
    )
    .await
    else {
        return Ok(());
    };
    let (consumer, _) = consumer;
    let retention = tokio::spawn(run_retention(
        config.clone(),
        Arc::clone(&store),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let mut batches = BatchPuller::new(
        consumer,
        config.batch_max_samples,
        Duration::from_millis(config.batch_linger_ms),
        names::SAMPLES_STREAM.name,
    );
    let mut failing = 0u64;
    while let Some(mut batch) = batches.next_batch(&shutdown).await {
        commit_batch(&mut batch, &store, &metrics, &mut failing).await;
    }
    // Take what stopped sources flushed last: until the broker holds
    // nothing more for us, within `shutdown_drain_ms`.
    let until = tokio::time::Instant::now() + Duration::from_millis(config.shutdown_drain_ms);
    loop {
        if let Some(mut batch) = batches.drain_batch(until).await {
            commit_batch(&mut batch, &store, &metrics, &mut failing).await;
            continue;
        }
        if tokio::time::Instant::now() >= until || batches.undelivered().await.unwrap_or(0) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = retention.await;
    Ok(())
}

/// Malformed messages log one line per interval, with the count.
static MALFORMED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// What happens in the data worker, each logged and counted in one call.
#[derive(Debug)]
enum DataEvent<'a> {
    /// A message that is not a readable sample: terminated.
    Malformed {
        subject: &'a str,
        error: &'a DecodeError,
    },
    /// A terminate or an ack could not be sent.
    AckFailed { error: String, terminate: bool },
    /// A batch was committed.
    Committed { inserted: usize, duplicates: usize },
    /// Storing works again after failed commits.
    Resumed { failed_commits: u64 },
    /// A commit failed; its messages stay in the stream. `failing` counts
    /// the failures in a row (the first is an ERROR, the rest debug).
    CommitFailed {
        error: &'a StoreError,
        samples: usize,
        failing: u64,
    },
}

impl InternalEvent<DataMetrics> for DataEvent<'_> {
    fn emit(self, metrics: &DataMetrics) {
        match self {
            DataEvent::Malformed { subject, error } => {
                metrics.messages_malformed.inc();
                if let Some(held_back) = MALFORMED_LOG.allow() {
                    tracing::warn!(
                        subject,
                        %error,
                        kind = error.kind_name(),
                        held_back,
                        "malformed message on the samples stream: terminated"
                    );
                }
            }
            DataEvent::AckFailed { error, terminate } => {
                metrics.ack_failures.inc();
                if terminate {
                    tracing::warn!(%error, "cannot terminate a malformed message");
                } else {
                    tracing::debug!(%error, "ack failed; the sample will be redelivered");
                }
            }
            DataEvent::Committed {
                inserted,
                duplicates,
            } => {
                metrics.samples_stored.add(inserted as u64);
                metrics.samples_duplicate.add(duplicates as u64);
                metrics.batches_committed.inc();
            }
            DataEvent::Resumed { failed_commits } => {
                tracing::info!(failed_commits, "samples are stored again");
            }
            DataEvent::CommitFailed {
                error,
                samples,
                failing,
            } => {
                metrics.store_failures.inc();
                let disk_full = error.is_disk_full();
                if disk_full {
                    metrics.disk_full.inc();
                }
                if failing == 1 {
                    tracing::error!(
                        %error,
                        samples,
                        disk_full,
                        "cannot commit samples; they stay in the stream and are retried"
                    );
                } else {
                    tracing::debug!(%error, failed_commits = failing, disk_full, "commit failed again");
                }
            }
        }
    }
}

/// Decodes, commits and acks one batch; on a failed commit nothing is
/// acked and the messages come back after a delay. `failing` counts the
/// failed commits in a row, so a full disk logs an error once, not once
/// per batch, and its end is logged too.
async fn commit_batch(
    batch: &mut Vec<jetstream::Message>,
    store: &Arc<Mutex<SampleStore>>,
    metrics: &DataMetrics,
    failing: &mut u64,
) {
    let mut samples = Vec::with_capacity(batch.len());
    let mut kept = Vec::with_capacity(batch.len());
    for message in batch.drain(..) {
        match decode::<Sample>(&message.payload) {
            Ok(sample) => {
                samples.push(sample);
                kept.push(message);
            }
            Err(error) => {
                DataEvent::Malformed {
                    subject: message.subject.as_str(),
                    error: &error,
                }
                .emit(metrics);
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    DataEvent::AckFailed {
                        error: error.to_string(),
                        terminate: true,
                    }
                    .emit(metrics);
                }
            }
        }
    }
    if samples.is_empty() {
        return;
    }
    let store = Arc::clone(store);
    let committed = tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = store.insert_batch(&samples, now_ms());
        (samples, outcome)
    })
    .await;
    let (samples, outcome) = match committed {
        Ok(result) => result,
        Err(error) => {
            tracing::error!(%error, "store task failed");
            return;
        }
    };
    match outcome {
        Ok(outcome) => {
            if *failing > 0 {
                DataEvent::Resumed {
                    failed_commits: *failing,
                }
                .emit(metrics);
                *failing = 0;
            }
            DataEvent::Committed {
                inserted: outcome.inserted,
                duplicates: outcome.duplicates,
            }
            .emit(metrics);
            let now = now_ms();
            // An untrusted wall clock makes the latency meaningless.
            for sample in samples.iter().filter(|s| s.clock.is_trusted()) {
                let latency_ms = (now - sample.timestamp_ms).max(0);
                metrics
                    .poll_to_commit
                    .record_us(u64::try_from(latency_ms).unwrap_or(0) * 1000);
            }
            for message in kept {
                if let Err(error) = message.ack().await {
                    DataEvent::AckFailed {
                        error: error.to_string(),
                        terminate: false,
                    }
                    .emit(metrics);
                }
            }
        }
        Err(error) => {
            *failing += 1;
            DataEvent::CommitFailed {
                error: &error,
                samples: kept.len(),
                failing: *failing,
            }
            .emit(metrics);
            for message in kept {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Deletes samples older than the retention period, a bounded number of
/// rows at a time, every `retention_interval_s`.
async fn run_retention(
    config: DataConfig,
    store: Arc<Mutex<SampleStore>>,
    metrics: Arc<DataMetrics>,
    shutdown: CancellationToken,
) {
    if config.retention_days == 0 {
        return;
    }
    let period = Duration::from_secs(config.retention_interval_s.max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shutdown.cancelled() => return,
        }
        if !prune_expired(
            &store,
            config.retention_days,
            5_000,
            &metrics.rows_pruned,
            "samples",
            &shutdown,
        )
        .await
        {
            return;
        }
    }
}
