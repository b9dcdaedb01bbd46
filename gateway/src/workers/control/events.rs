//! What happens in the control worker that is both logged and counted,
//! each in one call ([`InternalEvent::emit`]).

use packgate_protocol::{CommandId, DecodeError};

use super::audit::AuditError;
use super::limit::Source;
use super::ControlMetrics;
use crate::telemetry::events::{InternalEvent, LogLimiter, LIMITED_LOG_INTERVAL};

/// Malformed commands log one line per interval, with the count.
static MALFORMED_LOG: LogLimiter = LogLimiter::named("malformed command", LIMITED_LOG_INTERVAL);

/// Commands over the rate limit log one line per interval, with the count.
static RATE_LOG: LogLimiter = LogLimiter::named("too many commands: refused", LIMITED_LOG_INTERVAL);

/// The audit step that failed, which says what became of the request.
#[derive(Debug, Clone, Copy)]
pub(super) enum AuditStep<'a> {
    /// A command's row could not be begun: the command is refused as
    /// failed, nothing is written to the pack.
    Begin(&'a CommandId),
    /// A command's row could not be completed with its outcome.
    Complete(&'a CommandId),
    /// A request that did not decode could not be recorded.
    Malformed,
    /// A command refused for its reused id could not be recorded; it
    /// counts as rejected all the same.
    Refused,
}

/// What happens in the control worker, each logged and counted in one call.
#[derive(Debug)]
pub(super) enum ControlEvent<'a> {
    /// A request that did not decode as a command.
    Malformed { error: &'a DecodeError },
    /// A request over its origin's rate, refused and not audited.
    RateLimited { id: &'a CommandId, source: Source },
    /// The reply could not be sent to the requester.
    ReplyFailed { id: &'a CommandId },
    /// The audit store failed at `step`.
    AuditFailed {
        error: &'a AuditError,
        step: AuditStep<'a>,
    },
    /// The oldest audit rows were deleted to keep the store within its
    /// size.
    RowsPruned { rows: usize, max_bytes: u64 },
}

impl InternalEvent<ControlMetrics> for ControlEvent<'_> {
    fn emit(self, metrics: &ControlMetrics) {
        match self {
            ControlEvent::Malformed { error } => {
                metrics.malformed.inc();
                if let Some(held_back) = MALFORMED_LOG.allow() {
                    tracing::warn!(%error, kind = error.kind_name(), held_back, "malformed command");
                }
            }
            ControlEvent::RateLimited { id, source } => {
                metrics.rate_limited.inc();
                if let Some(held_back) = RATE_LOG.allow() {
                    tracing::warn!(%source, command = %id.0, held_back, "too many commands: refused");
                }
            }
            ControlEvent::ReplyFailed { id } => {
                metrics.reply_failures.inc();
                tracing::warn!(command = %id.0, "cannot send the reply to the requester");
            }
            ControlEvent::AuditFailed { error, step } => {
                metrics.audit_failures.inc();
                match step {
                    AuditStep::Begin(id) => {
                        metrics.failed.inc();
                        tracing::error!(%error, command = %id.0, "cannot audit a command: refused");
                    }
                    AuditStep::Complete(id) => {
                        tracing::error!(%error, command = %id.0, "cannot complete the audit row");
                    }
                    AuditStep::Malformed => {
                        tracing::error!(%error, "cannot audit a malformed command");
                    }
                    AuditStep::Refused => {
                        metrics.rejected.inc();
                        tracing::error!(%error, "cannot audit a refused command");
                    }
                }
            }
            ControlEvent::RowsPruned { rows, max_bytes } => {
                metrics.rows_pruned.add(rows as u64);
                tracing::info!(
                    rows,
                    max_bytes,
                    "audit store at its size limit: oldest rows deleted"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_counts_into_its_counters() {
        let metrics = ControlMetrics::default();
        let id = CommandId("c-1".to_owned());
        let error = AuditError::Task("stuck".to_owned());
        ControlEvent::AuditFailed {
            error: &error,
            step: AuditStep::Begin(&id),
        }
        .emit(&metrics);
        ControlEvent::AuditFailed {
            error: &error,
            step: AuditStep::Complete(&id),
        }
        .emit(&metrics);
        ControlEvent::AuditFailed {
            error: &error,
            step: AuditStep::Refused,
        }
        .emit(&metrics);
        ControlEvent::AuditFailed {
            error: &error,
            step: AuditStep::Malformed,
        }
        .emit(&metrics);
        ControlEvent::ReplyFailed { id: &id }.emit(&metrics);
        ControlEvent::RowsPruned {
            rows: 40,
            max_bytes: 1 << 20,
        }
        .emit(&metrics);
        assert_eq!(metrics.audit_failures.get(), 4);
        assert_eq!(metrics.failed.get(), 1, "only a failed begin refuses");
        assert_eq!(metrics.rejected.get(), 1, "only a refused reused id");
        assert_eq!(metrics.reply_failures.get(), 1);
        assert_eq!(metrics.rows_pruned.get(), 40);
        assert_eq!(metrics.malformed.get(), 0);
        assert_eq!(metrics.rate_limited.get(), 0);
    }
}
