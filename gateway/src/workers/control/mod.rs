//! The control worker: commands to packs, from the cloud worker or the
//! local CLI, by request-reply on [`CONTROL_SUBJECT`].
//!
//! Each command is recorded in the audit store when it arrives (which also
//! makes a repeated id find the first one's result), validated against the
//! pack's profile and the site limits ([`validate`]), dispatched by
//! request-reply to the task that owns the pack's bus
//! ([`bus_write_subject`]) under a deadline, and completed in the audit
//! store with the outcome before the reply goes back.
//!
//! The bus owner receives the encoded [`Command`] with `expires_at_ms`
//! brought forward to the end of the dispatch deadline (it must not start
//! the write after that instant), and replies with an encoded
//! [`CommandReply`] for the same command id: `Applied { read_back }` after
//! writing and reading back, else `Failed { error }`, `TimedOut` or
//! `Rejected { reason }`.
//!
//! Each origin (the cloud, the box) has a token bucket
//! (`commands_per_s_per_origin`, `command_burst_per_origin`); a command
//! over it is refused, counted (`rate_limited`) and not audited. Every
//! other command and refusal is audited (see the `handler` module), and the audit
//! store is kept under `audit_max_bytes` by deleting its oldest rows.
//!
//! [`CONTROL_SUBJECT`]: packgate_protocol::names::CONTROL_SUBJECT
//! [`bus_write_subject`]: packgate_protocol::names::bus_write_subject
//! [`Command`]: packgate_protocol::Command
//! [`CommandReply`]: packgate_protocol::CommandReply

pub mod audit;
pub mod bank;
mod client;
mod dispatch;
mod events;
mod handler;
mod intake;
mod limit;
pub mod validate;
mod worker;

pub use crate::config::{ControlConfig, ControlConfigError, SiteLimit};
pub use audit::{AuditError, AuditRecord, AuditStore, RELAY_RESET_SETTING};
pub use client::{format_value, send_command, ControlClientError};
pub use worker::{run_control, ControlWorker};

use packgate_drivers::profile::ProfileError;
use packgate_protocol::CommandOutcome;

/// Why the control worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The `[control]` section is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ControlConfigError),
    /// A pack's profile could not be loaded, so its settings are unknown.
    #[error("cannot build the table of writable settings: {0}")]
    Profile(#[from] ProfileError),
    /// The audit store could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The connection to the broker was closed for good.
    #[error("the subscription to {0} ended: the broker connection is closed")]
    SubscriptionClosed(&'static str),
}

crate::worker_metrics! {
    /// What the control worker has done.
    pub struct ControlMetrics {
        counters {
            /// Requests received, malformed ones included.
            commands_received,
            /// Commands written and read back.
            applied,
            /// Commands refused (validation, malformed, a reused id, or by the
            /// bus); each audited.
            rejected,
            /// Commands whose dispatch or write failed.
            failed,
            /// Commands with no answer from the bus within their deadline.
            timed_out,
            /// Repeated command ids, answered from the audit store.
            repeats,
            /// Requests that did not decode as a command.
            malformed,
            /// Audit rows that could not be written or completed.
            audit_failures,
            /// Replies that could not be sent to the requester.
            reply_failures,
            /// Audit rows removed by retention (age) or to keep the store
            /// within its size.
            rows_pruned,
            /// Commands refused because their origin sent more than its rate
            /// (`commands_per_s_per_origin`); not audited.
            rate_limited,
        }
        gauges {
            /// Commands being handled now.
            in_flight,
        }
        latencies {
            /// From dispatch to the bus's reply.
            dispatch_latency: "dispatch",
        }
    }
}

impl ControlMetrics {
    /// Counts a command's outcome.
    fn count(&self, outcome: &CommandOutcome) {
        match outcome {
            CommandOutcome::Applied { .. } => self.applied.inc(),
            CommandOutcome::Rejected { .. } => self.rejected.inc(),
            CommandOutcome::Failed { .. } => self.failed.inc(),
            CommandOutcome::TimedOut => self.timed_out.inc(),
        }
    }
}
