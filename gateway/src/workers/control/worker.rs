//! The control worker's loop: a queue subscription on the control subject,
//! each request handled in its own task (at most `max_in_flight` at once),
//! each dispatch under its deadline.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Subscriber;
use futures_util::StreamExt;
use packgate_protocol::names;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::audit::{AuditError, AuditStore};
use super::bank::{bank_table, BankTable};
use super::handler::{Handler, AUDIT_TIMEOUT, BROKER_TIMEOUT, GRACE, PRUNE_BATCH};
use super::limit::RateLimiter;
use super::validate::{pack_table, PackTable, Policy};
use super::{ControlError, ControlMetrics};
use crate::config::ControlConfig;
use crate::config::{BankConfig, Config, PackConfig};
use crate::retry::{retry_until_shutdown, Backoff};
use crate::telemetry::now_ms;
use crate::workers::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use futures_util::future::BoxFuture;

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// The control worker, built from its `[control]` section and the packs'
/// profiles (which settings each pack can write, and their bounds).
#[derive(Debug)]
pub struct ControlWorker {
    config: ControlConfig,
    table: PackTable,
    banks: BankTable,
    metrics: Arc<ControlMetrics>,
}

impl ControlWorker {
    /// Checks the section and loads every pack's writable settings, so a
    /// bad profile stops the start, not the first command; `banks` are
    /// targets too (their site limits).
    pub fn new(
        config: ControlConfig,
        packs: &[PackConfig],
        banks: &[BankConfig],
    ) -> Result<Self, ControlError> {
        config.validate()?;
        let table = pack_table(packs)?;
        for name in config.site_limits.keys() {
            if !table.values().flatten().any(|s| &s.name == name) {
                tracing::warn!(setting = %name, "site limit for a setting no pack can write");
            }
        }
        Ok(Self {
            config,
            table,
            banks: bank_table(banks),
            metrics: Arc::new(ControlMetrics::default()),
        })
    }

    /// The same worker counting into `metrics` (tests that read them).
    pub fn with_metrics(mut self, metrics: Arc<ControlMetrics>) -> Self {
        self.metrics = metrics;
        self
    }
}

impl Worker for ControlWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Control
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
            run(*self, &ctx.data_dir, ctx.client, shutdown)
                .await
                .map_err(|error| WorkerError::new(WorkerKind::Control, error))
        })
    }
}

/// Runs the control worker of `config` until `shutdown` with `metrics`
/// given, apart from the supervisor (tests that stage it alone).
pub async fn run_control(
    config: &Config,
    client: async_nats::Client,
    metrics: Arc<ControlMetrics>,
    shutdown: CancellationToken,
) -> Result<(), ControlError> {
    let worker = ControlWorker::new(config.control.clone(), &config.packs, &config.banks)?
        .with_metrics(metrics);
    run(worker, &config.data_dir, client, shutdown).await
}

/// Runs the control worker until `shutdown`; commands in hand are
/// finished (each within its deadline) before it returns.
async fn run(
    worker: ControlWorker,
    data_dir: &Path,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), ControlError> {
    let control = worker.config.clone();
    let (handler, path) = open_handler(worker, data_dir, &client).await?;
    handler.settle_interrupted().await;
    let retention = tokio::spawn(run_retention(
        Arc::clone(&handler),
        control.audit_retention_days,
        shutdown.clone(),
    ));
    let Some(mut requests) = subscribe(&client, &shutdown).await else {
        let _ = retention.await;
        return Ok(());
    };
    tracing::info!(database = %path.display(), packs = handler.table.len(), "control worker started");
    let slots = Arc::new(Semaphore::new(control.max_in_flight));
    let mut tasks = JoinSet::new();
    let mut result = Ok(());
    loop {
        let message = tokio::select! {
            message = requests.next() => message,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = done {
                    tracing::error!(%error, "command task failed");
                }
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        let Some(message) = message else {
            result = Err(ControlError::SubscriptionClosed(names::CONTROL_SUBJECT));
            break;
        };
        // Wait for a free slot; commands to other packs are not held up by
        // one slow pack unless every slot is taken.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        tasks.spawn(Arc::clone(&handler).serve(message, permit));
    }
    let _ = tokio::time::timeout(BROKER_TIMEOUT, requests.unsubscribe()).await;
    finish_in_hand(tasks, handler.deadline + GRACE + AUDIT_TIMEOUT).await;
    let _ = retention.await;
    result
}

/// Opens the audit store and builds the handler every command goes
/// through; returns it with the audit database's path.
async fn open_handler(
    worker: ControlWorker,
    data_dir: &Path,
    client: &async_nats::Client,
) -> Result<(Arc<Handler>, PathBuf), ControlError> {
    let ControlWorker {
        config: control,
        table,
        banks,
        metrics,
    } = worker;
    let path = data_dir.join(&control.database);
    let store = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || AuditStore::open(&path))
            .await
            .map_err(|e| AuditError::Task(e.to_string()))??
    };
    let handler = Arc::new(Handler {
        store: Arc::new(Mutex::new(store)),
        table,
        policy: Policy {
            banks,
            ..Policy::of(&control)
        },
        deadline: control.default_deadline(),
        client: client.clone(),
        metrics,
        limiter: RateLimiter::new(
            control.commands_per_s_per_origin,
            control.command_burst_per_origin,
        ),
        audit_max_bytes: control.audit_max_bytes,
        keys: AtomicU64::new(0),
    });
    Ok((handler, path))
}

/// Lets the commands in hand finish within `patience`; what does not is
/// left "received" in the audit and settled as interrupted at the next
/// start.
async fn finish_in_hand(mut tasks: JoinSet<()>, patience: Duration) {
    let drained = tokio::time::timeout(patience, async {
        while let Some(done) = tasks.join_next().await {
            if let Err(error) = done {
                tracing::error!(%error, "command task failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "commands still in hand at shutdown: abandoned"
        );
        tasks.abort_all();
    }
}

/// Subscribes to the control subject in the queue group, retrying until
/// `shutdown`; `None` on shutdown.
async fn subscribe(
    client: &async_nats::Client,
    shutdown: &CancellationToken,
) -> Option<Subscriber> {
    retry_until_shutdown(
        "cannot subscribe to commands",
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        shutdown,
        || async {
            match tokio::time::timeout(
                BROKER_TIMEOUT,
                client.queue_subscribe(
                    names::CONTROL_SUBJECT,
                    names::CONTROL_QUEUE_GROUP.to_owned(),
                ),
            )
            .await
            {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {BROKER_TIMEOUT:?}")),
            }
        },
    )
    .await
}

/// Deletes completed audit rows older than the retention period, a bounded
/// number at a time, at start and then every [`RETENTION_INTERVAL`]; at
/// start, also the oldest rows of a store over its size (each command
/// keeps it within its size after that).
async fn run_retention(handler: Arc<Handler>, days: u32, shutdown: CancellationToken) {
    handler.keep_within_size().await;
    if days == 0 {
        return;
    }
    loop {
        let cutoff = now_ms().saturating_sub(i64::from(days) * 86_400_000);
        loop {
            match handler
                .audit(move |store| store.prune_older_than(cutoff, PRUNE_BATCH))
                .await
            {
                Ok(0) => break,
                Ok(rows) => handler.metrics.rows_pruned.add(rows as u64),
                Err(error) => {
                    tracing::warn!(%error, "audit retention failed; trying again next period");
                    break;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETENTION_INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
