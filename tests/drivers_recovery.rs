//! End to end over Modbus: a TCP server that restarts and a serial port
//! that vanishes and comes back are polled again without a restart.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use packgate_protocol::DataQuality;
use packgate_sim::serve::{serve_modbus_rtu, serve_modbus_tcp, RtuServerOptions, SimUnit};
use support::wire::*;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tcp_server_is_polled_again_by_itself() {
    let broker = TestBroker::start().await;
    let pack = still_pack(7);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let first = CancellationToken::new();
    let server = tokio::spawn(serve_modbus_tcp(
        listener,
        vec![SimUnit::new(1, pack.clone(), 7)],
        first.clone(),
    ));

    let mut config = base_config(&broker, 200);
    let tcp = tcp_bus("tcp", address.to_string());
    config.buses = vec![tcp];
    config.packs = vec![modbus_pack("tcp-1", "tcp", 1)];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.cancel();
    server.await.unwrap().unwrap();
    let down_at = packgate::telemetry::now_ms();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let up_at = packgate::telemetry::now_ms();
    let second = CancellationToken::new();
    tokio::spawn(serve_modbus_tcp(
        listener,
        vec![SimUnit::new(1, pack.clone(), 7)],
        second.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    second.cancel();

    let stored = rows(&config, "tcp-1");
    let fresh_after = stored
        .iter()
        .filter(|r| r.sample.timestamp_ms > up_at && r.sample.quality == DataQuality::Fresh)
        .count();
    assert!(
        fresh_after >= 5,
        "{fresh_after} fresh samples after the restart"
    );
    let stale_during = stored
        .iter()
        .filter(|r| (down_at..up_at).contains(&r.sample.timestamp_ms))
        .all(|r| r.sample.quality == DataQuality::Stale);
    assert!(
        stale_during,
        "samples during the outage must be marked stale"
    );
    let collect = report.collect.unwrap();
    assert!(collect.polls_transport.get() + collect.polls_timeout.get() > 0);
    connection.close(&config.data_dir).await;
}

/// A serial line whose two ends are symlinks made by socat, so the line
/// can vanish (socat killed) and come back at the same paths.
struct SocatLine {
    child: std::process::Child,
    gateway_end: std::path::PathBuf,
    device_end: std::path::PathBuf,
}

impl SocatLine {
    async fn start(dir: &std::path::Path) -> Self {
        let gateway_end = dir.join("ttyGW");
        let device_end = dir.join("ttyDEV");
        let child = std::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", gateway_end.display()))
            .arg(format!("pty,raw,echo=0,link={}", device_end.display()))
            .spawn()
            .expect("socat is installed (./deploy/dev.sh test installs it)");
        assert!(
            eventually(Duration::from_secs(5), || gateway_end.exists()
                && device_end.exists())
            .await
        );
        Self {
            child,
            gateway_end,
            device_end,
        }
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_port_that_vanishes_and_reappears_is_reopened() {
    let broker = TestBroker::start().await;
    let lines = tempfile::tempdir().unwrap();
    let pack = still_pack(3);
    let serve = |line: &SocatLine, token: CancellationToken| {
        let device = tokio_serial::SerialStream::open(&tokio_serial::new(
            line.device_end.to_string_lossy(),
            9600,
        ))
        .unwrap();
        tokio::spawn(serve_modbus_rtu(
            device,
            vec![SimUnit::new(1, pack.clone(), 3)],
            RtuServerOptions::default(),
            token,
        ))
    };
    let line = SocatLine::start(lines.path()).await;
    let first = CancellationToken::new();
    serve(&line, first.clone());

    let mut config = base_config(&broker, 200);
    let rtu = rtu_bus("usb", line.gateway_end.clone());
    config.buses = vec![rtu];
    config.packs = vec![modbus_pack("usb-1", "usb", 1)];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Unplug: the line and its device node disappear.
    first.cancel();
    line.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Plug back in at the same path.
    let line = SocatLine::start(lines.path()).await;
    let back_at = packgate::telemetry::now_ms();
    let second = CancellationToken::new();
    serve(&line, second.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    second.cancel();
    line.stop();

    let fresh_after = rows(&config, "usb-1")
        .iter()
        .filter(|r| r.sample.timestamp_ms > back_at && r.sample.quality == DataQuality::Fresh)
        .count();
    assert!(
        fresh_after >= 5,
        "{fresh_after} fresh samples after the port came back"
    );
    let collect = report.collect.unwrap();
    assert!(collect.polls_transport.get() + collect.polls_timeout.get() > 0);
    connection.close(&config.data_dir).await;
}
