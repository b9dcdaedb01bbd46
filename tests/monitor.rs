//! End to end: every worker's metrics snapshots and the packs' events
//! through a real nats-server into the monitor's database, and
//! `packgate status` with and without the broker.

// Test code: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use packgate::cli::status::status;
use packgate::config::{Config, ConfigSource};
use packgate::runtime::Broker;
use packgate::telemetry::snapshot::{
    publish_snapshot, spawn_metrics_publisher, take_snapshot, MetricsSource,
};
use packgate::workers::collect::{Collector, PackSet};
use packgate::workers::control::AuditStore;
use packgate::workers::data::{run_data, DataMetrics};
use packgate::workers::monitor::{run_monitor, MonitorMetrics, MonitorStore};
use packgate::workers::WorkerKind;
use packgate_protocol::{
    names, Command as PackCommand, CommandId, CommandOrigin, CommandOutcome, CommandReply, PackId,
    SettingName,
};
use support::*;
use tokio_util::sync::CancellationToken;

/// A worker with no counters of its own.
struct NoMetrics;

impl MetricsSource for NoMetrics {
    fn counters(&self) -> Vec<(String, u64)> {
        vec![]
    }
}

async fn status_text(config: &Config, client: Option<async_nats::Client>) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        status(config, &ConfigSource::Defaults, client, &mut out),
    )
    .await
    .expect("status answers in time")
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// The line of `status` output that starts (after indentation) with `name`.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

/// Writes an applied command `id` into the control audit at `path`,
/// through the control worker's own store.
fn audit_command(path: &std::path::Path, id: &str, value: f64) {
    let store = AuditStore::open(path).unwrap();
    let now = packgate::telemetry::now_ms();
    let command = PackCommand {
        id: CommandId(id.into()),
        pack_id: PackId::new("sim-01").unwrap(),
        setting: SettingName("charge_current_limit_a".into()),
        value,
        origin: CommandOrigin::Cloud,
        issued_at_ms: now - 5_000,
        expires_at_ms: now + 25_000,
    };
    store.begin(&command, now - 5_000).unwrap();
    let reply = CommandReply {
        command_id: command.id.clone(),
        outcome: CommandOutcome::Applied { read_back: value },
    };
    store.complete(&reply, now - 4_900).unwrap();
}

