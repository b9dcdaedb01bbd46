//! The cloud worker: the uplink. It uploads samples and events from the
//! local streams to the cloud's JetStream (store and forward), and serves
//! control requests from the cloud by passing them to the local control
//! worker.
//!
//! # The cloud side
//!
//! The cloud is a NATS server or cluster with JetStream, reached on its own
//! connection (`[cloud]` in the configuration: URLs, one kind of
//! authentication, TLS). Each gateway has an id, one subject token, and
//! uses these subjects there:
//!
//! | subject                                   | what                                         |
//! |-------------------------------------------|----------------------------------------------|
//! | `packgate.<gateway_id>.samples.<pack>`    | samples, published to JetStream               |
//! | `packgate.<gateway_id>.events.<pack>`     | events (alarms, online/offline), to JetStream |
//! | `packgate.<gateway_id>.control`           | control requests, served by request-reply     |
//! | `packgate.<gateway_id>.desired.<pack>.<setting>` | reports on desired settings, to JetStream ([`desired`]) |
//! | `_INBOX.<gateway_id>.>`                   | the worker's replies (publish acks, API answers) |
//!
//! Payloads are the local ones, unchanged (postcard in the packgate
//! envelope). Every uploaded message carries the local de-duplication id in
//! `Nats-Msg-Id`: `pack:boot:seq` for samples, `pack:boot:e<seq>` for
//! events, so a batch sent again (a lost ack, a retry, a restart of the
//! gateway) is stored once. Publishes also carry `Nats-Expected-Stream:
//! <stream_name>`.
//!
//! The cloud stream (`stream_name`, default `PACKGATE_CLOUD`) must capture
//! `packgate.<gateway_id>.samples.>`, `packgate.<gateway_id>.events.>` and
//! `packgate.<gateway_id>.desired.>` (or `packgate.*.samples.>`,
//! `packgate.*.events.>` and `packgate.*.desired.>` for many gateways),
//! but **not** `packgate.<gateway_id>.control`: a stream capturing the
//! control subject would answer control requests with its own publish ack.
//! Its `duplicate_window` should be at least 10 minutes: the window only
//! has to cover a batch in flight (after an outage the replay is of
//! messages the cloud never acknowledged, so there is nothing to
//! de-duplicate), but a local ack lost after the cloud took a batch brings
//! the batch back after the consumer's ack wait (2 minutes). With
//! `create_stream = true` the gateway creates a file stream like that when
//! it is missing; it never changes an existing one.
//!
//! A control request's payload is an encoded `Command`; its origin is set
//! to `Cloud` whatever it says. The reply is the control worker's encoded
//! `CommandReply`, unchanged; when the control worker does not answer
//! before the command expires the reply is `TimedOut`, when none is running
//! `Failed`, and a request that does not decode gets `Rejected`.
//!
//! # Guarantees
//!
//! The local stream is the buffer: the worker reads it through durable pull
//! consumers (`packgate-cloud-samples`, `packgate-cloud-events`) whose
//! `max_ack_pending` is one batch, and acks a batch only after the cloud
//! acked every message of it. A failed batch is kept and retried with
//! exponential backoff, and nothing more is fetched meanwhile: memory is one
//! batch per stream however long the outage, and each pack's messages reach
//! the cloud in local stream order. The backlog drains at most at
//! `max_rate_per_s`. A stop does not wait for the cloud: the batch in hand
//! is handed back (naks the local broker confirms), and the broker gives
//! those messages to the next start before any newer one, so the order
//! holds across restarts too.
//!
//! The link is up while the connection is open and the cloud answers: an
//! upload without an ack takes it down (a server hung with its socket
//! open), and single-message probes bring it back. Why it is down
//! ([`CloudLinkFault`]) is logged once per change and carried in the
//! metrics snapshot's notes to `packgate status`.

mod control;
pub mod desired;
mod fault;
mod link;
mod mark;
mod metrics;
mod requester;
mod state;
mod uploader;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
pub use packgate_protocol::names::cloud::{
    control_subject, stream_subjects as cloud_stream_subjects, uplink_subject as cloud_subject,
};
use packgate_protocol::names::ConsumerSpec;
pub use packgate_protocol::names::{CLOUD_EVENTS_CONSUMER, CLOUD_SAMPLES_CONSUMER};
use tokio_util::sync::CancellationToken;

pub use crate::config::{CloudConfig, CloudConfigError};
pub use fault::CloudLinkFault;
pub use metrics::CloudMetrics;
pub use requester::request_command;
use uploader::{Kind, RateLimit, Uploader};

use super::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use futures_util::future::BoxFuture;

/// The cloud's retry policy: 250 ms doubled per failed attempt, up to `max`.
fn cloud_backoff(max: Duration) -> crate::retry::Backoff {
    crate::retry::Backoff::new(Duration::from_millis(250), max)
}

