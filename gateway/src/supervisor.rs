//! The supervisor: builds the enabled workers from the configuration,
//! starts them against one broker connection, feeds the service manager's
//! watchdog while they run, and stops them in [`Stage`] order: sources
//! first (their publishes flushed), then the store (which takes what they
//! flushed), then the sinks; every worker's last metrics snapshot goes out
//! after it stopped.
//!
//! Adding a worker: a folder under `workers/` with a type implementing
//! [`Worker`], its config section in `config/`, its kind's facts in
//! [`crate::kinds`], and its line in `build`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use packgate_protocol::names::ConsumerSpec;

use crate::broker::Broker;
use crate::broker::{consumer_in_place, ensure_consumer, BrokerError, BrokerUser, SetupAction};
use crate::config::Config;
use crate::retry::{retry_until_shutdown, Backoff};
use crate::telemetry::snapshot::spawn_metrics_publisher;
use crate::workers::bank::BankWorker;
use crate::workers::cloud::{CloudMetrics, CloudWorker};
use crate::workers::collect::{
    CollectMetrics, CollectWorker, PackSet, PackSetError, PublisherReport,
};
use crate::workers::control::{ControlMetrics, ControlWorker};
use crate::workers::data::{DataMetrics, DataWorker};
use crate::workers::http::HttpWorker;
use crate::workers::monitor::{MonitorMetrics, MonitorWorker};
use crate::workers::mqtt::MqttWorker;
use crate::workers::{
    collect, GatewayView, OutputsWorker, Stage, Worker, WorkerContext, WorkerError, WorkerKind,
    WorkerMetrics,
};

/// Which workers run in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSet(BTreeSet<WorkerKind>);

impl WorkerSet {
    /// Every worker: `packgate run`.
    pub fn all() -> Self {
        Self(WorkerKind::ALL.into_iter().collect())
    }

    /// Just these workers.
    pub fn of(kinds: &[WorkerKind]) -> Self {
        Self(kinds.iter().copied().collect())
    }

    /// The one worker of `packgate <kind>`; the GPIO outputs go with the
    /// collector, on the box that has the packs.
    pub fn only(kind: WorkerKind) -> Self {
        match kind {
            WorkerKind::Collect => Self::of(&[WorkerKind::Collect, WorkerKind::Outputs]),
            other => Self::of(&[other]),
        }
    }

    /// Whether `kind` runs.
    pub fn contains(&self, kind: WorkerKind) -> bool {
        self.0.contains(&kind)
    }
}

/// What a run did, for the final log line, tests and benchmarks.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Every worker's metrics, by kind.
    pub workers: Vec<(WorkerKind, WorkerMetrics)>,
    /// The collector's counters, if it ran.
    pub collect: Option<Arc<CollectMetrics>>,
    /// What the collector left unpublished.
    pub publisher: PublisherReport,
    /// The data worker's counters, if it ran.
    pub data: Option<Arc<DataMetrics>>,
    /// The control worker's counters, if it ran.
    pub control: Option<Arc<ControlMetrics>>,
    /// The monitor worker's counters, if it ran.
    pub monitor: Option<Arc<MonitorMetrics>>,
    /// The cloud worker's counters, if it ran.
    pub cloud: Option<Arc<CloudMetrics>>,
    /// Consumers found vanished or changed while running, and set up again.
    pub consumers_recreated: u64,
}

