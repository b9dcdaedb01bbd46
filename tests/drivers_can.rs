//! End to end over CAN: the simulator served as an slcan device, the
//! gateway polling it into SQLite.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use packgate::config::PackConfig;
use packgate::store::StoredSample;
use packgate_protocol::{DataQuality, PackId};
use packgate_sim::serve::{serve_slcan_with, SlcanServerOptions};
use support::wire::*;
use support::*;
use tokio_serial::SerialPort;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_slcan_pack_is_sampled_and_a_missing_frame_marks_it_stale() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let pack = still_pack(5);
    let (device, client) = tokio_serial::SerialStream::pair().unwrap();
    let path = client.name().unwrap();
    let options = SlcanServerOptions::new(Duration::from_millis(200));
    let skip = Arc::clone(&options.skip_ids);
    tokio::spawn(serve_slcan_with(
        device,
        pack.clone(),
        options,
        servers.clone(),
    ));

    let mut config = base_config(&broker, 500);
    config.collect.request_timeout_ms = 1_500;
    let can = slcan_bus("can", path);
    config.buses = vec![can];
    config.packs = vec![PackConfig::can(PackId::new("can-1").unwrap(), "can", 16)];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The measurements frame (0x356: voltage, current, temperature) stops.
    skip.lock().unwrap().insert(0x356);
    let skipped_at = packgate::telemetry::now_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let (_report, connection) = gateway.await.unwrap();
    servers.cancel();
    drop(client);

    let stored = rows(&config, "can-1");
    let fresh: Vec<&StoredSample> = stored
        .iter()
        .filter(|r| r.sample.quality == DataQuality::Fresh)
        .collect();
    assert!(fresh.len() >= 3, "{} fresh samples", fresh.len());
    let sim = pack.reading();
    let last_fresh = &fresh.last().unwrap().sample.reading;
    assert!(
        (last_fresh.soc_pct - sim.soc_pct).abs() <= 1.0,
        "SoC {} vs {}",
        last_fresh.soc_pct,
        sim.soc_pct
    );
    assert!((last_fresh.pack_voltage_v - sim.pack_voltage_v).abs() <= 0.011);
    assert!(fresh
        .iter()
        .all(|r| r.sample.timestamp_ms < skipped_at + 3_000));
    let stale_after = stored
        .iter()
        .filter(|r| r.sample.timestamp_ms > skipped_at + 3_000)
        .collect::<Vec<_>>();
    assert!(
        !stale_after.is_empty(),
        "no samples after the frame stopped"
    );
    assert!(stale_after
        .iter()
        .all(|r| r.sample.quality == DataQuality::Stale));
    connection.close(&config.data_dir).await;
}
