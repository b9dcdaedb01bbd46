//! The collect worker: one owner task per bus polls its packs on a
//! drift-free schedule, and one publisher task puts every sample and event
//! into JetStream with an ack and a de-duplication id.

mod bus;
pub mod clock;
mod metrics;
mod packs;
mod publisher;
mod replay;
mod sending;
mod slot;
mod state;
mod writes;

use std::sync::Arc;

use async_nats::jetstream;
use packgate_protocol::{BootId, Event, Sample};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use metrics::CollectMetrics;
pub use packs::{Bus, PackSet, PackSetError};
pub use publisher::PublisherReport;

use futures_util::future::BoxFuture;

use super::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use crate::config::CollectConfig;

/// Something for the publisher to put on the stream.
#[derive(Debug)]
enum Outgoing {
    /// A sample, with the monotonic instant it was polled.
    Sample(Sample, tokio::time::Instant),
    /// An event.
    Event(Event),
}

/// A running collect worker.
#[derive(Debug)]
pub struct Collector {
    /// Its counters, shared with the metrics publisher.
    pub metrics: Arc<CollectMetrics>,
    /// This run's boot id.
    pub boot_id: BootId,
    buses: Vec<JoinHandle<()>>,
    publisher: JoinHandle<PublisherReport>,
    writes: JoinHandle<()>,
}

/// A fresh boot id: nanoseconds of the wall clock mixed with the pid, so
/// two runs (even two at once) never share one.
pub fn new_boot_id() -> BootId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 40);
    // splitmix64 finaliser spreads the bits
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    BootId(x ^ (x >> 31))
}

impl Collector {
    /// Starts polling every bus and publishing into `js`. Polling stops when
    /// `shutdown` fires; [`Collector::finish`] then waits for the in-flight
    /// publishes.
    pub fn start(
        config: &CollectConfig,
        packs: PackSet,
        js: jetstream::Context,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> Self {
        Self::start_with_clock(
            config,
            packs,
            js,
            client,
            shutdown,
            Arc::new(clock::SystemClock),
        )
    }

    /// [`Collector::start`] with the wall clock that stamps the samples
    /// (judged by the clock guard) given: tests make it jump.
    pub fn start_with_clock(
        config: &CollectConfig,
        packs: PackSet,
        js: jetstream::Context,
        client: async_nats::Client,
        shutdown: CancellationToken,
        wall_clock: Arc<dyn clock::WallClock>,
    ) -> Self {
        let metrics = Arc::new(CollectMetrics::default());
        Self::start_with_metrics(config, packs, js, client, shutdown, wall_clock, metrics)
    }

    /// [`Collector::start_with_clock`] counting into `metrics`.
    fn start_with_metrics(
        config: &CollectConfig,
        packs: PackSet,
        js: jetstream::Context,
        client: async_nats::Client,
        shutdown: CancellationToken,
        wall_clock: Arc<dyn clock::WallClock>,
        metrics: Arc<CollectMetrics>,
    ) -> Self {
        let clock = clock::SharedClock::new(wall_clock);
        let boot_id = new_boot_id();
        // Room for one round of every pack, so a bus never waits on the
        // publisher in normal running.
        let capacity = (packs.pack_count() * 2).clamp(64, 16_384);
        let (tx, rx) = mpsc::channel(capacity);
        let bus_count = packs.buses.len().max(1);
        let write_check = packs.write_check;
        let mut routes = std::collections::HashMap::new();
        let cx = bus::BusContext::new(
            config,
            boot_id,
            clock,
            tx,
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        let now = tokio::time::Instant::now();
        let buses = packs
            .buses
            .into_iter()
            .enumerate()
            .map(|(index, bus)| {
                // A few writes may wait per bus; more are refused, not queued.
                let (write_tx, write_rx) = mpsc::channel(8);
                for pack in bus.pack_ids() {
                    routes.insert(pack, write_tx.clone());
                }
                // Spread the buses over the period, so many packs make an
                // even load instead of a burst once a second.
                let phase = bus::phase(config.poll_interval(), index, bus_count);
                bus.spawn(write_rx, now + phase, cx.clone())
            })
            .collect();
        drop(cx);
        let writes = tokio::spawn(writes::run_write_router(
            client.clone(),
            routes,
            write_check,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
        let publisher = tokio::spawn(publisher::run_publisher(
            rx,
            js,
            client,
            config.clone(),
            Arc::clone(&metrics),
        ));
        Self {
            metrics,
            boot_id,
            buses,
            publisher,
            writes,
        }
    }

    /// Waits for the buses to stop (after shutdown) and every accepted
    /// sample to be acknowledged or given up on.
    pub async fn finish(self) -> PublisherReport {
        let _ = self.writes.await;
        for bus in self.buses {
            if let Err(e) = bus.await {
                tracing::error!(error = %e, "bus task failed");
            }
        }
        match self.publisher.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "publisher task failed");
                PublisherReport::default()
            }
        }
    }
}

/// The collect worker, built from its `[collect]` section and the packs'
/// drivers.
#[derive(Debug)]
pub struct CollectWorker {
    config: CollectConfig,
    packs: PackSet,
    metrics: Arc<CollectMetrics>,
}

impl CollectWorker {
    /// A collector polling `packs`.
    pub fn new(config: CollectConfig, packs: PackSet) -> Self {
        Self {
            config,
            packs,
            metrics: Arc::new(CollectMetrics::default()),
        }
    }
}

impl Worker for CollectWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Collect
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
            let pack_count = self.packs.pack_count();
            let collector = Collector::start_with_metrics(
                &self.config,
                self.packs,
                ctx.js,
                ctx.client,
                shutdown,
                ctx.clock,
                self.metrics,
            );
            tracing::info!(boot_id = %collector.boot_id, packs = pack_count, "collect worker started");
            // Returns once polling stopped and every accepted sample is
            // acknowledged or counted as unpublished.
            collector.finish().await;
            Ok(())
        })
    }
}
