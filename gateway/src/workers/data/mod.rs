//! The data worker: reads samples from its durable pull consumer in
//! batches, commits each batch to SQLite in one transaction, and acks the
//! messages only after the commit. A redelivered sample hits the unique key
//! and is not stored twice. A message that can never be stored (it does
//! not decode, or its values cannot be stored) is counted, recorded in the
//! `dead_letters` table and terminated alone; the rest of its batch is
//! stored ([`commit`]). A message the broker gives up delivering is
//! counted, logged and recorded too ([`given_up`]). The banks' states go
//! into the same database from their own consumer ([`banks`]).

mod banks;
mod commit;
mod given_up;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use packgate_protocol::names;
use tokio_util::sync::CancellationToken;

use futures_util::future::BoxFuture;

use super::batch::BatchPuller;
use super::retention::prune_expired;
use super::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use crate::broker::{ensure_consumer, BrokerError};
use crate::config::{DataConfig, Durability};
use crate::retry::{retry_until_shutdown, Backoff};
use crate::store::{SampleStore, StoreError};
use commit::Committer;

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
            /// Messages that could not be decoded (dead-lettered).
            messages_malformed,
            /// Decoded samples the store refused as one row (dead-lettered).
            samples_rejected,
            /// Messages recorded in the `dead_letters` table: the two
            /// above, and those the broker gave up delivering.
            dead_lettered,
            /// Messages the broker gave up delivering (max deliveries).
            max_deliveries,
            /// Batches committed.
            batches_committed,
            /// Commits that failed (the batch is kept and retried).
            store_failures,
            /// Of `store_failures`, those for want of room: the disk, or the
            /// file-size limit, is full. Storing resumes when space returns.
            disk_full,
            /// Acks that could not be sent (the sample will be redelivered and
            /// recognised as a duplicate).
            ack_failures,
            /// Rows removed by retention.
            rows_pruned,
            /// Bank states committed (new rows).
            bank_states_stored,
            /// Redelivered bank states already in the database.
            bank_states_duplicate,
            /// Messages on the bank states stream that could not be decoded
            /// (terminated).
            bank_states_malformed,
        }
        gauges {
            /// When a batch was last committed, ms since the Unix epoch (0:
            /// never); with the consumer's lag, tells a stalled worker.
            last_commit_ms,
        }
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
            let store = Store {
                database,
                durability: ctx.durability,
            };
            run(
                self.config,
                store,
                ctx.client,
                ctx.js,
                self.metrics,
                shutdown,
            )
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
    let store = Store {
        database,
        durability: Durability::default(),
    };
    run(config, store, js.client(), js, metrics, shutdown).await
}

/// Where the samples go and how hard their commits are synced.
#[derive(Debug)]
struct Store {
    database: PathBuf,
    durability: Durability,
}

/// Runs the data worker until `shutdown`, then takes what is still
/// arriving (what stopped sources flushed last) for up to
/// `shutdown_drain_ms`; the batch in hand is committed and acked before it
/// returns.
async fn run(
    config: DataConfig,
    Store {
        database,
        durability,
    }: Store,
    client: async_nats::Client,
    js: jetstream::Context,
    metrics: Arc<DataMetrics>,
    shutdown: CancellationToken,
) -> Result<(), DataError> {
    let store = SampleStore::open(&database)
        .and_then(|store| store.set_durability(durability).map(|()| store))
        .map_err(|source| DataError::Open {
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
    let given_up = given_up::subscribe_given_up(&client)
        .await
        .map(|advisories| {
            tokio::spawn(given_up::watch_given_up(
                advisories,
                js.clone(),
                Arc::clone(&store),
                Arc::clone(&metrics),
                shutdown.clone(),
            ))
        });
    let banks = tokio::spawn(banks::run_banks(
        js.clone(),
        Arc::clone(&store),
        Arc::clone(&metrics),
        Duration::from_millis(config.shutdown_drain_ms),
        shutdown.clone(),
    ));
    let mut batches = BatchPuller::new(
        consumer,
        config.batch_max_samples,
        Duration::from_millis(config.batch_linger_ms),
        names::SAMPLES_STREAM.name,
    )
    .with_enough(config.batch_min_samples);
    let mut committer = Committer {
        store,
        metrics,
        failing: 0,
    };
    while let Some(batch) = batches.next_batch(&shutdown).await {
        committer.commit(batch, &shutdown).await;
    }
    // Take what stopped sources flushed last: until the broker holds
    // nothing more for us, within `shutdown_drain_ms`.
    let until = tokio::time::Instant::now() + Duration::from_millis(config.shutdown_drain_ms);
    loop {
        if let Some(batch) = batches.drain_batch(until).await {
            committer.commit(batch, &shutdown).await;
            continue;
        }
        if tokio::time::Instant::now() >= until || batches.undelivered().await.unwrap_or(0) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = retention.await;
    let _ = banks.await;
    if let Some(given_up) = given_up {
        let _ = given_up.await;
    }
    Ok(())
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
