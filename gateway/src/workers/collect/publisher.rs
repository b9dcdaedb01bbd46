//! Puts samples and events into JetStream: every message with a
//! de-duplication id, at most `inflight_max` awaiting their ack, a failed
//! publish retried in its original order, and a bounded queue whose
//! overflow drops the oldest (counted, an ERROR) while the broker is gone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self, context::PublishError, message::PublishMessage, publish::PublishAck,
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use packgate_protocol::{encode, names};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::replay::{Replay, REPLAY_MAX};
use super::sending::{Overflow, Phase, Sending};
use super::{CollectMetrics, Outgoing};
use crate::config::CollectConfig;

/// How long the publisher keeps trying at shutdown before it gives up on
/// what is left (counted as unpublished).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

/// One message on its way to the stream.
#[derive(Debug)]
struct Item {
    /// Arrival order, so retries go out in the order they came.
    order: u64,
    subject: String,
    msg_id: String,
    payload: Bytes,
    /// Set for samples: when the pack was polled.
    polled_at: Option<Instant>,
    /// Sent again after a reconnection (see [`Replay`]).
    replayed: bool,
}

impl Item {
    fn from_outgoing(order: u64, outgoing: Outgoing) -> Self {
        match outgoing {
            Outgoing::Sample(sample, polled_at) => Item {
                order,
                subject: names::sample_subject(&sample.pack_id),
                msg_id: sample.msg_id(),
                payload: Bytes::from(encode(&sample)),
                polled_at: Some(polled_at),
                replayed: false,
            },
            Outgoing::Event(event) => Item {
                order,
                subject: names::event_subject(&event.pack_id),
                msg_id: event.msg_id(),
                payload: Bytes::from(encode(&event)),
                polled_at: None,
                replayed: false,
            },
        }
    }
}

/// What was left when the publisher stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublisherReport {
    /// Messages that could not be published before the flush timeout.
    pub unpublished: u64,
}

type AckFuture = BoxFuture<'static, (Item, Result<PublishAck, PublishError>)>;

/// The publisher's queues.
#[derive(Debug)]
struct Queues {
    fresh: VecDeque<Item>,
    retry: BTreeMap<u64, Item>,
    limit: usize,
}

impl Queues {
    /// Empty queues holding at most what `overflow` allows.
    fn new(overflow: Overflow, config: &CollectConfig) -> Self {
        Self {
            fresh: VecDeque::new(),
            retry: BTreeMap::new(),
            limit: match overflow {
                Overflow::Backpressure => config.inflight_max.saturating_mul(2),
                Overflow::DropOldest => config.pending_max,
            },
        }
    }

    fn len(&self) -> usize {
        self.fresh.len() + self.retry.len()
    }

    fn next(&mut self) -> Option<Item> {
        self.retry
            .pop_first()
            .map(|(_, item)| item)
            .or_else(|| self.fresh.pop_front())
    }

    /// Queues a new item, dropping the oldest queued one at the limit.
    fn push(&mut self, item: Item, metrics: &CollectMetrics) {
        if self.len() >= self.limit {
            let dropped = self.next();
            metrics.samples_dropped.inc();
            if let Some(dropped) = dropped {
                if metrics.samples_dropped.get() % 1000 == 1 {
                    tracing::error!(
                        msg_id = %dropped.msg_id,
                        dropped_total = metrics.samples_dropped.get(),
                        limit = self.limit,
                        "publish queue full (the broker is unreachable, or takes the samples slower than they are polled): dropping the oldest message"
                    );
                }
            }
        }
        self.fresh.push_back(item);
    }
}

/// Publishes what the buses send until they are all gone, then flushes.
pub(super) async fn run_publisher(
    mut rx: mpsc::Receiver<Outgoing>,
    js: jetstream::Context,
    client: async_nats::Client,
    config: CollectConfig,
    metrics: Arc<CollectMetrics>,
) -> PublisherReport {
    let overflow = overflow_for(&config);
    let mut queues = Queues::new(overflow, &config);
    let mut inflight: FuturesUnordered<AckFuture> = FuturesUnordered::new();
    let mut next_order: u64 = 0;
    let mut sending = Sending::new(Duration::from_millis(config.publish_retry_max_ms));
    let mut phase = Phase::Running;
    let mut report = PublisherReport::default();
    let mut replay = Replay::new(config.pending_max.min(REPLAY_MAX));
    let mut connects = client.statistics().connects.load(Ordering::Relaxed);

    loop {
        let now_connects = client.statistics().connects.load(Ordering::Relaxed);
        if now_connects != connects {
            connects = now_connects;
            replay_after_reconnect(&mut replay, &mut queues, &metrics);
        }
        fill_window(
            &mut queues,
            &mut inflight,
            &mut sending,
            &js,
            &client,
            &config,
            &metrics,
        )
        .await;
        metrics.pending.set(queues.len() as i64);
        metrics.inflight.set(inflight.len() as i64);
        let flushing = matches!(phase, Phase::Flushing { .. });
        if flushing && queues.len() == 0 && inflight.is_empty() {
            break;
        }
        let room = overflow == Overflow::DropOldest || queues.len() < queues.limit;
        let deadline = match phase {
            Phase::Flushing { deadline } => Some(deadline),
            Phase::Running => None,
        };

        tokio::select! {
            biased;
            Some((item, result)) = inflight.next(), if !inflight.is_empty() => {
                settle(item, result, &mut sending, &mut queues, &mut replay, &metrics);
            }
            received = rx.recv(), if !flushing && room => match received {
                Some(outgoing) => {
                    next_order += 1;
                    queues.push(Item::from_outgoing(next_order, outgoing), &metrics);
                }
                None => {
                    phase = Phase::Flushing {
                        deadline: Instant::now() + FLUSH_TIMEOUT,
                    };
                }
            },
            () = sleep_until_opt(sending.resume_at()), if sending.resume_at().is_some() => sending.resume(),
            () = sleep_until_opt(deadline), if deadline.is_some() => {
                report.unpublished = give_up(queues.len() + inflight.len(), &metrics);
                break;
            }
        }
    }
    metrics.pending.set(0);
    metrics.inflight.set(0);
    report
}