impl RunReport {
    fn of(workers: Vec<(WorkerKind, WorkerMetrics)>) -> Self {
        let find = |kind| {
            workers
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, metrics)| metrics.clone())
        };
        let collect = find(WorkerKind::Collect).and_then(|m| m.get::<CollectMetrics>());
        let publisher = PublisherReport {
            unpublished: collect.as_ref().map_or(0, |c| c.unpublished_at_exit.get()),
        };
        Self {
            data: find(WorkerKind::Data).and_then(|m| m.get()),
            control: find(WorkerKind::Control).and_then(|m| m.get()),
            monitor: find(WorkerKind::Monitor).and_then(|m| m.get()),
            cloud: find(WorkerKind::Cloud).and_then(|m| m.get()),
            collect,
            publisher,
            workers,
            consumers_recreated: 0,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The broker could not be reached or set up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A driver could not be built.
    #[error(transparent)]
    Packs(#[from] PackSetError),
    /// A worker could not be built from its configuration, or failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The workers of `set` that `config` runs ([`WorkerKind::disabled_by`]),
/// each built from its own config section and the [`GatewayView`].
pub fn build_workers(
    config: &Config,
    set: &WorkerSet,
    packs: PackSet,
) -> Result<Vec<Box<dyn Worker>>, RunError> {
    let view = GatewayView::of(config);
    let mut packs = Some(packs);
    let mut workers = Vec::new();
    for kind in WorkerKind::ALL {
        if set.contains(kind) && kind.disabled_by(config).is_none() {
            let built = build(kind, config, &view, &mut packs).map_err(|e| {
                RunError::Worker(WorkerError {
                    worker: kind,
                    source: e,
                })
            })?;
            workers.extend(built);
        }
    }
    Ok(workers)
}

/// Why a worker could not be built.
type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// The worker of `kind`, from its config section (and the collector from
/// `packs`): the one line each worker has here. `None` when it finds
/// nothing to do.
fn build(
    kind: WorkerKind,
    config: &Config,
    view: &GatewayView,
    packs: &mut Option<PackSet>,
) -> Result<Option<Box<dyn Worker>>, BuildError> {
    fn some(worker: impl Worker + 'static) -> Option<Box<dyn Worker>> {
        Some(Box::new(worker))
    }
    Ok(match kind {
        WorkerKind::Collect => some(CollectWorker::new(
            config.collect.clone(),
            packs.take().unwrap_or_default(),
        )),
        WorkerKind::Data => some(DataWorker::new(config.data.clone())),
        WorkerKind::Control => some(ControlWorker::new(
            config.control.clone(),
            &view.packs,
            &view.banks,
        )?),
        WorkerKind::Monitor => some(MonitorWorker::new(config.monitor.clone())),
        WorkerKind::Cloud => some(CloudWorker::new(config.cloud.clone())),
        WorkerKind::Http => some(HttpWorker::new(config.http.clone(), view.clone())),
        WorkerKind::Mqtt => some(MqttWorker::new(config.mqtt.clone(), view)?),
        WorkerKind::Bank => some(BankWorker::new(&config.banks, &config.control, view)?),
        WorkerKind::Outputs => {
            OutputsWorker::open(&config.outputs, view)?.map(|w| Box::new(w) as _)
        }
    })
}

/// A running stage: its workers' tasks and the signal that stops them.
struct RunningStage {
    stop: CancellationToken,
    tasks: JoinSet<Result<(), WorkerError>>,
    handles: Vec<AbortHandle>,
}

/// The started workers: their stages, metrics, snapshot publishers and
/// broker connections.
struct Running {
    stages: Vec<(Stage, RunningStage)>,
    metrics: Vec<(WorkerKind, WorkerMetrics)>,
    snapshots: Vec<JoinHandle<()>>,
    snapshots_stop: CancellationToken,
    connections: Vec<async_nats::Client>,
}

impl Running {
    /// Connects each worker as its own broker user and spawns it in its
    /// stage, with its metrics snapshots; a failing worker cancels
    /// `shutdown`.
    async fn start(
        config: &Config,
        broker: &Broker,
        workers: Vec<Box<dyn Worker>>,
        shutdown: &CancellationToken,
    ) -> Result<Self, RunError> {
        let interval = config.monitor.snapshot_interval();
        let mut running = Running {
            stages: Stage::STOP_ORDER
                .into_iter()
                .map(|stage| {
                    let running = RunningStage {
                        stop: CancellationToken::new(),
                        tasks: JoinSet::new(),
                        handles: Vec::new(),
                    };
                    (stage, running)
                })
                .collect(),
            metrics: Vec::new(),
            snapshots: Vec::new(),
            snapshots_stop: CancellationToken::new(),
            connections: Vec::new(),
        };
        // Sinks first, then the store, then the sources (the stop order
        // backwards): what a source publishes as it starts, such as a
        // pack's online event with its serial number, finds the workers
        // of this process that read it already subscribed.
        let mut workers = workers;
        workers.sort_by_key(|worker| std::cmp::Reverse(worker.kind().stage().stop_rank()));
        for worker in workers {
            let kind = worker.kind();
            let (client, js) = broker
                .connect_as(BrokerUser::Worker(kind), &kind.process_name())
                .await?;
            running.connections.push(client.clone());
            let ctx = WorkerContext {
                client,
                js: js.clone(),
                data_dir: config.data_dir.clone(),
                durability: config.durability,
                clock: Arc::new(collect::clock::SystemClock),
            };
            let worker_metrics = worker.metrics();
            running.snapshots.push(spawn_metrics_publisher(
                js,
                kind.name(),
                interval,
                worker_metrics.source(),
                running.snapshots_stop.clone(),
            ));
            running.metrics.push((kind, worker_metrics));
            let Some((_, stage)) = running.stages.iter_mut().find(|(s, _)| *s == kind.stage())
            else {
                continue;
            };
            let run = worker.run(ctx, stage.stop.clone());
            let on_failure = shutdown.clone();
            let handle = stage.tasks.spawn(async move {
                let result = run.await;
                if let Err(error) = &result {
                    tracing::error!(worker = %kind, %error, "worker failed; stopping");
                    on_failure.cancel();
                }
                result
            });
            stage.handles.push(handle);
            tracing::info!(worker = %kind, "worker started");
        }
        Ok(running)
    }

    /// Every worker task, to see whether one has stopped.
    fn handles(&self) -> Vec<AbortHandle> {
        self.stages
            .iter()
            .flat_map(|(_, s)| s.handles.iter().cloned())
            .collect()
    }

    /// Stops the stages in order, each after the one before has finished
    /// (so the store drains what the sources flushed), then the snapshot
    /// publishers, then drains the workers' own connections. Returns the
    /// first worker error.
    async fn stop(
        self,
        drain_connections: bool,
    ) -> (Vec<(WorkerKind, WorkerMetrics)>, Option<RunError>) {
        let mut first_error = None;
        for (stage, mut running) in self.stages {
            running.stop.cancel();
            while let Some(joined) = running.tasks.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        first_error.get_or_insert(RunError::Worker(error));
                    }
                    Err(error) => tracing::error!(?stage, %error, "worker task panicked"),
                }
            }
            tracing::debug!(?stage, "stage stopped");
        }
        self.snapshots_stop.cancel();
        for task in self.snapshots {
            let _ = task.await;
        }
        if drain_connections {
            for client in self.connections {
                let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
            }
        }
        (self.metrics, first_error)
    }
}