/// A control audit database where the control worker writes it by default.
fn seed_control_db(config: &Config) {
    audit_command(&config.data_dir.join("control.db"), "cmd-1", 40.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_stores_every_workers_snapshots_and_status_shows_them() {
    let mut broker = TestBroker::start().await;
    let mut config = sim_config(&broker.url(), broker.dir.path(), 2, 100);
    config.monitor.snapshot_interval_s = 1;
    std::fs::create_dir_all(&config.data_dir).unwrap();
    seed_control_db(&config);
    let connection = Broker::open(&config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    connection.ensure_streams(&config, &shutdown).await.unwrap();
    let js = connection.js.clone();

    let collector = Collector::start(
        &config.collect,
        PackSet::from_config(&config).unwrap(),
        js.clone(),
        connection.client.clone(),
        shutdown.clone(),
    );
    let data_metrics = Arc::new(DataMetrics::default());
    let data = tokio::spawn(run_data(
        config.data.clone(),
        config.database_path(),
        js.clone(),
        Arc::clone(&data_metrics),
        shutdown.clone(),
    ));
    let interval = Duration::from_millis(500);
    let collect_source: Arc<dyn MetricsSource> = collector.metrics.clone();
    let data_source: Arc<dyn MetricsSource> = data_metrics.clone();
    let publishers = [
        spawn_metrics_publisher(
            js.clone(),
            "collect",
            interval,
            collect_source,
            shutdown.clone(),
        ),
        spawn_metrics_publisher(js.clone(), "data", interval, data_source, shutdown.clone()),
    ];
    let monitor_metrics = Arc::new(MonitorMetrics::default());
    let monitor = {
        let (config, js, metrics, shutdown) = (
            config.clone(),
            js.clone(),
            Arc::clone(&monitor_metrics),
            shutdown.clone(),
        );
        tokio::spawn(async move { run_monitor(&config, js, metrics, shutdown).await })
    };

    let path = config.monitor.database_path(&config.data_dir);
    snapshots_and_presence_reach_the_database(&path, &monitor_metrics).await;
    a_malformed_metrics_message_is_counted(&js, &monitor_metrics).await;
    a_cloud_snapshot_is_stored(&js, &path).await;
    status_through_the_broker_shows_everything(&config, &connection.client).await;

    shutdown.cancel();
    collector.finish().await;
    data.await.unwrap().unwrap();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    monitor.await.unwrap().unwrap();
    assert_eq!(monitor_metrics.messages_malformed.get(), 1);
    assert_eq!(monitor_metrics.store_failures.get(), 0);

    // Without a broker, status still prints what the databases know.
    let client = connection.client.clone();
    broker.server.stop().await;
    for client in [None, Some(client)] {
        let text = status_text(&config, client).await;
        assert!(text.contains("Broker: unreachable"), "{text}");
        for worker in WorkerKind::expected(&config) {
            line_of(&text, worker.name());
        }
        for pack in ["sim-01", "sim-02"] {
            let line = line_of(&text, pack);
            assert!(
                line.contains("pack online") && line.contains(" ago"),
                "{text}"
            );
        }
        assert!(text.contains("cmd-1"), "{text}");
    }
}

/// Snapshots of both workers, and each pack online, reach the database
/// at `path`.
async fn snapshots_and_presence_reach_the_database(
    path: &std::path::Path,
    monitor_metrics: &MonitorMetrics,
) {
    let stored = || -> bool {
        let Ok(store) = MonitorStore::open_read_only(path) else {
            return false;
        };
        let snapshots = ["collect", "data"]
            .iter()
            .all(|w| store.snapshot_count(w).unwrap() >= 3);
        let online = ["sim-01", "sim-02"].iter().all(|p| {
            store
                .last_presence(p)
                .unwrap()
                .is_some_and(|e| e.kind == "pack_online")
        });
        snapshots && online
    };
    assert!(
        eventually(Duration::from_secs(20), stored).await,
        "{monitor_metrics:?}"
    );
    let store = MonitorStore::open_read_only(path).unwrap();
    let latest = store.latest_snapshots().unwrap();
    let collect = latest.iter().find(|s| s.worker == "collect").unwrap();
    assert!(collect.rss_bytes > 0);
    assert!(collect
        .counters
        .iter()
        .any(|(n, v)| n == "samples_published" && *v > 0));
}

/// A malformed message on the metrics stream is counted and terminated.
async fn a_malformed_metrics_message_is_counted(
    js: &async_nats::jetstream::Context,
    monitor_metrics: &MonitorMetrics,
) {
    js.publish(names::metrics_subject("bogus"), vec![0xde, 0xad].into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || monitor_metrics
            .messages_malformed
            .get()
            == 1)
        .await
    );
}

/// A cloud worker's snapshot, giving the link and its backlog, is stored
/// in the database at `path`.
async fn a_cloud_snapshot_is_stored(js: &async_nats::jetstream::Context, path: &std::path::Path) {
    let mut cloud = take_snapshot(
        "cloud",
        "elsewhere/1",
        std::time::Instant::now(),
        &NoMetrics,
    );
    cloud.gauges = vec![("link_up".to_owned(), 1.0), ("backlog".to_owned(), 42.0)];
    publish_snapshot(js, &cloud).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || MonitorStore::open_read_only(
            path
        )
        .unwrap()
        .snapshot_count("cloud")
        .unwrap()
            == 1)
        .await
    );
}

