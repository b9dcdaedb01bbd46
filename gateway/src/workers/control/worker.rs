//! The control worker's loop: a queue subscription on the control subject,
//! each request handled in its own task (at most `max_in_flight` at once),
//! each dispatch under its deadline.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{RequestErrorKind, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use packgate_drivers::ValidatedSetting;
use packgate_protocol::{decode, encode, names, Command, CommandId, CommandOutcome, CommandReply};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::audit::{AuditError, AuditRecord, AuditStore, Begin};
use super::validate::{pack_table, validate, PackTable, Policy};
use super::{ControlError, ControlMetrics};
use crate::config::ControlConfig;
use crate::config::{Config, PackConfig};
use crate::retry::{retry_until_shutdown, Backoff};
use crate::telemetry::events::LogLimiter;
use crate::telemetry::now_ms;
use crate::workers::{Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use futures_util::future::BoxFuture;

/// Malformed commands log one line per interval, with the count.
static MALFORMED_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Queue group of the control subscription: several control workers share
/// the commands, each handled by one of them.
pub const QUEUE_GROUP: &str = "packgate-control";

/// Longest one audit store operation may take (SQLite waits up to its busy
/// timeout for a lock; this bounds a stuck disk too).
const AUDIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a subscribe, unsubscribe or reply publish may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Time on top of the dispatch deadline for a command to be audited and
/// answered; past it, a command never completed is taken as interrupted.
const GRACE: Duration = Duration::from_secs(2);

/// How often a repeat of a command still in flight looks for its result.
const REPEAT_POLL: Duration = Duration::from_millis(50);

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// Most rows one retention statement deletes.
const RETENTION_BATCH: usize = 5_000;

/// The control worker, built from its `[control]` section and the packs'
/// profiles (which settings each pack can write, and their bounds).
#[derive(Debug)]
pub struct ControlWorker {
    config: ControlConfig,
    table: PackTable,
    metrics: Arc<ControlMetrics>,
}

impl ControlWorker {
    /// Checks the section and loads every pack's writable settings, so a
    /// bad profile stops the start, not the first command.
    pub fn new(config: ControlConfig, packs: &[PackConfig]) -> Result<Self, ControlError> {
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
    let worker = ControlWorker::new(config.control.clone(), &config.packs)?.with_metrics(metrics);
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
    let ControlWorker {
        config: control,
        table,
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
            site_limits: control.site_limits.clone(),
            max_ttl_ms: ms(Duration::from_secs(control.max_command_ttl_s)),
            max_skew_ms: i64::try_from(control.max_clock_skew_ms).unwrap_or(i64::MAX),
        },
        deadline: control.default_deadline(),
        client: client.clone(),
        metrics: Arc::clone(&metrics),
    });
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
    // Commands in hand finish within their deadline; what does not is left
    // "received" in the audit and settled as interrupted at the next start.
    let patience = handler.deadline + GRACE + AUDIT_TIMEOUT;
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
    let _ = retention.await;
    result
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
                client.queue_subscribe(names::CONTROL_SUBJECT, QUEUE_GROUP.to_owned()),
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

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn reply(command_id: &CommandId, outcome: CommandOutcome) -> CommandReply {
    CommandReply {
        command_id: command_id.clone(),
        outcome,
    }
}

/// What the outcome of a command interrupted mid-dispatch is recorded as.
fn interrupted(command_id: &CommandId) -> CommandReply {
    reply(
        command_id,
        CommandOutcome::Failed {
            error: "outcome unknown: the control worker stopped while dispatching; \
                    check the pack's setting before sending a new command"
                .to_owned(),
        },
    )
}

/// Everything a command task needs.
#[derive(Debug)]
struct Handler {
    store: Arc<Mutex<AuditStore>>,
    table: PackTable,
    policy: Policy,
    deadline: Duration,
    client: async_nats::Client,
    metrics: Arc<ControlMetrics>,
}

impl Handler {
    /// Runs `op` on the audit store off the async threads, under
    /// [`AUDIT_TIMEOUT`].
    async fn audit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&AuditStore) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let store = Arc::clone(&self.store);
        let task = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            op(&store)
        });
        match tokio::time::timeout(AUDIT_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(AuditError::Task(error.to_string())),
            Err(_) => Err(AuditError::Task(format!(
                "no answer within {AUDIT_TIMEOUT:?}"
            ))),
        }
    }

    /// Handles one request and replies to it.
    async fn serve(self: Arc<Self>, message: async_nats::Message, _slot: OwnedSemaphorePermit) {
        self.metrics.commands_received.inc();
        self.metrics.in_flight.add(1);
        let answer = match decode::<Command>(&message.payload) {
            Ok(command) => self.process(command).await,
            Err(error) => {
                self.metrics.malformed.inc();
                if let Some(held_back) = MALFORMED_LOG.allow() {
                    tracing::warn!(%error, kind = error.kind_name(), held_back, "malformed command");
                }
                reply(
                    &CommandId(String::new()),
                    CommandOutcome::Rejected {
                        reason: format!("malformed command: {error}"),
                    },
                )
            }
        };
        self.metrics.in_flight.add(-1);
        let Some(to) = message.reply else {
            return;
        };
        let payload = Bytes::from(encode(&answer));
        let sent = tokio::time::timeout(BROKER_TIMEOUT, self.client.publish(to, payload)).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.metrics.reply_failures.inc();
            tracing::warn!(command = %answer.command_id.0, "cannot send the reply to the requester");
        }
    }

    /// Audits, validates and dispatches a command; its reply.
    async fn process(&self, command: Command) -> CommandReply {
        let received_at = now_ms();
        let begun = {
            let command = command.clone();
            self.audit(move |store| store.begin(&command, received_at))
                .await
        };
        match begun {
            Ok(Begin::New) => {}
            Ok(Begin::Seen(record)) => {
                self.metrics.repeats.inc();
                return self.repeat(&command, *record).await;
            }
            Err(error) => {
                // Nothing is written to a pack without its audit row.
                self.metrics.audit_failures.inc();
                self.metrics.failed.inc();
                tracing::error!(%error, command = %command.id.0, "cannot audit a command: refused");
                return reply(
                    &command.id,
                    CommandOutcome::Failed {
                        error: format!("cannot audit the command, so it was not sent: {error}"),
                    },
                );
            }
        }
        let outcome = match validate(&command, received_at, &self.table, &self.policy) {
            Err(rejection) => {
                tracing::info!(command = %command.id.0, pack = %command.pack_id, reason = %rejection, "command rejected");
                CommandOutcome::Rejected {
                    reason: rejection.to_string(),
                }
            }
            Ok(setting) => self.dispatch(&command, setting).await,
        };
        self.metrics.count(&outcome);
        let answer = reply(&command.id, outcome);
        let stored = answer.clone();
        if let Err(error) = self
            .audit(move |store| store.complete(&stored, now_ms()))
            .await
        {
            self.metrics.audit_failures.inc();
            tracing::error!(%error, command = %command.id.0, "cannot complete the audit row");
        }
        answer
    }

    /// Sends the validated command to the bus owner of its pack and waits
    /// for the outcome, within the deadline.
    async fn dispatch(&self, command: &Command, setting: ValidatedSetting) -> CommandOutcome {
        let now = now_ms();
        let left = command.expires_at_ms.saturating_sub(now);
        let deadline = self
            .deadline
            .min(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        if deadline.is_zero() {
            return CommandOutcome::Rejected {
                reason: "command expired before it could be dispatched".to_owned(),
            };
        }
        // The bus must not start the write after our deadline: by then the
        // requester has been told it timed out.
        let dispatched = Command {
            setting: setting.name,
            value: setting.value,
            expires_at_ms: command.expires_at_ms.min(now.saturating_add(ms(deadline))),
            ..command.clone()
        };
        let subject = names::bus_write_subject(&command.pack_id);
        let request = async_nats::Request::new()
            .payload(encode(&dispatched).into())
            .timeout(Some(deadline));
        let started = Instant::now();
        let sent = tokio::time::timeout(deadline, self.client.send_request(subject, request)).await;
        self.metrics
            .dispatch_latency
            .record_us(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        let outcome = match sent {
            Err(_) => CommandOutcome::TimedOut,
            Ok(Err(error)) => match error.kind() {
                RequestErrorKind::TimedOut => CommandOutcome::TimedOut,
                RequestErrorKind::NoResponders => CommandOutcome::Failed {
                    error: format!("pack {}'s bus is not running", command.pack_id),
                },
                _ => CommandOutcome::Failed {
                    error: format!("cannot reach pack {}'s bus: {error}", command.pack_id),
                },
            },
            Ok(Ok(message)) => match decode::<CommandReply>(&message.payload) {
                Ok(answer) if answer.command_id == command.id => answer.outcome,
                Ok(answer) => CommandOutcome::Failed {
                    error: format!(
                        "the bus answered for another command ({:?})",
                        answer.command_id.0
                    ),
                },
                Err(error) => CommandOutcome::Failed {
                    error: format!("malformed reply from the pack's bus: {error}"),
                },
            },
        };
        match &outcome {
            CommandOutcome::Applied { read_back } => {
                tracing::info!(command = %command.id.0, pack = %command.pack_id, setting = %command.setting.0, value = command.value, read_back, "command applied");
            }
            other => {
                tracing::warn!(command = %command.id.0, pack = %command.pack_id, outcome = ?other, "command not applied");
            }
        }
        outcome
    }

    /// The reply to a repeated id: the stored one, once the first command
    /// has completed (here or in another instance); a first command that
    /// never completes is settled as interrupted.
    async fn repeat(&self, command: &Command, record: AuditRecord) -> CommandReply {
        if record.pack_id != command.pack_id.as_str()
            || record.setting != command.setting.0
            || record.value.to_bits() != command.value.to_bits()
        {
            tracing::warn!(command = %command.id.0, "a repeated id carries a different command; answering with the first one's result");
        }
        if let Some(stored) = record.reply {
            return stored;
        }
        let give_up_at = record
            .received_at_ms
            .saturating_add(ms(self.deadline + GRACE));
        while now_ms() < give_up_at {
            tokio::time::sleep(REPEAT_POLL).await;
            let id = command.id.clone();
            if let Ok(Some(stored)) = self.audit(move |store| store.stored_reply(&id)).await {
                return stored;
            }
        }
        let lost = interrupted(&command.id);
        let settle = lost.clone();
        let id = command.id.clone();
        let stored = self
            .audit(move |store| {
                store.complete_if_pending(&settle, now_ms())?;
                store.stored_reply(&id)
            })
            .await;
        match stored {
            Ok(Some(stored)) => stored,
            Ok(None) | Err(_) => lost,
        }
    }

    /// Settles commands a stopped worker left in flight, at start.
    async fn settle_interrupted(&self) {
        let before = now_ms().saturating_sub(ms(self.deadline + GRACE));
        let settled = self
            .audit(move |store| {
                let ids = store.pending_before(before)?;
                for id in &ids {
                    store.complete_if_pending(&interrupted(id), now_ms())?;
                }
                Ok(ids.len())
            })
            .await;
        match settled {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                commands = n,
                "commands interrupted by an earlier stop settled as failed (outcome unknown)"
            ),
            Err(error) => tracing::warn!(%error, "cannot settle interrupted commands"),
        }
    }
}

/// Deletes completed audit rows older than the retention period, a bounded
/// number at a time, at start and then every [`RETENTION_INTERVAL`].
async fn run_retention(handler: Arc<Handler>, days: u32, shutdown: CancellationToken) {
    if days == 0 {
        return;
    }
    loop {
        let cutoff = now_ms().saturating_sub(i64::from(days) * 86_400_000);
        loop {
            match handler
                .audit(move |store| store.prune_older_than(cutoff, RETENTION_BATCH))
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
