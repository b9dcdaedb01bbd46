//! JK ("NW" frames) end to end on a real pseudo-terminal pair: the
//! simulator as a JK BMS on one end, `JkDriver` on a `SerialFrameLink` on
//! the other; the readings against the simulated pack, each injected fault
//! by its kind, and the MOS switch writes read back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use packgate_drivers::bms::jk::MIN_INTER_FRAME_GAP;
use packgate_drivers::bms::{
    FrameError, JkDriver, SerialFrameLink, SerialLineConfig, CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON,
};
use packgate_drivers::{
    BusLink, DeviceException, DriverError, DriverErrorKind, PackDriver, ValidatedSetting,
};
use packgate_protocol::{AlarmFlags, DataQuality, PackId, PackReading, SettingName};
use packgate_sim::serve::framed::{serve_framed, FramedServerOptions, FramedUnit};
use packgate_sim::serve::{CancellationToken, JkDevice};
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_serial::SerialStream;

const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

/// A pack of `cells` cells and two sensors (what JK carries) under a
/// constant load, already flowing.
fn unit(seed: u64, cells: usize, current_a: f64) -> FramedUnit {
    let config = SimPackConfig {
        cells,
        temperature_sensors: 2,
        load: LoadProfile::Constant { current_a },
        ..SimPackConfig::default().for_pack_index(seed)
    };
    let pack = SimPack::new(&config);
    pack.advance(1.0);
    FramedUnit::new(1, pack, seed)
}

struct Line {
    link: SerialFrameLink,
    options: FramedServerOptions,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Line {
    fn start(unit: &FramedUnit) -> Line {
        let (device, client) = SerialStream::pair().unwrap();
        let config = SerialLineConfig {
            request_timeout: REQUEST_TIMEOUT,
            inter_frame_gap: MIN_INTER_FRAME_GAP,
            ..SerialLineConfig::new("/nonexistent/packgate-jk-line", 115_200)
        };
        let options = FramedServerOptions::default();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_framed::<JkDevice, _>(
            device,
            vec![unit.clone()],
            options.clone(),
            shutdown.clone(),
        ));
        Line {
            link: SerialFrameLink::with_port(config, client),
            options,
            shutdown,
            server,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
}

fn driver(name: &str) -> JkDriver {
    JkDriver::new(PackId::new(name).unwrap())
}

/// One poll the pack answered; its serial number is the unit's.
async fn read(d: &mut JkDriver, link: &mut SerialFrameLink, unit: &FramedUnit) -> PackReading {
    let polled = d.poll(link).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Fresh);
    assert_eq!(polled.serial_number.as_ref(), Some(&unit.serial_number));
    polled.reading
}

/// Every field of the polled reading equals the pack's, within JK's
/// resolution (10 mV, 10 mA, 1 %, 1 mV, 1 °C); JK reports no state of
/// health and no per-cell balancing.
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
    close(polled.current_a, held.current_a, 0.01, "current");
    close(polled.soc_pct, held.soc_pct, 1.0, "soc");
    assert_eq!(polled.soh_pct, None, "JK reports no SoH");
    assert_eq!(polled.cell_voltages_v.0.len(), held.cell_voltages_v.0.len());
    for (a, b) in polled.cell_voltages_v.0.iter().zip(&held.cell_voltages_v.0) {
        close(*a, *b, 0.001, "cell voltage");
    }
    assert_eq!(polled.temperatures_c.0.len(), held.temperatures_c.0.len());
    for (a, b) in polled.temperatures_c.0.iter().zip(&held.temperatures_c.0) {
        close(*a, *b, 1.0, "temperature");
    }
    assert_eq!(polled.balancing.0, 0, "JK reports no per-cell balancing");
    assert_eq!(polled.alarms, held.alarms);
    assert_eq!(polled.charge_enabled, held.charge_enabled);
    assert_eq!(polled.discharge_enabled, held.discharge_enabled);
}

fn switch(name: &str, value: f64) -> ValidatedSetting {
    ValidatedSetting {
        name: SettingName(name.into()),
        value,
    }
}

