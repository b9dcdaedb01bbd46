//! SunSpec batteries over Modbus TCP on loopback: the simulator serving
//! every layout, the SunSpec driver finding the models by walking the
//! chain and reading them exactly.

// Test helpers fail the test by panicking, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use packgate_drivers::modbus::{
    sunspec_scan, ModbusLink, ModbusPackDriver, SunSpecOptions, TcpLinkConfig,
};
use packgate_drivers::sunspec::{DiscoveryError, ModelEntry};
use packgate_drivers::{DriverError, PackDriver};
use packgate_protocol::{DataQuality, PackId, PackReading};
use packgate_sim::serve::sunspec::served_alarms;
use packgate_sim::serve::{serve_modbus_tcp, CancellationToken, SimUnit, SunSpecLayout};
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);

/// A pack discharging at 12.5 A, its clock frozen so what it holds is what
/// it serves.
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

struct Server {
    address: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(address: SocketAddr, units: &[SimUnit]) -> Server {
        let listener = TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_modbus_tcp(listener, units.to_vec(), shutdown.clone()));
        Server {
            address,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn link(address: SocketAddr) -> ModbusLink {
    ModbusLink::tcp(TcpLinkConfig {
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: REQUEST_TIMEOUT,
        reconnect_backoff_max: Duration::from_millis(400),
        ..TcpLinkConfig::new(address.to_string())
    })
}

fn driver(unit: u8, options: SunSpecOptions) -> ModbusPackDriver {
    let id = PackId::new(format!("pack-{unit}")).unwrap();
    ModbusPackDriver::sunspec(id, unit, options)
}

/// The reading polled equals what the pack holds, within the register
/// resolution of the served scale factors.
fn assert_matches(polled: &PackReading, held: &PackReading, bank: bool) {
    let close = |a: f32, b: f32, resolution: f32, what: &str| {
        assert!(
            (a - b).abs() <= resolution / 2.0 + 1e-4,
            "{what}: polled {a}, held {b}"
        );
    };
    close(polled.pack_voltage_v, held.pack_voltage_v, 0.01, "voltage");
    close(polled.current_a, held.current_a, 0.1, "current");
    close(polled.soc_pct, held.soc_pct, 0.1, "soc");
    close(polled.soh_pct.unwrap(), held.soh_pct.unwrap(), 0.1, "soh");
    let (max, min) = (held.max_cell_v(), held.min_cell_v());
    assert_eq!(polled.cell_voltages_v.0.len(), 2);
    close(polled.cell_voltages_v.0[0], max, 0.001, "max cell");
    close(polled.cell_voltages_v.0[1], min, 0.001, "min cell");
    if bank {
        let temps = &held.temperatures_c.0;
        let tmin = temps.iter().copied().fold(f32::MAX, f32::min);
        assert_eq!(polled.temperatures_c.0.len(), 2);
        close(
            polled.temperatures_c.0[0],
            held.max_temperature_c(),
            0.1,
            "max temp",
        );
        close(polled.temperatures_c.0[1], tmin, 0.1, "min temp");
    } else {
        assert!(polled.temperatures_c.0.is_empty());
    }
    assert_eq!(polled.alarms, served_alarms(held.alarms));
    let connected = held.charge_enabled && held.discharge_enabled;
    assert_eq!(polled.charge_enabled, connected);
    assert_eq!(polled.discharge_enabled, connected);
    polled.validate().unwrap();
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn every_layout_is_read_exactly() {
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
    units[2].pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    units[2].pack.advance(600.0);
    let server = Server::start(any_port(), &units).await;
    let mut link = link(server.address);
    for unit in &units {
        let layout = unit.sunspec.unwrap();
        let mut d = driver(unit.unit_id, SunSpecOptions::default());
        for _ in 0..2 {
            let polled = d.poll(&mut link).await.unwrap().unwrap();
            assert_eq!(polled.quality, DataQuality::Fresh, "{layout}");
            let bank = layout != SunSpecLayout::No803;
            assert_matches(&polled.reading, &unit.pack.reading(), bank);
            assert_eq!(polled.serial_number, Some(unit.serial_number.to_string()));
        }
    }
    assert!(!served_alarms(units[2].pack.reading().alarms).is_empty());
    assert_eq!(link.error_counts().errors(), 0);
    server.stop().await;
}

#[tokio::test]
async fn scan_lists_the_models_and_refuses_a_map_without_marker() {
    let unit = SimUnit::new(1, frozen_pack(1, 0.0), 1).with_sunspec(SunSpecLayout::VendorFirst);
    let plain = SimUnit::new(2, frozen_pack(2, 0.0), 2);
    let server = Server::start(any_port(), &[unit, plain]).await;
    let mut link = link(server.address);
    let map = sunspec_scan(&mut link, 1, &[0, 50000, 40000])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(map.base, 40000);
    let found: Vec<(u16, u16)> = map.models.iter().map(|m| (m.id, m.length)).collect();
    assert_eq!(found, SunSpecLayout::VendorFirst.models());
    assert_eq!(
        map.find(802),
        Some(ModelEntry {
            id: 802,
            address: 40000 + 2 + 68 + 14,
            length: 62
        })
    );
    // The packgate-sim map has no marker anywhere.
    assert_eq!(
        sunspec_scan(&mut link, 2, &[40000, 0, 50000])
            .await
            .unwrap(),
        Err(DiscoveryError::NoMarker(vec![40000, 0, 50000]))
    );
    let mut d = driver(2, SunSpecOptions::default());
    match d.poll(&mut link).await {
        Err(DriverError::Protocol(message)) => assert!(message.contains("no SunS marker")),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_device_replaced_behind_the_same_address_is_discovered_again() {
    let first = SimUnit::new(1, frozen_pack(1, -12.5), 1).with_sunspec(SunSpecLayout::Standard);
    let server = Server::start(any_port(), std::slice::from_ref(&first)).await;
    let address = server.address;
    let mut link = link(address);
    let mut d = driver(1, SunSpecOptions::default());
    let polled = d.poll(&mut link).await.unwrap().unwrap();
    assert_matches(&polled.reading, &first.pack.reading(), true);
    server.stop().await;
    // Another device, another layout, at the same address.
    let second = SimUnit::new(1, frozen_pack(9, 30.0), 9).with_sunspec(SunSpecLayout::VendorFirst);
    let server = Server::start(address, std::slice::from_ref(&second)).await;
    let mut polled = None;
    for _ in 0..20 {
        if let Ok(Ok(p)) = d.poll(&mut link).await {
            polled = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let polled = polled.expect("the new device was never read");
    assert_matches(&polled.reading, &second.pack.reading(), true);
    assert_eq!(polled.serial_number, Some(second.serial_number.to_string()));
    server.stop().await;
}

#[tokio::test]
async fn the_current_sign_follows_charge_status_and_the_inversion_does_not_override_it() {
    let unit = SimUnit::new(1, frozen_pack(1, 20.0), 1).with_sunspec(SunSpecLayout::No803);
    let server = Server::start(any_port(), std::slice::from_ref(&unit)).await;
    let mut link = link(server.address);
    for invert_current in [false, true] {
        let options = SunSpecOptions {
            invert_current,
            ..SunSpecOptions::default()
        };
        let polled = driver(1, options).poll(&mut link).await.unwrap().unwrap();
        assert!(
            polled.reading.current_a > 19.0,
            "{}",
            polled.reading.current_a
        );
    }
    server.stop().await;
}