/// Status through the broker: workers alive or missing, packs online
/// with the age of their last sample, streams and lags, commands.
async fn status_through_the_broker_shows_everything(config: &Config, client: &async_nats::Client) {
    let text = status_text(config, Some(client.clone())).await;
    for worker in ["collect", "data"] {
        assert!(line_of(&text, worker).contains("alive"), "{text}");
    }
    // The cloud worker's snapshot arrived, but it has no consumers here.
    let cloud_line = line_of(&text, "cloud");
    assert!(
        cloud_line.contains("stalled")
            && cloud_line.contains("NOT healthy: consumer packgate-cloud-samples missing"),
        "{text}"
    );
    for worker in ["control", "monitor"] {
        assert!(line_of(&text, worker).contains("missing"), "{text}");
    }
    for pack in ["sim-01", "sim-02"] {
        let line = line_of(&text, pack);
        assert!(line.contains("online") && line.contains(" ago"), "{text}");
    }
    for name in [
        names::SAMPLES_STREAM.name,
        "packgate-data",
        "packgate-monitor-metrics",
        "packgate-monitor-events",
        "cmd-1",
        "up, backlog 42",
        "Broker: reachable",
    ] {
        assert!(text.contains(name), "{name} missing in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_status_without_broker_or_databases_still_prints() {
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config("nats://127.0.0.1:1", dir.path(), 2, 1000);
    let text = status_text(&config, None).await;
    for worker in WorkerKind::expected(&config) {
        assert!(line_of(&text, worker.name()).contains("missing"), "{text}");
    }
    for pack in ["sim-01", "sim-02"] {
        assert!(line_of(&text, pack).contains("unknown"), "{text}");
    }
    assert!(text.contains("Broker: unreachable"), "{text}");
    assert!(text.contains("control.db does not exist"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_audit_where_control_database_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sim_config("nats://127.0.0.1:1", dir.path(), 1, 1000);
    config.control.database = "audit/commands.sqlite".into();
    std::fs::create_dir_all(dir.path().join("audit")).unwrap();
    audit_command(&dir.path().join("audit/commands.sqlite"), "ops-7", 35.0);
    // A file at the default name must not be what status reads.
    audit_command(&dir.path().join("control.db"), "decoy-1", 10.0);

    let text = status_text(&config, None).await;
    let line = text
        .lines()
        .find(|l| l.ends_with("[ops-7]"))
        .unwrap_or_else(|| panic!("no line of ops-7 in:\n{text}"));
    assert!(line.trim_start().starts_with("5."), "{text}");
    assert!(
        line.contains("sim-01") && line.contains("charge_current_limit_a = 35 from cloud"),
        "{text}"
    );
    assert!(line.contains(": applied read back 35  "), "{text}");
    assert!(!text.contains("decoy-1"), "{text}");

    // Without the file, status says which file it looked for.
    config.control.database = "elsewhere.db".into();
    let text = status_text(&config, None).await;
    assert!(text.contains("elsewhere.db does not exist"), "{text}");
    assert!(
        !text.contains("ops-7") && !text.contains("decoy-1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_workers_the_configuration_disables_as_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sim_config("nats://127.0.0.1:1", dir.path(), 1, 1000);
    config.cloud.enabled = false;
    config.http.enabled = false;
    assert!(config.outputs.alarm_relay.is_none() && config.outputs.status_led.is_none());
    // The snapshot of a cloud worker from before the cloud was disabled,
    // an hour old.
    let mut store = MonitorStore::open(&config.monitor.database_path(&config.data_dir)).unwrap();
    let mut old = take_snapshot("cloud", "box/1", std::time::Instant::now(), &NoMetrics);
    old.timestamp_ms -= 3_600_000;
    store.insert_batch(&[old], &[]).unwrap();

    let text = status_text(&config, None).await;
    assert!(
        line_of(&text, "cloud").contains("disabled (cloud.enabled = false)"),
        "{text}"
    );
    assert!(
        line_of(&text, "http").contains("disabled (http.enabled = false)"),
        "{text}"
    );
    assert!(
        line_of(&text, "outputs").contains("disabled (no [outputs] configured)"),
        "{text}"
    );
    // The workers that are configured to run, and do not, are missing.
    for worker in ["collect", "data", "control", "monitor"] {
        assert!(line_of(&text, worker).contains("missing"), "{text}");
    }

    // A disabled worker that sends snapshots anyway (run by another
    // process with another configuration) is shown as it is.
    let running = take_snapshot("http", "elsewhere/2", std::time::Instant::now(), &NoMetrics);
    store.insert_batch(&[running], &[]).unwrap();
    let text = status_text(&config, None).await;
    assert!(line_of(&text, "http").contains("alive"), "{text}");
}
