//! Modbus TCP end to end on loopback: the simulator's server, one link
//! lent to one `ModbusPackDriver` per unit in turn, with the builtin
//! "packgate-sim" profile.

// Test helpers fail the test by panicking, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use packgate_drivers::modbus::{ModbusLink, ModbusPackDriver, TcpLinkConfig};
use packgate_drivers::profile::Profile;
use packgate_drivers::{DriverError, DriverErrorKind, PackDriver, ValidatedSetting};
use packgate_protocol::{DataQuality, PackId, PackReading, SettingName};
use packgate_sim::serve::{serve_modbus_tcp, CancellationToken, SimUnit};
use packgate_sim::{Faults, SimPack, SimPackConfig, CHARGE_CURRENT_LIMIT_A};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

fn units(count: u8) -> Vec<SimUnit> {
    let base = SimPackConfig::default();
    (1..=count)
        .map(|id| {
            let config = base.for_pack_index(u64::from(id));
            SimUnit::new(id, SimPack::new(&config), config.seed)
        })
        .collect()
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
    let config = TcpLinkConfig {
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: REQUEST_TIMEOUT,
        reconnect_backoff_max: Duration::from_millis(400),
        ..TcpLinkConfig::new(address.to_string())
    };
    ModbusLink::tcp(config)
}

fn driver(unit: &SimUnit) -> ModbusPackDriver {
    let profile = Profile::builtin("packgate-sim").unwrap();
    let id = PackId::new(format!("pack-{}", unit.unit_id)).unwrap();
    ModbusPackDriver::new(id, unit.unit_id, profile)
}

/// One poll that the pack answered: its reading and serial number.
async fn read(d: &mut ModbusPackDriver, link: &mut ModbusLink) -> (PackReading, Option<String>) {
    let polled = d.poll(link).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Fresh);
    (polled.reading, polled.serial_number)
}

