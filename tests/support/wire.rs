//! Shared parts of the wire-protocol tests: simulated packs served on a
//! pseudo-terminal line or TCP, bus and pack configurations, a gateway run
//! in the background, and checks on what reached SQLite.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use packgate::config::{
    BusConfig, BusLinkConfig, Config, ModbusRtuBusConfig, ModbusTcpBusConfig, PackConfig,
    SerialParity, SlcanBusConfig,
};
use packgate::runtime::{run_workers, Broker, RunReport, WorkerSet};
use packgate::store::{SampleStore, StoredSample};
use packgate::workers::collect::PackSet;
use packgate_protocol::{decode, Event, PackId, PackReading};
use packgate_sim::serve::{serve_modbus_rtu, RtuServerOptions, SimUnit};
use packgate_sim::{LoadProfile, SimPack, SimPackConfig};
use tokio::task::JoinHandle;
use tokio_serial::SerialPort;
use tokio_util::sync::CancellationToken;

use super::{sim_config, TestBroker};

/// A pack whose model stands still (no load), so what the gateway stores
/// can be compared exactly with what the simulator holds.
pub fn still_pack(seed: u64) -> SimPack {
    let config = SimPackConfig {
        load: LoadProfile::Constant { current_a: 0.0 },
        ..SimPackConfig::default().with_seed(seed)
    };
    SimPack::new(&config)
}

/// Serves `packs` as units 1, 2, ... on a new pseudo-terminal line until
/// `servers` fires; returns the client end (keep it open) and its path.
pub fn serve_rtu_line(
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

pub fn rtu_bus(name: &str, port: impl Into<std::path::PathBuf>) -> BusConfig {
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

/// A Modbus TCP bus to `address`, quick to time out and to reconnect.
pub fn tcp_bus(name: &str, address: String) -> BusConfig {
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

/// An slcan bus on `port`.
pub fn slcan_bus(name: &str, port: impl Into<std::path::PathBuf>) -> BusConfig {
    BusConfig {
        name: name.into(),
        link: BusLinkConfig::Slcan(SlcanBusConfig {
            port: port.into(),
            baud_rate: 115_200,
            can_bitrate_bps: 500_000,
            request_timeout_ms: 300,
            reconnect_backoff_max_ms: 500,
        }),
    }
}

/// A Modbus pack answering as `unit` on `bus`, with the simulator's profile.
pub fn modbus_pack(id: &str, bus: &str, unit: u8) -> PackConfig {
    PackConfig::modbus(PackId::new(id).unwrap(), bus, unit, "packgate-sim")
}

pub fn base_config(broker: &TestBroker, poll_interval_ms: u64) -> Config {
    let mut config = sim_config(&broker.url(), broker.dir.path(), 0, poll_interval_ms);
    config.collect.offline_after_failures = 2;
    config.collect.offline_backoff_max_ms = 1_000;
    config
}

/// Runs collect and data in the background until the returned token fires.
pub async fn start_gateway(
    config: &Config,
) -> (CancellationToken, JoinHandle<(RunReport, Broker)>) {
    let connection = Broker::open(config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let config = config.clone();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let packs = PackSet::from_config(&config).unwrap();
        let report = run_workers(&config, WorkerSet::all(), packs, &connection, stop)
            .await
            .unwrap();
        (report, connection)
    });
    (shutdown, task)
}

/// Collects every event published while the test runs.
pub async fn record_events(url: &str) -> Arc<Mutex<Vec<Event>>> {
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

pub fn rows(config: &Config, pack: &str) -> Vec<StoredSample> {
    let store = SampleStore::open_read_only(&config.database_path()).unwrap();
    let mut rows = store.latest(&PackId::new(pack).unwrap(), 100_000).unwrap();
    rows.reverse();
    rows
}

pub fn assert_reading_matches(stored: &PackReading, sim: &PackReading, pack: &str) {
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