/// Creates the consumers of `consumers`, retrying while the broker is not
/// ready, until `shutdown`.
async fn ensure_consumers(
    broker: &Broker,
    consumers: &[ConsumerSpec],
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    for spec in consumers {
        let ready = retry_until_shutdown(
            &format!("consumer {} not ready", spec.durable),
            Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            shutdown,
            || ensure_consumer(&broker.js, spec),
        )
        .await;
        if ready.is_none() {
            return Err(RunError::Broker(BrokerError::Interrupted));
        }
    }
    Ok(())
}

/// Runs the workers of `set` against `broker` until `shutdown`, then stops
/// them in stage order. A worker that fails stops the whole run (and its
/// error is returned), so a failing component is never silently absent;
/// so does losing our own broker for good.
pub async fn run_workers(
    config: &Config,
    set: WorkerSet,
    packs: PackSet,
    broker: &Broker,
    shutdown: CancellationToken,
) -> Result<RunReport, RunError> {
    run_workers_reporting(config, set, packs, broker, shutdown, None).await
}

/// [`run_workers`], sending every worker's metrics to `started` once they
/// all run (a benchmark reads them mid-run).
pub async fn run_workers_reporting(
    config: &Config,
    set: WorkerSet,
    packs: PackSet,
    broker: &Broker,
    shutdown: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<Vec<(WorkerKind, WorkerMetrics)>>>,
) -> Result<RunReport, RunError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let poll_deadline = if set.contains(WorkerKind::Collect) {
        let longest_poll = packs.buses.iter().map(|bus| bus.poll_timeout).max();
        crate::watchdog::poll_deadline(
            packs.pack_count(),
            config.collect.poll_interval(),
            longest_poll.unwrap_or_default(),
        )
    } else {
        None
    };
    let workers = build_workers(config, &set, packs)?;
    broker.ensure_streams(config, &shutdown).await?;
    let consumers: Vec<ConsumerSpec> = workers.iter().flat_map(|w| w.consumers()).collect();
    ensure_consumers(broker, &consumers, &shutdown).await?;
    let running = Running::start(config, broker, workers, &shutdown).await?;
    if let Some(started) = started {
        // Nobody waiting for them is no reason to stop.
        let _ = started.send(running.metrics.clone());
    }
    let keeper_stop = CancellationToken::new();
    let keeper = tokio::spawn(keep_consumers(
        broker.js.clone(),
        broker.client.clone(),
        consumers,
        keeper_stop.clone(),
    ));
    let jetstream_watch = broker
        .server
        .as_ref()
        .map(|server| server.spawn_jetstream_watch(broker.client.clone(), keeper_stop.clone()));

    let broker_lost = crate::watchdog::supervise(
        broker,
        &shutdown,
        &running.handles(),
        &running.metrics,
        poll_deadline,
    )
    .await;
    if broker_lost {
        shutdown.cancel();
    }
    let (metrics, mut first_error) = running.stop(broker.credentials.is_some()).await;
    keeper_stop.cancel();
    let consumers_recreated = keeper.await.unwrap_or(0);
    if let Some(watch) = jetstream_watch {
        let _ = watch.await;
    }
    if broker_lost {
        first_error.get_or_insert(RunError::Broker(BrokerError::Lost));
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(RunReport {
            consumers_recreated,
            ..RunReport::of(metrics)
        }),
    }
}

/// How often the consumers are checked in any case.
const CONSUMER_CHECK_EVERY: Duration = Duration::from_secs(60);

