//! End to end: the data worker's consumer deleted under a running gateway
//! is recreated with the same settings, and every sample is still stored
//! exactly once.

// Tests: a failed step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use async_nats::jetstream;
use packgate::runtime::{run_workers, Broker, WorkerSet};
use packgate::store::SampleStore;
use packgate::workers::collect::PackSet;
use packgate::workers::WorkerKind;
use packgate_protocol::names;
use support::*;
use tokio_util::sync::CancellationToken;

fn stored(database: &std::path::Path) -> u64 {
    SampleStore::open_read_only(database)
        .and_then(|store| store.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_data_consumer_is_recreated_and_nothing_is_lost_or_doubled() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 2, 100);
    let packs = PackSet::from_config(&config).unwrap();
    let connection = Broker::open(&config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let run = {
        let config = config.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let workers = WorkerSet::of(&[WorkerKind::Collect, WorkerKind::Data]);
            let report = run_workers(&config, workers, packs, &connection, shutdown).await;
            connection.close(&config.data_dir).await;
            report
        })
    };
    let database = config.database_path();
    assert!(eventually(Duration::from_secs(20), || stored(&database) >= 10).await);

    // Someone deletes the consumer.
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    let stream = js.get_stream(names::SAMPLES_STREAM.name).await.unwrap();
    assert!(
        stream
            .delete_consumer(names::DATA_CONSUMER.durable)
            .await
            .unwrap()
            .success
    );
    let published_at_delete = stream_messages(&broker.url(), names::SAMPLES_STREAM.name).await;

    // Samples published afterwards are stored: well past what the stream
    // held when the consumer went.
    assert!(
        eventually(Duration::from_secs(60), || stored(&database)
            >= published_at_delete + 20)
        .await,
        "stored {} of {} published before the delete",
        stored(&database),
        published_at_delete
    );
    let info = stream
        .consumer_info(names::DATA_CONSUMER.durable)
        .await
        .unwrap();
    assert_eq!(
        info.config.max_deliver,
        packgate::broker::setup::MAX_DELIVERIES
    );
    assert_eq!(info.config.ack_wait, names::DATA_CONSUMER.ack_wait);
    assert_eq!(
        info.config.max_ack_pending,
        names::DATA_CONSUMER.max_ack_pending
    );

    shutdown.cancel();
    let report = run.await.unwrap().unwrap();
    assert!(
        report.consumers_recreated >= 1,
        "recreated {}",
        report.consumers_recreated
    );
    let published = report.collect.unwrap().samples_published.get();
    assert_eq!(report.publisher.unpublished, 0);
    let data = report.data.unwrap();
    assert_eq!(data.samples_stored.get(), published);
    assert_eq!(assert_exactly_once(&database, 2, false), published);
    assert_eq!(
        stream_messages(&broker.url(), names::SAMPLES_STREAM.name).await,
        published
    );
}
