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
pub mod outputs;
mod retention;
mod view;

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream;
use futures_util::future::BoxFuture;
use packgate_protocol::names::ConsumerSpec;
use tokio_util::sync::CancellationToken;

pub use crate::kinds::{Stage, WorkerKind};
use crate::telemetry::snapshot::MetricsSource;
use collect::clock::WallClock;
pub use outputs::OutputsWorker;
pub use view::{GatewayView, StorePaths};

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

    /// The durable consumers it reads, as its kind's facts name them
    /// ([`WorkerKind::consumers`]). The supervisor creates them (the
    /// worker's own broker user may only read them) and recreates one that
    /// vanishes.
    fn consumers(&self) -> Vec<ConsumerSpec> {
        self.kind().consumers().to_vec()
    }

    /// Runs until `shutdown` fires, then finishes what it holds (within its
    /// own bounds) and returns.
    fn run(
        self: Box<Self>,
        ctx: WorkerContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), WorkerError>>;
}
