//! The HTTP worker: the gateway's small web server. It follows every
//! pack's samples and every worker's metrics snapshots on the broker (core
//! subscriptions: it keeps only the latest of each, so it can never hold
//! the pipeline back or grow), and serves
//!
//! - the local web page (`/`): every pack live (server-sent events, the
//!   latest sample of each pack as it arrives), the pipeline's health,
//!   recent events and commands, history charts from the sample store
//!   (downsampled here) and CSV downloads of a time range;
//! - the Prometheus text format on `/metrics`.
//!
//! The data path never depends on it: a port already in use, a browser or
//! scraper that hangs, a broker hiccup cost this worker alone. A listen
//! address that cannot be bound is retried every few seconds, logged once.
//! The stores are only read, each request on a connection of its own.

mod auth;
mod download;
pub mod exposition;
mod history;
mod overview;
mod server;
mod web;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use packgate_protocol::{decode, names, BankState, MetricsSnapshot, PackId, Sample};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::config::HttpConfig;
use exposition::Exposed;

use super::{GatewayView, Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};

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
            /// Connections accepted.
            connections,
            /// Connections closed at once: as many were open as allowed.
            connections_refused,
            /// Requests refused for a missing or wrong password.
            auth_failures,
            /// Live streams refused: as many were open as allowed.
            live_refused,
            /// History queries answered (charts).
            history_queries,
            /// History queries refused or cut short (busy, too slow).
            history_refused,
            /// CSV downloads started.
            downloads,
            /// Requests that took longer than allowed and were answered
            /// with 503.
            requests_timed_out,
        }
        gauges {
            /// Packs exposed.
            packs_exposed,
            /// Live streams (browsers with the page open) now.
            live_clients,
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
    view: GatewayView,
    metrics: Arc<HttpMetrics>,
}

impl HttpWorker {
    /// A worker serving as `config` says, showing the packs, stores and
    /// workers `view` describes.
    pub fn new(config: HttpConfig, view: GatewayView) -> Self {
        Self {
            config,
            view,
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
            let site = web::Site::new(self.config, self.view, &ctx.data_dir);
            run(site, ctx.client, self.metrics, shutdown)
                .await
                .map_err(|e| WorkerError::new(WorkerKind::Http, e))
        })
    }
}

/// What the followers keep and the server reads.
#[derive(Debug, Default)]
struct Held {
    exposed: Exposed,
    /// The [`Held::version`] at which each pack's sample last changed.
    updated: BTreeMap<PackId, u64>,
    /// Bumped at every sample taken in.
    version: u64,
}

/// What the server and the followers share.
#[derive(Debug, Clone)]
struct Shared {
    held: Arc<Mutex<Held>>,
    metrics: Arc<HttpMetrics>,
    /// The latest [`Held::version`], for the live streams: a watch holds
    /// only the newest value, so a slow reader skips to it and holds
    /// nothing back.
    changed: Arc<watch::Sender<u64>>,
}

