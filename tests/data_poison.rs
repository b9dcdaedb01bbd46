//! End to end: samples that can never be stored, and messages the broker
//! gives up on, never hold back the others; each is terminated alone,
//! counted, and kept in the `dead_letters` table.

// Tests: a failed step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use packgate::broker::{ensure_consumer, ensure_streams};
use packgate::store::SampleStore;
use packgate::workers::data::{run_data, DataMetrics};
use packgate_protocol::sample::{
    AlarmFlags, BalancingState, CellVoltages, ClockQuality, DataQuality, PackReading, Temperatures,
};
use packgate_protocol::{encode, names, BootId, PackId, Sample};
use support::*;
use tokio_util::sync::CancellationToken;

fn sample(seq: u64) -> Sample {
    Sample {
        pack_id: PackId::new("p1").unwrap(),
        boot_id: BootId(7),
        seq,
        timestamp_ms: 1_700_000_000_000 + seq as i64,
        quality: DataQuality::Fresh,
        reading: PackReading {
            pack_voltage_v: 52.8,
            current_a: -12.5,
            soc_pct: 71.0,
            soh_pct: Some(98.0),
            cell_voltages_v: CellVoltages(vec![3.30, 3.28, 3.31, 3.29]),
            temperatures_c: Temperatures(vec![24.0, 26.5]),
            balancing: BalancingState(0),
            alarms: AlarmFlags::NONE,
            charge_enabled: true,
            discharge_enabled: true,
        },
        clock: ClockQuality::Trusted,
    }
}

async fn publish(js: &jetstream::Context, payload: Vec<u8>) -> u64 {
    let subject = names::sample_subject(&PackId::new("p1").unwrap());
    js.publish(subject, payload.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

fn stored_seqs(database: &std::path::Path) -> Vec<u64> {
    let keys = stored_keys(database);
    let mut seqs: Vec<u64> = keys
        .get(&PackId::new("p1").unwrap())
        .map(|rows| rows.iter().map(|(_, seq)| *seq).collect())
        .unwrap_or_default();
    seqs.sort_unstable();
    seqs
}

async fn consumer_idle(js: &jetstream::Context) {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(names::SAMPLES_STREAM.name)
        .await
        .unwrap()
        .get_consumer(names::DATA_CONSUMER.durable)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "unacked messages left");
    assert_eq!(info.num_pending, 0, "undelivered messages left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_sample_is_dead_lettered_alone_and_its_batch_is_stored() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 1, 100);
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    ensure_streams(&js, &config.streams).await.unwrap();

    // Ten valid samples with two that can never be stored in the middle:
    // a sequence number beyond SQLite's integer, and a state of charge no
    // pack can read. All in the stream before the worker starts, so they
    // come in one batch.
    let mut poison_seqs = Vec::new();
    let mut poison_payloads = Vec::new();
    for seq in 1..=10u64 {
        publish(&js, encode(&sample(seq))).await;
        if seq == 5 {
            let payload = encode(&sample(1 << 63));
            poison_seqs.push(publish(&js, payload.clone()).await);
            poison_payloads.push(payload);
            let mut absurd = sample(11);
            absurd.reading.soc_pct = 6553.5;
            let payload = encode(&absurd);
            poison_seqs.push(publish(&js, payload.clone()).await);
            poison_payloads.push(payload);
        }
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
        eventually(Duration::from_secs(20), || metrics.samples_stored.get()
            == 10
            && metrics.dead_lettered.get() == 2)
        .await,
        "stored {}, dead-lettered {}",
        metrics.samples_stored.get(),
        metrics.dead_lettered.get()
    );
    shutdown.cancel();
    data.await.unwrap().unwrap();

    assert_eq!(
        stored_seqs(&config.database_path()),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(metrics.samples_stored.get(), 10);
    assert_eq!(metrics.samples_duplicate.get(), 0);
    assert_eq!(metrics.messages_malformed.get(), 2);
    assert_eq!(metrics.dead_lettered.get(), 2);
    assert_eq!(metrics.store_failures.get(), 0);

    let store = SampleStore::open_read_only(&config.database_path()).unwrap();
    let letters = store.dead_letters(100).unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for ((letter, seq), payload) in letters.iter().zip(&poison_seqs).zip(&poison_payloads) {
        assert_eq!(letter.stream, names::SAMPLES_STREAM.name);
        assert_eq!(letter.stream_seq, *seq);
        assert_eq!(letter.subject, "packgate.samples.p1");
        assert_eq!(letter.payload.as_ref(), Some(payload));
        assert_eq!(letter.error_kind, "out_of_range");
    }
    assert!(letters[0].error.contains("seq"), "{}", letters[0].error);
    assert!(letters[1].error.contains("soc_pct"), "{}", letters[1].error);
    // Terminated, so never delivered again.
    consumer_idle(&js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_the_broker_gives_up_on_is_recorded_and_the_rest_flows() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 1, 100);
    let js = jetstream::new(async_nats::connect(broker.url()).await.unwrap());
    ensure_streams(&js, &config.streams).await.unwrap();
    let (consumer, _) = ensure_consumer(&js, &names::DATA_CONSUMER).await.unwrap();
    let payload = encode(&sample(1));
    let stream_seq = publish(&js, payload.clone()).await;

    // A reader that takes the sample and never manages to store it, until
    // the consumer's deliveries are spent.
    let mut deliveries = 0;
    while deliveries < packgate::broker::setup::MAX_DELIVERIES {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        if let Some(message) = batch.next().await {
            let message = message.unwrap();
            assert_eq!(message.info().unwrap().stream_sequence, stream_seq);
            deliveries += 1;
            message.ack_with(AckKind::Nak(None)).await.unwrap();
        }
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
        eventually(Duration::from_secs(20), || metrics.max_deliveries.get()
            == 1
            && metrics.dead_lettered.get() == 1)
        .await,
        "given up {}, dead-lettered {}",
        metrics.max_deliveries.get(),
        metrics.dead_lettered.get()
    );
    // The samples after it are stored.
    for seq in 2..=4 {
        publish(&js, encode(&sample(seq))).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || metrics.samples_stored.get()
            == 3)
        .await,
        "stored {}",
        metrics.samples_stored.get()
    );
    shutdown.cancel();
    data.await.unwrap().unwrap();

    assert_eq!(stored_seqs(&config.database_path()), vec![2, 3, 4]);
    let store = SampleStore::open_read_only(&config.database_path()).unwrap();
    let letters = store.dead_letters(100).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].stream_seq, stream_seq);
    assert_eq!(letters[0].error_kind, "max_deliveries");
    assert_eq!(letters[0].subject, "packgate.samples.p1");
    assert_eq!(letters[0].payload.as_ref(), Some(&payload));
    consumer_idle(&js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_the_dead_letters() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 1, 100);
    let mut store = SampleStore::open(&config.database_path()).unwrap();
    let status_text = || async {
        let mut out = Vec::new();
        packgate::cli::status::status(
            &config,
            &packgate::config::ConfigSource::Defaults,
            None,
            &mut out,
        )
        .await
        .unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(status_text().await.contains("dead letters: none"));
    let letters: Vec<_> = (1..=3)
        .map(|seq| {
            packgate::store::DeadLetter::of_message(
                names::SAMPLES_STREAM.name,
                seq,
                "packgate.samples.p1",
                b"junk",
                "malformed",
                "junk".into(),
                0,
            )
        })
        .collect();
    store.record_dead_letters(&letters).unwrap();
    let text = status_text().await;
    assert!(
        text.contains("dead letters: 3 samples could never be stored"),
        "{text}"
    );
}
