//! Samples the broker gave up delivering: after the consumer's last
//! allowed delivery it sends a max-deliveries advisory and delivers the
//! message no more. The stream still holds it; the data worker counts it,
//! logs it at ERROR with its stream sequence, and records that sequence in
//! the dead-letter table so it can be inspected (and replayed) by hand.

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

/// Listens for the data consumer's max-deliveries advisories until
/// `shutdown`: each is counted, logged at ERROR and recorded.
pub(super) async fn watch_given_up(
    client: async_nats::Client,
    store: Arc<Mutex<SampleStore>>,
    metrics: Arc<DataMetrics>,
    shutdown: CancellationToken,
) {
    let spec = &names::DATA_CONSUMER;
    let subject = names::max_deliveries_advisory_subject(spec);
    let mut advisories = match client.subscribe(subject.clone()).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(%error, subject, "cannot watch for samples the broker gives up on");
            return;
        }
    };
    loop {
        let advisory = tokio::select! {
            next = advisories.next() => next,
            () = shutdown.cancelled() => break,
        };
        let Some(advisory) = advisory else { break };
        let Some((letter, deliveries)) = letter_of(&advisory.payload, spec, now_ms()) else {
            tracing::debug!(subject = %advisory.subject, "unreadable advisory ignored");
            continue;
        };
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
