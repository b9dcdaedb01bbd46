//! The service manager's watchdog through a broker outage: a gateway that
//! polls and holds its samples while the broker is unreachable is making
//! progress, so systemd must not kill it (and throw the held backlog
//! away). The other side of the rule, a full disk that stops the feeding,
//! is in `disk_full.rs`; a hung poll loop in the watchdog's unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::notify::Notifications;
use support::*;

/// `WatchdogSec=` as the gateway is told it (fed every half of it).
const WATCHDOG: Duration = Duration::from_secs(2);
/// How long the broker stays down: several watchdog periods.
const OUTAGE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_keeps_the_watchdog_fed_and_loses_nothing() {
    let mut broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("packgate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n[broker]\nurl = \"{url}\"\n[collect]\npoll_interval_ms = 100\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            data = data_dir.display(),
            url = broker.url(),
        ),
    )
    .unwrap();
    let notify_socket = dir.path().join("notify.sock");
    let notifications = Notifications::listen(&notify_socket);
    let log_path = dir.path().join("log");
    let mut gateway = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_packgate"))
            .args(["run", "--sim", "2", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_socket)
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            .env("RUST_LOG", "info")
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
        eventually(Duration::from_secs(30), || stored() >= 20).await,
        "nothing stored before the outage; log:\n{}",
        log()
    );

    broker.server.kill().await;
    let down_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let up_at = Instant::now();
    broker.server.restart().await.unwrap();

    // Fed through the whole outage, never a whole `WatchdogSec=` without.
    let gap = notifications.longest_watchdog_gap(down_at, up_at);
    assert!(
        gap < WATCHDOG,
        "no WATCHDOG=1 for {gap:?} during the outage: systemd would have killed the gateway; \
         statuses: {:?}; log:\n{}",
        notifications.statuses(),
        log()
    );
    assert!(
        notifications
            .statuses()
            .iter()
            .any(|s| s.contains("broker unreachable")),
        "the outage is not in the unit's status: {:?}",
        notifications.statuses()
    );

    // What was held is published and stored once the broker is back.
    let before_stop = stored();
    assert!(
        eventually(Duration::from_secs(60), || stored() > before_stop + 40).await,
        "storing did not resume; log:\n{}",
        log()
    );
    sigterm_and_wait(&mut gateway.0);
    let log = log();
    let published = logged_number(&log, "collect worker stopped", "published").unwrap();
    let dropped = logged_number(&log, "collect worker stopped", "dropped").unwrap();
    let unpublished = logged_number(&log, "collect worker stopped", "unpublished").unwrap();
    // A publish in flight when the broker died is sent again and
    // acknowledged as a duplicate: it was stored once, not lost.
    let duplicates = logged_number(&log, "collect worker stopped", "duplicates").unwrap();
    assert_eq!((dropped, unpublished), (0, 0), "samples lost; log:\n{log}");
    // Every sequence number of both packs, in order, none twice: no gap
    // where the outage was.
    let total = assert_exactly_once(&database, 2, false);
    assert_eq!(
        total,
        published + duplicates,
        "acknowledged but not stored; log:\n{log}"
    );
    assert!(
        notifications.watchdogs_between(up_at, Instant::now()) > 0,
        "not fed after the broker came back"
    );
}
