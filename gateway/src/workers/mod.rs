//! The workers on the stream. Each talks to the others only through NATS,
//! so each runs in the one `packgate run` process or as its own process.
//!
//! Every worker has one shape: a type built from its own config section,
//! its own metrics (a [`MetricsSource`]), and [`Worker::run`] taking a
//! [`WorkerContext`] and a shutdown signal. The
//! [supervisor](crate::supervisor) starts whichever are enabled and stops
//! them in [`Stage`] order.

pub mod bank;
mod batch;
pub mod cloud;
pub mod collect;
pub mod control;
pub mod data;
pub mod http;
pub mod monitor;
pub mod mqtt;
mod retention;

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream;
use futures_util::future::BoxFuture;
use packgate_protocol::names::ConsumerSpec;
use tokio_util::sync::CancellationToken;

pub use crate::outputs::OutputsWorker;
use crate::telemetry::snapshot::MetricsSource;
use collect::clock::WallClock;

/// Every kind of worker, by the name it has on the command line, in its
/// metrics and in `packgate status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerKind {
    /// Polls the packs and publishes samples and events.
    Collect,
    /// Stores samples in SQLite.
    Data,
    /// Validates, audits and dispatches commands to packs.
    Control,
    /// Stores every worker's metrics and the pack events.
    Monitor,
    /// Uploads to the cloud and brings its commands in.
    Cloud,
    /// Drives the GPIO alarm relay and status LED from pack events.
    Outputs,
    /// Serves the Prometheus metrics over HTTP.
    Http,
    /// Publishes the packs to an MQTT broker, with Home Assistant
    /// discovery.
    Mqtt,
    /// Follows the packs of each bank and publishes the bank's state and
    /// charge limits.
    Bank,
}

impl WorkerKind {
    /// Every kind, in start order.
    pub const ALL: [WorkerKind; 9] = [
        WorkerKind::Collect,
        WorkerKind::Bank,
        WorkerKind::Data,
        WorkerKind::Control,
        WorkerKind::Monitor,
        WorkerKind::Cloud,
        WorkerKind::Outputs,
        WorkerKind::Http,
        WorkerKind::Mqtt,
    ];

    /// The kinds a gateway of `config` runs in `packgate run`: every
    /// worker that `config` does not disable ([`WorkerKind::disabled_by`]).
    pub fn expected(config: &crate::config::Config) -> Vec<WorkerKind> {
        WorkerKind::ALL
            .into_iter()
            .filter(|kind| kind.disabled_by(config).is_none())
            .collect()
    }

    /// Why `packgate run` with `config` does not run this worker, as the
    /// setting that says so; `None` when it runs: the cloud worker only with
    /// `cloud.enabled`, the HTTP worker only with `http.enabled`, the GPIO
    /// outputs only where some are configured, the bank worker only with
    /// `[[banks]]`.
    pub fn disabled_by(self, config: &crate::config::Config) -> Option<&'static str> {
        let outputs = &config.outputs;
        match self {
            WorkerKind::Cloud if !config.cloud.enabled => Some("cloud.enabled = false"),
            WorkerKind::Http if !config.http.enabled => Some("http.enabled = false"),
            WorkerKind::Mqtt if !config.mqtt.enabled => Some("mqtt.enabled = false"),
            WorkerKind::Bank if config.banks.is_empty() => Some("no [[banks]] configured"),
            WorkerKind::Outputs
                if outputs.alarm_relay.is_none() && outputs.status_led.is_none() =>
            {
                Some("no [outputs] configured")
            }
            _ => None,
        }
    }

    /// The name of a process running only this worker, as it introduces
    /// itself to the broker: `packgate-collect`, ...
    pub fn process_name(self) -> String {
        format!("packgate-{}", self.name())
    }

    /// The worker's name.
    pub const fn name(self) -> &'static str {
        match self {
            WorkerKind::Collect => "collect",
            WorkerKind::Data => "data",
            WorkerKind::Control => "control",
            WorkerKind::Monitor => "monitor",
            WorkerKind::Cloud => "cloud",
            WorkerKind::Outputs => "outputs",
            WorkerKind::Http => "http",
            WorkerKind::Mqtt => "mqtt",
            WorkerKind::Bank => "bank",
        }
    }

    /// Where the worker sits in the data flow.
    pub const fn stage(self) -> Stage {
        match self {
            // The bank worker is a source of bank states: it stops before
            // the store, its last publishes flushed.
            WorkerKind::Collect | WorkerKind::Bank => Stage::Source,
            WorkerKind::Data => Stage::Store,
            WorkerKind::Control
            | WorkerKind::Monitor
            | WorkerKind::Cloud
            | WorkerKind::Outputs
            | WorkerKind::Http
            | WorkerKind::Mqtt => Stage::Sink,
        }
    }
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a worker sits in the data flow; it decides the stop order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Puts messages on the streams (collect): stops first, after flushing
    /// its publishes.
    Source,
    /// Stores what the sources published (data): stops once it has taken
    /// what the stopped sources flushed.
    Store,
    /// Everything else: stops last.
    Sink,
}

