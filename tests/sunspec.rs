//! End to end over SunSpec: the simulator served as SunSpec batteries in
//! every layout over Modbus TCP on loopback, the gateway finding each
//! one's models by walking the chain and storing what the simulator holds.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use packgate::config::PackConfig;
use packgate_protocol::{DataQuality, PackId, PackReading};
use packgate_sim::serve::sunspec::served_alarms;
use packgate_sim::serve::{
    serve_modbus_rtu, serve_modbus_tcp, RtuServerOptions, SimUnit, SunSpecLayout,
};
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig};
use support::wire::*;
use support::*;
use tokio_util::sync::CancellationToken;

/// A pack at `current_a`, its clock frozen so what it holds is what it
/// serves for the whole test.
fn frozen_pack(seed: u64, current_a: f64) -> SimPack {
    let config = SimPackConfig {
        load: LoadProfile::Constant { current_a },
        ..SimPackConfig::default().with_seed(seed)
    };
    let pack = SimPack::new(&config);
    pack.advance(30.0);
    pack.advance_to(Instant::now() + Duration::from_secs(86_400));
    pack
}

/// What the gateway stored equals what the simulator holds, within the
/// resolution of the served scale factors.
fn assert_stored(stored: &PackReading, held: &PackReading, bank: bool, pack: &str) {
    let close = |a: f32, b: f32, resolution: f32, what: &str| {
        assert!(
            (a - b).abs() <= resolution / 2.0 + 1e-4,
            "{pack} {what}: stored {a}, simulator {b}"
        );
    };
    close(stored.pack_voltage_v, held.pack_voltage_v, 0.01, "voltage");
    close(stored.current_a, held.current_a, 0.1, "current");
    close(stored.soc_pct, held.soc_pct, 0.1, "SoC");
    close(stored.soh_pct.unwrap(), held.soh_pct.unwrap(), 0.1, "SoH");
    let cells = &stored.cell_voltages_v.0;
    assert_eq!(cells.len(), 2, "{pack} cells");
    close(cells[0], held.max_cell_v(), 0.001, "max cell");
    close(cells[1], held.min_cell_v(), 0.001, "min cell");
    let temps = &stored.temperatures_c.0;
    if bank {
        let min = held
            .temperatures_c
            .0
            .iter()
            .copied()
            .fold(f32::MAX, f32::min);
        assert_eq!(temps.len(), 2, "{pack} temperatures");
        close(temps[0], held.max_temperature_c(), 0.1, "max temperature");
        close(temps[1], min, 0.1, "min temperature");
    } else {
        assert!(temps.is_empty(), "{pack}: temperatures without model 803");
    }
    assert_eq!(stored.alarms, served_alarms(held.alarms), "{pack} alarms");
    let connected = held.charge_enabled && held.discharge_enabled;
    assert_eq!(stored.charge_enabled, connected, "{pack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sunspec_layout_reaches_sqlite_with_the_simulator_values() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let units: Vec<SimUnit> = SunSpecLayout::ALL
        .iter()
        .enumerate()
        .map(|(i, &layout)| {
            let id = i as u8 + 1;
            let current = if i % 2 == 0 { -12.5 } else { 20.0 };
            SimUnit::new(id, frozen_pack(u64::from(id), current), u64::from(id))
                .with_sunspec(layout)
        })
        .collect();
    // One pack hot: its alarm must come through Evt1.
    units[1].pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    units[1].pack.advance(600.0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_modbus_tcp(listener, units.clone(), servers.clone()));

    let mut config = base_config(&broker, 200);
    config.buses = vec![tcp_bus("tcp", address)];
    config.packs = units
        .iter()
        .map(|u| {
            let id = PackId::new(u.sunspec.unwrap().as_str()).unwrap();
            PackConfig::sunspec(id, "tcp", u.unit_id)
        })
        .collect();
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    let collect = report.collect.unwrap();
    assert_eq!(
        collect.polls_timeout.get() + collect.polls_protocol.get() + collect.polls_transport.get(),
        0
    );
    assert_eq!(
        assert_exactly_once(&config.database_path(), units.len(), true),
        collect.samples_published.get()
    );
    for unit in &units {
        let layout = unit.sunspec.unwrap();
        let stored = rows(&config, layout.as_str());
        assert!(stored.len() >= 10, "{layout}: {} samples", stored.len());
        for row in &stored {
            assert_eq!(row.sample.quality, DataQuality::Fresh, "{layout}");
            let bank = layout != SunSpecLayout::No803;
            assert_stored(
                &row.sample.reading,
                &unit.pack.reading(),
                bank,
                layout.as_str(),
            );
        }
    }
    assert!(!served_alarms(units[1].pack.reading().alarms).is_empty());
    servers.cancel();
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sunspec_pack_shares_an_rtu_line_with_a_profile_pack() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let plain = still_pack(1);
    let battery = frozen_pack(2, -12.5);
    let units = vec![
        SimUnit::new(1, plain.clone(), 1),
        SimUnit::new(2, battery.clone(), 2).with_sunspec(SunSpecLayout::Common65),
    ];
    let (device, client) = tokio_serial::SerialStream::pair().unwrap();
    let path = tokio_serial::SerialPort::name(&client).unwrap();
    let rtu = RtuServerOptions::default();
    tokio::spawn(serve_modbus_rtu(device, units, rtu, servers.clone()));

    let mut config = base_config(&broker, 1_000);
    config.buses = vec![rtu_bus("rs485", path)];
    config.packs = vec![
        modbus_pack("plain", "rs485", 1),
        PackConfig::sunspec(PackId::new("battery").unwrap(), "rs485", 2),
    ];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    drop(client);
    let collect = report.collect.unwrap();
    assert_eq!(
        collect.polls_timeout.get() + collect.polls_protocol.get() + collect.polls_transport.get(),
        0
    );
    let stored = rows(&config, "battery");
    assert!(stored.len() >= 3, "{} samples", stored.len());
    for row in &stored {
        assert_eq!(row.sample.quality, DataQuality::Fresh);
        assert_stored(&row.sample.reading, &battery.reading(), true, "battery");
    }
    let plain_rows = rows(&config, "plain");
    let last = &plain_rows.last().unwrap().sample;
    assert_reading_matches(&last.reading, &plain.reading(), "plain");
    servers.cancel();
    connection.close(&config.data_dir).await;
}

/// A `packgate sim` child serving one pack over Modbus TCP, killed when
/// dropped, and the address it printed.
struct SimProcess {
    child: std::process::Child,
    /// The line it printed.
    line: String,
}

impl SimProcess {
    fn start(extra: &[&str]) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_packgate"))
            .args(["sim", "--packs", "1", "--modbus-tcp", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        SimProcess { child, line }
    }

    /// From "modbus-tcp 127.0.0.1:PORT units 1..=1[ sunspec LAYOUT]".
    fn address(&self) -> &str {
        self.line.split_whitespace().nth(1).unwrap()
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `packgate sunspec scan` against `address`, unit 1.
fn scan(address: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args(["sunspec", "scan", address, "--unit", "1"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sunspec_scan_prints_the_models_the_simulator_serves() {
    let layouts = [
        (
            "vendor-first",
            vec![
                "     1   40002      66",
                " 64900   40070      12",
                "   802   40084      62",
                "   803   40148      58",
            ],
        ),
        (
            "common65",
            vec!["     1   40002      65", "   802   40069      62"],
        ),
    ];
    for (layout, expected) in layouts {
        let sim = SimProcess::start(&["--sunspec-layout", layout]);
        assert!(
            sim.line.ends_with(&format!("sunspec {layout}\n")),
            "{}",
            sim.line
        );
        let (ok, stdout, stderr) = scan(sim.address());
        assert!(ok, "{stderr}");
        assert!(stdout.contains("SunS marker at 40000"), "{stdout}");
        for row in expected {
            assert!(stdout.contains(row), "{layout}: no {row:?} in\n{stdout}");
        }
        assert!(stdout.contains("readable by driver"), "{stdout}");
    }
    // A device without SunSpec: refused with the reason.
    let sim = SimProcess::start(&[]);
    let (ok, _, stderr) = scan(sim.address());
    assert!(!ok);
    assert!(stderr.contains("no SunS marker"), "{stderr}");
}
