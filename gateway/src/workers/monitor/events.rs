//! What happens in the monitor worker that is logged and counted, each in
//! one call ([`InternalEvent::emit`]).

use packgate_protocol::DecodeError;

use super::{BatchOutcome, MonitorMetrics, MonitorStoreError};
use crate::telemetry::events::{InternalEvent, LogLimiter, LIMITED_LOG_INTERVAL};

/// Malformed and refused messages log one line per interval, with the
/// count.
static MALFORMED_LOG: LogLimiter = LogLimiter::named(
    "messages the monitor terminated (malformed, or refused by its database)",
    LIMITED_LOG_INTERVAL,
);

/// What happens in the monitor worker, each logged and counted in one call.
#[derive(Debug)]
pub(super) enum MonitorEvent<'a> {
    /// A message that did not decode, terminated.
    Malformed {
        subject: &'a str,
        error: &'a DecodeError,
    },
    /// A batch was committed; the database refused `refused` of its rows
    /// (those messages are terminated).
    Committed {
        outcome: &'a BatchOutcome,
        refused: usize,
    },
    /// A commit failed; the batch of `messages` is kept and retried.
    CommitFailed {
        error: &'a MonitorStoreError,
        messages: usize,
    },
    /// The task running a commit failed; the batch is retried.
    StoreTaskFailed { error: &'a tokio::task::JoinError },
    /// An ack failed (`error`) or timed out (`None`); the message comes
    /// back.
    AckFailed {
        error: Option<&'a async_nats::Error>,
    },
}

impl InternalEvent<MonitorMetrics> for MonitorEvent<'_> {
    fn emit(self, metrics: &MonitorMetrics) {
        match self {
            MonitorEvent::Malformed { subject, error } => {
                metrics.messages_malformed.inc();
                if let Some(held_back) = MALFORMED_LOG.allow() {
                    tracing::warn!(
                        subject,
                        %error,
                        kind = error.kind_name(),
                        held_back,
                        "malformed message on a monitored stream: terminated"
                    );
                }
            }
            MonitorEvent::Committed { outcome, refused } => {
                metrics.snapshots_stored.add(outcome.snapshots as u64);
                metrics.events_stored.add(outcome.events as u64);
                metrics.duplicates.add(outcome.duplicates as u64);
                metrics.rows_refused.add(refused as u64);
                metrics.batches_committed.inc();
                if refused > 0 {
                    if let Some(held_back) = MALFORMED_LOG.allow() {
                        tracing::warn!(
                            refused,
                            held_back,
                            "the monitor database refused messages: terminated, the rest stored"
                        );
                    }
                }
            }
            MonitorEvent::CommitFailed { error, messages } => {
                metrics.store_failures.inc();
                tracing::error!(%error, messages, "cannot commit to the monitor database; retried");
            }
            MonitorEvent::StoreTaskFailed { error } => {
                metrics.store_failures.inc();
                tracing::error!(%error, "monitor store task failed");
            }
            MonitorEvent::AckFailed { error: Some(error) } => {
                metrics.ack_failures.inc();
                tracing::debug!(%error, "ack failed; the message will be redelivered");
            }
            MonitorEvent::AckFailed { error: None } => {
                metrics.ack_failures.inc();
                tracing::debug!("ack timed out; the message will be redelivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_counts_its_rows_and_refusals() {
        let metrics = MonitorMetrics::default();
        let outcome = BatchOutcome {
            snapshots: 3,
            events: 2,
            duplicates: 1,
        };
        MonitorEvent::Committed {
            outcome: &outcome,
            refused: 4,
        }
        .emit(&metrics);
        MonitorEvent::AckFailed { error: None }.emit(&metrics);
        assert_eq!(metrics.snapshots_stored.get(), 3);
        assert_eq!(metrics.events_stored.get(), 2);
        assert_eq!(metrics.duplicates.get(), 1);
        assert_eq!(metrics.rows_refused.get(), 4);
        assert_eq!(metrics.batches_committed.get(), 1);
        assert_eq!(metrics.ack_failures.get(), 1);
        assert_eq!(metrics.store_failures.get(), 0);
    }
}
