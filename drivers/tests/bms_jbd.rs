//! JBD end to end on a real pseudo-terminal pair: the simulator as a JBD
//! BMS on one end, `JbdDriver` on a `SerialFrameLink` on the other; the
//! readings against the simulated pack, each injected fault by its kind,
//! and the MOS switch writes read back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use packgate_drivers::bms::{
    FrameError, JbdDriver, SerialFrameLink, SerialLineConfig, CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON,
};
use packgate_drivers::{
    BusLink, DeviceException, DriverError, DriverErrorKind, PackDriver, ValidatedSetting,
};
use packgate_protocol::{AlarmFlags, DataQuality, PackId, PackReading, SettingName};
use packgate_sim::serve::framed::{serve_framed, FramedServerOptions, FramedUnit};
use packgate_sim::serve::{CancellationToken, JbdDevice};
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_serial::SerialStream;

const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

/// A pack under a constant load, already flowing, so the two requests of
/// a poll see the same current.
fn unit(seed: u64, current_a: f64) -> FramedUnit {
    let config = SimPackConfig {
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
            inter_frame_gap: Duration::from_millis(5),
            ..SerialLineConfig::new("/nonexistent/packgate-jbd-line", 9600)
        };
        let options = FramedServerOptions::default();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_framed::<JbdDevice, _>(
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

fn driver(name: &str) -> JbdDriver {
    JbdDriver::new(PackId::new(name).unwrap())
}

async fn read(d: &mut JbdDriver, link: &mut SerialFrameLink) -> PackReading {
    let polled = d.poll(link).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Fresh);
    assert_eq!(polled.serial_number, None, "JBD reports no serial number");
    polled.reading
}

/// Every field of the polled reading equals the pack's, within JBD's
/// resolution (10 mV, 10 mA, 1 %, 1 mV, 0.1 °C).
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
    assert_eq!(polled.soh_pct, None, "JBD reports no SoH");
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

fn switch(name: &str, value: f64) -> ValidatedSetting {
    ValidatedSetting {
        name: SettingName(name.into()),
        value,
    }
}

#[tokio::test]
async fn packs_read_as_the_simulator_holds_them() {
    let charging = unit(1, 23.45);
    let mut line = Line::start(&charging);
    let mut d = driver("jbd-1");
    for _ in 0..3 {
        let polled = read(&mut d, &mut line.link).await;
        assert!(polled.current_a > 23.0);
        assert_matches(&polled, &charging.pack.reading());
    }
    assert_eq!(d.model(), Some(charging.serial_number.as_str()));
    // 0x03, 0x04, 0x05 once, then 0x03 and 0x04.
    let counts = line.link.error_counts().unwrap();
    assert_eq!((counts.requests, counts.errors()), (7, 0));
    line.stop().await;

    // Discharging, hot: protection opens both MOSs and raises the alarm.
    let hot = unit(2, -12.5);
    hot.pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    hot.pack.advance(900.0);
    let mut line = Line::start(&hot);
    let mut d = driver("jbd-2");
    let polled = read(&mut d, &mut line.link).await;
    assert!(polled.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
    assert!(!polled.charge_enabled && !polled.discharge_enabled);
    assert_matches(&polled, &hot.pack.reading());
    line.stop().await;
}

#[tokio::test]
async fn faults_have_their_kinds_and_the_line_recovers() {
    let u = unit(3, -5.0);
    let mut line = Line::start(&u);
    let mut d = driver("jbd-3");
    read(&mut d, &mut line.link).await;

    u.pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    assert_eq!(
        d.poll(&mut line.link).await,
        Err(DriverError::Timeout(REQUEST_TIMEOUT))
    );
    // Another JBD on its own line answers meanwhile.
    let other = unit(4, 2.0);
    let mut other_line = Line::start(&other);
    let mut other_driver = driver("jbd-4");
    let polled = read(&mut other_driver, &mut other_line.link).await;
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
        let polled = read(&mut d, &mut line.link).await;
        assert_matches(&polled, &u.pack.reading());
    }
    let counts = line.link.error_counts().unwrap();
    assert_eq!((counts.checksum, counts.timeouts >= 2), (1, true));
    assert!(line.options.stats.requests() > 0);
    line.stop().await;
}

#[tokio::test]
async fn garbage_is_a_protocol_error_and_a_refusal_the_devices() {
    let (mut device, client) = SerialStream::pair().unwrap();
    let config = SerialLineConfig {
        request_timeout: REQUEST_TIMEOUT,
        ..SerialLineConfig::new("/nonexistent/packgate-jbd-line", 9600)
    };
    let mut link = SerialFrameLink::with_port(config, client);
    let answers: Vec<Vec<u8>> = vec![
        vec![0x13, 0xDD, 0x03, 0x00, 0x02, 0x01, 0x02, 0x00, 0x00, 0x77],
        vec![0xDD, 0x03, 0x00, 0x01, 0x55, 0xFF, 0xAA, 0x78],
        vec![0xDD, 0x03, 0x80],
        // A refusal: status 0x80, checksum 0x10000 - 0x80.
        vec![0xDD, 0x03, 0x80, 0x00, 0xFF, 0x80, 0x77],
    ];
    let device_side = tokio::spawn(async move {
        let mut request = [0u8; 16];
        for answer in answers {
            let _ = device.read(&mut request).await.unwrap();
            device.write_all(&answer).await.unwrap();
            device.flush().await.unwrap();
        }
        device
    });
    let mut d = driver("jbd-garbage");
    for expected in ["checksum", "malformed", "short_frame"] {
        match d.poll(&mut link).await.unwrap_err() {
            DriverError::Frame(e) => assert_eq!(e.kind().as_str(), expected),
            other => panic!("{other:?}"),
        }
    }
    let refused = d.poll(&mut link).await.unwrap().unwrap_err();
    assert_eq!(refused.code, 0x80);
    let counts = link.error_counts().unwrap();
    assert_eq!((counts.protocol, counts.exceptions), (3, 1));
    let _device = device_side.await.unwrap();
}

#[tokio::test]
async fn switch_writes_change_the_pack_and_read_back() {
    let u = unit(5, -3.0);
    let mut line = Line::start(&u);
    let mut d = driver("jbd-5");
    read(&mut d, &mut line.link).await;

    let write = |name, value| switch(name, value);
    let back = d
        .apply_setting(&mut line.link, &write(CHARGE_SWITCH_ON, 0.0))
        .await;
    assert_eq!(back, Ok(Ok(0.0)));
    assert_eq!(u.pack.setting("charge_switch_on"), Some(0.0));
    assert_eq!(u.pack.setting("discharge_switch_on"), Some(1.0));
    // The other switch keeps its last written state.
    let back = d
        .apply_setting(&mut line.link, &write(DISCHARGE_SWITCH_ON, 0.0))
        .await;
    assert_eq!(back, Ok(Ok(0.0)));
    assert_eq!(u.pack.setting("charge_switch_on"), Some(0.0));
    let polled = read(&mut d, &mut line.link).await;
    assert!(!polled.charge_enabled && !polled.discharge_enabled);
    assert_eq!(
        polled.alarms,
        AlarmFlags::NONE,
        "a software lock is no alarm"
    );
    assert_matches(&polled, &u.pack.reading());
    let back = d
        .apply_setting(&mut line.link, &write(CHARGE_SWITCH_ON, 1.0))
        .await;
    assert_eq!(back, Ok(Ok(1.0)));
    assert_eq!(u.pack.setting("discharge_switch_on"), Some(0.0));

    // Refused before anything is written.
    let requests = line.options.stats.requests();
    let refused = d
        .apply_setting(&mut line.link, &write(CHARGE_SWITCH_ON, 0.5))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, DeviceException::ILLEGAL_DATA_VALUE);
    assert_eq!(
        d.apply_setting(&mut line.link, &write("charge_current_limit_a", 10.0))
            .await,
        Err(DriverError::UnsupportedSetting(
            "charge_current_limit_a".into()
        ))
    );
    assert_eq!(line.options.stats.requests(), requests);
    line.stop().await;
}

#[tokio::test]
async fn a_switch_held_open_elsewhere_stays_open_and_protection_is_no_lock() {
    // Held open by another tool: the FET is off and the lock bit set.
    let u = unit(6, -3.0);
    u.pack.apply_setting("discharge_switch_on", 0.0).unwrap();
    let mut line = Line::start(&u);
    let mut d = driver("jbd-6");
    let back = d
        .apply_setting(&mut line.link, &switch(CHARGE_SWITCH_ON, 1.0))
        .await;
    assert_eq!(back, Ok(Ok(1.0)));
    assert_eq!(u.pack.setting("discharge_switch_on"), Some(0.0));
    line.stop().await;

    // Opened by protection, no lock: the other switch is released.
    let hot = unit(7, -3.0);
    hot.pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    hot.pack.advance(900.0);
    let mut line = Line::start(&hot);
    let mut d = driver("jbd-7");
    read(&mut d, &mut line.link).await;
    let back = d
        .apply_setting(&mut line.link, &switch(CHARGE_SWITCH_ON, 0.0))
        .await;
    assert_eq!(back, Ok(Ok(0.0)));
    assert_eq!(hot.pack.setting("discharge_switch_on"), Some(1.0));
    line.stop().await;
}