impl Stage {
    /// Every stage, in stop order.
    pub const STOP_ORDER: [Stage; 3] = [Stage::Source, Stage::Store, Stage::Sink];
}

/// What every worker is given to run: the broker connection, where its
/// files go, and the wall clock that stamps what it records.
#[derive(Clone)]
pub struct WorkerContext {
    /// The broker connection (core NATS).
    pub client: async_nats::Client,
    /// JetStream on that connection.
    pub js: jetstream::Context,
    /// The data directory; relative database paths are under it.
    pub data_dir: PathBuf,
    /// How hard the stores sync their commits to the disk.
    pub durability: crate::config::Durability,
    /// The wall clock.
    pub clock: Arc<dyn WallClock>,
}

impl fmt::Debug for WorkerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerContext")
            .field("data_dir", &self.data_dir)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Why a worker stopped with an error: the process stops with it (the
/// service manager restarts it), so a failing component is never silently
/// absent.
#[derive(Debug, thiserror::Error)]
#[error("{worker} worker failed: {source}")]
pub struct WorkerError {
    /// The worker.
    pub worker: WorkerKind,
    /// Its error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl WorkerError {
    /// Wraps `source` as `worker`'s failure.
    pub fn new(worker: WorkerKind, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            worker,
            source: Box::new(source),
        }
    }
}

/// A worker's metrics, both as a snapshot source and as its own type (for
/// reports and tests).
#[derive(Clone)]
pub struct WorkerMetrics {
    source: Arc<dyn MetricsSource>,
    typed: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl WorkerMetrics {
    /// The metrics `metrics`.
    pub fn new<M: MetricsSource + Send + Sync + 'static>(metrics: Arc<M>) -> Self {
        Self {
            source: Arc::clone(&metrics) as Arc<dyn MetricsSource>,
            typed: metrics,
        }
    }

    /// As a snapshot source.
    pub fn source(&self) -> Arc<dyn MetricsSource> {
        Arc::clone(&self.source)
    }

    /// As its own type, if it is an `M`.
    pub fn get<M: Send + Sync + 'static>(&self) -> Option<Arc<M>> {
        Arc::clone(&self.typed).downcast::<M>().ok()
    }
}

/// One worker.
pub trait Worker: Send + fmt::Debug {
    /// Which worker this is.
    fn kind(&self) -> WorkerKind;

    /// Its metrics, published in snapshots while it runs.
    fn metrics(&self) -> WorkerMetrics;

    /// The durable consumers it reads. The supervisor creates them (the
    /// worker's own broker user may only read them) and recreates one that
    /// vanishes.
    fn consumers(&self) -> Vec<ConsumerSpec> {
        Vec::new()
    }

    /// Runs until `shutdown` fires, then finishes what it holds (within its
    /// own bounds) and returns.
    fn run(
        self: Box<Self>,
        ctx: WorkerContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), WorkerError>>;
}
