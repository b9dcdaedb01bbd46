//! One batch of the samples stream into SQLite: decode, store (row by row
//! when one row spoils the batch), ack what is stored, terminate and record
//! as a dead letter what never can be, and keep in hand and retry what
//! failed for the file or the disk (full, busy) without redelivery.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use packgate_protocol::{decode, names, DecodeError, Sample};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::DataMetrics;
use crate::store::{DeadLetter, Isolated, SampleStore, StoreError};
use crate::telemetry::events::{InternalEvent, LogLimiter, LIMITED_LOG_INTERVAL};
use crate::telemetry::now_ms;

/// Malformed messages log one line per interval, with the count.
static MALFORMED_LOG: LogLimiter = LogLimiter::named(
    "malformed message on the samples stream",
    LIMITED_LOG_INTERVAL,
);
/// Dead letters log one line per interval, with the count.
static DEAD_LOG: LogLimiter =
    LogLimiter::named("a sample can never be stored", LIMITED_LOG_INTERVAL);

/// How often a batch kept in hand while the store fails tells the broker
/// it is still being worked on: well within the consumer's `ack_wait`, so
/// the broker neither redelivers it nor counts a delivery.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// First and longest pause between attempts at a failing commit.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What happens in the data worker, each logged and counted in one call.
#[derive(Debug)]
pub(super) enum DataEvent<'a> {
    /// A message that is not a readable sample.
    Malformed {
        subject: &'a str,
        error: &'a DecodeError,
    },
    /// A message recorded as never storable and terminated.
    DeadLettered {
        stream_seq: u64,
        error_kind: &'a str,
        error: &'a str,
    },
    /// A terminate or an ack could not be sent.
    AckFailed { error: String, terminate: bool },
    /// A batch was committed.
    Committed { inserted: usize, duplicates: usize },
    /// Storing works again after failed commits.
    Resumed { failed_commits: u64 },
    /// A commit failed; its messages are kept in hand and retried.
    /// `failing` counts the failures in a row (the first is an ERROR, the
    /// rest debug).
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
                        "malformed message on the samples stream: dead-lettered"
                    );
                }
            }
            DataEvent::DeadLettered {
                stream_seq,
                error_kind,
                error,
            } => {
                metrics.dead_lettered.inc();
                if let Some(held_back) = DEAD_LOG.allow() {
                    tracing::warn!(
                        stream_seq,
                        kind = error_kind,
                        error,
                        held_back,
                        "a sample can never be stored: kept in dead_letters, terminated"
                    );
                }
            }
            DataEvent::AckFailed { error, terminate } => {
                metrics.ack_failures.inc();
                if terminate {
                    tracing::warn!(%error, "cannot terminate a dead-lettered message");
                } else {
                    tracing::debug!(%error, "ack failed; the sample will be redelivered");
                }
            }
            DataEvent::Committed {
                inserted,
                duplicates,
            } => {
                metrics.last_commit_ms.set(now_ms());
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

/// Where a decoded sample came from, to record it should it be rejected.
#[derive(Debug, Clone)]
struct Origin {
    stream_seq: u64,
    subject: String,
    payload: Bytes,
}

impl Origin {
    fn of(message: &jetstream::Message) -> Self {
        Self {
            stream_seq: message.info().map_or(0, |info| info.stream_sequence),
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
        }
    }

    fn letter(&self, error_kind: &str, error: String, at_ms: i64) -> DeadLetter {
        DeadLetter::of_message(
            names::SAMPLES_STREAM.name,
            self.stream_seq,
            &self.subject,
            &self.payload,
            error_kind,
            error,
            at_ms,
        )
    }
}

/// Stores batches of one data worker.
#[derive(Debug)]
pub(super) struct Committer {
    pub(super) store: Arc<Mutex<SampleStore>>,
    pub(super) metrics: Arc<DataMetrics>,
    /// Failed commits in a row, so a full disk logs an error once, not once
    /// per attempt, and its end is logged too.
    pub(super) failing: u64,
}

/// What one successful attempt did.
struct Done {
    isolated: Isolated,
    letters: Vec<DeadLetter>,
}

impl Committer {
    /// Decodes, commits and acks one batch. A message that can never be
    /// stored (it does not decode, or the store refuses that one row) is
    /// recorded as a dead letter and terminated alone; the rest of its
    /// batch is stored. A failure of the file or the disk keeps the whole
    /// batch in hand, unacked (progress is signalled), and retries it until
    /// it commits; on `shutdown` it is handed back for redelivery.
    pub(super) async fn commit(
        &mut self,
        batch: Vec<jetstream::Message>,
        shutdown: &CancellationToken,
    ) {
        let at_ms = now_ms();
        let mut samples = Vec::with_capacity(batch.len());
        let mut origins = Vec::with_capacity(batch.len());
        let mut kept = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        let mut undecodable = Vec::new();
        for message in batch {
            match decode::<Sample>(&message.payload) {
                Ok(sample) => {
                    samples.push(sample);
                    origins.push(Origin::of(&message));
                    kept.push(message);
                }
                Err(error) => {
                    DataEvent::Malformed {
                        subject: message.subject.as_str(),
                        error: &error,
                    }
                    .emit(&self.metrics);
                    let origin = Origin::of(&message);
                    letters.push(origin.letter(error.kind_name(), error.to_string(), at_ms));
                    undecodable.push(message);
                }
            }
        }
        if kept.is_empty() && undecodable.is_empty() {
            return;
        }
        let (samples, origins) = (Arc::new(samples), Arc::new(origins));
        let mut last_progress = Instant::now();
        let mut pause = RETRY_FIRST;
        let done = loop {
            match self
                .attempt(
                    Arc::clone(&samples),
                    Arc::clone(&origins),
                    letters.clone(),
                    at_ms,
                )
                .await
            {
                Ok(done) => break done,
                Err(error) => {
                    self.failing += 1;
                    DataEvent::CommitFailed {
                        error: &error,
                        samples: kept.len(),
                        failing: self.failing,
                    }
                    .emit(&self.metrics);
                }
            }
            let in_hand = kept.iter().chain(&undecodable);
            if shutdown.is_cancelled() {
                for message in in_hand {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                return;
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                for message in in_hand {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                last_progress = Instant::now();
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => {}
            }
            pause = (pause * 2).min(RETRY_MAX);
        };
        self.finish(done, &samples, kept, undecodable).await;
    }

    /// Stores the samples (row by row if one row spoils the batch) and
    /// records the dead letters: the decode failures given and the rows
    /// the store refused.
    async fn attempt(
        &self,
        samples: Arc<Vec<Sample>>,
        origins: Arc<Vec<Origin>>,
        mut letters: Vec<DeadLetter>,
        at_ms: i64,
    ) -> Result<Done, StoreError> {
        let store = Arc::clone(&self.store);
        let attempt = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            let isolated = store.insert_isolating(&samples, now_ms())?;
            for (index, error) in &isolated.rejected {
                if let Some(origin) = origins.get(*index) {
                    letters.push(origin.letter("rejected", error.clone(), at_ms));
                }
            }
            if !letters.is_empty() {
                store.record_dead_letters(&letters)?;
            }
            Ok(Done { isolated, letters })
        })
        .await;
        match attempt {
            Ok(result) => result,
            Err(error) => Err(StoreError::Task(error.to_string())),
        }
    }

    /// After a commit: counts, acks what is stored, terminates what is
    /// dead-lettered.
    async fn finish(
        &mut self,
        done: Done,
        samples: &[Sample],
        kept: Vec<jetstream::Message>,
        undecodable: Vec<jetstream::Message>,
    ) {
        let metrics = &self.metrics;
        if self.failing > 0 {
            DataEvent::Resumed {
                failed_commits: self.failing,
            }
            .emit(metrics);
            self.failing = 0;
        }
        let Done { isolated, letters } = done;
        DataEvent::Committed {
            inserted: isolated.outcome.inserted,
            duplicates: isolated.outcome.duplicates,
        }
        .emit(metrics);
        metrics.samples_rejected.add(isolated.rejected.len() as u64);
        let rejected = |index: usize| isolated.rejected.iter().any(|(i, _)| *i == index);
        let now = now_ms();
        // An untrusted wall clock makes the latency meaningless.
        for (index, sample) in samples.iter().enumerate() {
            if sample.clock.is_trusted() && !rejected(index) {
                let latency_ms = (now - sample.timestamp_ms).max(0);
                metrics
                    .poll_to_commit
                    .record_us(u64::try_from(latency_ms).unwrap_or(0) * 1000);
            }
        }
        let mut dead = undecodable;
        for (index, message) in kept.into_iter().enumerate() {
            if rejected(index) {
                dead.push(message);
            } else if let Err(error) = message.ack().await {
                DataEvent::AckFailed {
                    error: error.to_string(),
                    terminate: false,
                }
                .emit(metrics);
            }
        }
        for letter in &letters {
            DataEvent::DeadLettered {
                stream_seq: letter.stream_seq,
                error_kind: &letter.error_kind,
                error: &letter.error,
            }
            .emit(metrics);
        }
        for message in dead {
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