#[tokio::test]
async fn packs_read_as_the_simulator_holds_them() {
    for (seed, cells, current_a) in [(1, 16, 31.25), (2, 24, -42.5), (3, 8, 0.0)] {
        let u = unit(seed, cells, current_a);
        let mut line = Line::start(&u);
        let mut d = driver("jk");
        for _ in 0..2 {
            let polled = read(&mut d, &mut line.link, &u).await;
            assert!((polled.current_a - current_a as f32).abs() < 0.01);
            assert_matches(&polled, &u.pack.reading());
        }
        let counts = line.link.error_counts().unwrap();
        assert_eq!((counts.requests, counts.errors()), (2, 0));
        assert!(d.last_read().unwrap().mos_temperature_c.is_some());
        line.stop().await;
    }

    let hot = unit(4, 16, -12.5);
    hot.pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    hot.pack.advance(900.0);
    let mut line = Line::start(&hot);
    let mut d = driver("jk-hot");
    let polled = read(&mut d, &mut line.link, &hot).await;
    assert!(polled.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
    assert!(!polled.charge_enabled && !polled.discharge_enabled);
    assert_matches(&polled, &hot.pack.reading());
    line.stop().await;
}

#[tokio::test]
async fn faults_have_their_kinds_and_the_line_recovers() {
    let u = unit(5, 16, -5.0);
    let mut line = Line::start(&u);
    let mut d = driver("jk-5");
    read(&mut d, &mut line.link, &u).await;

    u.pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    assert_eq!(
        d.poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    // Another JK on its own line answers meanwhile.
    let other = unit(6, 16, 2.0);
    let mut other_line = Line::start(&other);
    let polled = read(&mut driver("jk-6"), &mut other_line.link, &other).await;
    assert_matches(&polled, &other.pack.reading());
    other_line.stop().await;

    u.pack.set_faults(Faults {
        corrupt_crc: true,
        ..Faults::default()
    });
    let err = d.poll(&mut line.link).await.unwrap_err();
    assert!(
        matches!(err, DriverError::Frame(FrameError::Checksum { .. })),
        "{err:?}"
    );

    u.pack.set_faults(Faults {
        garbage: true,
        ..Faults::default()
    });
    for _ in 0..3 {
        // Garbage without a start byte is silence on a framed line.
        let err = d.poll(&mut line.link).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                DriverErrorKind::Protocol | DriverErrorKind::Timeout
            ),
            "{err:?}"
        );
    }

    u.pack.set_faults(Faults {
        response_delay_ms: REQUEST_TIMEOUT.as_millis() as u64 + 150,
        ..Faults::default()
    });
    assert_eq!(
        d.poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    u.pack.set_faults(Faults::default());
    // The late answer arrives; it is dropped before the next request.
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..2 {
        let polled = read(&mut d, &mut line.link, &u).await;
        assert_matches(&polled, &u.pack.reading());
    }
    let counts = line.link.error_counts().unwrap();
    assert_eq!((counts.checksum, counts.timeouts >= 2), (1, true));
    line.stop().await;
}

#[tokio::test]
async fn garbage_with_a_start_byte_is_a_protocol_error() {
    let (mut device, client) = SerialStream::pair().unwrap();
    let config = SerialLineConfig {
        request_timeout: REQUEST_TIMEOUT,
        ..SerialLineConfig::new("/nonexistent/packgate-jk-line", 115_200)
    };
    let mut link = SerialFrameLink::with_port(config, client);
    let answers: Vec<Vec<u8>> = vec![
        vec![0x00, 0x4E, 0x41, 0x00, 0x13],
        vec![0x4E, 0x57, 0xFF, 0xFF],
        vec![0x4E, 0x57, 0x00, 0x13, 0x00, 0x00],
    ];
    let device_side = tokio::spawn(async move {
        let mut request = [0u8; 32];
        for answer in answers {
            let _ = device.read(&mut request).await.unwrap();
            device.write_all(&answer).await.unwrap();
            device.flush().await.unwrap();
        }
        device
    });
    let mut d = driver("jk-garbage");
    for expected in ["malformed", "malformed", "short_frame"] {
        match d.poll(&mut link).await.unwrap_err() {
            DriverError::Frame(e) => assert_eq!(e.kind().as_str(), expected),
            other => panic!("{other:?}"),
        }
    }
    let _device = device_side.await.unwrap();
}

#[tokio::test]
async fn switch_writes_change_the_pack_and_read_back() {
    let u = unit(7, 16, -3.0);
    let mut line = Line::start(&u);
    let mut d = driver("jk-7");
    let back = d
        .apply_setting(&mut line.link, &switch(CHARGE_SWITCH_ON, 0.0))
        .await;
    assert_eq!(back, Ok(Ok(0.0)));
    assert_eq!(u.pack.setting("charge_switch_on"), Some(0.0));
    assert_eq!(u.pack.setting("discharge_switch_on"), Some(1.0));
    assert_eq!(d.last_read().unwrap().charge_switch_on, Some(false));
    let back = d
        .apply_setting(&mut line.link, &switch(DISCHARGE_SWITCH_ON, 0.0))
        .await;
    assert_eq!(back, Ok(Ok(0.0)));
    let polled = read(&mut d, &mut line.link, &u).await;
    assert!(!polled.charge_enabled && !polled.discharge_enabled);
    assert_matches(&polled, &u.pack.reading());
    for name in [CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON] {
        let back = d.apply_setting(&mut line.link, &switch(name, 1.0)).await;
        assert_eq!(back, Ok(Ok(1.0)));
        assert_eq!(u.pack.setting(name), Some(1.0));
    }

    // Refused before anything is written.
    let requests = line.options.stats.requests();
    let refused = d
        .apply_setting(&mut line.link, &switch(DISCHARGE_SWITCH_ON, 2.0))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, DeviceException::ILLEGAL_DATA_VALUE);
    assert_eq!(
        d.apply_setting(&mut line.link, &switch("discharge_current_limit_a", 10.0))
            .await,
        Err(DriverError::UnsupportedSetting(
            "discharge_current_limit_a".into()
        ))
    );
    assert_eq!(line.options.stats.requests(), requests);
    line.stop().await;
}
