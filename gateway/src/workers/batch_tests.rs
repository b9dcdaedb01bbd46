//! The puller against a real nats-server: what a batch holds, in what
//! order, for a quiet stream, a backlog and a stream that keeps arriving.

use async_nats::jetstream::{self, consumer, stream};

use super::*;
use crate::broker::{NatsServer, NatsServerOptions};

/// A broker with one stream, `test.>`, and a durable pull consumer on it.
async fn broker() -> (
    tempfile::TempDir,
    NatsServer,
    jetstream::Context,
    PullConsumer,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(NatsServerOptions::new(dir.path().join("store")))
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: "TEST".into(),
            subjects: vec!["test.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("reader".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    (dir, server, js, consumer)
}

async fn publish(js: &jetstream::Context, count: usize) {
    for _ in 0..count {
        js.publish("test.a", "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// The stream sequences of `batch`, each acked.
async fn taken(batch: Vec<jetstream::Message>) -> Vec<u64> {
    let mut sequences = Vec::with_capacity(batch.len());
    for message in batch {
        sequences.push(message.info().unwrap().stream_sequence);
        message.ack().await.unwrap();
    }
    sequences
}

#[tokio::test]
async fn a_quiet_stream_makes_one_batch_of_what_arrived_within_the_linger() {
    let (_dir, _server, js, consumer) = broker().await;
    let mut puller =
        BatchPuller::new(consumer, 100, Duration::from_millis(1500), "test").with_enough(64);
    let shutdown = CancellationToken::new();
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            // After the puller waits; then two more, well within the linger.
            tokio::time::sleep(Duration::from_millis(300)).await;
            for _ in 0..3 {
                publish(&js, 1).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let batch = puller.next_batch(&shutdown).await.unwrap();
    assert_eq!(taken(batch).await, vec![1, 2, 3]);
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_backlog_is_handed_out_in_full_batches_in_stream_order() {
    let (_dir, _server, js, consumer) = broker().await;
    publish(&js, 450).await;
    let mut puller =
        BatchPuller::new(consumer, 200, Duration::from_millis(300), "test").with_enough(64);
    let shutdown = CancellationToken::new();
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    while all.len() < 450 {
        let sequences = taken(puller.next_batch(&shutdown).await.unwrap()).await;
        sizes.push(sequences.len());
        all.extend(sequences);
    }
    // A place is kept for the standing pull's message in each.
    assert!(sizes.iter().all(|n| *n <= 200), "{sizes:?}");
    assert!(sizes.len() <= 4, "{sizes:?}");
    assert_eq!(all, (1..=450).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arriving_while_batches_close_are_each_handed_out_once_in_order() {
    let (_dir, _server, js, consumer) = broker().await;
    const TOTAL: usize = 1490;
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            // Bursts, as poll rounds make them, and single ones between.
            for round in 0..30 {
                publish(&js, if round % 3 == 0 { 1 } else { 74 }).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let mut puller =
        BatchPuller::new(consumer, 100, Duration::from_millis(200), "test").with_enough(30);
    let shutdown = CancellationToken::new();
    let mut all = Vec::new();
    let expected = (0..30)
        .map(|round| if round % 3 == 0 { 1 } else { 74 })
        .sum::<usize>();
    assert_eq!(expected, TOTAL);
    while all.len() < TOTAL {
        let batch = tokio::time::timeout(Duration::from_secs(10), puller.next_batch(&shutdown))
            .await
            .expect("a batch in time")
            .unwrap();
        assert!(batch.len() <= 100, "{} in one batch", batch.len());
        all.extend(taken(batch).await);
    }
    assert_eq!(all, (1..=TOTAL as u64).collect::<Vec<u64>>());
    publisher.await.unwrap();
    // Nothing more is handed out: each was taken once.
    shutdown.cancel();
    let until = Instant::now() + Duration::from_millis(300);
    assert!(puller.drain_batch(until).await.is_none());
}

/// Publishes `count` messages together, as a poll round does, and waits
/// for their acks.
async fn publish_burst(js: &jetstream::Context, count: usize) {
    let mut acks = Vec::with_capacity(count);
    for _ in 0..count {
        acks.push(js.publish("test.a", "x".into()).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// How a lot of messages is published.
#[derive(Debug, Clone, Copy)]
enum Lot {
    /// Together, as a poll round does.
    Burst,
    /// Each after the ack of the one before.
    OneByOne,
}

/// Publishes `lots` of `(pause_ms, count)`: each lot after its pause.
fn spawn_lots(
    js: &jetstream::Context,
    lots: &'static [(u64, usize)],
    lot: Lot,
) -> tokio::task::JoinHandle<()> {
    let js = js.clone();
    tokio::spawn(async move {
        for &(pause_ms, count) in lots {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            match lot {
                Lot::Burst => publish_burst(&js, count).await,
                Lot::OneByOne => publish(&js, count).await,
            }
        }
    })
}

#[tokio::test]
async fn a_burst_is_one_batch_once_it_is_over_without_lingering() {
    let (_dir, _server, js, consumer) = broker().await;
    let mut puller =
        BatchPuller::new(consumer, 500, Duration::from_secs(4), "test").with_enough(400);
    let shutdown = CancellationToken::new();
    // Two poll rounds a second apart, well within the linger.
    let publisher = spawn_lots(&js, &[(200, 60), (1000, 40)], Lot::Burst);
    // Each round is a batch: the first is not held for the second.
    let first = taken(puller.next_batch(&shutdown).await.unwrap()).await;
    assert_eq!(first, (1..=60).collect::<Vec<u64>>());
    let second = taken(puller.next_batch(&shutdown).await.unwrap()).await;
    assert_eq!(second, (61..=100).collect::<Vec<u64>>());
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_batch_closes_once_enough_wait_without_lingering_to_its_end() {
    let (_dir, _server, js, consumer) = broker().await;
    let mut puller =
        BatchPuller::new(consumer, 500, Duration::from_secs(4), "test").with_enough(64);
    let shutdown = CancellationToken::new();
    // One by one (no burst), well past enough; then more, still within
    // the first one's linger.
    let publisher = spawn_lots(&js, &[(200, 80), (1500, 20)], Lot::OneByOne);
    // Closed as soon as it held enough, before the second lot.
    let mut all = taken(puller.next_batch(&shutdown).await.unwrap()).await;
    assert!((64..=80).contains(&all.len()), "{all:?}");
    while all.len() < 100 {
        all.extend(taken(puller.next_batch(&shutdown).await.unwrap()).await);
    }
    assert_eq!(all, (1..=100).collect::<Vec<u64>>());
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_backlog_fetched_ahead_is_still_handed_out_at_shutdown() {
    let (_dir, _server, js, consumer) = broker().await;
    publish(&js, 450).await;
    let mut puller =
        BatchPuller::new(consumer, 200, Duration::from_millis(300), "test").with_enough(64);
    let shutdown = CancellationToken::new();
    // A full batch: the next is fetched while this one would be stored.
    let mut all = taken(puller.next_batch(&shutdown).await.unwrap()).await;
    assert!(all.len() >= 199, "{}", all.len());
    shutdown.cancel();
    // What was fetched ahead comes out, then the rest by draining.
    all.extend(taken(puller.next_batch(&shutdown).await.expect("fetched ahead")).await);
    let until = Instant::now() + Duration::from_secs(5);
    while let Some(batch) = puller.drain_batch(until).await {
        all.extend(taken(batch).await);
    }
    assert_eq!(all, (1..=450).collect::<Vec<u64>>());
}

/// Two fetches asking at once for the one waiting message: one gets it,
/// the other gets nothing, and the broker must not keep that one open
/// (nats-server 2.9 keeps a fetch without an expiry that got nothing
/// until the next message arrives). It ends within its expiry, not at
/// the client's timeout, and the next message goes to the next fetch.
#[tokio::test]
async fn a_fetch_that_gets_nothing_is_not_left_open_on_the_broker() {
    let (_dir, _server, js, consumer) = broker().await;
    publish(&js, 1).await;
    let held = Duration::from_secs(2);
    for round in 1..=5u64 {
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(
            tokio::time::timeout(held, fetch_into(&consumer, 1, &mut first)),
            tokio::time::timeout(held, fetch_into(&consumer, 10, &mut second))
        );
        assert!(
            a.is_ok() && b.is_ok(),
            "round {round}: a fetch was held open for {held:?}"
        );
        let mut got = taken(first).await;
        got.extend(taken(second).await);
        assert_eq!(got, vec![round], "round {round}");
        publish(&js, 1).await;
    }
    let mut last = Vec::new();
    fetch_into(&consumer, 10, &mut last).await.unwrap();
    assert_eq!(taken(last).await, vec![6]);
}
