//! Pulling a durable consumer in batches: the shared front half of every
//! worker that stores what it reads (data, monitor). A batch starts with
//! the first message to arrive and closes once it holds `enough`, or
//! `linger` after its first message, with at most `max` messages.
//!
//! A standing pull of one message watches the stream: each message it
//! brings tells how many more wait behind it. Those are fetched in one go
//! (at once when they make `enough`, else `BURST_LINGER` later, when the
//! rest of their burst, a poll round of many packs, is in), not delivered
//! one by one. So a quiet stream (a few packs at 1 Hz) waits to make one
//! transaction of many samples, a busy one stores each burst a few
//! milliseconds after it arrived, a backlog goes as fast as the store
//! takes it, and both sides wake a few times per batch rather than once
//! per message: on the broker, each wake with news rewrites the
//! consumer's state file.

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
    /// A batch this full closes without lingering.
    enough: usize,
    linger: Duration,
    what: &'static str,
    /// The standing pull of one message that starts each batch.
    messages: Option<jetstream::consumer::pull::Stream>,
    /// The next batch's fetch, started when the last batch came out full
    /// (a backlog): its messages arrive while the last one is stored.
    prefetch: Option<tokio::task::JoinHandle<Vec<jetstream::Message>>>,
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

/// How long after its first message a batch first looks for the rest: a
/// poll round's samples reach the broker within a few milliseconds of
/// each other.
const BURST_LINGER: Duration = Duration::from_millis(4);

/// How long the broker holds a fetch that got nothing. A fetch asks only
/// for what waits, but the standing pull may take the last of it first:
/// nats-server 2.9 then keeps a fetch without an expiry open until the
/// next message arrives (up to a poll period later, and the batch with
/// it), and one the client gave up on meanwhile takes that message out of
/// reach until its redelivery.
const FETCH_EXPIRES: Duration = Duration::from_millis(20);

