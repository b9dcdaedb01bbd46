//! Modbus RTU end to end on a real pseudo-terminal pair: the simulator's
//! RTU slave server with several units on one line, one link lent to one
//! `ModbusPackDriver` per unit in turn, with the builtin "packgate-sim" profile.

// Test helpers fail the test by panicking, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use packgate_drivers::modbus::{ModbusLink, ModbusPackDriver, RtuLinkConfig};
use packgate_drivers::profile::Profile;
use packgate_drivers::{DriverError, DriverErrorKind, PackDriver, ValidatedSetting};
use packgate_protocol::{DataQuality, PackId, PackReading, SettingName};
use packgate_sim::serve::{serve_modbus_rtu, CancellationToken, RtuServerOptions, SimUnit};
use packgate_sim::{Faults, SimPack, SimPackConfig, CHARGE_CURRENT_LIMIT_A};
use tokio::task::JoinHandle;
use tokio_serial::{SerialPort, SerialStream};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);
const BAUD_RATE: u32 = 115_200;

fn units(count: u8) -> Vec<SimUnit> {
    let base = SimPackConfig::default();
    (1..=count)
        .map(|id| {
            let config = base.for_pack_index(u64::from(id));
            SimUnit::new(id, SimPack::new(&config), config.seed)
        })
        .collect()
}

struct Line {
    link: ModbusLink,
    options: RtuServerOptions,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    /// Kept open so the pty stays up while the link reopens its path.
    _slave: Option<SerialStream>,
}

impl Line {
    /// A pty pair: the simulator serves `units` on the master end; the
    /// link either takes the slave end as it is or opens it by its path.
    fn start(units: &[SimUnit], open_by_path: bool) -> Line {
        let (master, slave) = SerialStream::pair().unwrap();
        let path = slave.name().unwrap();
        let config = RtuLinkConfig {
            request_timeout: REQUEST_TIMEOUT,
            reconnect_backoff_max: Duration::from_millis(400),
            ..RtuLinkConfig::new(path, BAUD_RATE)
        };
        let (link, slave) = if open_by_path {
            (ModbusLink::rtu(config), Some(slave))
        } else {
            (ModbusLink::rtu_with_port(config, slave), None)
        };
        let options = RtuServerOptions {
            baud_rate: BAUD_RATE,
            ..RtuServerOptions::default()
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_modbus_rtu(
            master,
            units.to_vec(),
            options.clone(),
            shutdown.clone(),
        ));
        Line {
            link,
            options,
            shutdown,
            server,
            _slave: slave,
        }
    }

