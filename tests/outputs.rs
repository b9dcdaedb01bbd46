//! The alarm relay, through a recording GPIO pin, driven by a simulated
//! pack's over-temperature over a real broker.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use packgate::outputs::fake::RecordingPin;
use packgate::outputs::{run_outputs, OutputController, OutputDriver, RESET_SUBJECT};
use packgate::runtime::{run_workers, Broker, WorkerSet};
use packgate::workers::collect::PackSet;
use packgate::workers::control::{AuditRecord, AuditStore, RELAY_RESET_SETTING};
use packgate::workers::WorkerKind;
use packgate_protocol::{AlarmFlags, PackId};
use packgate_sim::Faults;
use support::*;
use tokio_util::sync::CancellationToken;

/// The relay resets in the control audit at `path`, oldest first.
fn relay_resets(path: &std::path::Path) -> Vec<AuditRecord> {
    if !path.exists() {
        return Vec::new();
    }
    let mut rows: Vec<AuditRecord> = AuditStore::open_read_only(path)
        .unwrap()
        .recent(1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.setting == RELAY_RESET_SETTING)
        .collect();
    rows.reverse();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_trips_on_over_temperature_and_resets_only_when_told() {
    let broker = TestBroker::start().await;
    let config = sim_config(&broker.url(), broker.dir.path(), 1, 100);
    let packs = PackSet::from_config(&config).unwrap();
    let sim = packs.sims[&PackId::new("sim-01").unwrap()].clone();
    let connection = Broker::open(&config, "test").await.unwrap();
    let client = connection.client.clone();

    let relay = RecordingPin::new();
    let controller = OutputController::new(
        AlarmFlags::OVER_TEMPERATURE,
        true,
        false,
        [PackId::new("sim-01").unwrap()],
    );
    let driver = OutputDriver::new(
        controller,
        Some((relay.clone(), false)),
        None::<(RecordingPin, bool, u64)>,
    )
    .unwrap();
    let outputs_stop = CancellationToken::new();
    let audit = broker.dir.path().join("control.db");
    let outputs = tokio::spawn(run_outputs(
        driver,
        client.clone(),
        audit.clone(),
        outputs_stop.clone(),
    ));
    // A witness: a non-latching relay fed the same events on the same
    // connection. When it releases, the alarm's clearing has arrived and
    // been applied, so the latching relay has seen it too.
    let witness = RecordingPin::new();
    let witness_driver = OutputDriver::new(
        OutputController::new(
            AlarmFlags::OVER_TEMPERATURE,
            false,
            false,
            [PackId::new("sim-01").unwrap()],
        ),
        Some((witness.clone(), false)),
        None::<(RecordingPin, bool, u64)>,
    )
    .unwrap();
    let witnessing = tokio::spawn(run_outputs(
        witness_driver,
        client.clone(),
        broker.dir.path().join("witness-control.db"),
        outputs_stop.clone(),
    ));

    let shutdown = CancellationToken::new();
    let gateway = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        let workers = WorkerSet::of(&[WorkerKind::Collect]);
        tokio::spawn(async move {
            run_workers(&config, workers, packs, &connection, shutdown)
                .await
                .map(|r| (r, connection))
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_ne!(relay.level(), Some(true), "tripped before any alarm");

    // The pack overheats: the relay trips.
    sim.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    sim.advance(600.0);
    assert!(
        eventually(Duration::from_secs(10), || relay.level() == Some(true)).await,
        "relay never tripped: {:?}",
        relay.levels()
    );

    // It cools down: a latching relay stays tripped...
    sim.set_faults(Faults::default());
    sim.advance(4.0 * 3600.0);
    assert!(
        !sim.reading().alarms.contains(AlarmFlags::OVER_TEMPERATURE),
        "the model did not cool down"
    );
    assert!(
        eventually(Duration::from_secs(10), || witness.level() == Some(false)).await,
        "the alarm never cleared: witness {:?}",
        witness.levels()
    );
    assert_eq!(
        relay.level(),
        Some(true),
        "a latching relay released by itself"
    );

    // ...until the operator resets it: audited before it takes effect.
    let resets_before = relay_resets(&audit);
    let reply = client
        .request(RESET_SUBJECT, "operator@test".into())
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"ok");
    assert!(
        eventually(Duration::from_secs(5), || relay.level() == Some(false)).await,
        "reset did not release: {:?}",
        relay.levels()
    );
    let levels = relay.levels();
    assert!(levels.windows(2).any(|w| w == [true, false]), "{levels:?}");
    let resets = relay_resets(&audit);
    assert_eq!(resets.len(), resets_before.len() + 1, "{resets:?}");
    assert_eq!(resets.last().unwrap().origin, "operator@test");

    shutdown.cancel();
    let (_, connection) = gateway.await.unwrap().unwrap();
    outputs_stop.cancel();
    outputs.await.unwrap().unwrap();
    witnessing.await.unwrap().unwrap();
    connection.close(&config.data_dir).await;
}

#[tokio::test]
async fn a_reset_that_cannot_be_audited_is_refused() {
    let broker = TestBroker::start().await;
    let client = async_nats::connect(broker.url()).await.unwrap();
    let relay = RecordingPin::new();
    let controller = OutputController::new(
        AlarmFlags::OVER_TEMPERATURE,
        true,
        false,
        [PackId::new("sim-01").unwrap()],
    );
    let driver = OutputDriver::new(
        controller,
        Some((relay.clone(), false)),
        None::<(RecordingPin, bool, u64)>,
    )
    .unwrap();
    let stop = CancellationToken::new();
    // The audit database's directory does not exist: nothing can be written.
    let audit = broker.dir.path().join("missing/control.db");
    let outputs = tokio::spawn(run_outputs(driver, client.clone(), audit, stop.clone()));
    let mut reply = None;
    for _ in 0..50 {
        match client.request(RESET_SUBJECT, "operator@test".into()).await {
            Ok(message) => {
                reply = Some(message);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let reply = String::from_utf8(reply.unwrap().payload.to_vec()).unwrap();
    assert!(
        reply.starts_with("refused: the reset cannot be audited"),
        "{reply}"
    );
    stop.cancel();
    outputs.await.unwrap().unwrap();
}
