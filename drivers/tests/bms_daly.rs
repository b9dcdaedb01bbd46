//! Daly end to end on a real pseudo-terminal pair: the simulator's Daly
//! BMS (one a line) read by `DalyDriver` through a `SerialFrameLink`, its
//! multi-frame cell and temperature lists, and every fault.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod framed_line;

use std::time::Duration;

use framed_line::{assert_matches, pack, Line, Resolution, REQUEST_TIMEOUT};
use packgate_drivers::bms::daly::{DalyDriver, HOST_ADDRESS_ALTERNATE, HOST_ADDRESS_UART};
use packgate_drivers::bms::{FrameErrorKind, SerialFrameLink};
use packgate_drivers::{BusLink, DriverError, DriverErrorKind, PackDriver, ValidatedSetting};
use packgate_protocol::{DataQuality, PackId, PackReading, SettingName};
use packgate_sim::serve::framed::FramedUnit;
use packgate_sim::serve::DalyDevice;
use packgate_sim::{Faults, SimPack, SimPackConfig, DISCHARGE_SWITCH_ON};

const RESOLUTION: Resolution = Resolution {
    pack_voltage_v: 0.1,
    current_a: 0.1,
    soc_pct: 0.1,
    cell_v: 0.001,
    temperature_c: 1.0,
};

fn driver(host_address: u8) -> DalyDriver {
    DalyDriver::new(PackId::new("daly-1").unwrap(), host_address)
}

async fn read(d: &mut DalyDriver, link: &mut SerialFrameLink) -> PackReading {
    let polled = d.poll(link).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Fresh);
    assert_eq!(polled.serial_number, None);
    polled.reading
}

fn check(polled: &PackReading, unit: &FramedUnit) {
    assert_matches(polled, &unit.pack.reading(), RESOLUTION, true);
    assert_eq!(polled.soh_pct, None, "no SoH in the protocol");
}

#[tokio::test]
async fn packs_read_as_the_simulator_holds_them_from_either_host_address() {
    for (current_a, host) in [
        (23.4, HOST_ADDRESS_UART),
        (-15.6, HOST_ADDRESS_ALTERNATE),
        (0.0, HOST_ADDRESS_UART),
    ] {
        let unit = FramedUnit::new(0, pack(current_a, 3), 3);
        let mut line = Line::start::<DalyDevice>(std::slice::from_ref(&unit));
        let mut d = driver(host);
        for _ in 0..2 {
            let polled = read(&mut d, &mut line.link).await;
            check(&polled, &unit);
            assert!((polled.current_a - current_a as f32).abs() < 0.051);
        }
        // 7 requests a poll; the 16 cells come in 6 frames.
        let counts = line.link.error_counts().unwrap();
        assert_eq!((counts.requests, counts.errors()), (14, 0));
        line.stop().await;
    }
}

#[tokio::test]
async fn odd_counts_alarms_and_balancing_come_through() {
    // 13 cells (5 frames, the last one part used), 9 sensors (2 frames).
    let config = SimPackConfig {
        cells: 13,
        temperature_sensors: 9,
        initial_soc_pct: 99.0,
        load: packgate_sim::LoadProfile::Constant { current_a: 5.0 },
        ..SimPackConfig::default()
    };
    let hot = SimPack::new(&config);
    hot.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    hot.advance(900.0);
    let unit = FramedUnit::new(0, hot, 9);
    let mut line = Line::start::<DalyDevice>(std::slice::from_ref(&unit));
    let mut d = driver(HOST_ADDRESS_UART);
    let polled = read(&mut d, &mut line.link).await;
    check(&polled, &unit);
    assert_eq!(polled.cell_voltages_v.0.len(), 13);
    assert_eq!(polled.temperatures_c.0.len(), 9);
    assert!(!polled.alarms.is_empty());
    assert!(!polled.charge_enabled && !polled.discharge_enabled);
    line.stop().await;
    // A charging pack near full balances its high cells.
    let full = SimPack::new(&SimPackConfig {
        initial_soc_pct: 99.5,
        load: packgate_sim::LoadProfile::Constant { current_a: 2.0 },
        ..SimPackConfig::default()
    });
    full.advance(30.0);
    let unit = FramedUnit::new(0, full, 10);
    let mut line = Line::start::<DalyDevice>(std::slice::from_ref(&unit));
    let polled = read(&mut d, &mut line.link).await;
    check(&polled, &unit);
    assert!(polled.balancing.count() > 0, "{:?}", polled.balancing);
    line.stop().await;
}

#[tokio::test]
async fn silent_late_corrupt_and_garbage_answers_are_typed_and_the_line_recovers() {
    let unit = FramedUnit::new(0, pack(-8.0, 4), 4);
    let mut line = Line::start::<DalyDevice>(std::slice::from_ref(&unit));
    let mut d = driver(HOST_ADDRESS_UART);
    unit.pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    assert_eq!(
        d.poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    unit.pack.set_faults(Faults {
        corrupt_crc: true,
        ..Faults::default()
    });
    let err = d.poll(&mut line.link).await.unwrap_err();
    assert!(
        matches!(&err, DriverError::Frame(e) if e.kind() == FrameErrorKind::Checksum),
        "{err:?}"
    );
    unit.pack.set_faults(Faults {
        garbage: true,
        ..Faults::default()
    });
    for _ in 0..3 {
        // Malformed or a bad checksum where the bytes hold 0xA5, silence
        // to the link where they do not.
        let err = d.poll(&mut line.link).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                DriverErrorKind::Protocol | DriverErrorKind::Timeout
            ),
            "{err:?}"
        );
    }
    unit.pack.set_faults(Faults {
        response_delay_ms: 400,
        ..Faults::default()
    });
    assert_eq!(
        d.poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    unit.pack.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        let polled = read(&mut d, &mut line.link).await;
        check(&polled, &unit);
    }
    let counts = line.link.error_counts().unwrap();
    assert!(counts.checksum >= 1, "{counts:?}");
    assert!(counts.timeouts >= 2);
    let write = ValidatedSetting {
        name: SettingName(DISCHARGE_SWITCH_ON.into()),
        value: 0.0,
    };
    assert_eq!(
        d.apply_setting(&mut line.link, &write).await,
        Err(DriverError::UnsupportedSetting(DISCHARGE_SWITCH_ON.into()))
    );
    assert_eq!(unit.pack.setting(DISCHARGE_SWITCH_ON), Some(1.0));
    line.stop().await;
}