/// The reading polled equals what the pack holds, within the register
/// resolution.
fn assert_matches(polled: &PackReading, held: &PackReading) {
    let close = |a: f32, b: f32, resolution: f32, what: &str| {
        assert!(
            (a - b).abs() <= resolution / 2.0 + 1e-4,
            "{what}: polled {a}, held {b}"
        );
    };
    close(
        polled.pack_voltage_v,
        held.pack_voltage_v,
        0.01,
        "pack voltage",
    );
    close(polled.current_a, held.current_a, 0.1, "current");
    close(polled.soc_pct, held.soc_pct, 0.1, "soc");
    close(polled.soh_pct.unwrap(), held.soh_pct.unwrap(), 0.1, "soh");
    assert_eq!(polled.cell_voltages_v.0.len(), held.cell_voltages_v.0.len());
    for (a, b) in polled.cell_voltages_v.0.iter().zip(&held.cell_voltages_v.0) {
        close(*a, *b, 0.001, "cell voltage");
    }
    assert_eq!(polled.temperatures_c.0.len(), held.temperatures_c.0.len());
    for (a, b) in polled.temperatures_c.0.iter().zip(&held.temperatures_c.0) {
        close(*a, *b, 0.1, "temperature");
    }
    assert_eq!(polled.balancing, held.balancing);
    assert_eq!(polled.alarms, held.alarms);
    assert_eq!(polled.charge_enabled, held.charge_enabled);
    assert_eq!(polled.discharge_enabled, held.discharge_enabled);
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn three_units_read_as_the_simulator_holds_them() {
    let units = units(3);
    // One pack with an alarm and open switches, so flags are compared too.
    units[1].pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    units[1].pack.advance(600.0);
    let server = Server::start(any_port(), &units).await;
    let mut link = link(server.address);
    for unit in &units {
        let mut d = driver(unit);
        let (polled, serial_number) = read(&mut d, &mut link).await;
        assert_matches(&polled, &unit.pack.reading());
        polled.validate().unwrap();
        assert_eq!(serial_number, Some(unit.serial_number.to_string()));
    }
    assert!(!units[1].pack.reading().alarms.is_empty());
    let counts = link.error_counts();
    assert_eq!((counts.errors(), counts.opens), (0, 1));
    server.stop().await;
}

#[tokio::test]
async fn device_faults_become_typed_errors_and_the_link_keeps_working() {
    let units = units(3);
    let server = Server::start(any_port(), &units).await;
    let mut link = link(server.address);
    let mut drivers: Vec<_> = units.iter().map(driver).collect();

    units[0].pack.set_faults(Faults {
        exception: Some(0x04),
        ..Faults::default()
    });
    let refused = drivers[0].poll(&mut link).await.unwrap().unwrap_err();
    assert_eq!(refused.code, 0x04, "{refused:?}");
    read(&mut drivers[1], &mut link).await;

    units[0].pack.set_faults(Faults {
        garbage: true,
        ..Faults::default()
    });
    for _ in 0..5 {
        let err = drivers[0].poll(&mut link).await.unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::Protocol, "{err:?}");
        read(&mut drivers[1], &mut link).await;
    }

    units[2].pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(
        drivers[2].poll(&mut link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    assert!(started.elapsed() < REQUEST_TIMEOUT + Duration::from_millis(150));
    read(&mut drivers[1], &mut link).await;

    // A unit the gateway does not serve.
    let profile = Profile::builtin("packgate-sim").unwrap();
    let mut ghost = ModbusPackDriver::new(PackId::new("ghost").unwrap(), 9, profile);
    let refused = ghost.poll(&mut link).await.unwrap().unwrap_err();
    assert_eq!(refused.code, 0x0B, "{refused:?}");

    for unit in &units {
        unit.pack.set_faults(Faults::default());
    }
    for d in &mut drivers {
        read(d, &mut link).await;
    }
    let counts = link.error_counts();
    assert_eq!(
        (counts.exceptions, counts.protocol, counts.timeouts),
        (2, 5, 1)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_is_picked_up_by_the_same_driver() {
    let units = units(2);
    let server = Server::start(any_port(), &units).await;
    let address = server.address;
    let mut link = link(address);
    let mut d = driver(&units[0]);
    read(&mut d, &mut link).await;

    server.stop().await;
    for _ in 0..3 {
        let err = d.poll(&mut link).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                DriverErrorKind::Transport | DriverErrorKind::Timeout
            ),
            "{err:?}"
        );
    }
    assert!(!link.is_open());

    let server = Server::start(address, &units).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let reading = loop {
        match d.poll(&mut link).await {
            Ok(polled) => break polled.unwrap().reading,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), DriverErrorKind::Transport, "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("server not picked up again: {e:?}"),
        }
    };
    assert_matches(&reading, &units[0].pack.reading());
    assert_eq!(link.error_counts().opens, 2);
    server.stop().await;
}

#[tokio::test]
async fn settings_are_written_and_read_back() {
    let units = units(2);
    let server = Server::start(any_port(), &units).await;
    let mut link = link(server.address);
    let mut d = driver(&units[1]);
    let write = ValidatedSetting {
        name: SettingName(CHARGE_CURRENT_LIMIT_A.into()),
        value: 42.5,
    };
    assert_eq!(d.apply_setting(&mut link, &write).await, Ok(Ok(42.5)));
    assert_eq!(units[1].pack.setting(CHARGE_CURRENT_LIMIT_A), Some(42.5));
    assert_eq!(units[0].pack.setting(CHARGE_CURRENT_LIMIT_A), Some(100.0));

    let unknown = ValidatedSetting {
        name: SettingName("soc_pct".into()),
        value: 1.0,
    };
    assert_eq!(
        d.apply_setting(&mut link, &unknown).await,
        Err(DriverError::UnsupportedSetting("soc_pct".into()))
    );
    server.stop().await;
}
