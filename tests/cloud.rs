//! The cloud worker against two real nats-servers, one local and one
//! standing in for the cloud: an outage of the cloud loses and duplicates
//! nothing and does not grow memory, wrong credentials are reported and
//! lose nothing, and control requests from the cloud reach the local
//! control subject and come back.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use packgate::runtime::{run_workers, Broker, RunReport, WorkerSet};
use packgate::telemetry::snapshot::MetricsSource;
use packgate::workers::cloud::{
    cloud_stream_subjects, control_subject, run_cloud, CloudConfig, CloudMetrics,
    CLOUD_SAMPLES_CONSUMER,
};
use packgate::workers::collect::PackSet;
use packgate_protocol::names::{CONTROL_SUBJECT, EVENTS_STREAM, SAMPLES_STREAM};
use packgate_protocol::{
    decode, encode, BootId, Command, CommandId, CommandOrigin, CommandOutcome, CommandReply,
    PackId, Sample, SettingName,
};
use support::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The tests share the process's memory and log capture: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Warnings and errors logged by the process, also echoed to stderr.
static LOGS: StdMutex<Vec<u8>> = StdMutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        std::io::stderr().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn cloud_config(url: &str, gateway_id: &str) -> CloudConfig {
    CloudConfig {
        enabled: true,
        urls: vec![url.to_owned()],
        gateway_id: gateway_id.to_owned(),
        upload_interval_ms: 500,
        retry_backoff_max_ms: 1_000,
        request_timeout_ms: 2_000,
        ..CloudConfig::default()
    }
}