    fn driver(&self, unit: &SimUnit) -> ModbusPackDriver {
        let profile = Profile::builtin("packgate-sim").unwrap();
        let id = PackId::new(format!("pack-{}", unit.unit_id)).unwrap();
        ModbusPackDriver::new(id, unit.unit_id, profile)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
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

#[tokio::test]
async fn four_units_on_one_line_read_as_the_simulator_holds_them() {
    let units = units(4);
    units[3].pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    units[3].pack.advance(600.0);
    let mut line = Line::start(&units, true);
    for _ in 0..2 {
        for unit in &units {
            let mut d = line.driver(unit);
            let (polled, serial_number) = read(&mut d, &mut line.link).await;
            assert_matches(&polled, &unit.pack.reading());
            assert_eq!(serial_number, Some(unit.serial_number.to_string()));
        }
    }
    assert!(!units[3].pack.reading().alarms.is_empty());
    // The serial number comes with the poll: one request per poll.
    let counts = line.link.error_counts();
    assert_eq!((counts.requests, counts.errors(), counts.opens), (8, 0, 1));
    assert_eq!(line.options.stats.crc_errors(), 0);
    line.stop().await;
}

#[tokio::test]
async fn a_dead_unit_times_out_alone_and_answers_once_it_recovers() {
    let units = units(3);
    let mut line = Line::start(&units, false);
    let mut drivers: Vec<_> = units.iter().map(|u| line.driver(u)).collect();
    units[1].pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    for _ in 0..2 {
        let started = Instant::now();
        assert_eq!(
            drivers[1].poll(&mut line.link).await,
            Err(DriverError::Timeout(REQUEST_TIMEOUT))
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= REQUEST_TIMEOUT && elapsed < REQUEST_TIMEOUT + Duration::from_millis(150),
            "{elapsed:?}"
        );
        for i in [0, 2] {
            let (polled, _) = read(&mut drivers[i], &mut line.link).await;
            assert_matches(&polled, &units[i].pack.reading());
        }
    }
    units[1].pack.set_faults(Faults::default());
    let (polled, _) = read(&mut drivers[1], &mut line.link).await;
    assert_matches(&polled, &units[1].pack.reading());
    assert_eq!(line.link.error_counts().timeouts, 2);
    line.stop().await;
}

#[tokio::test]
async fn exceptions_bad_crcs_and_garbage_are_typed_and_the_bus_keeps_working() {
    let units = units(4);
    let mut line = Line::start(&units, false);
    let mut drivers: Vec<_> = units.iter().map(|u| line.driver(u)).collect();
    units[0].pack.set_faults(Faults {
        exception: Some(0x06),
        ..Faults::default()
    });
    units[1].pack.set_faults(Faults {
        corrupt_crc: true,
        ..Faults::default()
    });
    units[2].pack.set_faults(Faults {
        garbage: true,
        ..Faults::default()
    });
    for round in 0..3 {
        let refused = drivers[0].poll(&mut line.link).await.unwrap().unwrap_err();
        assert_eq!(
            (refused.code, refused.message.as_str()),
            (0x06, "server device busy")
        );
        let err = drivers[1].poll(&mut line.link).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::Protocol(reason) if reason.contains("CRC")),
            "{err:?}"
        );
        let err = drivers[2].poll(&mut line.link).await.unwrap_err();
        assert_eq!(
            err.kind(),
            DriverErrorKind::Protocol,
            "round {round}: {err:?}"
        );
        let (polled, _) = read(&mut drivers[3], &mut line.link).await;
        assert_matches(&polled, &units[3].pack.reading());
    }
    for unit in &units {
        unit.pack.set_faults(Faults::default());
    }
    for (d, unit) in drivers.iter_mut().zip(&units) {
        let (polled, _) = read(d, &mut line.link).await;
        assert_matches(&polled, &unit.pack.reading());
    }
    let counts = line.link.error_counts();
    assert_eq!(
        (
            counts.exceptions,
            counts.protocol,
            counts.timeouts,
            counts.transport
        ),
        (3, 6, 0, 0)
    );
    line.stop().await;
}

#[tokio::test]
async fn charge_current_limit_is_written_and_read_back_over_rtu() {
    let units = units(2);
    let mut line = Line::start(&units, false);
    let mut d = line.driver(&units[0]);
    let write = ValidatedSetting {
        name: SettingName(CHARGE_CURRENT_LIMIT_A.into()),
        value: 33.3,
    };
    let read_back = d
        .apply_setting(&mut line.link, &write)
        .await
        .unwrap()
        .unwrap();
    assert!((read_back - 33.3).abs() < 1e-9, "{read_back}");
    assert_eq!(units[0].pack.setting(CHARGE_CURRENT_LIMIT_A), Some(33.3));
    assert_eq!(units[1].pack.setting(CHARGE_CURRENT_LIMIT_A), Some(100.0));
    line.stop().await;
}

#[tokio::test]
async fn a_missing_port_is_a_transport_error_retried_with_backoff() {
    let config = RtuLinkConfig {
        request_timeout: REQUEST_TIMEOUT,
        reconnect_backoff_max: Duration::from_millis(400),
        ..RtuLinkConfig::new("/dev/packgate-no-such-port", BAUD_RATE)
    };
    let mut link = ModbusLink::rtu(config);
    let profile = Profile::builtin("packgate-sim").unwrap();
    let mut d = ModbusPackDriver::new(PackId::new("gone").unwrap(), 1, profile);
    let started = Instant::now();
    for _ in 0..3 {
        let err = d.poll(&mut link).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::Transport(reason) if reason.contains("packgate-no-such-port") || reason.contains("next attempt")),
            "{err:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    let counts = link.error_counts();
    assert_eq!((counts.transport, counts.opens), (3, 0));
    // After the backoff another open is tried.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let err = d.poll(&mut link).await.unwrap_err();
    assert!(
        matches!(&err, DriverError::Transport(reason) if reason.contains("packgate-no-such-port")),
        "{err:?}"
    );
}
