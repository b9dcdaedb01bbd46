//! The banks' states into the sample store: pulled from their own durable
//! consumer in batches, committed in one transaction, acked after the
//! commit. A redelivered state hits the unique key and is not stored twice;
//! one that does not decode is counted and terminated; a failing file or
//! disk keeps the batch in hand (progress acks, no delivery spent) and
//! retries it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use packgate_protocol::{decode, names, BankState};
use tokio_util::sync::CancellationToken;

use super::DataMetrics;
use crate::broker::ensure_consumer;
use crate::retry::{retry_until_shutdown, Backoff};
use crate::store::{InsertOutcome, SampleStore, StoreError};
use crate::telemetry::events::{LogLimiter, LIMITED_LOG_INTERVAL};
use crate::telemetry::now_ms;
use crate::workers::batch::BatchPuller;

/// Most states committed in one transaction.
const BATCH_MAX: usize = 200;
/// Longest a received state waits for its batch to fill.
const BATCH_LINGER: Duration = Duration::from_millis(50);
/// Pause between attempts at a failing commit.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// How often a batch kept in hand tells the broker it is being worked on.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Longest an ack may take.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Malformed states log one line per interval, with the count.
static MALFORMED_LOG: LogLimiter = LogLimiter::named(
    "malformed message on the bank states stream",
    LIMITED_LOG_INTERVAL,
);

/// Stores the bank states until `shutdown`, then what is still arriving
/// for up to `drain`.
pub(super) async fn run_banks(
    js: jetstream::Context,
    store: Arc<Mutex<SampleStore>>,
    metrics: Arc<DataMetrics>,
    drain: Duration,
    shutdown: CancellationToken,
) {
    let Some((consumer, _)) = retry_until_shutdown(
        "data consumer of bank states not ready",
        Backoff::new(Duration::from_millis(200), Duration::from_secs(2)),
        &shutdown,
        || ensure_consumer(&js, &names::DATA_BANKS_CONSUMER),
    )
    .await
    else {
        return;
    };
    let mut batches = BatchPuller::new(consumer, BATCH_MAX, BATCH_LINGER, names::BANKS_STREAM.name);
    while let Some(batch) = batches.next_batch(&shutdown).await {
        commit(batch, &store, &metrics, &shutdown).await;
    }
    let until = tokio::time::Instant::now() + drain;
    while let Some(batch) = batches.drain_batch(until).await {
        commit(batch, &store, &metrics, &shutdown).await;
    }
}

/// Acks (or terminates, or hands back) one message under a timeout.
async fn ack(message: &jetstream::Message, kind: AckKind, metrics: &DataMetrics) {
    let acked = tokio::time::timeout(ACK_TIMEOUT, message.ack_with(kind)).await;
    if !matches!(acked, Ok(Ok(()))) {
        metrics.ack_failures.inc();
        tracing::debug!("a bank state's ack failed; it will be redelivered");
    }
}

/// Decodes, commits and acks one batch.
async fn commit(
    batch: Vec<jetstream::Message>,
    store: &Arc<Mutex<SampleStore>>,
    metrics: &DataMetrics,
    shutdown: &CancellationToken,
) {
    let (states, kept) = decode_batch(batch, metrics).await;
    if kept.is_empty() {
        return;
    }
    let states = Arc::new(states);
    let mut last_progress = tokio::time::Instant::now();
    let mut retry = Backoff::fixed(RETRY_PAUSE);
    loop {
        match insert(store, &states).await {
            Ok(outcome) => {
                metrics.last_commit_ms.set(now_ms());
                metrics.bank_states_stored.add(outcome.inserted as u64);
                metrics.bank_states_duplicate.add(outcome.duplicates as u64);
                ack_all(&kept, AckKind::Ack, metrics).await;
                return;
            }
            Err(error) if error.is_row_fault() => {
                // Decoding checks what the store checks: not reached unless
                // the two disagree. Never retried, never lost in silence.
                metrics.bank_states_malformed.add(kept.len() as u64);
                tracing::error!(%error, states = kept.len(), "bank states the store refuses: terminated");
                ack_all(&kept, AckKind::Term, metrics).await;
                return;
            }
            Err(error) => {
                metrics.store_failures.inc();
                if error.is_disk_full() {
                    metrics.disk_full.inc();
                }
                tracing::error!(%error, states = kept.len(), "cannot commit bank states; retried");
            }
        }
        if shutdown.is_cancelled() {
            ack_all(&kept, AckKind::Nak(None), metrics).await;
            return;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            ack_all(&kept, AckKind::Progress, metrics).await;
            last_progress = tokio::time::Instant::now();
        }
        // Shutdown ends the pause; the next round hands the batch back.
        let _ = retry.wait(shutdown).await;
    }
}

/// The states of `batch` that decode, with their messages; each one that
/// does not is counted and terminated.
async fn decode_batch(
    batch: Vec<jetstream::Message>,
    metrics: &DataMetrics,
) -> (Vec<BankState>, Vec<jetstream::Message>) {
    let mut states = Vec::with_capacity(batch.len());
    let mut kept = Vec::with_capacity(batch.len());
    for message in batch {
        match decode::<BankState>(&message.payload) {
            Ok(state) => {
                states.push(state);
                kept.push(message);
            }
            Err(error) => {
                metrics.bank_states_malformed.inc();
                if let Some(held_back) = MALFORMED_LOG.allow() {
                    tracing::warn!(subject = %message.subject, %error, held_back,
                        "malformed message on the bank states stream: terminated");
                }
                ack(&message, AckKind::Term, metrics).await;
            }
        }
    }
    (states, kept)
}

/// One attempt at committing `states` in one transaction.
async fn insert(
    store: &Arc<Mutex<SampleStore>>,
    states: &Arc<Vec<BankState>>,
) -> Result<InsertOutcome, StoreError> {
    let (store, batch) = (Arc::clone(store), Arc::clone(states));
    tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert_bank_states(&batch, now_ms())
    })
    .await
    .unwrap_or_else(|error| Err(StoreError::Task(error.to_string())))
}

/// Acks every message of a batch with `kind`, in order.
async fn ack_all(kept: &[jetstream::Message], kind: AckKind, metrics: &DataMetrics) {
    for message in kept {
        ack(message, kind, metrics).await;
    }
}
