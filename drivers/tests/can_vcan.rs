//! The CAN pack driver on SocketCAN: frames of the simulator's encoder
//! sent on a vcan interface arrive as a reading. Needs a kernel with vcan
//! and `deploy/vcan-setup.sh` run first; built only with the `vcan-tests`
//! feature. The interface is `PACKGATE_VCAN` (default `vcan0`).
// Test helpers panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "vcan-tests")]

use std::time::Duration;

use packgate_drivers::can::socketcan::SocketCanLink;
use packgate_drivers::can::{CanDriverConfig, CanFrame, CanPackDriver, CanTransportConfig};
use packgate_protocol::{DataQuality, PackId};
use packgate_sim::serve::can_frames::{bms_frames, BmsLimits};
use packgate_sim::{SimPack, SimPackConfig};

fn interface() -> String {
    std::env::var("PACKGATE_VCAN").unwrap_or_else(|_| "vcan0".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_socketcan_driver_reads_frames_from_vcan() {
    let iface = interface();
    let sender = SocketCanLink::open(&iface)
        .unwrap_or_else(|e| panic!("{e}: run deploy/vcan-setup.sh {iface} first"));
    let config = CanDriverConfig {
        cells_in_series: 16,
        stale_after_ms: 300,
        poll_wait_ms: 500,
        io_timeout_ms: 500,
        max_backoff_ms: 500,
        transport: CanTransportConfig::Socketcan {
            interface: iface.clone(),
        },
    };
    let mut driver = CanPackDriver::new(PackId::new("vcan-1").unwrap(), &config).unwrap();
    let pack = SimPack::new(&SimPackConfig::default());
    let reading = pack.reading();
    let limits = BmsLimits::for_pack(&pack, reading.cell_voltages_v.0.len());

    let mut last = None;
    for _ in 0..40 {
        for (id, data) in bms_frames(&reading, &limits) {
            let frame = CanFrame::standard(id, &data).unwrap();
            sender
                .send(&frame, Duration::from_millis(200))
                .await
                .unwrap();
        }
        match driver.poll_detailed().await {
            Ok(p) if p.quality == DataQuality::Fresh => {
                assert!((p.reading.soc_pct - reading.soc_pct).abs() <= 0.6);
                assert!((p.reading.pack_voltage_v - reading.pack_voltage_v).abs() <= 0.01);
                return;
            }
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no fresh reading from {iface}: {last:?}");
}