impl Shared {
    fn new(metrics: Arc<HttpMetrics>) -> Self {
        Self {
            held: Arc::default(),
            metrics,
            changed: Arc::new(watch::Sender::new(0)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Held) -> R) -> R {
        f(&mut self.held.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Keeps `sample` as its pack's latest and tells the live streams.
    fn take_sample(&self, sample: Sample) {
        let (packs, version) = self.with(|held| {
            let known = held.exposed.samples.contains_key(&sample.pack_id);
            if known || held.exposed.samples.len() < MAX_ENTRIES {
                held.version += 1;
                held.updated.insert(sample.pack_id.clone(), held.version);
                held.exposed.samples.insert(sample.pack_id.clone(), sample);
            }
            (held.exposed.samples.len(), held.version)
        });
        self.metrics.packs_exposed.set(packs as i64);
        self.changed.send_replace(version);
    }

    /// Keeps `state` as its bank's latest.
    fn take_bank_state(&self, state: BankState) {
        self.with(|held| {
            let banks = &mut held.exposed.banks;
            if banks.len() < MAX_ENTRIES || banks.contains_key(&state.bank_id) {
                banks.insert(state.bank_id.clone(), state);
            }
        });
    }

    /// Keeps `snapshot` as its worker instance's latest.
    fn take_snapshot(&self, snapshot: MetricsSnapshot) {
        self.with(|held| {
            let snapshots = &mut held.exposed.snapshots;
            let key = (snapshot.worker.clone(), snapshot.instance.clone());
            if snapshots.len() < MAX_ENTRIES || snapshots.contains_key(&key) {
                snapshots.insert(key, snapshot);
            }
        });
    }
}

/// Follows the broker and serves until `shutdown`.
async fn run(
    site: web::Site,
    client: async_nats::Client,
    metrics: Arc<HttpMetrics>,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    let shared = Shared::new(metrics);
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
    let banks = subscribe(names::ALL_BANKS_SUBJECT).await?;
    let follow = tokio::spawn(follow(samples, snapshots, banks, shared.clone()));
    let site = Arc::new(site);
    let overview = watch::Sender::new(Arc::<str>::from(""));
    let app = web::App::new(
        Arc::clone(&site),
        shared.clone(),
        overview.subscribe(),
        shutdown.clone(),
    );
    let refresh = tokio::spawn(overview::refresh(
        site,
        shared,
        client,
        overview::Feed {
            out: overview,
            viewers: app.viewers(),
        },
        shutdown.clone(),
    ));
    serve(app, &shutdown).await;
    follow.abort();
    refresh.abort();
    Ok(())
}

/// Keeps the latest sample of each pack, state of each bank and snapshot
/// of each worker.
async fn follow(
    mut samples: async_nats::Subscriber,
    mut snapshots: async_nats::Subscriber,
    mut banks: async_nats::Subscriber,
    shared: Shared,
) {
    loop {
        tokio::select! {
            Some(message) = samples.next() => match decode::<Sample>(&message.payload) {
                Ok(sample) => {
                    shared.metrics.samples_seen.inc();
                    shared.take_sample(sample);
                }
                Err(_) => shared.metrics.messages_malformed.inc(),
            },
            Some(message) = banks.next() => match decode::<BankState>(&message.payload) {
                Ok(state) => shared.take_bank_state(state),
                Err(_) => shared.metrics.messages_malformed.inc(),
            },
            Some(message) = snapshots.next() => match decode::<MetricsSnapshot>(&message.payload) {
                Ok(snapshot) => {
                    shared.metrics.snapshots_seen.inc();
                    shared.take_snapshot(snapshot);
                }
                Err(_) => shared.metrics.messages_malformed.inc(),
            },
            else => return,
        }
    }
}

/// Binds `[http] listen` (retrying a failed bind) and serves until
/// `shutdown`.
async fn serve(app: web::App, shutdown: &CancellationToken) {
    let listen = app.site.http.listen.clone();
    let mut logged = false;
    let listener = loop {
        match tokio::net::TcpListener::bind(&listen).await {
            Ok(listener) => break listener,
            Err(error) => {
                app.shared.metrics.bind_failures.inc();
                if !std::mem::replace(&mut logged, true) {
                    tracing::error!(%listen, %error, "cannot listen for the web page and /metrics; retrying (polling and storing go on)");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(BIND_RETRY) => {}
                }
            }
        }
    };
    if let Ok(address) = listener.local_addr() {
        let auth = if app.site.http.password.is_some() {
            "password required"
        } else {
            "no password"
        };
        tracing::info!(%address, auth, "serving the web page on / and Prometheus metrics on /metrics");
    }
    let metrics = Arc::clone(&app.shared.metrics);
    let router = server::router(app);
    server::serve(
        listener,
        router,
        server::Limits::default(),
        metrics,
        shutdown,
    )
    .await;
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod dashboard_tests;
