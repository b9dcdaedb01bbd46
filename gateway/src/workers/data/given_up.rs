//! Samples the broker gave up delivering: after the consumer's last
//! allowed delivery it sends a max-deliveries advisory and delivers the
//! message no more. The stream still holds it; the data worker counts it,
//! logs it at ERROR with its stream sequence, reads it back from the
//! stream and records it in the dead-letter table so it can be inspected
//! (and replayed) by hand.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use packgate_protocol::names::{self, ConsumerSpec};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::DataMetrics;
use crate::store::{DeadLetter, SampleStore};
use crate::telemetry::now_ms;

/// The fields of the broker's max-deliveries advisory that matter here
/// (`io.nats.jetstream.advisory.v1.max_deliver`).
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// The dead letter of one advisory, or `None` when it is not one about
/// `spec`'s consumer.
fn letter_of(payload: &[u8], spec: &ConsumerSpec, at_ms: i64) -> Option<(DeadLetter, u64)> {
    let advisory: MaxDeliveries = serde_json::from_slice(payload).ok()?;
    if advisory.stream != spec.stream || advisory.consumer != spec.durable {
        return None;
    }
    let letter = DeadLetter {
        stream: advisory.stream,
        stream_seq: advisory.stream_seq,
        subject: String::new(),
        payload: None,
        payload_len: None,
        error_kind: "max_deliveries".to_owned(),
        error: format!(
            "the broker gave up after {} deliveries to {}; the stream still holds the message",
            advisory.deliveries, advisory.consumer
        ),
        dead_at_ms: at_ms,
    };
    Some((letter, advisory.deliveries))
}

/// Reads the given-up message back from its stream so that its subject
/// and payload are kept with the letter; left without them (logged) when
/// the stream no longer holds it.
async fn keep_content(js: &async_nats::jetstream::Context, letter: &mut DeadLetter) {
    let read = async {
        let stream = js
            .get_stream(&letter.stream)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .get_raw_message(letter.stream_seq)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(READ_BACK_TIMEOUT, read).await {
        Ok(Ok(message)) => {
            let full = DeadLetter::of_message(
                &letter.stream,
                letter.stream_seq,
                message.subject.as_str(),
                &message.payload,
                &letter.error_kind,
                std::mem::take(&mut letter.error),
                letter.dead_at_ms,
            );
            *letter = full;
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, stream_seq = letter.stream_seq, "cannot read back a sample given up on");
        }
        Err(_) => {
            tracing::warn!(
                stream_seq = letter.stream_seq,
                "reading back a sample given up on timed out"
            );
        }
    }
}

/// Longest wait for a given-up message read back from its stream.
const READ_BACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Subscribes to the data consumer's max-deliveries advisories, before the
/// first pull so that none is missed (the broker does not keep them);
/// `None`, logged, when the broker refuses.
pub(super) async fn subscribe_given_up(
    client: &async_nats::Client,
) -> Option<async_nats::Subscriber> {
    let subject = names::max_deliveries_advisory_subject(&names::DATA_CONSUMER);
    let subscribed = client.subscribe(subject.clone()).await;
    match subscribed {
        Ok(subscriber) => {
            // The subscription reaches the broker before any pull.
            let _ = client.flush().await;
            Some(subscriber)
        }
        Err(error) => {
            tracing::error!(%error, subject, "cannot watch for samples the broker gives up on");
            None
        }
    }
}

/// Reads the data consumer's max-deliveries advisories from `advisories`
/// until `shutdown`: each is counted, logged at ERROR and recorded.
pub(super) async fn watch_given_up(
    mut advisories: async_nats::Subscriber,
    js: async_nats::jetstream::Context,
    store: Arc<Mutex<SampleStore>>,
    metrics: Arc<DataMetrics>,
    shutdown: CancellationToken,
) {
    let spec = &names::DATA_CONSUMER;
    loop {
        let advisory = tokio::select! {
            next = advisories.next() => next,
            () = shutdown.cancelled() => break,
        };
        let Some(advisory) = advisory else { break };
        let Some((mut letter, deliveries)) = letter_of(&advisory.payload, spec, now_ms()) else {
            tracing::debug!(subject = %advisory.subject, "unreadable advisory ignored");
            continue;
        };
        keep_content(&js, &mut letter).await;
        metrics.max_deliveries.inc();
        tracing::error!(
            stream = letter.stream,
            stream_seq = letter.stream_seq,
            deliveries,
            "the broker gave up delivering a sample: it stays in the stream, \
             its sequence is recorded in dead_letters"
        );
        let store = Arc::clone(&store);
        let recorded = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            store.record_dead_letters(&[letter])
        })
        .await;
        match recorded {
            Ok(Ok(_)) => metrics.dead_lettered.inc(),
            Ok(Err(error)) => tracing::error!(%error, "cannot record a sample given up on"),
            Err(error) => tracing::error!(%error, "store task failed"),
        }
    }
    let _ = advisories.unsubscribe().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_brokers_advisory_for_its_own_consumer_only() {
        let advisory = br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver",
            "id":"x","timestamp":"2024-01-01T00:00:00Z","stream":"PACKGATE_SAMPLES",
            "consumer":"packgate-data","stream_seq":77,"deliveries":20}"#;
        let (letter, deliveries) = letter_of(advisory, &names::DATA_CONSUMER, 5).unwrap();
        assert_eq!((letter.stream_seq, deliveries), (77, 20));
        assert_eq!(letter.error_kind, "max_deliveries");
        assert_eq!(letter.payload, None);
        assert!(letter_of(advisory, &names::CLOUD_SAMPLES_CONSUMER, 5).is_none());
        assert!(letter_of(b"not json", &names::DATA_CONSUMER, 5).is_none());
    }
}
