//! Store and forward: one uploader per local stream (samples, events). It
//! fetches a batch from its durable pull consumer, publishes it to the cloud
//! stream with the local de-duplication ids, and acks the batch locally only
//! once the cloud acked every message. A failed batch stays in hand (the
//! only one: nothing more is fetched) and is retried with backoff until it
//! goes through, so memory is one batch however long the outage, and the
//! cloud receives each pack's messages in local stream order.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage, AckKind};
use futures_util::StreamExt;
use packgate_protocol::names::{self, ConsumerSpec};
use packgate_protocol::{decode, Sample};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fault::CloudLinkFault;
use super::state::LinkState;
use super::{cloud_subject, CloudMetrics};
use crate::broker::ensure_consumer;
use crate::config::CloudConfig;

/// Longest one pull request waits, so a shutdown is seen within it.
const FETCH_SLICE: Duration = Duration::from_secs(1);

/// Local acks sent at once after the cloud took a batch.
const ACK_CONCURRENCY: usize = 64;

/// Which local stream an uploader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The samples stream.
    Samples,
    /// The events stream.
    Events,
}

/// A token bucket in messages per second, shared by the uploaders. Taking
/// more than is there runs into debt that the taker (and the next) sleeps
/// off, so the long-run rate never exceeds the configured one.
#[derive(Debug)]
pub(crate) struct RateLimit {
    rate_per_s: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A bucket of `rate_per_s` tokens, refilled at that rate, starting full.
    pub(crate) fn new(rate_per_s: u32) -> Self {
        let rate = f64::from(rate_per_s.max(1));
        Self {
            rate_per_s: rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes `n` tokens, sleeping as long as the debt requires.
    pub(crate) async fn take(&self, n: usize) {
        let wait = {
            let mut state = self.state.lock().await;
            let (tokens, last) = &mut *state;
            let now = Instant::now();
            let refill = now.duration_since(*last).as_secs_f64() * self.rate_per_s;
            *tokens = (*tokens + refill).min(self.rate_per_s);
            *last = now;
            *tokens -= n as f64;
            if *tokens < 0.0 {
                Duration::from_secs_f64(-*tokens / self.rate_per_s)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Everything an uploader needs.
#[derive(Debug, Clone)]
pub(crate) struct Uploader {
    pub(crate) kind: Kind,
    pub(crate) spec: ConsumerSpec,
    pub(crate) config: Arc<CloudConfig>,
    pub(crate) local_js: jetstream::Context,
    pub(crate) cloud_js: jetstream::Context,
    pub(crate) link: Arc<LinkState>,
    pub(crate) rate: Arc<RateLimit>,
    pub(crate) metrics: Arc<CloudMetrics>,
}

/// Why one attempt at a batch failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("the cloud link is down{}", .0.as_ref().map(|f| format!(": {f}")).unwrap_or_default())]
    LinkDown(Option<CloudLinkFault>),
    #[error("publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    #[error("the cloud stream {stream} is missing or does not capture {subject}")]
    NoStream { stream: String, subject: String },
    #[error("no ack from the cloud within {0:?}")]
    AckTimeout(Duration),
}

impl Uploader {
    /// Runs until `shutdown`; a batch in hand at shutdown is handed back to
    /// the local stream (nak, confirmed by the broker) so that the next
    /// start takes it first.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let consumer = loop {
            match ensure_consumer(&self.local_js, &self.spec).await {
                Ok((consumer, _)) => break consumer,
                Err(error) => {
                    tracing::warn!(%error, consumer = self.spec.durable, "cloud consumer not ready; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        };
        while !shutdown.is_cancelled() {
            let batch = self.fetch(&consumer, &shutdown).await;
            if batch.is_empty() {
                continue;
            }
            if self.deliver(&batch, &shutdown).await {
                self.ack(&batch).await;
            } else {
                self.nak(&batch).await;
            }
        }
    }

    /// Fetches up to `batch_max_samples` messages, waiting at most
    /// `upload_interval` for the batch to fill, in slices of at most a
    /// second so a shutdown is never kept waiting.
    async fn fetch(
        &self,
        consumer: &PullConsumer,
        shutdown: &CancellationToken,
    ) -> Vec<jetstream::Message> {
        let max = self.config.batch_max_samples;
        let timeout = self.config.request_timeout();
        let deadline = Instant::now() + self.config.upload_interval();
        let mut batch = Vec::with_capacity(max.min(1_024));
        while batch.len() < max && !shutdown.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                break;
            }
            let expires = left.min(FETCH_SLICE).max(Duration::from_millis(10));
            let request = consumer
                .fetch()
                .max_messages(max - batch.len())
                .expires(expires)
                .messages();
            let mut messages = match tokio::time::timeout(timeout, request).await {
                Ok(Ok(messages)) => messages,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cannot pull from the local stream");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(_) => continue,
            };
            let slice_end = Instant::now() + expires + timeout;
            while batch.len() < max {
                match tokio::time::timeout_at(slice_end, messages.next()).await {
                    Ok(Some(Ok(message))) => batch.push(message),
                    Ok(Some(Err(error))) => {
                        tracing::debug!(%error, "pull hiccup");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        batch
    }

    /// Uploads `batch` until the cloud has all of it; false if `shutdown`
    /// came first.
    async fn deliver(&self, batch: &[jetstream::Message], shutdown: &CancellationToken) -> bool {
        let progress_every = self.spec.ack_wait / 4;
        let mut last_progress = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            if attempt > 0 {
                self.metrics.upload_retries.inc();
            }
            // A stop does not wait for the cloud: the batch is handed back.
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => return false,
                result = self.attempt(batch) => result,
            };
            let error = match result {
                Ok(()) => return true,
                Err(error) => error,
            };
            self.metrics.batches_failed.inc();
            if attempt == 0 || attempt % 10 == 0 {
                tracing::warn!(
                    %error,
                    attempt,
                    messages = batch.len(),
                    stream = self.spec.stream,
                    "cloud upload failed; the batch is kept and retried"
                );
            }
            if matches!(error, AttemptError::NoStream { .. }) && self.config.create_stream {
                super::ensure_cloud_stream(&self.cloud_js, &self.config).await;
            }
            let mut delay = super::cloud_backoff(self.config.retry_backoff_max()).delay(attempt);
            if self.link.is_connected() && !self.link.is_answering() {
                // A probe is one message: try again at least once per
                // request timeout, to see the cloud answer again soon.
                delay = delay.min(self.config.request_timeout());
            }
            let deadline = Instant::now() + delay;
            attempt = attempt.saturating_add(1);
            // Wait out the backoff, keeping the batch alive on the local
            // broker, and go at once when the link comes back up.
            loop {
                let mut link = self.link.up();
                let was_down = !*link.borrow();
                let wake = (last_progress + progress_every).min(deadline);
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    _ = link.wait_for(|up| *up), if was_down => break,
                    () = shutdown.cancelled() => return false,
                }
                if last_progress.elapsed() >= progress_every {
                    self.progress(batch).await;
                    last_progress = Instant::now();
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }

    /// One attempt: publish every message, then await every ack. While the
    /// cloud has stopped answering, the first message goes alone, as a
    /// probe; the rest follow once it is acknowledged.
    async fn attempt(&self, batch: &[jetstream::Message]) -> Result<(), AttemptError> {
        if !self.link.is_connected() {
            return Err(AttemptError::LinkDown(self.link.fault()));
        }
        self.rate.take(batch.len()).await;
        let result = if self.link.is_answering() {
            self.publish_all(batch).await
        } else {
            let (probe, rest) = batch.split_at(1.min(batch.len()));
            match self.publish_all(probe).await {
                Ok(()) => {
                    self.link.on_upload_acked();
                    self.publish_all(rest).await
                }
                Err(error) => Err(error),
            }
        };
        match &result {
            Ok(()) => self.link.on_upload_acked(),
            Err(AttemptError::AckTimeout(waited)) => self.link.on_upload_timeout(*waited),
            Err(_) => {}
        }
        result?;
        self.metrics.batches_sent.inc();
        match self.kind {
            Kind::Samples => {
                self.metrics.samples_sent.add(batch.len() as u64);
                let newest = batch
                    .iter()
                    .rev()
                    .find_map(|m| decode::<Sample>(&m.payload).ok());
                if let Some(sample) = newest {
                    self.metrics.set_last_uploaded(sample.timestamp_ms);
                }
            }
            Kind::Events => self.metrics.events_sent.add(batch.len() as u64),
        }
        Ok(())
    }

    /// Publishes `messages` to the cloud stream and awaits every ack.
    async fn publish_all(&self, messages: &[jetstream::Message]) -> Result<(), AttemptError> {
        let timeout = self.config.request_timeout();
        let mut acks = Vec::with_capacity(messages.len());
        for message in messages {
            let subject =
                cloud_subject(&self.config.gateway_id, &message.subject).unwrap_or_else(|| {
                    packgate_protocol::names::cloud::unknown_subject(&self.config.gateway_id)
                });
            let mut publish = PublishMessage::build()
                .payload(message.payload.clone())
                .expected_stream(&self.config.stream_name);
            if let Some(id) = msg_id(message) {
                publish = publish.message_id(id);
            }
            match tokio::time::timeout(
                timeout,
                self.cloud_js.send_publish(subject.clone(), publish),
            )
            .await
            {
                Ok(Ok(ack)) => acks.push((subject, ack)),
                Ok(Err(error)) => {
                    return Err(AttemptError::Publish {
                        subject,
                        reason: error.to_string(),
                    })
                }
                Err(_) => return Err(AttemptError::AckTimeout(timeout)),
            }
        }
        let results = tokio::time::timeout(
            timeout * 2,
            futures_util::future::join_all(
                acks.into_iter()
                    .map(|(subject, ack)| async move { (subject, ack.await) }),
            ),
        )
        .await
        .map_err(|_| AttemptError::AckTimeout(timeout * 2))?;
        for (subject, result) in results {
            if let Err(error) = result {
                let missing = matches!(
                    error.kind(),
                    jetstream::context::PublishErrorKind::StreamNotFound
                ) || error.to_string().contains("expected stream");
                if error.kind() == jetstream::context::PublishErrorKind::TimedOut {
                    return Err(AttemptError::AckTimeout(timeout));
                }
                return Err(if missing {
                    AttemptError::NoStream {
                        stream: self.config.stream_name.clone(),
                        subject,
                    }
                } else {
                    AttemptError::Publish {
                        subject,
                        reason: error.to_string(),
                    }
                });
            }
        }
        Ok(())
    }

    /// Acks the batch locally, each ack confirmed by the broker. A failed
    /// ack is counted: the message comes back and the cloud stream drops it
    /// as a duplicate.
    async fn ack(&self, batch: &[jetstream::Message]) {
        let timeout = self.config.request_timeout();
        let mut failures = 0usize;
        for chunk in batch.chunks(ACK_CONCURRENCY) {
            let acked = futures_util::future::join_all(
                chunk.iter().map(|message| ack_one(message, timeout)),
            )
            .await;
            failures += acked.iter().filter(|ok| !**ok).count();
        }
        if failures > 0 {
            self.metrics.ack_failures.add(failures as u64);
            tracing::warn!(
                failures,
                "local acks failed after the cloud took the batch; \
                 those messages come back and the cloud drops them as duplicates"
            );
        }
    }

    /// Hands the batch back to the local stream (a stop): the broker
    /// confirms each nak, and redelivers those messages before any newer
    /// one, so the next start uploads them first. One not confirmed comes
    /// back after the consumer's ack wait instead.
    async fn nak(&self, batch: &[jetstream::Message]) {
        let timeout = self.config.request_timeout().min(Duration::from_secs(2));
        let mut failures = 0usize;
        for chunk in batch.chunks(ACK_CONCURRENCY) {
            let naked = futures_util::future::join_all(
                chunk.iter().map(|message| nak_one(message, timeout)),
            )
            .await;
            failures += naked.iter().filter(|ok| !**ok).count();
        }
        if failures > 0 {
            tracing::warn!(
                failures,
                messages = batch.len(),
                stream = self.spec.stream,
                "stopping: the local broker did not confirm the hand-back of some messages \
                 in hand; they come back after the ack wait ({} s), after newer ones",
                self.spec.ack_wait.as_secs()
            );
        } else {
            tracing::debug!(
                messages = batch.len(),
                stream = self.spec.stream,
                "stopping: the batch in hand is handed back to the local stream"
            );
        }
    }

    /// Tells the local broker the batch is still being worked on.
    async fn progress(&self, batch: &[jetstream::Message]) {
        for message in batch {
            let sent =
                tokio::time::timeout(Duration::from_secs(1), message.ack_with(AckKind::Progress))
                    .await;
            if !matches!(sent, Ok(Ok(()))) {
                // The local broker is unreachable too; redelivery after
                // ack_wait is harmless (same batch, same ids).
                return;
            }
        }
    }
}

/// Acks one message, confirmed by the broker.
async fn ack_one(message: &jetstream::Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, message.double_ack()).await,
        Ok(Ok(()))
    )
}

/// Hands one message back for immediate redelivery, confirmed by the
/// broker.
async fn nak_one(message: &jetstream::Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, message.double_ack_with(AckKind::Nak(None))).await,
        Ok(Ok(()))
    )
}

/// The de-duplication id of a local message: its `Nats-Msg-Id` header
/// (`pack:boot:seq`, `pack:boot:e<seq>` for events); for a message without
/// one, its place in the local stream.
fn msg_id(message: &jetstream::Message) -> Option<String> {
    if let Some(id) = message
        .headers
        .as_ref()
        .and_then(|h| h.get(names::MSG_ID_HEADER))
    {
        return Some(id.as_str().to_owned());
    }
    message
        .info()
        .ok()
        .map(|info| format!("{}:{}", info.stream, info.stream_sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_holds_over_time() {
        let limit = RateLimit::new(100);
        let start = Instant::now();
        for _ in 0..5 {
            limit.take(100).await;
        }
        // The first 100 are the full bucket; the other 400 take 4 s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(3_990) && took < Duration::from_millis(4_100),
            "{took:?}"
        );
    }
}
