//! The five workers as separate processes, started in reverse order,
//! against a local broker and a second one standing in for the cloud.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use packgate::store::SampleStore;
use packgate::workers::monitor::MonitorStore;
use packgate_protocol::{
    decode, encode, names, Command as PackCommand, CommandId, CommandOrigin, CommandOutcome,
    CommandReply, PackId, SettingName,
};
use support::*;

const WORKERS: [&str; 5] = ["cloud", "monitor", "control", "data", "collect"];

fn spawn(worker: &str, config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_packgate"))
        .arg(worker)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn stored(database: &Path) -> u64 {
    SampleStore::open_read_only(database)
        .and_then(|s| s.count())
        .unwrap_or(0)
}

async fn stream_count(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// Each worker, the counter `packgate status` shows for it, and the least
/// value it must have reached.
const EXPECTED_COUNTERS: [(&str, &str, u64); 5] = [
    ("collect", "samples_published", 30),
    ("data", "samples_stored", 30),
    ("cloud", "samples_sent", 1),
    ("control", "commands_received", 2),
    ("monitor", "snapshots_stored", 1),
];

/// The output of `packgate status` with `config`.
fn status_text(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_packgate"))
        .arg("status")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `status` output that starts (after indentation) with `name`.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

/// The value of `counter` on `worker`'s line of `status` output, if the
/// line shows the worker alive and ends with that counter.
fn alive_counter(status: &str, worker: &str, counter: &str) -> Option<u64> {
    let words: Vec<&str> = line_of(status, worker).split_whitespace().collect();
    match words.as_slice() {
        [_, "alive", .., name, value] if name == &counter => value.parse().ok(),
        _ => None,
    }
}

fn workers_seen(database: &Path) -> Vec<String> {
    MonitorStore::open_read_only(database)
        .and_then(|s| s.latest_snapshots())
        .map(|snapshots| snapshots.into_iter().map(|s| s.worker).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_worker_processes_in_reverse_order_converge_and_sigterm_loses_nothing() {
    let local = TestBroker::start().await;
    let cloud = TestBroker::start().await;
    let cloud_client = async_nats::connect(cloud.url()).await.unwrap();
    let cloud_js = jetstream::new(cloud_client.clone());
    cloud_js
        .create_stream(jetstream::stream::Config {
            name: "PACKGATE_CLOUD".into(),
            subjects: vec![
                "packgate.gw1.samples.>".into(),
                "packgate.gw1.events.>".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let data_dir: PathBuf = local.dir.path().join("data");
    let config = write_checked_config(&local, &cloud, &data_dir);

    // Reverse order: the consumers first, the producer last.
    let mut children: BTreeMap<&str, Child> = BTreeMap::new();
    for worker in WORKERS {
        children.insert(worker, spawn(worker, &config));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let samples_db = data_dir.join("samples.db");
    let monitor_db = data_dir.join("monitor.db");
    assert!(
        eventually(Duration::from_secs(30), || stored(&samples_db) >= 30).await,
        "no samples stored"
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            let seen = workers_seen(&monitor_db);
            WORKERS.iter().all(|w| seen.iter().any(|s| s == w))
        })
        .await,
        "the monitor saw only {:?}",
        workers_seen(&monitor_db)
    );

    commands_from_both_sides_are_applied(&config, &cloud_client).await;
    status_shows_every_worker_alive_and_every_pack_online(&config).await;

    // SIGTERM to each worker in turn (and a restart) loses nothing.
    for worker in ["data", "collect", "control", "monitor", "cloud"] {
        let mut child = children.remove(worker).unwrap();
        sigterm_and_wait(&mut child);
        tokio::time::sleep(Duration::from_millis(500)).await;
        children.insert(worker, spawn(worker, &config));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Stop the producer, then let the consumers drain.
    sigterm_and_wait(children.get_mut("collect").unwrap());
    children.remove("collect");
    let local_js = jetstream::new(async_nats::connect(local.url()).await.unwrap());
    let samples = stream_count(&local_js, names::SAMPLES_STREAM.name).await;
    let events = stream_count(&local_js, names::EVENTS_STREAM.name).await;
    assert!(
        eventually(Duration::from_secs(30), || stored(&samples_db) == samples).await,
        "stored {} of {samples}",
        stored(&samples_db)
    );
    let mut in_cloud = 0;
    for _ in 0..300 {
        in_cloud = stream_count(&cloud_js, "PACKGATE_CLOUD").await;
        if in_cloud >= samples + events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        in_cloud,
        samples + events,
        "cloud holds {in_cloud}, local {samples} samples + {events} events"
    );
    for (_, mut child) in children {
        sigterm_and_wait(&mut child);
    }
    each_run_is_stored_once_without_gaps(&samples_db, samples);
}

/// The configuration of the five workers, three simulated packs and the
/// cloud at `cloud`, written into `local`'s directory and checked by
/// `packgate check-config`.
fn write_checked_config(local: &TestBroker, cloud: &TestBroker, data_dir: &Path) -> PathBuf {
    let config = local.dir.path().join("packgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[broker]
url = "{url}"
[collect]
poll_interval_ms = 200
[monitor]
snapshot_interval_s = 1
[cloud]
enabled = true
urls = ["{cloud}"]
gateway_id = "gw1"
upload_interval_ms = 300
[[packs]]
id = "sim-01"
driver = "sim"
[[packs]]
id = "sim-02"
driver = "sim"
[[packs]]
id = "sim-03"
driver = "sim"
"#,
            data = data_dir.display(),
            url = local.url(),
            cloud = cloud.url(),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_packgate"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    config
}

/// A local command, through the control worker to the collector's bus;
/// and one from the cloud side, which takes the same path back.
async fn commands_from_both_sides_are_applied(config: &Path, cloud_client: &async_nats::Client) {
    let out = Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args(["command", "--config"])
        .arg(config)
        .args(["--pack", "sim-01", "set", "charge_current_limit_a", "40"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("applied, read back 40"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let now = packgate::telemetry::now_ms();
    let command = PackCommand {
        id: CommandId("cloud-1".into()),
        pack_id: PackId::new("sim-02").unwrap(),
        setting: SettingName("discharge_current_limit_a".into()),
        value: 55.0,
        origin: CommandOrigin::Cloud,
        issued_at_ms: now,
        expires_at_ms: now + 30_000,
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(15),
        cloud_client.request("packgate.gw1.control", encode(&command).into()),
    )
    .await
    .unwrap()
    .unwrap();
    let reply: CommandReply = decode(&reply.payload).unwrap();
    assert_eq!(reply.outcome, CommandOutcome::Applied { read_back: 55.0 });
}

/// `packgate status` shows every worker alive, each with its key counter
/// above zero in its latest snapshot (the control worker's counts the
/// two commands sent), and every pack online.
async fn status_shows_every_worker_alive_and_every_pack_online(config: &Path) {
    let mut status = String::new();
    for _ in 0..40 {
        status = status_text(config);
        if EXPECTED_COUNTERS
            .iter()
            .all(|(worker, name, least)| alive_counter(&status, worker, name) >= Some(*least))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (worker, name, least) in EXPECTED_COUNTERS {
        let value = alive_counter(&status, worker, name);
        assert!(
            value >= Some(least),
            "{worker}: {name} {value:?}, wanted alive and at least {least}:\n{status}"
        );
    }
    for pack in ["sim-01", "sim-02", "sim-03"] {
        let line = line_of(&status, pack);
        assert!(line.contains(" online "), "{pack} not online:\n{status}");
    }
}

/// Two collector runs: each pack's samples of each run are 1..=n, once,
/// `samples` in all.
fn each_run_is_stored_once_without_gaps(samples_db: &Path, samples: u64) {
    let store = SampleStore::open_read_only(samples_db).unwrap();
    assert_eq!(store.count().unwrap(), samples);
    for pack in store.pack_ids().unwrap() {
        let mut by_boot: BTreeMap<_, Vec<u64>> = BTreeMap::new();
        for (boot, seq) in store.keys_in_insert_order(&pack).unwrap() {
            by_boot.entry(boot).or_default().push(seq);
        }
        assert_eq!(by_boot.len(), 2, "{pack}: runs {:?}", by_boot.keys());
        for (boot, mut seqs) in by_boot {
            seqs.sort_unstable();
            let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(seqs, expected, "{pack} run {boot}: gap or duplicate");
        }
    }
}