/// How a full queue behaves: polling as fast as possible (benchmarks) is
/// paced by the broker, the buses waiting for room instead of the queue
/// dropping the oldest.
fn overflow_for(config: &CollectConfig) -> Overflow {
    if config.poll_interval_ms == 0 {
        Overflow::Backpressure
    } else {
        Overflow::DropOldest
    }
}

/// Counts and logs the `left` messages still queued or in flight when the
/// flush deadline passes; returns how many.
fn give_up(left: usize, metrics: &CollectMetrics) -> u64 {
    let unpublished = left as u64;
    metrics.unpublished_at_exit.add(unpublished);
    tracing::error!(
        unpublished,
        "broker unreachable at shutdown: messages not published"
    );
    unpublished
}

/// Sends queued messages while the broker is reachable and the in-flight
/// window has room.
async fn fill_window(
    queues: &mut Queues,
    inflight: &mut FuturesUnordered<AckFuture>,
    sending: &mut Sending,
    js: &jetstream::Context,
    client: &async_nats::Client,
    config: &CollectConfig,
    metrics: &CollectMetrics,
) {
    while sending.may_send() && inflight.len() < config.inflight_max {
        if client.connection_state() != async_nats::connection::State::Connected {
            sending.disconnected(Instant::now());
            break;
        }
        let Some(item) = queues.next() else { break };
        let publish = PublishMessage::build()
            .payload(item.payload.clone())
            .message_id(&item.msg_id);
        match js.send_publish(item.subject.clone(), publish).await {
            Ok(ack) => inflight.push(Box::pin(async move { (item, ack.await) })),
            Err(error) => {
                metrics.publish_failures.inc();
                if sending.failed(Instant::now()) {
                    tracing::warn!(%error, "publish failed; retrying with backoff");
                }
                queues.retry.insert(item.order, item);
            }
        }
    }
}

/// Takes the broker's answer to one publish: an acknowledged message is
/// counted and kept for a replay, a failed one queued to be retried in
/// its original order.
fn settle(
    item: Item,
    result: Result<PublishAck, PublishError>,
    sending: &mut Sending,
    queues: &mut Queues,
    replay: &mut Replay<Item>,
    metrics: &CollectMetrics,
) {
    match result {
        Ok(ack) => {
            if sending.acked() {
                tracing::info!("publishing again");
            }
            record_ack(&item, &ack, metrics);
            replay.keep(item, Instant::now());
        }
        Err(error) => {
            metrics.publish_failures.inc();
            if sending.failed(Instant::now()) {
                tracing::warn!(%error, msg_id = %item.msg_id, "publish not acknowledged; retrying");
            }
            queues.retry.insert(item.order, item);
        }
    }
}

/// Queues every recently acknowledged message again, in its original
/// order, after the connection to the broker was made again.
fn replay_after_reconnect(
    replay: &mut Replay<Item>,
    queues: &mut Queues,
    metrics: &CollectMetrics,
) {
    let count = replay.len();
    if count == 0 {
        return;
    }
    tracing::info!(
        messages = count,
        "reconnected to the broker: sending the last acknowledged messages again, \
         in case it lost them"
    );
    for mut item in replay.take() {
        item.replayed = true;
        metrics.messages_replayed.inc();
        queues.retry.insert(item.order, item);
    }
}

/// Counts an acknowledged message. A replayed one is counted only when the
/// broker did not have it any more: it had been lost, and is now
/// published (it was counted once, at its first acknowledgement).
fn record_ack(item: &Item, ack: &PublishAck, metrics: &CollectMetrics) {
    if item.replayed {
        if !ack.duplicate {
            metrics.messages_recovered.inc();
            tracing::warn!(msg_id = %item.msg_id, "the broker had lost an acknowledged message; published again");
        }
        return;
    }
    match item.polled_at {
        Some(polled_at) => {
            metrics
                .publish_latency
                .record_us(polled_at.elapsed().as_micros() as u64);
            if ack.duplicate {
                metrics.samples_duplicate.inc();
            } else {
                metrics.samples_published.inc();
            }
        }
        None => metrics.events_published.inc(),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