/// The uploaders' consumers: at most one batch in hand each.
fn uplink_consumers(config: &CloudConfig) -> [(Kind, ConsumerSpec); 2] {
    let max_ack_pending = i64::try_from(config.batch_max_samples).unwrap_or(i64::MAX);
    [
        (
            Kind::Samples,
            ConsumerSpec {
                max_ack_pending,
                ..CLOUD_SAMPLES_CONSUMER
            },
        ),
        (
            Kind::Events,
            ConsumerSpec {
                max_ack_pending,
                ..CLOUD_EVENTS_CONSUMER
            },
        ),
    ]
}

/// How often the backlog gauge is refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(3);

/// Why the cloud worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The `[cloud]` section breaks a rule.
    #[error("invalid cloud configuration: {0}")]
    Config(#[from] CloudConfigError),
    /// The `.creds` file could not be read.
    #[error("cannot read the cloud credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The connection options are unusable (such as a malformed URL), or
    /// a one-off connection failed.
    #[error("cannot connect to the cloud at {urls}: {reason}")]
    Connect {
        /// The configured URLs.
        urls: String,
        /// Why.
        reason: String,
    },
    /// Nothing serves a gateway's control subject in the cloud.
    #[error("no gateway serves {subject}: is that gateway connected to this cloud, its cloud worker running?")]
    NoGateway {
        /// The control subject.
        subject: String,
    },
    /// A control request got no reply.
    #[error("control request on {subject} failed: {reason}")]
    Request {
        /// The control subject.
        subject: String,
        /// Why.
        reason: String,
    },
    /// A reply that is not a command reply.
    #[error("the gateway's reply does not decode: {reason}")]
    Reply {
        /// Why.
        reason: String,
    },
    /// Reading or writing the desired-settings bucket failed.
    #[error("desired settings: {reason}")]
    Desired {
        /// Why.
        reason: String,
    },
}

/// Creates the cloud stream if it is missing (with `create_stream`); an
/// existing stream is left as it is.
async fn ensure_cloud_stream(js: &jetstream::Context, config: &CloudConfig) {
    let timeout = config.request_timeout();
    if let Ok(Ok(_)) = tokio::time::timeout(timeout, js.get_stream(&config.stream_name)).await {
        return;
    }
    let want = stream::Config {
        name: config.stream_name.clone(),
        subjects: cloud_stream_subjects(&config.gateway_id),
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    };
    match tokio::time::timeout(timeout, js.create_stream(want)).await {
        Ok(Ok(_)) => tracing::info!(stream = %config.stream_name, "cloud stream created"),
        Ok(Err(error)) => {
            tracing::error!(%error, stream = %config.stream_name, "cannot create the cloud stream")
        }
        Err(_) => {
            tracing::warn!(stream = %config.stream_name, "creating the cloud stream timed out")
        }
    }
}

