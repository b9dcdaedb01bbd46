//! Pulling a durable consumer in batches: the shared front half of every
//! worker that stores what it reads (data, monitor). A batch is whatever
//! arrived up to `max` messages or within `linger` of its first message;
//! once it holds `enough` it closes as soon as nothing more is waiting. So
//! a quiet stream (a few packs at 1 Hz) waits to make one transaction of
//! many samples instead of one per sample, a steady one closes a batch
//! every `enough` samples (latency stays low), and a busy one makes big
//! transactions of what is already waiting. After a batch that reached
//! `enough`, the next one lingers only [`BURST_LINGER`]: what is left of a
//! burst (a poll round of many packs) is stored with it, not a linger
//! later.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::{FutureExt as _, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::retry::Backoff;

/// Hands out batches of one pull consumer, re-opening the pull when the
/// broker drops it.
pub(crate) struct BatchPuller {
    consumer: PullConsumer,
    max: usize,
    /// A batch this full closes once nothing more is waiting.
    enough: usize,
    linger: Duration,
    /// The last batch reached `enough`: the stream is busy, the next
    /// batch takes the rest of the burst without lingering longer.
    busy: bool,
    what: &'static str,
    messages: Option<jetstream::consumer::pull::Stream>,
    /// Since when the pull keeps being lost, with no message in between.
    lost: Option<Lost>,
    /// The wait before trying again to open a pull that could not be.
    reopen: Backoff,
}

/// A pull lost again and again: since when, how often, when last said.
#[derive(Debug, Clone, Copy)]
struct Lost {
    since: Instant,
    count: u64,
    warned: Option<Instant>,
}

/// Wait between tries to open a pull.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

/// At shutdown, the stream is drained once nothing arrives for this long.
const DRAIN_IDLE: Duration = Duration::from_millis(100);

/// Most one WARN per puller about lost pulls in this time.
const LOST_WARN_EVERY: Duration = Duration::from_secs(60);

/// A pull lost this soon after the broker came back was lost to the
/// outage (its heartbeats went missing while the broker was away).
const AFTER_OUTAGE: Duration = Duration::from_secs(15);

/// After a batch that reached `enough`, how long the next one waits for
/// the rest of the burst: a poll round's samples reach the broker within a
/// few milliseconds of each other.
const BURST_LINGER: Duration = Duration::from_millis(20);

/// How long a batch waits to fill: [`BURST_LINGER`] at most right after a
/// batch that reached `enough` (`busy`), else `linger`.
fn linger_after(busy: bool, linger: Duration) -> Duration {
    if busy {
        linger.min(BURST_LINGER)
    } else {
        linger
    }
}

impl std::fmt::Debug for BatchPuller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchPuller")
            .field("what", &self.what)
            .field("max", &self.max)
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

impl BatchPuller {
    /// Batches of at most `max` messages of `consumer`; `what` names the
    /// stream in logs.
    pub(crate) fn new(
        consumer: PullConsumer,
        max: usize,
        linger: Duration,
        what: &'static str,
    ) -> Self {
        Self {
            consumer,
            max: max.max(1),
            enough: max.max(1),
            linger,
            busy: false,
            what,
            messages: None,
            lost: None,
            reopen: Backoff::fixed(REOPEN_RETRY),
        }
    }

    /// Closes a batch of `enough` messages (at least 1, at most `max`) as
    /// soon as no more are waiting, instead of lingering for more.
    pub(crate) fn with_enough(mut self, enough: usize) -> Self {
        self.enough = enough.clamp(1, self.max);
        self
    }

