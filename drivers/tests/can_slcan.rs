//! The CAN pack driver over slcan on a real pty, against the simulator's
//! slcan adapter: readings, a missing frame, an unresponsive pack, a port
//! that vanishes and comes back.
// Test helpers panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use packgate_drivers::can::slcan::Bitrate;
use packgate_drivers::can::transport::SlcanStreamConnector;
use packgate_drivers::can::{CanDriverConfig, CanPackDriver, CanPoll, CanTransportConfig};
use packgate_drivers::{DriverError, PackDriver};
use packgate_protocol::{DataQuality, PackId};
use packgate_sim::serve::slcan::{serve_slcan, serve_slcan_with, SlcanServerOptions};
use packgate_sim::serve::CancellationToken;
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig};
use tokio::time::sleep;
use tokio_serial::{SerialPort, SerialStream};

const PERIOD: Duration = Duration::from_millis(50);

fn config(transport: CanTransportConfig) -> CanDriverConfig {
    CanDriverConfig {
        cells_in_series: 16,
        stale_after_ms: 200,
        poll_wait_ms: 300,
        io_timeout_ms: 500,
        max_backoff_ms: 200,
        transport,
    }
}

fn unused_transport() -> CanTransportConfig {
    CanTransportConfig::Socketcan {
        interface: "unused".into(),
    }
}

fn pack() -> SimPack {
    SimPack::new(&SimPackConfig {
        load: LoadProfile::Constant { current_a: -20.0 },
        ..SimPackConfig::default()
    })
}

/// Polls until `pred` holds or 5 s pass.
async fn poll_until(
    d: &mut CanPackDriver,
    pred: impl Fn(&Result<CanPoll, DriverError>) -> bool,
) -> Result<CanPoll, DriverError> {
    let mut last = d.poll_detailed().await;
    for _ in 0..50 {
        if pred(&last) {
            return last;
        }
        sleep(Duration::from_millis(100)).await;
        last = d.poll_detailed().await;
    }
    panic!("condition never held; last poll {last:?}");
}

fn fresh(p: &Result<CanPoll, DriverError>) -> bool {
    matches!(p, Ok(p) if p.quality == DataQuality::Fresh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_readings_stale_frames_and_an_unresponsive_pack_over_a_pty() {
    let (sim_end, driver_end) = SerialStream::pair().unwrap();
    let pack = pack();
    let options = SlcanServerOptions::new(PERIOD);
    let skip = options.skip_ids.clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_slcan_with(
        sim_end,
        pack.clone(),
        options,
        shutdown.clone(),
    ));
    let connector =
        SlcanStreamConnector::new(driver_end, Bitrate::Kbps500, Duration::from_millis(500));
    let mut d = CanPackDriver::with_connector(
        PackId::new("can-1").unwrap(),
        &config(unused_transport()),
        Box::new(connector),
    );

    // Readings equal the simulator's within the protocol's resolution.
    let p = poll_until(&mut d, fresh).await.unwrap();
    let sim = pack.reading();
    let r = &p.reading;
    r.validate().unwrap();
    assert!(
        (r.soc_pct - sim.soc_pct).abs() <= 0.6,
        "{} vs {}",
        r.soc_pct,
        sim.soc_pct
    );
    assert!(
        (r.pack_voltage_v - sim.pack_voltage_v).abs() <= 0.02,
        "{} vs {}",
        r.pack_voltage_v,
        sim.pack_voltage_v
    );
    assert!(
        (r.current_a - sim.current_a).abs() <= 0.06,
        "{} vs {}",
        r.current_a,
        sim.current_a
    );
    assert!((r.temperatures_c.0[0] - sim.max_temperature_c()).abs() <= 0.06);
    assert!((r.min_cell_v() - sim.min_cell_v()).abs() <= 0.002);
    assert!((r.max_cell_v() - sim.max_cell_v()).abs() <= 0.002);
    assert_eq!(r.charge_enabled, sim.charge_enabled);
    assert_eq!(r.discharge_enabled, sim.discharge_enabled);
    assert_eq!(r.alarms, sim.alarms);
    assert!(p.stale_ids.is_empty());
    assert_eq!(d.pack_id().as_str(), "can-1");

    // 0x356 stops: its fields keep their last values, the reading is stale.
    skip.lock().unwrap().insert(0x356);
    let p = poll_until(
        &mut d,
        |p| matches!(p, Ok(p) if p.quality == DataQuality::Stale),
    )
    .await
    .unwrap();
    assert_eq!(p.stale_ids, vec![0x356]);
    assert!((p.reading.pack_voltage_v - r.pack_voltage_v).abs() <= 0.05);
    // The trait's poll gives the reading with the same quality.
    let polled = d.poll(&mut ()).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Stale);
    assert_eq!(polled.serial_number, None);
    skip.lock().unwrap().clear();
    poll_until(&mut d, fresh).await.unwrap();
    let polled = d.poll(&mut ()).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Fresh);

    // Unresponsive: nothing arrives, Timeout; then it recovers.
    pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    let err = poll_until(&mut d, |p| p.is_err()).await.unwrap_err();
    assert_eq!(err, DriverError::Timeout(Duration::from_millis(200)));
    pack.set_faults(Faults::default());
    poll_until(&mut d, fresh).await.unwrap();
    assert!(d.stats().frames_decoded > 0);
    assert_eq!(d.stats().frames_rejected, 0);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// A pty pair with the simulator on the master; returns the slave's path
/// and the slave (held open so the pty stays up) and the server's token.
fn start_adapter(
    pack: &SimPack,
) -> Result<(String, SerialStream, CancellationToken), Box<dyn std::error::Error>> {
    let (sim_end, slave) = SerialStream::pair()?;
    let path = slave.name().ok_or("pty without a name")?;
    let token = CancellationToken::new();
    tokio::spawn(serve_slcan(sim_end, pack.clone(), PERIOD, token.clone()));
    Ok((path, slave, token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_the_driver_reopens_the_port_by_path_after_it_vanished() {
    let dir = std::env::temp_dir().join(format!("packgate-can-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("ttyCAN");
    let pack = pack();

    let (path, slave, token) = start_adapter(&pack).unwrap();
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let transport = CanTransportConfig::Slcan {
        path: link.to_string_lossy().into_owned(),
        serial_baud: 115_200,
        bitrate_bps: 500_000,
    };
    let mut d = CanPackDriver::new(PackId::new("can-2").unwrap(), &config(transport)).unwrap();
    poll_until(&mut d, fresh).await.unwrap();
    assert_eq!(d.stats().connects, 1);

    // The adapter is unplugged: the pty goes away.
    token.cancel();
    drop(slave);
    let err = poll_until(&mut d, |p| p.is_err()).await.unwrap_err();
    assert!(
        matches!(err, DriverError::Transport(_) | DriverError::Timeout(_)),
        "{err:?}"
    );

    // It comes back (a new device node behind the same by-id link).
    let (path, _slave, token) = start_adapter(&pack).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&path, &link).unwrap();
    poll_until(&mut d, fresh).await.unwrap();
    assert!(d.stats().connects >= 2);
    token.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