/// How often the keeper looks, without asking the broker, whether the
/// connection was made again (a broker restarted, maybe without its
/// store): then it checks at once.
const RECONNECT_LOOK_EVERY: Duration = Duration::from_secs(5);

/// Longest one consumer's check may take.
const CONSUMER_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Recreates, with the same settings and a WARN, any consumer of
/// `consumers` that vanished (deleted by hand, or lost with the broker's
/// store), so a worker never stops storing in silence; until `stop`. It
/// checks when the broker says a consumer was deleted, after the
/// connection was made again, and every [`CONSUMER_CHECK_EVERY`]; an
/// idle gateway asks the broker nothing in between. Returns how many
/// times one was set up again.
async fn keep_consumers(
    js: async_nats::jetstream::Context,
    client: async_nats::Client,
    consumers: Vec<ConsumerSpec>,
    stop: CancellationToken,
) -> u64 {
    use futures_util::StreamExt as _;
    let mut recreated = 0;
    if consumers.is_empty() {
        return recreated;
    }
    let mut deleted = match client
        .subscribe(packgate_protocol::names::CONSUMER_DELETED_ADVISORIES)
        .await
    {
        Ok(advisories) => Some(advisories),
        Err(error) => {
            tracing::warn!(%error, "cannot follow consumer deletions; checking every {} s", CONSUMER_CHECK_EVERY.as_secs());
            None
        }
    };
    let connects = || client.statistics().connects.load(Ordering::Relaxed);
    let mut seen_connects = connects();
    let mut check_at = Instant::now() + CONSUMER_CHECK_EVERY;
    let mut look = tokio::time::interval(RECONNECT_LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(check_at) => {}
            Some(_) = async { deleted.as_mut()?.next().await }, if deleted.is_some() => {}
            _ = look.tick() => {
                let now_connects = connects();
                if now_connects == seen_connects {
                    continue;
                }
                seen_connects = now_connects;
            }
            () = stop.cancelled() => return recreated,
        }
        let (set_up, all_checked) = check_consumers(&js, &consumers).await;
        recreated += set_up;
        // A check the broker did not answer is tried again soon.
        let again = if all_checked {
            CONSUMER_CHECK_EVERY
        } else {
            RECONNECT_LOOK_EVERY
        };
        check_at = Instant::now() + again;
    }
}

/// Checks each of `consumers` once, setting up again any that vanished
/// or changed; returns how many were, and whether every check got an
/// answer.
async fn check_consumers(
    js: &async_nats::jetstream::Context,
    consumers: &[ConsumerSpec],
) -> (u64, bool) {
    let mut recreated = 0;
    let mut all_checked = true;
    for spec in consumers {
        // One request while all is well; the full setup otherwise.
        let quick = tokio::time::timeout(CONSUMER_CHECK_TIMEOUT, consumer_in_place(js, spec));
        if quick.await.unwrap_or(false) {
            continue;
        }
        let check = tokio::time::timeout(CONSUMER_CHECK_TIMEOUT, ensure_consumer(js, spec)).await;
        match check {
            Ok(Ok((_, SetupAction::Unchanged))) => {}
            Ok(Ok((_, action))) => {
                recreated += 1;
                tracing::warn!(
                    consumer = spec.durable,
                    ?action,
                    "a consumer had vanished or changed: set up again"
                );
            }
            Ok(Err(error)) => {
                all_checked = false;
                crate::warn_limited!("consumer check failed: retried", consumer = spec.durable, %error)
            }
            Err(_) => {
                all_checked = false;
                tracing::debug!(consumer = spec.durable, "consumer check timed out");
            }
        }
    }
    (recreated, all_checked)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn the_workers_built_are_those_the_configuration_runs_reading_their_kinds_consumers() {
        let mut config = Config::default();
        config.cloud.enabled = true;
        let workers = build_workers(&config, &WorkerSet::all(), PackSet::default()).unwrap();
        let kinds: Vec<_> = workers.iter().map(|w| w.kind()).collect();
        assert_eq!(kinds, WorkerKind::expected(&config));
        assert!(kinds.contains(&WorkerKind::Cloud));
        assert!(!kinds.contains(&WorkerKind::Bank), "no [[banks]]");
        for worker in &workers {
            let durables: Vec<_> = worker.consumers().iter().map(|c| c.durable).collect();
            let declared: Vec<_> = worker
                .kind()
                .consumers()
                .iter()
                .map(|c| c.durable)
                .collect();
            assert_eq!(durables, declared, "{}", worker.kind());
        }
        let data = build_workers(
            &config,
            &WorkerSet::only(WorkerKind::Data),
            PackSet::default(),
        )
        .unwrap();
        let kinds: Vec<_> = data.iter().map(|w| w.kind()).collect();
        assert_eq!(kinds, [WorkerKind::Data]);
    }
}
