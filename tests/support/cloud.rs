//! Shared parts of the cloud worker's tests: a stand-in cloud stream,
//! counts and contents on both sides, the local workers and the cloud
//! worker run in the background, and the process's warnings captured.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use packgate::runtime::{run_workers, Broker, RunReport, WorkerSet};
use packgate::workers::cloud::{cloud_stream_subjects, run_cloud, CloudConfig, CloudMetrics};
use packgate::workers::collect::PackSet;
use packgate_protocol::names::{EVENTS_STREAM, SAMPLES_STREAM};
use packgate_protocol::{decode, BootId, PackId, Sample};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{stored_keys, stream_messages};

/// The tests share the process's memory and log capture: one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Warnings and errors logged by the process (and packgate's INFO lines),
/// also echoed to stderr.
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

pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // packgate's own INFO lines too: some tests look for a line that
        // must not be logged before its time.
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let filter: tracing_subscriber::filter::Targets = "warn,packgate=info".parse().unwrap();
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(|| Capture),
            )
            .try_init();
    });
}

pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

pub fn cloud_config(url: &str, gateway_id: &str) -> CloudConfig {
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
pub async fn create_cloud_stream(client: async_nats::Client, gateway_id: &str) {
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
pub async fn cloud_count(client: &async_nats::Client) -> u64 {
    let js = jetstream::new(client.clone());
    match js.get_stream("PACKGATE_CLOUD").await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Samples and events in the local streams.
pub async fn local_count(url: &str) -> u64 {
    stream_messages(url, SAMPLES_STREAM.name).await + stream_messages(url, EVENTS_STREAM.name).await
}

/// Every sample in the cloud stream, per pack, in cloud stream order.
pub async fn cloud_samples(
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
pub async fn assert_cloud_matches_local(
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

pub type RunHandle = JoinHandle<(RunReport, Broker)>;

/// Starts collect and data against the local broker.
pub async fn start_local(
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

pub fn start_cloud(
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

pub async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn rss_mb() -> f64 {
    packgate::telemetry::process::usage(None).rss_bytes as f64 / 1_048_576.0
}
