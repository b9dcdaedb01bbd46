//! Pylontech-style RS-485 ASCII end to end on a real pseudo-terminal
//! pair: the simulator's BMSs at several addresses on one line, one
//! `PylonAsciiDriver` per pack on one link, and every fault.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod framed_line;

use std::time::Duration;

use framed_line::{assert_matches, pack, Line, Resolution, REQUEST_TIMEOUT};
use packgate_drivers::bms::pylon_ascii::PylonAsciiDriver;
use packgate_drivers::bms::{FrameErrorKind, SerialFrameLink};
use packgate_drivers::{BusLink, DriverError, DriverErrorKind, PackDriver, ValidatedSetting};
use packgate_protocol::{DataQuality, PackId, PackReading, SettingName};
use packgate_sim::serve::framed::FramedUnit;
use packgate_sim::serve::PylonAsciiDevice;
use packgate_sim::{Faults, CHARGE_SWITCH_ON};

const RESOLUTION: Resolution = Resolution {
    pack_voltage_v: 0.001,
    current_a: 0.1,
    soc_pct: 0.01,
    cell_v: 0.001,
    temperature_c: 0.1,
};

/// Packs at ADR 2, 3, 4...: charging, discharging, resting in turn.
fn units(count: u8) -> Vec<FramedUnit> {
    let currents = [12.3, -7.7, 0.0];
    (0..count)
        .map(|i| {
            let seed = u64::from(i) + 1;
            FramedUnit::new(2 + i, pack(currents[usize::from(i) % 3], seed), seed)
        })
        .collect()
}

fn driver(unit: &FramedUnit) -> PylonAsciiDriver {
    let id = PackId::new(format!("pylon-{}", unit.address)).unwrap();
    PylonAsciiDriver::new(id, unit.address)
}

async fn read(
    d: &mut PylonAsciiDriver,
    link: &mut SerialFrameLink,
) -> (PackReading, Option<String>) {
    let polled = d.poll(link).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Fresh);
    (polled.reading, polled.serial_number)
}

fn check(polled: &PackReading, unit: &FramedUnit) {
    assert_matches(polled, &unit.pack.reading(), RESOLUTION, false);
    assert_eq!(polled.soh_pct, None, "no SoH in the protocol");
}

#[tokio::test]
async fn three_packs_on_one_line_read_as_the_simulator_holds_them() {
    let units = units(3);
    units[2].pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    units[2].pack.advance(900.0);
    let mut line = Line::start::<PylonAsciiDevice>(&units);
    let mut drivers: Vec<_> = units.iter().map(driver).collect();
    for _ in 0..2 {
        for (d, unit) in drivers.iter_mut().zip(&units) {
            let (polled, serial_number) = read(d, &mut line.link).await;
            check(&polled, unit);
            assert_eq!(serial_number, Some(unit.serial_number.clone()));
        }
    }
    let hot = units[2].pack.reading();
    assert!(!hot.alarms.is_empty() && !hot.charge_enabled && !hot.discharge_enabled);
    assert!(units[0].pack.reading().current_a > 12.0);
    assert!(units[1].pack.reading().current_a < -7.0);
    // 0x42 and 0x44 each poll, 0x93 once per pack.
    let counts = line.link.error_counts().unwrap();
    assert_eq!((counts.requests, counts.errors()), (15, 0));
    assert_eq!(line.options.stats.crc_errors(), 0);
    line.stop().await;
}

#[tokio::test]
async fn a_silent_pack_times_out_alone_and_a_late_answer_is_not_taken() {
    let units = units(2);
    let mut line = Line::start::<PylonAsciiDevice>(&units);
    let mut drivers: Vec<_> = units.iter().map(driver).collect();
    units[0].pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    assert_eq!(
        drivers[0].poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    let (polled, _) = read(&mut drivers[1], &mut line.link).await;
    check(&polled, &units[1]);
    // Late: past the deadline, then the line recovers.
    units[0].pack.set_faults(Faults {
        response_delay_ms: 400,
        ..Faults::default()
    });
    assert_eq!(
        drivers[0].poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    units[0].pack.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        for (d, unit) in drivers.iter_mut().zip(&units) {
            let (polled, _) = read(d, &mut line.link).await;
            check(&polled, unit);
        }
    }
    assert_eq!(line.link.error_counts().unwrap().timeouts, 2);
    line.stop().await;
}

#[tokio::test]
async fn bad_checksums_garbage_and_refusals_are_typed_and_the_line_keeps_working() {
    let units = units(4);
    let mut line = Line::start::<PylonAsciiDevice>(&units);
    let mut drivers: Vec<_> = units.iter().map(driver).collect();
    units[0].pack.set_faults(Faults {
        corrupt_crc: true,
        ..Faults::default()
    });
    units[1].pack.set_faults(Faults {
        garbage: true,
        ..Faults::default()
    });
    units[2].pack.set_faults(Faults {
        exception: Some(0x91),
        ..Faults::default()
    });
    for round in 0..3 {
        let err = drivers[0].poll(&mut line.link).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::Frame(e) if e.kind() == FrameErrorKind::Checksum),
            "{err:?}"
        );
        // Random bytes: malformed where they hold a `~`, silence to the
        // link where they do not (noise before a frame is dropped).
        let err = drivers[1].poll(&mut line.link).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                DriverErrorKind::Protocol | DriverErrorKind::Timeout
            ),
            "round {round}: {err:?}"
        );
        let refused = drivers[2].poll(&mut line.link).await.unwrap().unwrap_err();
        assert_eq!(
            (refused.code, refused.message.as_str()),
            (0x91, "internal communication error")
        );
        let (polled, _) = read(&mut drivers[3], &mut line.link).await;
        check(&polled, &units[3]);
    }
    for unit in &units {
        unit.pack.set_faults(Faults::default());
    }
    for (d, unit) in drivers.iter_mut().zip(&units) {
        let (polled, _) = read(d, &mut line.link).await;
        check(&polled, unit);
    }
    let counts = line.link.error_counts().unwrap();
    assert_eq!(counts.exceptions, 3);
    assert!(counts.checksum >= 3, "{counts:?}");
    line.stop().await;
}

#[tokio::test]
async fn an_absent_address_is_silent_and_nothing_is_writable() {
    let units = units(1);
    let mut line = Line::start::<PylonAsciiDevice>(&units);
    let mut d = PylonAsciiDriver::new(PackId::new("pylon-9").unwrap(), 9);
    // Nobody at ADR 9: silence.
    assert_eq!(
        d.poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    let write = ValidatedSetting {
        name: SettingName(CHARGE_SWITCH_ON.into()),
        value: 0.0,
    };
    let mut d = driver(&units[0]);
    assert_eq!(
        d.apply_setting(&mut line.link, &write).await,
        Err(DriverError::UnsupportedSetting(CHARGE_SWITCH_ON.into()))
    );
    assert_eq!(units[0].pack.setting(CHARGE_SWITCH_ON), Some(1.0));
    line.stop().await;
}
