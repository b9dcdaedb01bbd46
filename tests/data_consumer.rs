//! End to end: the data worker's consumer deleted under a running gateway
//! is recreated with the same settings, and every sample is still stored
//! exactly once; `packgate status` shows a data worker whose consumer is
//! missing, or that stores nothing while samples wait, as not healthy.

// Tests: a failed step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use async_nats::jetstream;
use packgate::broker::{ensure_consumer, ensure_streams};
use packgate::runtime::{run_workers, Broker, WorkerSet};
use packgate::store::SampleStore;
use packgate::workers::collect::PackSet;
use packgate::workers::monitor::MonitorStore;
use packgate::workers::WorkerKind;
use packgate_protocol::{names, MetricsSnapshot, PackId};
use support::*;
use tokio_util::sync::CancellationToken;

/// Deletes the data consumer as an operator would: nats-server 2.9 can
/// fail a delete that races the consumer's own state write ("directory
/// not empty"), and the operator tries again. Done once it is gone.
async fn delete_data_consumer(stream: &jetstream::stream::Stream) {
    for _ in 0..50 {
        match stream.delete_consumer(names::DATA_CONSUMER.durable).await {
            Ok(status) if status.success => return,
            Ok(_) => {}
            Err(error) if error.to_string().contains("not found") => return,
            Err(error) => eprintln!("delete refused, trying again: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the data consumer could not be deleted");
}

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
    delete_data_consumer(&stream).await;
    let published_at_delete = stream_messages(&broker.url(), names::SAMPLES_STREAM.name).await;

    // Samples published afterwards are stored: well past what the stream
    // held when the consumer went. Sooner than the keeper's periodic
    // check (a minute): the broker's deletion advisory wakes it.
    assert!(
        eventually(Duration::from_secs(30), || stored(&database)
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

async fn status_text(config: &packgate::config::Config, client: async_nats::Client) -> String {
    let mut out = Vec::new();
    packgate::cli::status::status(
        config,
        &packgate::config::ConfigSource::Defaults,
        Some(client),
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

fn data_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.trim_start().starts_with("data "))
        .unwrap_or_else(|| panic!("no line for data in:\n{text}"))
}

/// A snapshot of a running data worker, up an hour, that last committed
/// `last_commit_ago_ms` ago.
fn data_snapshot(last_commit_ago_ms: i64) -> MetricsSnapshot {
    let now = packgate::telemetry::now_ms();
    MetricsSnapshot {
        worker: "data".into(),
        instance: "box/1".into(),
        timestamp_ms: now,
        uptime_s: 3600,
        version: "0.0.0".into(),
        rss_bytes: 1 << 20,
        cpu_s: 1.0,
        counters: vec![("samples_stored".into(), 10)],
        gauges: vec![("last_commit_ms".into(), (now - last_commit_ago_ms) as f64)],
        latencies: vec![],
        notes: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_data_worker_that_does_not_store_as_not_healthy() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 1, 1000);
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    ensure_streams(&js, &config.streams).await.unwrap();
    // The data worker's two consumers, as the supervisor makes them.
    ensure_consumer(&js, &names::DATA_CONSUMER).await.unwrap();
    ensure_consumer(&js, &names::DATA_BANKS_CONSUMER)
        .await
        .unwrap();
    let subject = names::sample_subject(&PackId::new("p1").unwrap());
    for _ in 0..3 {
        js.publish(subject.clone(), vec![1, 2, 3].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut monitor = MonitorStore::open(&config.monitor.database_path(&config.data_dir)).unwrap();

    // Samples wait, and the worker committed nothing for ten minutes.
    monitor
        .insert_batch(&[data_snapshot(600_000)], &[])
        .unwrap();
    let text = status_text(&config, client.clone()).await;
    let line = data_line(&text);
    assert!(line.contains("stalled"), "{text}");
    assert!(
        line.contains("NOT healthy: lag 3, nothing stored for"),
        "{text}"
    );

    // It commits again: alive, though samples wait.
    let mut recent = data_snapshot(100);
    recent.timestamp_ms += 1;
    monitor.insert_batch(&[recent], &[]).unwrap();
    let text = status_text(&config, client.clone()).await;
    let line = data_line(&text);
    assert!(
        line.contains("alive") && !line.contains("NOT healthy"),
        "{text}"
    );

    // Its consumer is deleted.
    let stream = js.get_stream(names::SAMPLES_STREAM.name).await.unwrap();
    delete_data_consumer(&stream).await;
    let text = status_text(&config, client.clone()).await;
    let line = data_line(&text);
    assert!(line.contains("stalled"), "{text}");
    assert!(
        line.contains("NOT healthy: consumer packgate-data missing"),
        "{text}"
    );
    assert!(text.contains("Broker: reachable"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_redelivers_without_end_is_bounded_at_start() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 1, 1000);
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    ensure_streams(&js, &config.streams).await.unwrap();
    // As an earlier release made it.
    let stream = js.get_stream(names::SAMPLES_STREAM.name).await.unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(names::DATA_CONSUMER.durable.to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: names::DATA_CONSUMER.ack_wait,
            max_deliver: -1,
            max_ack_pending: names::DATA_CONSUMER.max_ack_pending,
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, action) = ensure_consumer(&js, &names::DATA_CONSUMER).await.unwrap();
    assert_eq!(action, packgate::broker::SetupAction::Updated);
    let info = stream
        .consumer_info(names::DATA_CONSUMER.durable)
        .await
        .unwrap();
    assert_eq!(
        info.config.max_deliver,
        packgate::broker::setup::MAX_DELIVERIES
    );
}
