//! End to end over Modbus: the simulator served as Modbus TCP and Modbus
//! RTU devices, the gateway polling them into SQLite, with dead units and
//! damaged frames on a shared line.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use packgate_protocol::{AlarmFlags, DataQuality, EventKind};
use packgate_sim::serve::{serve_modbus_tcp, SimUnit};
use packgate_sim::{Faults, SimPack};
use support::wire::*;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_tcp_and_rtu_packs_reach_sqlite_with_the_simulator_values() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    // Modbus TCP: two units behind one endpoint.
    let tcp_packs: Vec<SimPack> = (1..=2).map(still_pack).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let units = tcp_packs
        .iter()
        .enumerate()
        .map(|(i, p)| SimUnit::new(i as u8 + 1, p.clone(), i as u64 + 1))
        .collect();
    tokio::spawn(serve_modbus_tcp(listener, units, servers.clone()));
    // Modbus RTU: three units on one line (a pseudo-terminal pair).
    let rtu_packs: Vec<SimPack> = (11..=13).map(still_pack).collect();
    // Unit 12 reports an over-temperature: alarms and open switches must
    // come through the register map as well.
    rtu_packs[1].set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    rtu_packs[1].advance(600.0);
    let (client, path) = serve_rtu_line(&rtu_packs, &servers);

    let mut config = base_config(&broker, 200);
    let tcp = tcp_bus("tcp", address);
    let rtu = rtu_bus("rtu", path);
    config.buses = vec![tcp, rtu];
    config.packs = vec![
        modbus_pack("tcp-1", "tcp", 1),
        modbus_pack("tcp-2", "tcp", 2),
        modbus_pack("rtu-1", "rtu", 1),
        modbus_pack("rtu-2", "rtu", 2),
        modbus_pack("rtu-3", "rtu", 3),
    ];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    drop(client);
    let collect = report.collect.unwrap();
    assert_eq!(
        collect.polls_timeout.get() + collect.polls_protocol.get() + collect.polls_transport.get(),
        0
    );
    assert_eq!(
        assert_exactly_once(&config.database_path(), 5, true),
        collect.samples_published.get()
    );

    let expected: HashMap<&str, &SimPack> = [
        ("tcp-1", &tcp_packs[0]),
        ("tcp-2", &tcp_packs[1]),
        ("rtu-1", &rtu_packs[0]),
        ("rtu-2", &rtu_packs[1]),
        ("rtu-3", &rtu_packs[2]),
    ]
    .into();
    for (pack, sim) in expected {
        let stored = rows(&config, pack);
        assert!(
            stored.len() >= 10,
            "{pack}: {} samples in 3 s at 5 Hz",
            stored.len()
        );
        let last = &stored.last().unwrap().sample;
        assert_eq!(last.quality, DataQuality::Fresh);
        assert_reading_matches(&last.reading, &sim.reading(), pack);
    }
    let hot = rows(&config, "rtu-2")
        .last()
        .unwrap()
        .sample
        .reading
        .clone();
    assert!(hot.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
    assert!(!hot.charge_enabled && !hot.discharge_enabled);
    servers.cancel();
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_unit_on_a_shared_rtu_line_does_not_slow_the_others() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let packs: Vec<SimPack> = (1..=4).map(still_pack).collect();
    let dead = &packs[3];
    dead.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    let (client, path) = serve_rtu_line(&packs, &servers);

    let mut config = base_config(&broker, 1_000);
    let rtu = rtu_bus("rs485", path);
    config.buses = vec![rtu];
    config.packs = (1..=4)
        .map(|u| modbus_pack(&format!("unit-{u}"), "rs485", u))
        .collect();
    let events = record_events(&broker.url()).await;
    let (shutdown, gateway) = start_gateway(&config).await;

    // 11 s with unit 4 dead, then revive it.
    tokio::time::sleep(Duration::from_secs(11)).await;
    dead.set_faults(Faults::default());
    let revived = eventually(Duration::from_secs(10), || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.pack_id.as_str() == "unit-4" && e.kind.is_pack_online())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    drop(client);
    assert!(revived, "unit-4 never came back online");

    // The live units kept their 1 Hz: one sample per second, no gap.
    for unit in 1..=3 {
        let stored = rows(&config, &format!("unit-{unit}"));
        let first = stored.first().unwrap().sample.timestamp_ms;
        let in_window: Vec<i64> = stored
            .iter()
            .map(|r| r.sample.timestamp_ms)
            .filter(|t| *t < first + 11_000)
            .collect();
        assert!(
            in_window.len() >= 10,
            "unit-{unit}: {} samples in 11 s",
            in_window.len()
        );
        let worst_gap = in_window.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            worst_gap < 1_500,
            "unit-{unit}: a {worst_gap} ms gap between polls"
        );
        assert!(stored
            .iter()
            .all(|r| r.sample.quality == DataQuality::Fresh));
    }
    // The dead unit went offline (an event), and came back with fresh samples.
    let events = events.lock().unwrap().clone();
    let dead_events: Vec<&EventKind> = events
        .iter()
        .filter(|e| e.pack_id.as_str() == "unit-4")
        .map(|e| &e.kind)
        .collect();
    let offline = dead_events
        .iter()
        .position(|k| matches!(k, EventKind::PackOffline { .. }));
    let online = dead_events.iter().rposition(|k| k.is_pack_online());
    assert!(
        matches!((offline, online), (Some(off), Some(on)) if off < on),
        "{dead_events:?}"
    );
    // The online event names the unit that answered by its serial number.
    let serial_number = SimUnit::new(4, dead.clone(), 4).serial_number.to_string();
    assert_eq!(
        dead_events[online.unwrap()],
        &EventKind::PackOnlineIdentified { serial_number }
    );
    assert!(rows(&config, "unit-4")
        .iter()
        .any(|r| r.sample.quality == DataQuality::Fresh));
    assert!(report.collect.unwrap().polls_timeout.get() >= 2);
    servers.cancel();
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_bad_crc_and_garbage_are_counted_and_the_line_goes_on() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let packs: Vec<SimPack> = (1..=4).map(still_pack).collect();
    packs[1].set_faults(Faults {
        exception: Some(4),
        ..Faults::default()
    });
    packs[2].set_faults(Faults {
        corrupt_crc: true,
        ..Faults::default()
    });
    packs[3].set_faults(Faults {
        garbage: true,
        ..Faults::default()
    });
    let (client, path) = serve_rtu_line(&packs, &servers);

    let mut config = base_config(&broker, 250);
    config.collect.offline_after_failures = 1_000;
    let rtu = rtu_bus("rs485", path);
    config.buses = vec![rtu];
    config.packs = (1..=4)
        .map(|u| modbus_pack(&format!("unit-{u}"), "rs485", u))
        .collect();
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    drop(client);
    let collect = report.collect.unwrap();
    assert!(
        collect.polls_exception.get() >= 5,
        "exceptions {}",
        collect.polls_exception.get()
    );
    assert!(
        collect.polls_protocol.get() >= 10,
        "protocol errors {}",
        collect.polls_protocol.get()
    );
    // The healthy unit was polled at its rate throughout.
    let healthy = rows(&config, "unit-1");
    assert!(
        healthy.len() >= 12,
        "unit-1: {} samples in 4 s at 4 Hz",
        healthy.len()
    );
    assert!(healthy
        .iter()
        .all(|r| r.sample.quality == DataQuality::Fresh));
    // The faulty ones never produced a fresh sample.
    for unit in 2..=4 {
        assert!(
            rows(&config, &format!("unit-{unit}")).is_empty(),
            "unit-{unit} stored something"
        );
    }
    servers.cancel();
    connection.close(&config.data_dir).await;
}
