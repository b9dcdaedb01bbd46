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
//! [`CONTROL_SUBJECT`]: packgate_protocol::names::CONTROL_SUBJECT
//! [`bus_write_subject`]: packgate_protocol::names::bus_write_subject
//! [`Command`]: packgate_protocol::Command
//! [`CommandReply`]: packgate_protocol::CommandReply

pub mod audit;
mod client;
pub mod config;
pub mod validate;
mod worker;

pub use audit::{AuditError, AuditRecord, AuditStore};
pub use client::{send_command, ControlClientError};
pub use config::{ControlConfig, ControlConfigError, SiteLimit};
pub use worker::{run_control, run_control_with, QUEUE_GROUP};

use packgate_drivers::profile::ProfileError;
use packgate_protocol::{CommandOutcome, LatencySummary};

use crate::telemetry::{Counter, Gauge, LatencyHistogram};

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

/// What the control worker has done.
#[derive(Debug)]
pub struct ControlMetrics {
    /// Requests received, malformed ones included.
    pub commands_received: Counter,
    /// Commands written and read back.
    pub applied: Counter,
    /// Commands refused (validation, or by the bus).
    pub rejected: Counter,
    /// Commands whose dispatch or write failed.
    pub failed: Counter,
    /// Commands with no answer from the bus within their deadline.
    pub timed_out: Counter,
    /// Repeated command ids, answered from the audit store.
    pub repeats: Counter,
    /// Requests that did not decode as a command.
    pub malformed: Counter,
    /// Audit rows that could not be written or completed.
    pub audit_failures: Counter,
    /// Replies that could not be sent to the requester.
    pub reply_failures: Counter,
    /// Audit rows removed by retention.
    pub rows_pruned: Counter,
    /// Commands being handled now.
    pub in_flight: Gauge,
    /// From dispatch to the bus's reply.
    pub dispatch_latency: LatencyHistogram,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        Self {
            commands_received: Counter::default(),
            applied: Counter::default(),
            rejected: Counter::default(),
            failed: Counter::default(),
            timed_out: Counter::default(),
            repeats: Counter::default(),
            malformed: Counter::default(),
            audit_failures: Counter::default(),
            reply_failures: Counter::default(),
            rows_pruned: Counter::default(),
            in_flight: Gauge::default(),
            dispatch_latency: LatencyHistogram::new("dispatch"),
        }
    }
}

impl ControlMetrics {
    /// Named counter values, for a metrics snapshot.
    pub fn counters(&self) -> Vec<(String, u64)> {
        [
            ("commands_received", &self.commands_received),
            ("applied", &self.applied),
            ("rejected", &self.rejected),
            ("failed", &self.failed),
            ("timed_out", &self.timed_out),
            ("repeats", &self.repeats),
            ("malformed", &self.malformed),
            ("audit_failures", &self.audit_failures),
            ("reply_failures", &self.reply_failures),
            ("rows_pruned", &self.rows_pruned),
        ]
        .into_iter()
        .map(|(name, counter)| (name.to_owned(), counter.get()))
        .collect()
    }

    /// Named gauge values, for a metrics snapshot.
    pub fn gauges(&self) -> Vec<(String, f64)> {
        vec![("in_flight".to_owned(), self.in_flight.get() as f64)]
    }

    /// Latency summaries, for a metrics snapshot.
    pub fn latencies(&self) -> Vec<LatencySummary> {
        vec![self.dispatch_latency.summary()]
    }

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
