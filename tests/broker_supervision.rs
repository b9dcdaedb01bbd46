//! The broker as an unlucky operator meets it: the embedded one killed
//! under a running gateway, orphaned when the gateway dies, started twice
//! on one store, the terminal closed under `dev.sh sim`; the box's broker
//! away for a while, and what that costs the journal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use packgate::config::Config;
use packgate::runtime::{run_workers, Broker, WorkerSet};
use packgate::workers::collect::PackSet;
use packgate::workers::WorkerKind;
use support::*;
use tokio_util::sync::CancellationToken;

fn embedded_config(dir: &Path, packs: usize) -> Config {
    let mut config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    if let Some(path) = std::env::var_os("PACKGATE_NATS_SERVER") {
        config.broker.nats_server_path = path.into();
    }
    config.collect.poll_interval_ms = 100;
    config.data.shutdown_drain_ms = 10_000;
    config.add_sim_packs(packs).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_embedded_broker_is_restarted_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = embedded_config(dir.path(), 2);
    let broker = Broker::open(&config, "test").await.unwrap();
    let first_pid = broker.server.as_ref().unwrap().pid().unwrap();
    let shutdown = CancellationToken::new();
    let run = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        let packs = PackSet::from_config(&config).unwrap();
        let set = WorkerSet::of(&[WorkerKind::Collect, WorkerKind::Data]);
        async move {
            run_workers(&config, set, packs, &broker, shutdown)
                .await
                .map(|r| (r, broker))
        }
    };
    let run = tokio::spawn(run);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    signal(first_pid, libc::SIGKILL);
    // Polling goes on while the broker is away and after it is back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    shutdown.cancel();
    let (report, broker) = run
        .await
        .unwrap()
        .expect("the run survives the broker's death");
    let server = broker.server.as_ref().unwrap();
    assert_eq!(server.restarts(), 1);
    assert_ne!(server.pid(), Some(first_pid));
    assert_eq!(report.publisher.unpublished, 0, "samples left unpublished");
    let published = report.collect.unwrap().samples_published.get();
    let stored = assert_exactly_once(&config.database_path(), 2, false);
    assert_eq!(stored, published);
    assert!(stored >= 40, "only {stored} samples");
    broker.close(dir.path()).await;
}

/// `packgate run --sim N` in `dir`, its log in `dir/log`.
fn start_gateway(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_packgate"));
    command
        .args([
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--sim",
            "1",
            "--data-dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    command.spawn().unwrap()
}

/// The embedded broker's port, once the gateway wrote its URL.
async fn broker_port(dir: &Path) -> u16 {
    let file = dir.join("broker-url");
    assert!(
        eventually(Duration::from_secs(20), || std::fs::read_to_string(&file)
            .is_ok_and(|s| !s.is_empty()))
        .await,
        "no broker URL; log: {}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    let url = std::fs::read_to_string(&file).unwrap();
    url.trim().rsplit(':').next().unwrap().parse().unwrap()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_dies_with_its_gateway_and_never_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = start_gateway(dir.path());
    let port = broker_port(dir.path()).await;
    assert!(listening(port));

    // A second gateway on the same store refuses to start.
    let output = Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args([
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--sim",
            "1",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a second gateway ran on the same store"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another packgate process"),
        "{stderr}"
    );
    assert!(
        listening(port),
        "the refused start disturbed the running broker"
    );

    // Killed outright, the gateway takes its broker with it.
    signal(gateway.id(), libc::SIGKILL);
    let _ = gateway.wait();
    assert!(
        eventually(Duration::from_secs(10), || !listening(port)).await,
        "an orphaned broker still listens on {port}"
    );

    // The store is free again; a closed terminal (SIGHUP) stops cleanly.
    let _ = std::fs::remove_file(dir.path().join("broker-url"));
    let mut gateway = start_gateway(dir.path());
    let port = broker_port(dir.path()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(gateway.id(), libc::SIGHUP);
    let status = gateway.wait().unwrap();
    assert!(status.success(), "exit after SIGHUP: {status}");
    assert!(!listening(port), "the broker outlived a hung-up gateway");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("SIGHUP: shutting down"), "{log}");
}

/// The lines of `log` that contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_makes_a_line_down_and_a_line_up_not_one_per_attempt() {
    // A broker with packgate's users, so every worker has a connection of
    // its own to lose, as on the box.
    let dir = tempfile::tempdir().unwrap();
    let credentials_file = dir.path().join("creds.toml");
    let credentials =
        packgate::broker::BrokerCredentials::load_or_create(&credentials_file).unwrap();
    let mut options = packgate::broker::NatsServerOptions::new(dir.path().join("store"));
    if let Some(path) = std::env::var_os("PACKGATE_NATS_SERVER") {
        options.executable = path.into();
    }
    options.config_text = Some(credentials.authorization_block());
    let mut server = packgate::broker::NatsServer::start(options).await.unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("packgate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[broker]\nurl = {:?}\ncredentials_file = {:?}\n\
             [collect]\npoll_interval_ms = 200\n[http]\nlisten = \"127.0.0.1:0\"\n",
            data_dir.display().to_string(),
            server.url(),
            credentials_file.display().to_string(),
        ),
    )
    .unwrap();
    let log_path = dir.path().join("log");
    let mut gateway = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_packgate"))
            .args([
                "run",
                "--http-listen",
                "127.0.0.1:0",
                "--sim",
                "2",
                "--config",
            ])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let database = data_dir.join("samples.db");
    let stored = || stored_count(&database);
    assert!(
        eventually(Duration::from_secs(30), || stored() >= 4).await,
        "nothing stored; log:\n{}",
        log()
    );

    // Eight seconds without the broker: each of the connections tries
    // again every 2 s at most, which used to be a line per attempt each.
    let before = log().lines().count();
    server.stop().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after_outage = stored();
    server.restart().await.unwrap();
    assert!(
        eventually(Duration::from_secs(20), || stored() > after_outage + 4).await,
        "storing did not resume; log:\n{}",
        log()
    );
    // Pulls whose heartbeats went missing during the outage are reopened
    // now: quietly, as the outage's consequence.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = log();
    let during: Vec<&str> = text.lines().skip(before).collect();
    let during = during.join("\n");
    assert_eq!(count(&during, "broker connection lost"), 1, "{during}");
    assert_eq!(count(&during, "broker reachable again"), 1, "{during}");
    assert_eq!(count(&during, "IO error"), 0, "{during}");
    assert_eq!(count(&during, "pull lost"), 0, "{during}");
    // Nothing else but a line per change of state, each said once: the
    // link's two, and the collector's (a publish cut off by the outage,
    // publishing again, resending what the broker may have lost).
    let changes = [
        "broker connection lost",
        "broker reachable again",
        "publish not acknowledged; retrying",
        "publishing again",
        "reconnected to the broker: sending the last acknowledged messages again",
    ];
    // A loaded test machine may also make a poll late: said once per
    // late round, whatever the broker does.
    let load = "cannot keep its poll period";
    for line in during.lines() {
        assert!(
            line.contains(load) || changes.iter().any(|change| line.contains(change)),
            "not a change of state: {line}\n{during}"
        );
    }
    for change in changes {
        assert!(count(&during, change) <= 1, "{change} twice:\n{during}");
    }
    sigterm_and_wait(&mut gateway.0);
    server.stop().await;
}
