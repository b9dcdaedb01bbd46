//! End to end: simulated packs through a real nats-server into SQLite.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use packgate::broker::{ensure_consumer, ensure_streams, SetupAction};
use packgate::runtime::{run_workers, Broker, WorkerSet};
use packgate::store::SampleStore;
use packgate::workers::collect::PackSet;
use packgate::workers::data::{run_data, DataMetrics};
use packgate::workers::WorkerKind;
use packgate_protocol::{names, DataQuality, PackId};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_sample_is_stored_exactly_once_in_order() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 4, 100);
    let packs = PackSet::from_config(&config).unwrap();
    let sims = packs.sims.clone();
    let connection = Broker::open(&config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    let report = run_workers(&config, WorkerSet::all(), packs, &connection, shutdown)
        .await
        .unwrap();
    let collect = report.collect.unwrap();
    let data = report.data.unwrap();
    let published = collect.samples_published.get();
    assert!(
        published >= 4 * 20,
        "only {published} samples in 3 s at 10 Hz"
    );
    assert_eq!(collect.samples_dropped.get(), 0);
    assert_eq!(report.publisher.unpublished, 0);
    assert_eq!(data.samples_stored.get(), published);

    let stored = assert_exactly_once(&config.database_path(), 4, true);
    assert_eq!(stored, published);
    assert_eq!(
        stream_messages(&broker.url(), names::SAMPLES_STREAM.name).await,
        published
    );

    // The newest stored sample holds what the simulated pack reads now
    // (the model has not moved since polling stopped... within a poll).
    let store = SampleStore::open_read_only(&config.database_path()).unwrap();
    for (pack, sim) in &sims {
        let latest = store.latest(pack, 1).unwrap();
        let row = &latest[0].sample;
        assert_eq!(row.quality, DataQuality::Fresh);
        let now = sim.advance(0.0);
        assert_eq!(
            row.reading.cell_voltages_v.0.len(),
            now.cell_voltages_v.0.len()
        );
        assert!(
            (row.reading.soc_pct - now.soc_pct).abs() < 1.0,
            "{pack}: {} vs {}",
            row.reading.soc_pct,
            now.soc_pct
        );
    }
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_changes_nothing_on_the_broker() {
    let broker = TestBroker::start().await;
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = jetstream::new(client);
    let config = sim_config(&broker.url(), broker.dir.path(), 1, 1000);
    let first = ensure_streams(&js, &config.streams).await.unwrap();
    assert!(
        first.iter().all(|(_, a)| *a == SetupAction::Created),
        "{first:?}"
    );
    let second = ensure_streams(&js, &config.streams).await.unwrap();
    assert!(
        second.iter().all(|(_, a)| *a == SetupAction::Unchanged),
        "{second:?}"
    );
    let (_, action) = ensure_consumer(&js, &names::DATA_CONSUMER).await.unwrap();
    assert_eq!(action, SetupAction::Created);
    let (_, action) = ensure_consumer(&js, &names::DATA_CONSUMER).await.unwrap();
    assert_eq!(action, SetupAction::Unchanged);

    let mut changed = config.streams.clone();
    changed.samples.max_age_s = 3600;
    let third = ensure_streams(&js, &changed).await.unwrap();
    assert_eq!(third[0], (names::SAMPLES_STREAM.name, SetupAction::Updated));
    assert_eq!(third[1].1, SetupAction::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_terminated_and_the_worker_goes_on() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 2, 100);
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = jetstream::new(client);
    ensure_streams(&js, &config.streams).await.unwrap();

    // Garbage, an unknown schema version, and an event where a sample belongs.
    let bad_pack = PackId::new("intruder").unwrap();
    let subject = names::sample_subject(&bad_pack);
    for payload in [
        vec![0xde, 0xad, 0xbe, 0xef],
        vec![9, 1, 0, 0],
        vec![1, 2, 7],
    ] {
        js.publish(subject.clone(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let metrics = Arc::new(DataMetrics::default());
    let shutdown = CancellationToken::new();
    let data = tokio::spawn(run_data(
        config.data.clone(),
        config.database_path(),
        js.clone(),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    assert!(
        eventually(Duration::from_secs(10), || metrics.messages_malformed.get()
            == 3)
        .await
    );

    // Valid samples after the bad ones are stored.
    let collect_shutdown = CancellationToken::new();
    let connection = Broker::open(&config, "test").await.unwrap();
    let report = {
        let stop = collect_shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.cancel();
        });
        let workers = WorkerSet::of(&[WorkerKind::Collect]);
        run_workers(
            &config,
            workers,
            PackSet::from_config(&config).unwrap(),
            &connection,
            collect_shutdown,
        )
        .await
        .unwrap()
    };
    let published = report.collect.unwrap().samples_published.get();
    assert!(published > 0);
    assert!(
        eventually(Duration::from_secs(10), || metrics.samples_stored.get()
            == published)
        .await
    );
    shutdown.cancel();
    data.await.unwrap().unwrap();
    assert_eq!(
        metrics.messages_malformed.get(),
        3,
        "terminated messages came back"
    );
    assert_exactly_once(&config.database_path(), 2, true);

    // Nothing is left pending or redelivered on the consumer.
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(names::SAMPLES_STREAM.name)
        .await
        .unwrap()
        .get_consumer(names::DATA_CONSUMER.durable)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
    connection.close(&config.data_dir).await;
}