/// Longest a fetch of the waiting messages may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

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
            what,
            messages: None,
            prefetch: None,
            lost: None,
            reopen: Backoff::fixed(REOPEN_RETRY),
        }
    }

    /// Closes a batch as soon as it holds `enough` messages (at least 1,
    /// at most `max`; those waiting for it counted), instead of lingering
    /// for more.
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
        let batch = self.next_batch_unsorted(shutdown).await?;
        if !shutdown.is_cancelled() {
            self.prefetch_after(&batch);
        }
        Some(batch)
    }

    /// After a full batch (a backlog), starts fetching the next one. Full
    /// is `max`, or one less when the standing pull held nothing.
    fn prefetch_after(&mut self, batch: &[jetstream::Message]) {
        if batch.len() + 1 < self.max || self.max < 2 {
            return;
        }
        let consumer = self.consumer.clone();
        // One place is kept for what the standing pull holds meanwhile.
        let room = self.max - 1;
        self.prefetch = Some(tokio::spawn(async move {
            let mut fetched = Vec::with_capacity(room);
            let fetch = fetch_into(&consumer, room, &mut fetched);
            let _ = tokio::time::timeout(FETCH_TIMEOUT, fetch).await;
            fetched
        }));
    }

    /// What the prefetch brought, if one ran; empty otherwise.
    async fn prefetched(&mut self) -> Vec<jetstream::Message> {
        match self.prefetch.take() {
            Some(fetch) => fetch.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    async fn next_batch_unsorted(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<Vec<jetstream::Message>> {
        let mut batch = self.prefetched().await;
        if !batch.is_empty() {
            self.lost = None;
            // Stored even at shutdown: these are delivered already.
            if batch.len() + 1 < self.max && !shutdown.is_cancelled() {
                let behind = batch.last().map_or(0, backlog);
                self.fill(&mut batch, Instant::now(), behind, shutdown)
                    .await;
            } else {
                self.take_held_in_order(&mut batch);
            }
            return Some(batch);
        }
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
                        .max_messages_per_batch(1)
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
            let behind = backlog(&batch[0]);
            self.fill(&mut batch, Instant::now(), behind, shutdown)
                .await;
            return Some(batch);
        }
    }

    /// Fills a batch started at `started`, with `behind` messages waiting
    /// behind its last one, until it holds `enough` or `linger` is over.
    /// While nothing waits, the standing pull watches for the next message
    /// (so nothing arrives unseen, and no fetch is needed); a message that
    /// arrives tells how many wait behind it. Enough waiting are fetched at
    /// once; fewer are left [`BURST_LINGER`] to finish their burst and
    /// fetched together, not one by one; once such a burst is over the
    /// batch closes. Shutdown ends the wait.
    async fn fill(
        &mut self,
        batch: &mut Vec<jetstream::Message>,
        started: Instant,
        mut behind: u64,
        shutdown: &CancellationToken,
    ) {
        let linger_end = started + self.linger;
        let enough = self.enough.min(self.max);
        // A burst was fetched: once it is over (nothing for BURST_LINGER),
        // the batch closes; waiting for the next poll round would only
        // add its period to every sample's latency.
        let mut after_burst = false;
        loop {
            let waiting = usize::try_from(behind).unwrap_or(usize::MAX);
            if batch.len() >= enough {
                // What the standing pull holds, if anything; none wait.
                self.take_held_in_order(batch);
                return;
            }
            if batch.len().saturating_add(waiting) >= enough {
                break;
            }
            if waiting > 0 {
                let burst_end = (Instant::now() + BURST_LINGER).min(linger_end);
                tokio::select! {
                    () = tokio::time::sleep_until(burst_end) => {}
                    () = shutdown.cancelled() => {}
                }
                self.take_waiting(batch).await;
                behind = 0;
                after_burst = true;
                if shutdown.is_cancelled() || Instant::now() >= linger_end {
                    return;
                }
                continue;
            }
            let Some(messages) = self.messages.as_mut() else {
                break;
            };
            let wait_until = if after_burst {
                (Instant::now() + BURST_LINGER).min(linger_end)
            } else {
                linger_end
            };
            let next = tokio::select! {
                () = tokio::time::sleep_until(wait_until) => None,
                () = shutdown.cancelled() => None,
                next = messages.next() => Some(next),
            };
            match next {
                Some(Some(Ok(message))) => {
                    behind = backlog(&message);
                    batch.push(message);
                }
                Some(Some(Err(error))) => {
                    tracing::debug!(%error, stream = self.what, "pull stream hiccup");
                    if pull_is_lost(&error) {
                        self.messages = None;
                        break;
                    }
                }
                Some(None) => {
                    self.messages = None;
                    break;
                }
                None => {
                    // The standing pull watched: nothing waits unseen.
                    self.take_held_in_order(batch);
                    return;
                }
            }
        }
        self.take_waiting(batch).await;
    }

    /// Adds to `batch`, up to `max`, what the standing pull holds and what
    /// the broker holds for this consumer, in one fetch. A fetch that
    /// fails or times out keeps what it brought; the rest waits for the
    /// next batch.
    async fn take_waiting(&mut self, batch: &mut Vec<jetstream::Message>) {
        self.take_held(batch);
        // One place is kept for what the standing pull takes meanwhile: the
        // broker shares the waiting messages between the two pulls, and one
        // left behind would be stored after later ones.
        let room = self.max.saturating_sub(batch.len() + 1);
        if room > 0 {
            let fetch = fetch_into(&self.consumer, room, batch);
            match tokio::time::timeout(FETCH_TIMEOUT, fetch).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, stream = self.what, "fetch ended early")
                }
                Err(_) => tracing::debug!(stream = self.what, "fetch timed out"),
            }
        }
        // The standing pull may have taken one meanwhile, ahead of what
        // was fetched: a batch is handed out in stream order.
        self.take_held_in_order(batch);
    }

    /// [`take_held`](Self::take_held), then the batch in stream order: the
    /// standing pull's message may come before fetched ones.
    fn take_held_in_order(&mut self, batch: &mut Vec<jetstream::Message>) {
        self.take_held(batch);
        batch.sort_by_cached_key(stream_sequence);
    }

    /// Adds to `batch`, up to `max`, what the standing pull already holds,
    /// without waiting. A pull that ended or failed is dropped, to be
    /// opened again by the next batch.
    fn take_held(&mut self, batch: &mut Vec<jetstream::Message>) {
        let Some(messages) = self.messages.as_mut() else {
            return;
        };
        while batch.len() < self.max {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                Some(Some(Err(error))) => {
                    tracing::debug!(%error, stream = self.what, "pull stream hiccup");
                    if pull_is_lost(&error) {
                        self.messages = None;
                        return;
                    }
                }
                Some(None) => {
                    self.messages = None;
                    return;
                }
                None => return,
            }
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
        if pull_is_lost(error) {
            self.note_lost(error);
            self.messages = None;
            !self.reopen.wait(shutdown).await
        } else {
            tracing::debug!(%error, stream = self.what, "pull stream hiccup");
            false
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
    /// once nothing arrives for 100 ms or at `until`. What stopped sources
    /// flushed last is stored this way, not left for the next start.
    pub(crate) async fn drain_batch(&mut self, until: Instant) -> Option<Vec<jetstream::Message>> {
        let idle_until = (Instant::now() + DRAIN_IDLE).min(until);
        let mut batch = self.prefetched().await;
        if !batch.is_empty() {
            self.take_held_in_order(&mut batch);
            return Some(batch);
        }
        loop {
            self.take_waiting(&mut batch).await;
            if !batch.is_empty() {
                return Some(batch);
            }
            let now = Instant::now();
            if now >= idle_until {
                return None;
            }
            tokio::time::sleep_until(idle_until.min(now + BURST_LINGER)).await;
        }
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

/// Whether `error` leaves the pull dead: a consumer that was deleted, a
/// broker that does not answer for it, missed heartbeats.
fn pull_is_lost(error: &jetstream::consumer::pull::MessagesError) -> bool {
    use jetstream::consumer::pull::MessagesErrorKind as Kind;
    matches!(
        error.kind(),
        Kind::ConsumerDeleted | Kind::NoResponders | Kind::MissingHeartbeat
    )
}

/// Messages the broker held for the consumer, not yet delivered, when
/// it delivered `message`.
fn backlog(message: &jetstream::Message) -> u64 {
    message.info().map_or(0, |info| info.pending)
}

/// A message's place in its stream; one without (not a JetStream
/// delivery) sorts last.
fn stream_sequence(message: &jetstream::Message) -> u64 {
    message.info().map_or(u64::MAX, |info| info.stream_sequence)
}

/// Fetches up to `room` of the messages the broker holds for `consumer`
/// into `batch`, without waiting for more to arrive.
async fn fetch_into(
    consumer: &PullConsumer,
    room: usize,
    batch: &mut Vec<jetstream::Message>,
) -> Result<(), async_nats::Error> {
    let mut fetched = consumer
        .fetch()
        .max_messages(room)
        .expires(FETCH_EXPIRES)
        .messages()
        .await?;
    while let Some(message) = fetched.next().await {
        batch.push(message?);
    }
    Ok(())
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod broker_tests;