/// Creates the cloud stream the way a cloud operator would.
async fn create_cloud_stream(client: async_nats::Client, gateway_id: &str) {
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "PACKGATE_CLOUD".into(),
        subjects: cloud_stream_subjects(gateway_id),
        duplicate_window: Duration::from_secs(600),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Messages in the cloud stream.
async fn cloud_count(client: &async_nats::Client) -> u64 {
    let js = jetstream::new(client.clone());
    match js.get_stream("PACKGATE_CLOUD").await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Samples and events in the local streams.
async fn local_count(url: &str) -> u64 {
    stream_messages(url, SAMPLES_STREAM.name).await + stream_messages(url, EVENTS_STREAM.name).await
}

/// Every sample in the cloud stream, per pack, in cloud stream order.
async fn cloud_samples(
    client: &async_nats::Client,
    gateway_id: &str,
) -> BTreeMap<PackId, Vec<(BootId, u64)>> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("PACKGATE_CLOUD").await.unwrap();
    let reader: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: format!("packgate.{gateway_id}.samples.>"),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut per_pack: BTreeMap<PackId, Vec<(BootId, u64)>> = BTreeMap::new();
    loop {
        let mut batch = reader
            .fetch()
            .max_messages(1_000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            let sample: Sample = decode(&message.payload).unwrap();
            assert_eq!(
                message.subject.as_str(),
                format!("packgate.{gateway_id}.samples.{}", sample.pack_id)
            );
            per_pack
                .entry(sample.pack_id.clone())
                .or_default()
                .push((sample.boot_id, sample.seq));
            got += 1;
        }
        if got == 0 {
            return per_pack;
        }
    }
}

/// Asserts the cloud holds every sample of the local database exactly
/// once, in sequence order per pack; returns the total.
async fn assert_cloud_matches_local(
    cloud: &async_nats::Client,
    gateway_id: &str,
    database: &Path,
) -> usize {
    let in_cloud = cloud_samples(cloud, gateway_id).await;
    let mut local = stored_keys(database);
    assert_eq!(
        in_cloud.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>()
    );
    let mut total = 0;
    for (pack, rows) in &in_cloud {
        assert!(
            rows.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
            "{pack}: cloud order is not sequence order (or a duplicate)"
        );
        let want = local.get_mut(pack).unwrap();
        want.sort_by_key(|(_, seq)| *seq);
        assert_eq!(rows, want, "{pack}: cloud and local differ");
        total += rows.len();
    }
    total
}

type RunHandle = JoinHandle<(RunReport, Broker)>;

/// Starts collect and data against the local broker.
async fn start_local(
    config: &packgate::config::Config,
    shutdown: &CancellationToken,
) -> (RunHandle, async_nats::Client, jetstream::Context) {
    let connection = Broker::open(config, "test").await.unwrap();
    let (client, js) = (connection.client.clone(), connection.js.clone());
    let config = config.clone();
    let shutdown = shutdown.clone();
    let packs = PackSet::from_config(&config).unwrap();
    let handle = tokio::spawn(async move {
        let report = run_workers(&config, WorkerSet::all(), packs, &connection, shutdown)
            .await
            .unwrap();
        (report, connection)
    });
    (handle, client, js)
}

fn start_cloud(
    config: &CloudConfig,
    local: &async_nats::Client,
    local_js: &jetstream::Context,
    metrics: &Arc<CloudMetrics>,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let (config, local, local_js) = (config.clone(), local.clone(), local_js.clone());
    let (metrics, shutdown) = (Arc::clone(metrics), shutdown.clone());
    tokio::spawn(async move {
        run_cloud(&config, local, local_js, metrics, shutdown)
            .await
            .unwrap();
    })
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_mb() -> f64 {
    packgate::telemetry::process::usage(None).rss_bytes as f64 / 1_048_576.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_outage_of_30_s_loses_and_duplicates_nothing_and_memory_stays_flat() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let local = TestBroker::start().await;
    let mut cloud = TestBroker::start().await;
    let gw = "gw-outage";
    let observer = async_nats::connect(cloud.url()).await.unwrap();
    create_cloud_stream(observer.clone(), gw).await;

    let config = sim_config(&local.url(), local.dir.path(), 3, 100);
    let local_shutdown = CancellationToken::new();
    let (run, client, js) = start_local(&config, &local_shutdown).await;
    let metrics = Arc::new(CloudMetrics::default());
    let cloud_shutdown = CancellationToken::new();
    let worker = start_cloud(
        &cloud_config(&cloud.url(), gw),
        &client,
        &js,
        &metrics,
        &cloud_shutdown,
    );

    wait_for("first upload", Duration::from_secs(20), async || {
        metrics.samples_sent.get() > 50
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = rss_mb();

    cloud.server.kill().await;
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!metrics.link_up(), "the link is still up without a cloud");
    tokio::time::sleep(Duration::from_secs(25)).await;
    let backlog = metrics.backlog.get();
    assert!(backlog >= 100, "backlog during the outage: {backlog}");
    let rss_outage_end = rss_mb();
    let outage_len = outage.elapsed();

    let waiting = local_count(&local.url()).await;
    cloud.server.restart().await.unwrap();
    let back = Instant::now();
    let observer = async_nats::connect(cloud.url()).await.unwrap();
    wait_for(
        "the backlog to drain",
        Duration::from_secs(60),
        async || cloud_count(&observer).await >= waiting,
    )
    .await;
    let drain = back.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_mb();

    local_shutdown.cancel();
    let (report, connection) = run.await.unwrap();
    assert_eq!(report.collect.unwrap().samples_dropped.get(), 0);
    let all = local_count(&local.url()).await;
    wait_for("the last batches", Duration::from_secs(30), async || {
        cloud_count(&observer).await >= all
    })
    .await;
    cloud_shutdown.cancel();
    worker.await.unwrap();

    let total = assert_cloud_matches_local(&observer, gw, &config.database_path()).await;
    assert_eq!(
        total as u64,
        stream_messages(&local.url(), SAMPLES_STREAM.name).await
    );
    assert_eq!(
        cloud_count(&observer).await,
        all,
        "cloud holds more than the local streams"
    );
    println!(
        "outage {outage_len:?}: {backlog} messages waited; drained {waiting} in {drain:?} \
         after the cloud came back; {total} samples in the cloud exactly once; \
         RSS before {rss_before:.1} MB, end of outage {rss_outage_end:.1} MB, after {rss_after:.1} MB; \
         counters {:?}",
        metrics.counters()
    );
    assert!(metrics.batches_failed.get() > 0);
    assert!(
        rss_after < rss_before + 20.0 && rss_outage_end < rss_before + 20.0,
        "RSS grew with the outage: {rss_before:.1} -> {rss_outage_end:.1} -> {rss_after:.1} MB"
    );
    connection.close(&config.data_dir).await;
}

/// A nats-server whose JetStream account needs a user and password, from a
/// configuration file written here (the shared server options take no
/// configuration file).
struct AuthServer {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    async fn start(user: &str, pass: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = packgate::broker::server::free_port().unwrap();
        let exe = std::env::var_os("PACKGATE_NATS_SERVER").unwrap_or_else(|| {
            if Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        // An account with JetStream, as a cloud operator would set it up.
        let conf = dir.path().join("cloud.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\n\
                 jetstream {{ store_dir: {:?} }}\n\
                 accounts {{ CLOUD {{ jetstream: enabled, users: [{{ user: {user:?}, password: {pass:?} }}] }} }}\n",
                dir.path().join("store")
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts");
        let url = format!("nats://127.0.0.1:{port}");
        let server = Self {
            child,
            url,
            _dir: dir,
        };
        let (user, pass) = (user.to_owned(), pass.to_owned());
        wait_for("the auth server", Duration::from_secs(10), async || {
            let client =
                async_nats::ConnectOptions::with_user_and_password(user.clone(), pass.clone())
                    .connect(&server.url)
                    .await;
            let Ok(client) = client else { return false };
            // JetStream answers: the stream is not there (yet).
            matches!(
                jetstream::new(client).get_stream("PROBE").await,
                Err(e) if e.to_string().contains("not found")
            )
        })
        .await;
        server
    }

    async fn client(&self, user: &str, pass: &str) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
            .connect(&self.url)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_cloud_credentials_are_reported_retried_with_backoff_and_lose_nothing() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let local = TestBroker::start().await;
    let mut cloud = AuthServer::start("gateway", "right").await;
    let gw = "gw-auth";
    let observer = cloud.client("gateway", "right").await;
    create_cloud_stream(observer.clone(), gw).await;

    let config = sim_config(&local.url(), local.dir.path(), 3, 100);
    let local_shutdown = CancellationToken::new();
    let (run, client, js) = start_local(&config, &local_shutdown).await;
    let mut wrong = cloud_config(&cloud.url, gw);
    wrong.user = Some("gateway".into());
    wrong.password = Some("wrong".into());
    let metrics = Arc::new(CloudMetrics::default());
    let shutdown = CancellationToken::new();
    let worker = start_cloud(&wrong, &client, &js, &metrics, &shutdown);

    tokio::time::sleep(Duration::from_secs(6)).await;
    let failures = metrics.auth_failures.get();
    assert!(failures > 0, "no auth failure counted");
    // Backoff of 250 ms doubling to 1 s: a handful in 6 s, not a tight loop.
    assert!(failures <= 15, "{failures} attempts in 6 s: no backoff");
    assert!(!metrics.link_up());
    assert!(
        metrics
            .last_error()
            .is_some_and(|e| e.contains("cloud rejected the credentials")),
        "{:?}",
        metrics.last_error()
    );
    let logged = logs();
    let lines = logged
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("cloud rejected the credentials"))
        .count();
    assert!(lines >= 1, "no clear error logged");
    assert!(
        lines < failures as usize || failures == 1,
        "logged on every attempt"
    );
    assert_eq!(metrics.samples_sent.get(), 0);
    assert_eq!(cloud_count(&observer).await, 0);
    let info = js
        .get_stream(SAMPLES_STREAM.name)
        .await
        .unwrap()
        .consumer_info(CLOUD_SAMPLES_CONSUMER.durable)
        .await
        .unwrap()
        .clone();
    assert!(
        info.num_ack_pending + info.num_pending as usize > 0,
        "local messages were acked without the cloud: {info:?}"
    );
    shutdown.cancel();
    worker.await.unwrap();

    // The password fixed, the worker restarted: everything arrives.
    let mut right = wrong.clone();
    right.password = Some("right".into());
    let metrics = Arc::new(CloudMetrics::default());
    let shutdown = CancellationToken::new();
    let worker = start_cloud(&right, &client, &js, &metrics, &shutdown);
    tokio::time::sleep(Duration::from_secs(2)).await;
    local_shutdown.cancel();
    let (_report, connection) = run.await.unwrap();
    let all = local_count(&local.url()).await;
    wait_for(
        "everything in the cloud",
        Duration::from_secs(30),
        async || cloud_count(&observer).await >= all,
    )
    .await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(metrics.auth_failures.get(), 0);
    let total = assert_cloud_matches_local(&observer, gw, &config.database_path()).await;
    assert_eq!(cloud_count(&observer).await, all);
    println!(
        "wrong password: {failures} rejected attempts; then {total} samples uploaded exactly once"
    );
    connection.close(&config.data_dir).await;
    let _ = cloud.child.kill().await;
}

fn command(id: &str, origin: CommandOrigin, expires_in_ms: i64) -> Command {
    let now = packgate::telemetry::now_ms();
    Command {
        id: CommandId(id.into()),
        pack_id: PackId::new("sim-01").unwrap(),
        setting: SettingName("charge_current_limit_a".into()),
        value: 42.5,
        origin,
        issued_at_ms: now,
        expires_at_ms: now + expires_in_ms,
    }
}

async fn ask(cloud: &async_nats::Client, gw: &str, payload: Vec<u8>) -> (CommandReply, Duration) {
    let start = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        cloud.request(control_subject(gw), payload.into()),
    )
    .await
    .expect("a reply within 10 s")
    .expect("a reply");
    (
        decode::<CommandReply>(&reply.payload).unwrap(),
        start.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_requests_from_the_cloud_reach_the_control_subject_and_come_back() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let local = TestBroker::start().await;
    let cloud = TestBroker::start().await;
    let gw = "gw-ctl";
    let local_client = async_nats::connect(local.url()).await.unwrap();
    let local_js = jetstream::new(local_client.clone());
    packgate::broker::ensure_streams(&local_js, &Default::default())
        .await
        .unwrap();
    let metrics = Arc::new(CloudMetrics::default());
    let shutdown = CancellationToken::new();
    let worker = start_cloud(
        &cloud_config(&cloud.url(), gw),
        &local_client,
        &local_js,
        &metrics,
        &shutdown,
    );
    let requester = async_nats::connect(cloud.url()).await.unwrap();

    // A stand-in control worker: applies every command at once.
    let mut commands = local_client.subscribe(CONTROL_SUBJECT).await.unwrap();
    let seen = Arc::new(StdMutex::new(Vec::new()));
    let responder = {
        let (client, seen) = (local_client.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            while let Some(request) = commands.next().await {
                let command: Command = decode(&request.payload).unwrap();
                let reply = CommandReply {
                    command_id: command.id.clone(),
                    outcome: CommandOutcome::Applied {
                        read_back: command.value,
                    },
                };
                seen.lock().unwrap().push(command);
                client
                    .publish(request.reply.unwrap(), encode(&reply).into())
                    .await
                    .unwrap();
            }
        })
    };
    wait_for("the bridge", Duration::from_secs(10), async || {
        metrics.link_up()
            && requester
                .request(
                    control_subject(gw),
                    encode(&command("probe", CommandOrigin::Cloud, 2_000)).into(),
                )
                .await
                .is_ok()
    })
    .await;

    // A command that claims to be local is passed on as the cloud's, and
    // the control worker's reply comes back byte for byte.
    let (reply, _) = ask(
        &requester,
        gw,
        encode(&command("c-1", CommandOrigin::Local, 5_000)),
    )
    .await;
    let expected = CommandReply {
        command_id: CommandId("c-1".into()),
        outcome: CommandOutcome::Applied { read_back: 42.5 },
    };
    assert_eq!(reply, expected);
    let forwarded = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(forwarded.id, CommandId("c-1".into()));
    assert_eq!(forwarded.origin, CommandOrigin::Cloud);

    // Garbage is rejected without bothering the control worker.
    let before = seen.lock().unwrap().len();
    let (reply, _) = ask(&requester, gw, b"not a command".to_vec()).await;
    assert!(
        matches!(reply.outcome, CommandOutcome::Rejected { .. }),
        "{reply:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), before);

    // No control worker: failed, at once.
    responder.abort();
    let _ = responder.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (reply, took) = ask(
        &requester,
        gw,
        encode(&command("c-2", CommandOrigin::Cloud, 2_000)),
    )
    .await;
    assert!(
        matches!(
            reply.outcome,
            CommandOutcome::Failed { .. } | CommandOutcome::TimedOut
        ),
        "{reply:?}"
    );
    assert_eq!(reply.command_id, CommandId("c-2".into()));
    assert!(took < Duration::from_millis(2_000), "took {took:?}");

    // A control worker that never answers: timed out within the deadline.
    let _silent = local_client.subscribe(CONTROL_SUBJECT).await.unwrap();
    local_client.flush().await.unwrap();
    let (reply, took) = ask(
        &requester,
        gw,
        encode(&command("c-3", CommandOrigin::Cloud, 1_500)),
    )
    .await;
    assert_eq!(reply.outcome, CommandOutcome::TimedOut);
    assert!(took < Duration::from_millis(1_700), "took {took:?}");
    assert!(took >= Duration::from_millis(1_300), "took {took:?}");

    assert!(metrics.control_requests.get() >= 4);
    shutdown.cancel();
    worker.await.unwrap();
}
