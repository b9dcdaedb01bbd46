//! A profile that misreads a pack (its pack voltage one register off)
//! over real Modbus TCP: every sample is stored `suspect`, counted, and
//! none is `fresh`; the same pack through the right profile is fresh.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use packgate::config::PackConfig;
use packgate_drivers::profile::Profile;
use packgate_protocol::{DataQuality, PackId};
use packgate_sim::serve::{serve_modbus_tcp, SimUnit};
use support::wire::*;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misread_pack_is_stored_suspect_never_fresh() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let units = vec![
        SimUnit::new(1, still_pack(1), 1),
        SimUnit::new(2, still_pack(2), 2),
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_modbus_tcp(listener, units.clone(), servers.clone()));

    // The simulator's own map with the pack voltage read from the SoC
    // register (SoC in 0.1 %, read at 0.01 V: a few volts) for cells
    // summing to about 50 V.
    let right = Profile::builtin_source("packgate-sim").unwrap();
    let wrong = right
        .replace(
            "pack_voltage_v = { block = 0, offset = 0,",
            "pack_voltage_v = { block = 0, offset = 2,",
        )
        .replace("name = \"packgate-sim\"", "name = \"misread\"");
    assert_ne!(wrong, right);
    let dir = tempfile::tempdir().unwrap();
    let wrong_path = dir.path().join("misread.toml");
    std::fs::write(&wrong_path, wrong).unwrap();

    let mut config = base_config(&broker, 200);
    config.buses = vec![tcp_bus("tcp", address)];
    config.packs = vec![
        PackConfig::modbus(
            PackId::new("misread").unwrap(),
            "tcp",
            1,
            &wrong_path.display().to_string(),
        ),
        modbus_pack("right", "tcp", 2),
    ];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    let collect = report.collect.unwrap();

    let misread = rows(&config, "misread");
    assert!(misread.len() >= 5, "{} samples", misread.len());
    for row in &misread {
        assert_eq!(row.sample.quality, DataQuality::Suspect);
        assert!(row.sample.reading.pack_voltage_v < 10.1);
    }
    let right = rows(&config, "right");
    assert!(right.len() >= 5, "{} samples", right.len());
    assert!(right.iter().all(|r| r.sample.quality == DataQuality::Fresh));
    assert_eq!(collect.samples_suspect.get(), misread.len() as u64);
    assert_eq!(
        assert_exactly_once(&config.database_path(), 2, true),
        collect.samples_published.get()
    );
    servers.cancel();
    connection.close(&config.data_dir).await;
}
