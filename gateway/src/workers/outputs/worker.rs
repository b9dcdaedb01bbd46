//! The outputs worker: the configured GPIO outputs, driven from the pack
//! events on the broker.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::cdev::{open_outputs, CdevOutputPin};
use super::{run_outputs, OutputDriver, OutputsError};
use crate::config::OutputsConfig;
use crate::workers::{GatewayView, Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};

crate::worker_metrics! {
    /// What the outputs worker has done.
    pub struct OutputsMetrics {
        counters {}
        gauges {}
        latencies {}
    }
}

/// The GPIO outputs of `[outputs]`, their lines already requested.
#[derive(Debug)]
pub struct OutputsWorker {
    driver: OutputDriver<CdevOutputPin, CdevOutputPin>,
    /// The control audit database, relative to `data_dir` or absolute.
    audit: std::path::PathBuf,
    metrics: Arc<OutputsMetrics>,
}

impl OutputsWorker {
    /// Requests the lines of `config`, driven for the packs of `view`;
    /// `None` when no output is configured. A line that cannot be had
    /// stops the start.
    pub fn open(config: &OutputsConfig, view: &GatewayView) -> Result<Option<Self>, OutputsError> {
        let packs = view.pack_ids().cloned();
        Ok(open_outputs(config, packs)?.map(|driver| Self {
            driver,
            audit: view.stores.control.clone(),
            metrics: Arc::new(OutputsMetrics::default()),
        }))
    }
}

impl Worker for OutputsWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Outputs
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
            let audit = ctx.data_dir.join(&self.audit);
            run_outputs(self.driver, ctx.client, audit, shutdown)
                .await
                .map_err(|error| WorkerError::new(WorkerKind::Outputs, error))
        })
    }
}
