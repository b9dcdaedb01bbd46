//! End to end under faults: the broker killed and restarted, the data
//! worker killed mid-batch. Nothing published may be lost or stored twice.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use packgate::runtime::{run_workers, Broker, WorkerSet};
use packgate::store::SampleStore;
use packgate::workers::collect::PackSet;
use packgate::workers::WorkerKind;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_loses_and_duplicates_nothing() {
    let mut broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 3, 100);
    let connection = Broker::open(&config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let run = {
        let config = config.clone();
        let shutdown = shutdown.clone();
        let packs = PackSet::from_config(&config).unwrap();
        async move {
            run_workers(&config, WorkerSet::all(), packs, &connection, shutdown)
                .await
                .map(|r| (r, connection))
        }
    };
    let run = tokio::spawn(run);

    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.server.kill().await;
    let outage_start_ms = packgate::telemetry::now_ms();
    // Polling goes on while the broker is gone; the samples wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outage_end_ms = packgate::telemetry::now_ms();
    broker.server.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    let (report, connection) = run.await.unwrap().unwrap();
    let collect = report.collect.unwrap();
    let data = report.data.unwrap();
    assert_eq!(collect.samples_dropped.get(), 0);
    assert_eq!(report.publisher.unpublished, 0);
    let accepted = collect.samples_published.get() + collect.samples_duplicate.get();
    let stored = assert_exactly_once(&config.database_path(), 3, false);
    assert_eq!(stored, accepted, "published {accepted}, stored {stored}");
    assert_eq!(data.samples_stored.get(), stored);
    // Polling went on during the outage, and what it polled then is stored.
    let store = SampleStore::open_read_only(&config.database_path()).unwrap();
    for pack in store.pack_ids().unwrap() {
        let during = store
            .latest(&pack, 100_000)
            .unwrap()
            .iter()
            .filter(|row| (outage_start_ms..outage_end_ms).contains(&row.sample.timestamp_ms))
            .count();
        assert!(during >= 10, "{pack}: {during} samples from the 2 s outage");
    }
    connection.close(&config.data_dir).await;
}

#[allow(clippy::expect_used)] // test helper: failing to spawn fails the test
fn spawn_data_worker(url: &str, data_dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args(["data", "--nats-url", url, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("packgate data starts")
}

fn stored_count(database: &std::path::Path) -> u64 {
    SampleStore::open_read_only(database)
        .and_then(|s| s.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_worker_killed_mid_batch_loses_and_duplicates_nothing() {
    let broker = TestBroker::start().await;
    // Many packs polled fast, so the worker is always inside a batch.
    let packs = 40;
    let config = sim_config(&broker.url(), broker.dir.path(), packs, 20);
    let connection = Broker::open(&config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let collector = {
        let config = config.clone();
        let shutdown = shutdown.clone();
        let packs = PackSet::from_config(&config).unwrap();
        let workers = WorkerSet::of(&[WorkerKind::Collect]);
        tokio::spawn(async move {
            run_workers(&config, workers, packs, &connection, shutdown)
                .await
                .map(|r| (r, connection))
        })
    };

    let mut worker = spawn_data_worker(&broker.url(), broker.dir.path());
    for round in 0..3 {
        // Let it store for a while, then kill it without warning.
        let before = stored_count(&config.database_path());
        assert!(
            eventually(Duration::from_secs(20), || stored_count(
                &config.database_path()
            ) > before + 500)
            .await,
            "round {round}: the data worker stores nothing"
        );
        worker.kill().unwrap();
        worker.wait().unwrap();
        worker = spawn_data_worker(&broker.url(), broker.dir.path());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    let (report, connection) = collector.await.unwrap().unwrap();
    let collect = report.collect.unwrap();
    assert_eq!(report.publisher.unpublished, 0);
    assert_eq!(collect.samples_dropped.get(), 0);
    let published = collect.samples_published.get() + collect.samples_duplicate.get();
    assert!(
        eventually(Duration::from_secs(30), || stored_count(
            &config.database_path()
        ) >= published)
        .await,
        "stored {} of {published}",
        stored_count(&config.database_path())
    );
    // Graceful stop of the last worker.
    sigterm_and_wait(&mut worker);
    let stored = assert_exactly_once(&config.database_path(), packs, false);
    assert_eq!(stored, published);
    connection.close(&config.data_dir).await;
}
