//! End to end over the real wire protocols: the simulator served as Modbus
//! TCP, Modbus RTU and slcan devices, the gateway polling them into SQLite.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use packgate::config::{
    BusConfig, BusLinkConfig, Config, ModbusRtuBusConfig, ModbusTcpBusConfig, PackConfig,
    SerialParity, SlcanBusConfig,
};
use packgate::runtime::{run_workers, Broker, RunReport, WorkerSet};
use packgate::store::{SampleStore, StoredSample};
use packgate::workers::collect::PackSet;
use packgate_protocol::{decode, AlarmFlags, DataQuality, Event, EventKind, PackId, PackReading};
use packgate_sim::serve::{
    serve_modbus_rtu, serve_modbus_tcp, serve_slcan_with, RtuServerOptions, SimUnit,
    SlcanServerOptions,
};
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig};
use support::*;
use tokio::task::JoinHandle;
use tokio_serial::SerialPort;
use tokio_util::sync::CancellationToken;

/// A pack whose model stands still (no load), so what the gateway stores
/// can be compared exactly with what the simulator holds.
fn still_pack(seed: u64) -> SimPack {
    let config = SimPackConfig {
        load: LoadProfile::Constant { current_a: 0.0 },
        ..SimPackConfig::default().with_seed(seed)
    };
    SimPack::new(&config)
}

/// Serves `packs` as units 1, 2, ... on a new pseudo-terminal line until
/// `servers` fires; returns the client end (keep it open) and its path.
fn serve_rtu_line(
    packs: &[SimPack],
    servers: &CancellationToken,
) -> (tokio_serial::SerialStream, String) {
    let (device, client) = tokio_serial::SerialStream::pair().unwrap();
    let path = client.name().unwrap();
    let units = packs
        .iter()
        .enumerate()
        .map(|(i, p)| SimUnit::new(i as u8 + 1, p.clone(), i as u64 + 1))
        .collect();
    tokio::spawn(serve_modbus_rtu(
        device,
        units,
        RtuServerOptions::default(),
        servers.clone(),
    ));
    (client, path)
}

fn rtu_bus(name: &str, port: impl Into<std::path::PathBuf>) -> BusConfig {
    BusConfig {
        name: name.into(),
        link: BusLinkConfig::ModbusRtu(ModbusRtuBusConfig {
            port: port.into(),
            baud_rate: 9_600,
            parity: SerialParity::None,
            stop_bits: 1,
            request_timeout_ms: Some(300),
            inter_frame_gap_ms: None,
            reconnect_backoff_max_ms: 500,
        }),
    }
}

fn tcp_bus(name: &str, address: String) -> BusConfig {
    BusConfig {
        name: name.into(),
        link: BusLinkConfig::ModbusTcp(ModbusTcpBusConfig {
            address,
            request_timeout_ms: Some(300),
            inter_frame_gap_ms: None,
            reconnect_backoff_max_ms: 500,
        }),
    }
}

fn modbus_pack(id: &str, bus: &str, unit: u8) -> PackConfig {
    PackConfig::modbus(PackId::new(id).unwrap(), bus, unit, "packgate-sim")
}

fn base_config(broker: &TestBroker, poll_interval_ms: u64) -> Config {
    let mut config = sim_config(&broker.url(), broker.dir.path(), 0, poll_interval_ms);
    config.collect.offline_after_failures = 2;
    config.collect.offline_backoff_max_ms = 1_000;
    config
}

/// Runs collect and data in the background until the returned token fires.
async fn start_gateway(config: &Config) -> (CancellationToken, JoinHandle<(RunReport, Broker)>) {
    let connection = Broker::open(config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let config = config.clone();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let packs = PackSet::from_config(&config).unwrap();
        let report = run_workers(&config, WorkerSet::ALL, packs, &connection, stop)
            .await
            .unwrap();
        (report, connection)
    });
    (shutdown, task)
}

/// Collects every event published while the test runs.
async fn record_events(url: &str) -> Arc<Mutex<Vec<Event>>> {
    let client = async_nats::connect(url).await.unwrap();
    let mut events = client.subscribe("packgate.events.>").await.unwrap();
    client.flush().await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        let _client = client;
        while let Some(message) = events.next().await {
            if let Ok(event) = decode::<Event>(&message.payload) {
                sink.lock().unwrap().push(event);
            }
        }
    });
    seen
}

