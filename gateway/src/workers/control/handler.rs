//! One request on the control subject, from its bytes to its reply: read,
//! rate-limited per origin, audited, validated, dispatched (in
//! [`dispatch`](super::dispatch)) and completed in the audit store.
//!
//! Every refusal is audited, except one over the rate limit: a command
//! refused by validation under its own id; a request that did not decode
//! under the id it begins with, or a generated key (`unreadable-…`) when it
//! has none; a repeated id carrying another command under a generated key
//! (`reused-…`), since the id's own row keeps the first command.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use packgate_protocol::{encode, Command, CommandId, CommandOutcome, CommandReply, DecodeError};
use tokio::sync::OwnedSemaphorePermit;

use super::audit::{AuditError, AuditRecord, AuditStore, Begin};
use super::client::format_value;
use super::intake::{self, Request};
use super::limit::{RateLimiter, Source};
use super::validate::{validate, PackTable, Policy};
use super::ControlMetrics;
use crate::telemetry::events::{LogLimiter, LIMITED_LOG_INTERVAL};
use crate::telemetry::now_ms;

/// Malformed commands log one line per interval, with the count.
static MALFORMED_LOG: LogLimiter = LogLimiter::named("malformed command", LIMITED_LOG_INTERVAL);

/// Commands over the rate limit log one line per interval, with the count.
static RATE_LOG: LogLimiter = LogLimiter::named("too many commands: refused", LIMITED_LOG_INTERVAL);

/// Longest one audit store operation may take (SQLite waits up to its busy
/// timeout for a lock; this bounds a stuck disk too).
pub(super) const AUDIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a subscribe, unsubscribe or reply publish may take.
pub(super) const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Time on top of the dispatch deadline for a command to be audited and
/// answered; past it, a command never completed is taken as interrupted.
pub(super) const GRACE: Duration = Duration::from_secs(2);

/// Most rows one pruning statement deletes.
pub(super) const PRUNE_BATCH: usize = 5_000;

/// Milliseconds of a duration, saturated.
pub(super) fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The reply of `command_id` with `outcome`.
pub(super) fn reply(command_id: &CommandId, outcome: CommandOutcome) -> CommandReply {
    CommandReply {
        command_id: command_id.clone(),
        outcome,
    }
}

