//! The cloud worker against two real nats-servers, one local and one
//! standing in for the cloud: an outage of the cloud loses and duplicates
//! nothing and does not grow memory, wrong credentials are reported and
//! lose nothing, and a cloud that hangs (SIGSTOP) takes the link down and
//! back with nothing lost or duplicated.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use packgate::telemetry::snapshot::MetricsSource;
use packgate::workers::cloud::{CloudConfig, CloudMetrics, CLOUD_SAMPLES_CONSUMER};
use packgate_protocol::names::SAMPLES_STREAM;
use support::cloud::*;
use support::*;
use tokio_util::sync::CancellationToken;

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
    // Batches far smaller than the backlog: a worker that kept what waits
    // in memory would hold many times more than the batch it retries.
    let upload = CloudConfig {
        batch_max_samples: 100,
        ..cloud_config(&cloud.url(), gw)
    };
    let worker = start_cloud(&upload, &client, &js, &metrics, &cloud_shutdown);

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
    // Measured (debug build, 3 packs at 10 Hz, batches of 100): RSS about
    // 16.7 MB before, +0.4 to +0.6 MB at the end of the outage with 855
    // messages waiting, +2.0 to +3.4 MB after draining them (the batches
    // in flight, the data worker's SQLite page cache). A worker that kept
    // what waits in memory would fail the 2 MB bound at about 1.7 KB per
    // waiting message, what a received JetStream message with its subject,
    // headers and payload costs.
    assert!(
        rss_outage_end < rss_before + 2.0,
        "RSS grew with the outage: {rss_before:.1} -> {rss_outage_end:.1} MB"
    );
    assert!(
        rss_after < rss_before + 5.0,
        "RSS grew with the drain: {rss_before:.1} -> {rss_after:.1} MB"
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

/// Sends `signal` to the cloud server this test started.
fn signal_server(server: &packgate::broker::NatsServer, signal: i32) {
    let pid = i32::try_from(server.pid().expect("the server runs")).unwrap();
    // SAFETY: kill(2) on the pid of a child this test started and has not
    // reaped (the server is still running, stopped or not).
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, signal);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_cloud_takes_the_link_down_and_back_with_nothing_lost_or_duplicated() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let local = TestBroker::start().await;
    let cloud = TestBroker::start().await;
    let gw = "gw-hung";
    let observer = async_nats::connect(cloud.url()).await.unwrap();
    create_cloud_stream(observer.clone(), gw).await;

    let config = sim_config(&local.url(), local.dir.path(), 3, 100);
    let local_shutdown = CancellationToken::new();
    let (run, client, js) = start_local(&config, &local_shutdown).await;
    let metrics = Arc::new(CloudMetrics::default());
    let cloud_shutdown = CancellationToken::new();
    let upload = cloud_config(&cloud.url(), gw);
    let worker = start_cloud(&upload, &client, &js, &metrics, &cloud_shutdown);
    wait_for("first upload", Duration::from_secs(20), async || {
        metrics.samples_sent.get() > 50
    })
    .await;
    assert!(metrics.link_up());

    // The cloud hangs with its sockets open.
    signal_server(&cloud.server, libc::SIGSTOP);
    let hung = Instant::now();
    let resume = scopeguard(&cloud.server);
    wait_for("the link to go down", Duration::from_secs(15), async || {
        !metrics.link_up()
    })
    .await;
    let noticed = hung.elapsed();
    let error = metrics.last_error().unwrap_or_default();
    assert!(error.contains("does not answer"), "{error}");
    let sent_while_hung = metrics.samples_sent.get();
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(hung.elapsed())).await;
    assert!(
        !metrics.link_up(),
        "the link came back while the cloud hangs"
    );
    assert_eq!(metrics.samples_sent.get(), sent_while_hung);

    drop(resume);
    let resumed = Instant::now();
    wait_for(
        "the link to come back",
        Duration::from_secs(15),
        async || metrics.link_up(),
    )
    .await;
    let back = resumed.elapsed();
    assert_eq!(metrics.last_error(), None);

    local_shutdown.cancel();
    let (report, connection) = run.await.unwrap();
    assert_eq!(report.collect.unwrap().samples_dropped.get(), 0);
    let all = local_count(&local.url()).await;
    wait_for(
        "everything in the cloud",
        Duration::from_secs(30),
        async || cloud_count(&observer).await >= all,
    )
    .await;
    cloud_shutdown.cancel();
    worker.await.unwrap();
    let total = assert_cloud_matches_local(&observer, gw, &config.database_path()).await;
    assert_eq!(cloud_count(&observer).await, all, "duplicates in the cloud");
    println!(
        "hung cloud: link down after {noticed:?}, up {back:?} after SIGCONT; \
         {total} samples in the cloud exactly once; counters {:?}",
        metrics.counters()
    );
    connection.close(&config.data_dir).await;
}

/// Continues the stopped server when dropped, so a failed assertion does
/// not leave it stopped.
fn scopeguard(server: &packgate::broker::NatsServer) -> impl Drop + '_ {
    struct Resume<'a>(&'a packgate::broker::NatsServer);
    impl Drop for Resume<'_> {
        fn drop(&mut self) {
            signal_server(self.0, libc::SIGCONT);
        }
    }
    Resume(server)
}