/// Refreshes the backlog gauge: messages of both local consumers the cloud
/// has not acknowledged (pending plus in hand).
async fn run_backlog(
    local_js: jetstream::Context,
    timeout: Duration,
    metrics: Arc<CloudMetrics>,
    shutdown: CancellationToken,
) {
    loop {
        let mut total: i64 = 0;
        for spec in [&CLOUD_SAMPLES_CONSUMER, &CLOUD_EVENTS_CONSUMER] {
            let info = tokio::time::timeout(timeout, async {
                let stream = local_js.get_stream(spec.stream).await.ok()?;
                stream.consumer_info(spec.durable).await.ok()
            })
            .await;
            if let Ok(Some(info)) = info {
                let pending = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                let in_hand = i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX);
                total = total.saturating_add(pending).saturating_add(in_hand);
            }
        }
        metrics.backlog.set(total);
        tokio::select! {
            () = tokio::time::sleep(BACKLOG_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The cloud worker, built from its `[cloud]` section.
#[derive(Debug)]
pub struct CloudWorker {
    config: CloudConfig,
    metrics: Arc<CloudMetrics>,
}

impl CloudWorker {
    /// An uplink to the cloud of `config`.
    pub fn new(config: CloudConfig) -> Self {
        Self {
            config,
            metrics: Arc::new(CloudMetrics::default()),
        }
    }
}

impl Worker for CloudWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Cloud
    }

    fn consumers(&self) -> Vec<ConsumerSpec> {
        uplink_consumers(&self.config)
            .into_iter()
            .map(|(_, spec)| spec)
            .collect()
    }

    fn metrics(&self) -> WorkerMetrics {
        WorkerMetrics::new(Arc::clone(&self.metrics))
    }

    fn run(
        self: Box<Self>,
        ctx: WorkerContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), WorkerError>> {
        Box::pin(async move {
            let data_dir = Some(ctx.data_dir.as_path());
            run(
                &self.config,
                data_dir,
                ctx.client,
                ctx.js,
                self.metrics,
                shutdown,
            )
            .await
            .map_err(|error| WorkerError::new(WorkerKind::Cloud, error))
        })
    }
}

/// Runs the cloud worker until `shutdown`: the link, an uploader per local
/// stream, the control bridge and the backlog gauge. Returns at once when
/// `cloud.enabled` is false. A batch in hand at shutdown is handed back to
/// the local stream for the next start. (The worker run by the supervisor
/// also keeps the time of its last upload in its data directory, for the
/// upload lag at the next start.)
pub async fn run_cloud(
    cloud: &CloudConfig,
    local: async_nats::Client,
    local_js: jetstream::Context,
    metrics: Arc<CloudMetrics>,
    shutdown: CancellationToken,
) -> Result<(), CloudError> {
    run(cloud, None, local, local_js, metrics, shutdown).await
}

/// [`run_cloud`], keeping the time of the last upload in `data_dir` when
/// given.
async fn run(
    cloud: &CloudConfig,
    data_dir: Option<&Path>,
    local: async_nats::Client,
    local_js: jetstream::Context,
    metrics: Arc<CloudMetrics>,
    shutdown: CancellationToken,
) -> Result<(), CloudError> {
    if !cloud.enabled {
        tracing::info!("cloud worker disabled (cloud.enabled = false)");
        return Ok(());
    }
    cloud.validate()?;
    cloud.check_files()?;
    let config = Arc::new(cloud.clone());
    let link = link::open(&config, Arc::clone(&metrics), shutdown.clone()).await?;
    tracing::info!(
        urls = %config.urls.join(","),
        gateway_id = %config.gateway_id,
        stream = %config.stream_name,
        "cloud worker started"
    );
    if config.create_stream {
        spawn_stream_creation(&link, &config, &shutdown);
    }
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(dir) = data_dir {
        keep_upload_mark(&mut tasks, dir, &metrics, &shutdown).await;
    }
    spawn_uploaders(&mut tasks, &config, &local_js, &link, &metrics, &shutdown);
    desired::spawn(
        &mut tasks,
        &config,
        &link,
        &local,
        data_dir.map(Path::to_owned),
        &metrics,
        &shutdown,
    )
    .await;
    tasks.spawn(control::run_bridge(
        Arc::clone(&config),
        link.client.clone(),
        link.state.connected(),
        local,
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    tasks.spawn(run_backlog(
        local_js,
        config.request_timeout(),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    while let Some(done) = tasks.join_next().await {
        if let Err(error) = done {
            tracing::error!(%error, "cloud worker task failed");
        }
    }
    if link.state.is_connected() {
        // The last control replies go out; a link down has nothing to send.
        let _ = tokio::time::timeout(Duration::from_secs(2), link.client.flush()).await;
    }
    metrics.set_link_up(false);
    Ok(())
}

/// Creates the cloud stream, if missing, once the link is first up.
fn spawn_stream_creation(
    link: &link::CloudLink,
    config: &Arc<CloudConfig>,
    shutdown: &CancellationToken,
) {
    let (js, config, shutdown) = (link.js.clone(), Arc::clone(config), shutdown.clone());
    let mut up = link.state.up();
    tokio::spawn(async move {
        let connected = tokio::select! {
            up = up.wait_for(|up| *up) => up.is_ok(),
            () = shutdown.cancelled() => false,
        };
        if connected {
            ensure_cloud_stream(&js, &config).await;
        }
    });
}

/// Reads the time of the last upload an earlier run kept in `dir` (so
/// the lag is known at once), and keeps this run's there.
async fn keep_upload_mark(
    tasks: &mut tokio::task::JoinSet<()>,
    dir: &Path,
    metrics: &Arc<CloudMetrics>,
    shutdown: &CancellationToken,
) {
    if let Some(timestamp_ms) = mark::load_in_background(dir.to_owned()).await {
        metrics.set_last_uploaded(timestamp_ms);
    }
    tasks.spawn(mark::run_saver(
        dir.to_owned(),
        mark::SAVE_EVERY,
        Arc::clone(metrics),
        shutdown.clone(),
    ));
}

/// An uploader per local stream, sharing the link and one rate limit.
fn spawn_uploaders(
    tasks: &mut tokio::task::JoinSet<()>,
    config: &Arc<CloudConfig>,
    local_js: &jetstream::Context,
    link: &link::CloudLink,
    metrics: &Arc<CloudMetrics>,
    shutdown: &CancellationToken,
) {
    let rate = Arc::new(RateLimit::new(config.max_rate_per_s));
    for (kind, spec) in uplink_consumers(config) {
        let uploader = Uploader {
            kind,
            spec,
            config: Arc::clone(config),
            local_js: local_js.clone(),
            cloud_js: link.js.clone(),
            link: Arc::clone(&link.state),
            rate: Arc::clone(&rate),
            metrics: Arc::clone(metrics),
        };
        tasks.spawn(uploader.run(shutdown.clone()));
    }
}
