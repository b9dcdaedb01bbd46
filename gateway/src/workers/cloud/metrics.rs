//! What the cloud worker has done, and the state of its link.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use crate::telemetry::health::LINK_ERROR_NOTE;
use crate::telemetry::snapshot::MetricsSource;
use crate::telemetry::{now_ms, Counter, Gauge};

/// Counters and gauges of the cloud worker.
#[derive(Debug, Default)]
pub struct CloudMetrics {
    /// Batches the cloud acknowledged in full.
    pub batches_sent: Counter,
    /// Samples the cloud acknowledged.
    pub samples_sent: Counter,
    /// Events the cloud acknowledged.
    pub events_sent: Counter,
    /// Upload attempts that failed (the batch is kept and retried).
    pub batches_failed: Counter,
    /// Attempts at a batch after its first.
    pub upload_retries: Counter,
    /// Connection attempts the cloud refused for their credentials.
    pub auth_failures: Counter,
    /// Control requests received from the cloud.
    pub control_requests: Counter,
    /// Local acks that failed after the cloud had the batch (the messages
    /// come back and are de-duplicated by the cloud stream).
    pub ack_failures: Counter,
    /// Desired settings applied and read back (first writes and rechecks).
    pub desired_applied: Counter,
    /// Desired settings the control path refused (kept until they change).
    pub desired_rejected: Counter,
    /// Attempts at desired settings that failed and are tried again.
    pub desired_retries: Counter,
    /// Desired settings of this gateway the worker follows.
    pub desired_settings: Gauge,
    /// Whether the cloud connection is up.
    link_up: AtomicBool,
    /// Messages the cloud has not yet acknowledged: pending plus in hand, of
    /// both local consumers.
    pub backlog: Gauge,
    /// Poll time of the last sample the cloud acknowledged, milliseconds
    /// since the Unix epoch (0: none yet).
    last_uploaded_ms: AtomicI64,
    /// The last link error, for `packgate status`.
    last_error: Mutex<Option<String>>,
}

impl CloudMetrics {
    /// Named counter values, for a metrics snapshot.
    fn counter_values(&self) -> Vec<(String, u64)> {
        [
            ("batches_sent", &self.batches_sent),
            ("samples_sent", &self.samples_sent),
            ("events_sent", &self.events_sent),
            ("batches_failed", &self.batches_failed),
            ("upload_retries", &self.upload_retries),
            ("auth_failures", &self.auth_failures),
            ("control_requests", &self.control_requests),
            ("ack_failures", &self.ack_failures),
            ("desired_applied", &self.desired_applied),
            ("desired_rejected", &self.desired_rejected),
            ("desired_retries", &self.desired_retries),
        ]
        .into_iter()
        .map(|(name, counter)| (name.to_owned(), counter.get()))
        .collect()
    }

    /// Named gauge values, for a metrics snapshot: `link_up` (0 or 1),
    /// `backlog` (messages) and `upload_lag_ms` (now minus the poll time of
    /// the last uploaded sample; absent before the first upload).
    fn gauge_values(&self) -> Vec<(String, f64)> {
        let mut gauges = vec![
            ("link_up".to_owned(), if self.link_up() { 1.0 } else { 0.0 }),
            ("backlog".to_owned(), self.backlog.get() as f64),
            (
                "desired_settings".to_owned(),
                self.desired_settings.get() as f64,
            ),
        ];
        if let Some(lag) = self.upload_lag_ms() {
            gauges.push(("upload_lag_ms".to_owned(), lag as f64));
        }
        gauges
    }

    /// Whether the cloud connection is up.
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_link_up(&self, up: bool) {
        self.link_up.store(up, Ordering::Relaxed);
    }

    /// Now minus the poll time of the last sample the cloud acknowledged,
    /// milliseconds; `None` before the first.
    pub fn upload_lag_ms(&self) -> Option<i64> {
        match self.last_uploaded_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some((now_ms() - at).max(0)),
        }
    }

    /// Poll time of the last sample the cloud acknowledged, milliseconds
    /// since the Unix epoch; `None` before the first.
    pub(crate) fn last_uploaded_ms(&self) -> Option<i64> {
        match self.last_uploaded_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }

    pub(crate) fn set_last_uploaded(&self, timestamp_ms: i64) {
        self.last_uploaded_ms
            .fetch_max(timestamp_ms.max(1), Ordering::Relaxed);
    }

    /// Why the link is down (such as rejected credentials, or a
    /// certificate the gateway does not trust), cleared when it comes up.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

impl MetricsSource for CloudMetrics {
    fn counters(&self) -> Vec<(String, u64)> {
        self.counter_values()
    }

    fn gauges(&self) -> Vec<(String, f64)> {
        self.gauge_values()
    }

    /// `link_error`: why the link is down, while it is.
    fn notes(&self) -> Vec<(String, String)> {
        self.last_error()
            .filter(|_| !self.link_up())
            .map(|error| vec![(LINK_ERROR_NOTE.to_owned(), error)])
            .unwrap_or_default()
    }
}