fn rows(config: &Config, pack: &str) -> Vec<StoredSample> {
    let store = SampleStore::open_read_only(&config.database_path()).unwrap();
    let mut rows = store.latest(&PackId::new(pack).unwrap(), 100_000).unwrap();
    rows.reverse();
    rows
}

fn assert_reading_matches(stored: &PackReading, sim: &PackReading, pack: &str) {
    let close = |a: f32, b: f32, tolerance: f32, what: &str| {
        assert!(
            (a - b).abs() <= tolerance,
            "{pack} {what}: stored {a}, simulator {b}"
        );
    };
    close(
        stored.pack_voltage_v,
        sim.pack_voltage_v,
        0.011,
        "pack voltage",
    );
    close(stored.current_a, sim.current_a, 0.11, "current");
    close(stored.soc_pct, sim.soc_pct, 0.11, "SoC");
    assert_eq!(
        stored.cell_voltages_v.0.len(),
        sim.cell_voltages_v.0.len(),
        "{pack} cells"
    );
    for (a, b) in stored.cell_voltages_v.0.iter().zip(&sim.cell_voltages_v.0) {
        close(*a, *b, 0.0011, "cell voltage");
    }
    assert_eq!(
        stored.temperatures_c.0.len(),
        sim.temperatures_c.0.len(),
        "{pack} sensors"
    );
    for (a, b) in stored.temperatures_c.0.iter().zip(&sim.temperatures_c.0) {
        close(*a, *b, 0.11, "temperature");
    }
    assert_eq!(stored.alarms, sim.alarms, "{pack} alarms");
    assert_eq!(
        stored.charge_enabled, sim.charge_enabled,
        "{pack} charge enabled"
    );
    assert_eq!(
        stored.discharge_enabled, sim.discharge_enabled,
        "{pack} discharge enabled"
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tcp_server_is_polled_again_by_itself() {
    let broker = TestBroker::start().await;
    let pack = still_pack(7);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let first = CancellationToken::new();
    let server = tokio::spawn(serve_modbus_tcp(
        listener,
        vec![SimUnit::new(1, pack.clone(), 7)],
        first.clone(),
    ));

    let mut config = base_config(&broker, 200);
    let tcp = tcp_bus("tcp", address.to_string());
    config.buses = vec![tcp];
    config.packs = vec![modbus_pack("tcp-1", "tcp", 1)];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.cancel();
    server.await.unwrap().unwrap();
    let down_at = packgate::telemetry::now_ms();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let up_at = packgate::telemetry::now_ms();
    let second = CancellationToken::new();
    tokio::spawn(serve_modbus_tcp(
        listener,
        vec![SimUnit::new(1, pack.clone(), 7)],
        second.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    second.cancel();

    let stored = rows(&config, "tcp-1");
    let fresh_after = stored
        .iter()
        .filter(|r| r.sample.timestamp_ms > up_at && r.sample.quality == DataQuality::Fresh)
        .count();
    assert!(
        fresh_after >= 5,
        "{fresh_after} fresh samples after the restart"
    );
    let stale_during = stored
        .iter()
        .filter(|r| (down_at..up_at).contains(&r.sample.timestamp_ms))
        .all(|r| r.sample.quality == DataQuality::Stale);
    assert!(
        stale_during,
        "samples during the outage must be marked stale"
    );
    let collect = report.collect.unwrap();
    assert!(collect.polls_transport.get() + collect.polls_timeout.get() > 0);
    connection.close(&config.data_dir).await;
}

/// A serial line whose two ends are symlinks made by socat, so the line
/// can vanish (socat killed) and come back at the same paths.
struct SocatLine {
    child: std::process::Child,
    gateway_end: std::path::PathBuf,
    device_end: std::path::PathBuf,
}

impl SocatLine {
    async fn start(dir: &std::path::Path) -> Self {
        let gateway_end = dir.join("ttyGW");
        let device_end = dir.join("ttyDEV");
        let child = std::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", gateway_end.display()))
            .arg(format!("pty,raw,echo=0,link={}", device_end.display()))
            .spawn()
            .expect("socat is installed (./deploy/dev.sh test installs it)");
        assert!(
            eventually(Duration::from_secs(5), || gateway_end.exists()
                && device_end.exists())
            .await
        );
        Self {
            child,
            gateway_end,
            device_end,
        }
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_port_that_vanishes_and_reappears_is_reopened() {
    let broker = TestBroker::start().await;
    let lines = tempfile::tempdir().unwrap();
    let pack = still_pack(3);
    let serve = |line: &SocatLine, token: CancellationToken| {
        let device = tokio_serial::SerialStream::open(&tokio_serial::new(
            line.device_end.to_string_lossy(),
            9600,
        ))
        .unwrap();
        tokio::spawn(serve_modbus_rtu(
            device,
            vec![SimUnit::new(1, pack.clone(), 3)],
            RtuServerOptions::default(),
            token,
        ))
    };
    let line = SocatLine::start(lines.path()).await;
    let first = CancellationToken::new();
    serve(&line, first.clone());

    let mut config = base_config(&broker, 200);
    let rtu = rtu_bus("usb", line.gateway_end.clone());
    config.buses = vec![rtu];
    config.packs = vec![modbus_pack("usb-1", "usb", 1)];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Unplug: the line and its device node disappear.
    first.cancel();
    line.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Plug back in at the same path.
    let line = SocatLine::start(lines.path()).await;
    let back_at = packgate::telemetry::now_ms();
    let second = CancellationToken::new();
    serve(&line, second.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    second.cancel();
    line.stop();

    let fresh_after = rows(&config, "usb-1")
        .iter()
        .filter(|r| r.sample.timestamp_ms > back_at && r.sample.quality == DataQuality::Fresh)
        .count();
    assert!(
        fresh_after >= 5,
        "{fresh_after} fresh samples after the port came back"
    );
    let collect = report.collect.unwrap();
    assert!(collect.polls_transport.get() + collect.polls_timeout.get() > 0);
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_slcan_pack_is_sampled_and_a_missing_frame_marks_it_stale() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let pack = still_pack(5);
    let (device, client) = tokio_serial::SerialStream::pair().unwrap();
    let path = client.name().unwrap();
    let options = SlcanServerOptions::new(Duration::from_millis(200));
    let skip = Arc::clone(&options.skip_ids);
    tokio::spawn(serve_slcan_with(
        device,
        pack.clone(),
        options,
        servers.clone(),
    ));

    let mut config = base_config(&broker, 500);
    config.collect.request_timeout_ms = 1_500;
    let can = BusConfig {
        name: "can".into(),
        link: BusLinkConfig::Slcan(SlcanBusConfig {
            port: path.into(),
            baud_rate: 115_200,
            can_bitrate_bps: 500_000,
            request_timeout_ms: 300,
            reconnect_backoff_max_ms: 500,
        }),
    };
    config.buses = vec![can];
    config.packs = vec![PackConfig::can(PackId::new("can-1").unwrap(), "can", 16)];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The measurements frame (0x356: voltage, current, temperature) stops.
    skip.lock().unwrap().insert(0x356);
    let skipped_at = packgate::telemetry::now_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let (_report, connection) = gateway.await.unwrap();
    servers.cancel();
    drop(client);

    let stored = rows(&config, "can-1");
    let fresh: Vec<&StoredSample> = stored
        .iter()
        .filter(|r| r.sample.quality == DataQuality::Fresh)
        .collect();
    assert!(fresh.len() >= 3, "{} fresh samples", fresh.len());
    let sim = pack.reading();
    let last_fresh = &fresh.last().unwrap().sample.reading;
    assert!(
        (last_fresh.soc_pct - sim.soc_pct).abs() <= 1.0,
        "SoC {} vs {}",
        last_fresh.soc_pct,
        sim.soc_pct
    );
    assert!((last_fresh.pack_voltage_v - sim.pack_voltage_v).abs() <= 0.011);
    assert!(fresh
        .iter()
        .all(|r| r.sample.timestamp_ms < skipped_at + 3_000));
    let stale_after = stored
        .iter()
        .filter(|r| r.sample.timestamp_ms > skipped_at + 3_000)
        .collect::<Vec<_>>();
    assert!(
        !stale_after.is_empty(),
        "no samples after the frame stopped"
    );
    assert!(stale_after
        .iter()
        .all(|r| r.sample.quality == DataQuality::Stale));
    connection.close(&config.data_dir).await;
}
