//! The HTTP worker: the gateway's small web server. It follows every
//! pack's samples and every worker's metrics snapshots on the broker (core
//! subscriptions: it keeps only the latest of each, so it can never hold
//! the pipeline back or grow), and serves them in the Prometheus text
//! format on `/metrics`.
//!
//! The data path never depends on it: a port already in use, a scraper
//! that hangs, a broker hiccup cost this worker alone. A listen address
//! that cannot be bound is retried every few seconds, logged once.

pub mod exposition;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use packgate_protocol::{decode, names, MetricsSnapshot, Sample};
use tokio_util::sync::CancellationToken;

pub use crate::config::HttpConfig;
use exposition::{render, Exposed};

use super::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};

/// Pause between attempts to bind a listen address that failed.
const BIND_RETRY: Duration = Duration::from_secs(5);
/// Packs and worker instances kept at most; more are counted and dropped
/// (a configuration caps packs at 1,000 anyway).
const MAX_ENTRIES: usize = 4_096;

crate::worker_metrics! {
    /// What the HTTP worker has done.
    pub struct HttpMetrics {
        counters {
            /// `/metrics` responses served.
            scrapes,
            /// Samples taken in (the latest per pack is kept).
            samples_seen,
            /// Metrics snapshots taken in.
            snapshots_seen,
            /// Messages on its subjects that did not decode, dropped.
            messages_malformed,
            /// Attempts to bind the listen address that failed.
            bind_failures,
        }
        gauges {
            /// Packs exposed.
            packs_exposed,
        }
        latencies {}
    }
}

/// Why the HTTP worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A subscription could not be made.
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The error.
        source: async_nats::SubscribeError,
    },
}

/// The HTTP worker.
#[derive(Debug)]
pub struct HttpWorker {
    config: HttpConfig,
    metrics: Arc<HttpMetrics>,
}

impl HttpWorker {
    /// A worker serving as `config` says.
    pub fn new(config: HttpConfig) -> Self {
        Self {
            config,
            metrics: Arc::default(),
        }
    }
}

impl Worker for HttpWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Http
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
            run(self.config, ctx.client, self.metrics, shutdown)
                .await
                .map_err(|e| WorkerError::new(WorkerKind::Http, e))
        })
    }
}

/// What the server and the followers share.
#[derive(Debug, Clone)]
struct Shared {
    exposed: Arc<Mutex<Exposed>>,
    metrics: Arc<HttpMetrics>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Exposed) -> R) -> R {
        f(&mut self.exposed.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Follows the broker and serves until `shutdown`.
pub async fn run(
    config: HttpConfig,
    client: async_nats::Client,
    metrics: Arc<HttpMetrics>,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    let shared = Shared {
        exposed: Arc::default(),
        metrics,
    };
    let subscribe = |subject: &'static str| {
        let client = client.clone();
        async move {
            client
                .subscribe(subject)
                .await
                .map_err(|source| HttpError::Subscribe {
                    subject: subject.to_owned(),
                    source,
                })
        }
    };
    let samples = subscribe(names::ALL_SAMPLES_SUBJECT).await?;
    let snapshots = subscribe(names::ALL_METRICS_SUBJECT).await?;
    let follow = tokio::spawn(follow(samples, snapshots, shared.clone()));
    serve(&config, shared, &shutdown).await;
    follow.abort();
    Ok(())
}

/// Keeps the latest sample of each pack and snapshot of each worker.
async fn follow(
    mut samples: async_nats::Subscriber,
    mut snapshots: async_nats::Subscriber,
    shared: Shared,
) {
    loop {
        tokio::select! {
            Some(message) = samples.next() => match decode::<Sample>(&message.payload) {
                Ok(sample) => {
                    shared.metrics.samples_seen.inc();
                    let packs = shared.with(|e| {
                        if e.samples.len() < MAX_ENTRIES || e.samples.contains_key(&sample.pack_id) {
                            e.samples.insert(sample.pack_id.clone(), sample);
                        }
                        e.samples.len()
                    });
                    shared.metrics.packs_exposed.set(packs as i64);
                }
                Err(_) => shared.metrics.messages_malformed.inc(),
            },
            Some(message) = snapshots.next() => match decode::<MetricsSnapshot>(&message.payload) {
                Ok(snapshot) => {
                    shared.metrics.snapshots_seen.inc();
                    shared.with(|e| {
                        let key = (snapshot.worker.clone(), snapshot.instance.clone());
                        if e.snapshots.len() < MAX_ENTRIES || e.snapshots.contains_key(&key) {
                            e.snapshots.insert(key, snapshot);
                        }
                    });
                }
                Err(_) => shared.metrics.messages_malformed.inc(),
            },
            else => return,
        }
    }
}

/// Binds `config.listen` (retrying a failed bind) and serves until
/// `shutdown`.
async fn serve(config: &HttpConfig, shared: Shared, shutdown: &CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(shared.clone());
    let mut logged = false;
    let listener = loop {
        match tokio::net::TcpListener::bind(&config.listen).await {
            Ok(listener) => break listener,
            Err(error) => {
                shared.metrics.bind_failures.inc();
                if !std::mem::replace(&mut logged, true) {
                    tracing::error!(listen = %config.listen, %error, "cannot listen for /metrics; retrying (polling and storing go on)");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(BIND_RETRY) => {}
                }
            }
        }
    };
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving Prometheus metrics on /metrics");
    }
    let stop = shutdown.clone();
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(%error, "the HTTP server failed");
    }
}

async fn metrics_page(State(shared): State<Shared>) -> impl IntoResponse {
    shared.metrics.scrapes.inc();
    let text = shared.with(|e| render(e, env!("CARGO_PKG_VERSION")));
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod dashboard_tests;