    /// The next batch, or `None` once `shutdown` fires while waiting for
    /// its first message (a batch being filled is still returned).
    pub(crate) async fn next_batch(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<Vec<jetstream::Message>> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let messages = match self.messages.as_mut() {
                Some(messages) => messages,
                None => {
                    let opened = self
                        .consumer
                        .stream()
                        .max_messages_per_batch(self.max)
                        .heartbeat(Duration::from_secs(5))
                        .expires(Duration::from_secs(30))
                        .messages()
                        .await;
                    match opened {
                        Ok(messages) => {
                            self.reopen.reset();
                            self.messages.insert(messages)
                        }
                        Err(error) => {
                            if crate::broker::broker_outage_within(AFTER_OUTAGE) {
                                tracing::debug!(%error, stream = self.what, "cannot pull; retrying");
                            } else {
                                tracing::warn!(%error, stream = self.what, "cannot pull; retrying");
                            }
                            if !self.reopen.wait(shutdown).await {
                                return None;
                            }
                            continue;
                        }
                    }
                }
            };
            let first = tokio::select! {
                next = messages.next() => next,
                () = shutdown.cancelled() => return None,
            };
            let mut batch = Vec::with_capacity(self.max);
            match first {
                Some(Ok(message)) => {
                    self.lost = None;
                    batch.push(message);
                }
                Some(Err(error)) => {
                    if self.reopen_after(&error, shutdown).await {
                        return None;
                    }
                    continue;
                }
                None => {
                    self.messages = None;
                    continue;
                }
            }
            let deadline = Instant::now() + linger_after(self.busy, self.linger);
            while batch.len() < self.max {
                let next = if batch.len() >= self.enough {
                    // Enough for a transaction: take what is already
                    // here, wait for nothing.
                    match messages.next().now_or_never() {
                        Some(next) => Ok(next),
                        None => break,
                    }
                } else {
                    tokio::time::timeout_at(deadline, messages.next()).await
                };
                match next {
                    Ok(Some(Ok(message))) => batch.push(message),
                    Ok(Some(Err(error))) => {
                        tracing::debug!(%error, stream = self.what, "pull stream hiccup")
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.busy = batch.len() >= self.enough;
            return Some(batch);
        }
    }

    /// Handles an error of the pull stream: a consumer that was deleted,
    /// a broker that does not answer for it or missed heartbeats leave the
    /// pull dead, so it is dropped and opened again after a pause (the
    /// supervisor recreates a deleted consumer meanwhile); anything else is
    /// a hiccup. Returns whether `shutdown` fired during the pause.
    async fn reopen_after(
        &mut self,
        error: &jetstream::consumer::pull::MessagesError,
        shutdown: &CancellationToken,
    ) -> bool {
        use jetstream::consumer::pull::MessagesErrorKind as Kind;
        match error.kind() {
            Kind::ConsumerDeleted | Kind::NoResponders | Kind::MissingHeartbeat => {
                self.note_lost(error);
                self.messages = None;
                !self.reopen.wait(shutdown).await
            }
            _ => {
                tracing::debug!(%error, stream = self.what, "pull stream hiccup");
                false
            }
        }
    }

    /// Logs a lost pull: at DEBUG while the broker is down or has just
    /// come back (the link's own lines say so), else at WARN at most once
    /// per [`LOST_WARN_EVERY`] with the count of losses since the last
    /// message.
    fn note_lost(&mut self, error: &jetstream::consumer::pull::MessagesError) {
        let now = Instant::now();
        let lost = self.lost.get_or_insert(Lost {
            since: now,
            count: 0,
            warned: None,
        });
        lost.count += 1;
        let quiet = lost
            .warned
            .is_some_and(|at| now.saturating_duration_since(at) < LOST_WARN_EVERY);
        if quiet || crate::broker::broker_outage_within(AFTER_OUTAGE) {
            tracing::debug!(%error, stream = self.what, "pull lost; opening it again");
            return;
        }
        lost.warned = Some(now);
        tracing::warn!(
            %error,
            stream = self.what,
            losses = lost.count,
            for_s = now.saturating_duration_since(lost.since).as_secs(),
            "pull lost; opening it again (repeats within {} s at DEBUG)",
            LOST_WARN_EVERY.as_secs()
        );
    }

    /// After shutdown: the next batch of what is still arriving, or `None`
    /// once nothing arrives for 100 ms or at `until`. What stopped sources flushed last is stored this way, not
    /// left for the next start.
    pub(crate) async fn drain_batch(&mut self, until: Instant) -> Option<Vec<jetstream::Message>> {
        let messages = self.messages.as_mut()?;
        let idle = DRAIN_IDLE;
        let first_by = (Instant::now() + idle).min(until);
        let mut batch = Vec::with_capacity(self.max);
        match tokio::time::timeout_at(first_by, messages.next()).await {
            Ok(Some(Ok(message))) => batch.push(message),
            Ok(Some(Err(_)) | None) | Err(_) => return None,
        }
        let deadline = (Instant::now() + self.linger.min(DRAIN_IDLE)).min(until);
        while batch.len() < self.max {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => batch.push(message),
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Messages the broker still holds for this consumer, not yet
    /// delivered; `None` when it does not answer within a second.
    pub(crate) async fn undelivered(&mut self) -> Option<u64> {
        let info = tokio::time::timeout(Duration::from_secs(1), self.consumer.info()).await;
        match info {
            Ok(Ok(info)) => Some(info.num_pending),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_after_a_full_one_waits_only_for_the_rest_of_the_burst() {
        let linger = Duration::from_millis(800);
        assert_eq!(linger_after(false, linger), linger);
        assert_eq!(linger_after(true, linger), BURST_LINGER);
        let short = Duration::from_millis(5);
        assert_eq!(linger_after(true, short), short);
    }
}