/// What the outcome of a command interrupted mid-dispatch is recorded as.
pub(super) fn interrupted(command_id: &CommandId) -> CommandReply {
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
pub(super) struct Handler {
    pub(super) store: Arc<Mutex<AuditStore>>,
    pub(super) table: PackTable,
    pub(super) policy: Policy,
    pub(super) deadline: Duration,
    pub(super) client: async_nats::Client,
    pub(super) metrics: Arc<ControlMetrics>,
    pub(super) limiter: RateLimiter,
    /// Largest the audit database may grow, bytes.
    pub(super) audit_max_bytes: u64,
    /// Numbers the generated audit keys.
    pub(super) keys: AtomicU64,
}

impl Handler {
    /// Runs `op` on the audit store off the async threads, under
    /// [`AUDIT_TIMEOUT`].
    pub(super) async fn audit<T: Send + 'static>(
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
    pub(super) async fn serve(
        self: Arc<Self>,
        message: async_nats::Message,
        _slot: OwnedSemaphorePermit,
    ) {
        self.metrics.commands_received.inc();
        self.metrics.in_flight.add(1);
        let now = std::time::Instant::now();
        let answer = match intake::read(&message.payload) {
            Request::Command(command) => {
                let source = Source::of(command.origin);
                if self.limiter.allow(source, now) {
                    self.process(command).await
                } else {
                    self.rate_limited(&command.id, source)
                }
            }
            Request::Unreadable { id, error } => {
                self.metrics.malformed.inc();
                if let Some(held_back) = MALFORMED_LOG.allow() {
                    tracing::warn!(%error, kind = error.kind_name(), held_back, "malformed command");
                }
                let id = id.unwrap_or_else(|| CommandId(String::new()));
                if self.limiter.allow(Source::Unreadable, now) {
                    self.refuse_unreadable(id, &error).await
                } else {
                    self.rate_limited(&id, Source::Unreadable)
                }
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

    /// The reply to a request over its source's rate: refused, counted,
    /// not audited.
    fn rate_limited(&self, id: &CommandId, source: Source) -> CommandReply {
        self.metrics.rate_limited.inc();
        if let Some(held_back) = RATE_LOG.allow() {
            tracing::warn!(%source, command = %id.0, held_back, "too many commands: refused");
        }
        reply(
            id,
            CommandOutcome::Rejected {
                reason: format!(
                    "too many commands from {source} (more than {} a second): \
                     not applied and not recorded; send it again later",
                    self.limiter.per_s()
                ),
            },
        )
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
                if !same_command(&record, &command) {
                    return self.refuse_reused_id(&command, &record, received_at).await;
                }
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
        let answer = reply(&command.id, outcome);
        self.complete(&answer).await;
        answer
    }

    /// Counts a command's outcome, completes its audit row, and keeps the
    /// store within its size.
    async fn complete(&self, answer: &CommandReply) {
        self.metrics.count(&answer.outcome);
        let stored = answer.clone();
        if let Err(error) = self
            .audit(move |store| store.complete(&stored, now_ms()))
            .await
        {
            self.metrics.audit_failures.inc();
            tracing::error!(%error, command = %answer.command_id.0, "cannot complete the audit row");
        }
        self.keep_within_size().await;
    }

    /// A key for an audit row of its own: `<what>-<now>-<n>`.
    fn generated_key(&self, what: &str) -> CommandId {
        let n = self.keys.fetch_add(1, Ordering::Relaxed);
        CommandId(format!("{what}-{}-{n}", now_ms()))
    }

    /// Refuses and audits a request that did not decode: under `id` when
    /// it has one not used before, else under a generated key.
    async fn refuse_unreadable(&self, id: CommandId, error: &DecodeError) -> CommandReply {
        let received_at = now_ms();
        let mut key = id.clone();
        for _ in 0..3 {
            if !key.0.is_empty() {
                let try_key = key.clone();
                match self
                    .audit(move |store| store.begin_unreadable(&try_key, received_at))
                    .await
                {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) => {
                        self.metrics.audit_failures.inc();
                        tracing::error!(%error, "cannot audit a malformed command");
                        break;
                    }
                }
            }
            key = self.generated_key("unreadable");
        }
        let shown = if key == id {
            String::new()
        } else {
            format!(" (recorded as {})", key.0)
        };
        let outcome = CommandOutcome::Rejected {
            reason: format!("malformed command{shown}: {error}"),
        };
        self.complete(&reply(&key, outcome.clone())).await;
        reply(&id, outcome)
    }

    /// Refuses a command whose id was used before for another command,
    /// saying what that one did; audited under a generated key.
    async fn refuse_reused_id(
        &self,
        command: &Command,
        first: &AuditRecord,
        received_at: i64,
    ) -> CommandReply {
        tracing::warn!(command = %command.id.0, "a repeated id carries a different command: refused");
        let reason = format!(
            "command id {:?} was already used: {} = {} on pack {} ({}); \
             this request ({} = {} on pack {}) was not applied: send it with a new id",
            command.id.0,
            first.setting,
            format_value(first.value),
            first.pack_id,
            what_it_did(first),
            command.setting.0,
            format_value(command.value),
            command.pack_id,
        );
        let outcome = CommandOutcome::Rejected { reason };
        let key = self.generated_key("reused");
        let row = Command {
            id: key.clone(),
            ..command.clone()
        };
        match self
            .audit(move |store| store.begin(&row, received_at))
            .await
        {
            Ok(_) => self.complete(&reply(&key, outcome.clone())).await,
            Err(error) => {
                self.metrics.audit_failures.inc();
                self.metrics.rejected.inc();
                tracing::error!(%error, "cannot audit a refused command");
            }
        }
        reply(&command.id, outcome)
    }

    /// Prunes the oldest audit rows while the store is over its size.
    pub(super) async fn keep_within_size(&self) {
        let max = self.audit_max_bytes;
        match self
            .audit(move |store| store.prune_to_size(max, PRUNE_BATCH))
            .await
        {
            Ok(0) => {}
            Ok(rows) => {
                self.metrics.rows_pruned.add(rows as u64);
                tracing::info!(
                    rows,
                    max_bytes = max,
                    "audit store at its size limit: oldest rows deleted"
                );
            }
            Err(error) => tracing::warn!(%error, "cannot keep the audit store within its size"),
        }
    }

    /// Settles commands a stopped worker left in flight, at start.
    pub(super) async fn settle_interrupted(&self) {
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

/// Whether a stored row is the same command as `command` (a retry).
fn same_command(record: &AuditRecord, command: &Command) -> bool {
    let same_value = record.value.to_bits() == command.value.to_bits()
        || (record.value.is_nan() && command.value.is_nan());
    record.pack_id == command.pack_id.as_str() && record.setting == command.setting.0 && same_value
}

/// What a stored command did, in words.
fn what_it_did(record: &AuditRecord) -> String {
    let detail = record.detail.as_deref().unwrap_or("");
    match (record.outcome.as_deref(), record.read_back) {
        (Some("applied"), Some(read_back)) => {
            format!("applied, read back {}", format_value(read_back))
        }
        (Some("timed_out"), _) => "timed out".to_owned(),
        (Some(outcome), _) => format!("{outcome}: {detail}"),
        (None, _) => "still in progress".to_owned(),
    }
}
