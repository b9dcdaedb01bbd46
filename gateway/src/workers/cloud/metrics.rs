//! What the cloud worker has done, and the state of its link.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use crate::telemetry::health::LINK_ERROR_NOTE;
use crate::telemetry::now_ms;
use crate::telemetry::snapshot::MetricsSource;

crate::worker_metrics! {
    /// The cloud worker's counters and plain gauges, each named once.
    pub struct CloudCounts {
        counters {
            /// Batches the cloud acknowledged in full.
            batches_sent,
            /// Samples the cloud acknowledged.
            samples_sent,
            /// Events the cloud acknowledged.
            events_sent,
            /// Upload attempts that failed (the batch is kept and retried).
            batches_failed,
            /// Attempts at a batch after its first.
            upload_retries,
            /// Connection attempts the cloud refused for their credentials.
            auth_failures,
            /// Control requests received from the cloud.
            control_requests,
            /// Local acks that failed after the cloud had the batch (the
            /// messages come back and are de-duplicated by the cloud stream).
            ack_failures,
            /// Desired settings applied and read back (first writes and
            /// rechecks).
            desired_applied,
            /// Desired settings the control path refused (kept until they
            /// change).
            desired_rejected,
            /// Attempts at desired settings that failed and are tried again.
            desired_retries,
        }
        gauges {
            /// Messages the cloud has not yet acknowledged: pending plus in
            /// hand, of both local consumers.
            backlog,
            /// Desired settings of this gateway the worker follows.
            desired_settings,
        }
        latencies {}
    }
}

/// Counters and gauges of the cloud worker, and the state of its link.
/// The counts read as its own fields (`metrics.batches_sent`).
#[derive(Debug, Default)]
pub struct CloudMetrics {
    /// Its counters and plain gauges.
    pub counts: CloudCounts,
    /// Whether the cloud connection is up.
    link_up: AtomicBool,
    /// Poll time of the last sample the cloud acknowledged, milliseconds
    /// since the Unix epoch (0: none yet).
    last_uploaded_ms: AtomicI64,
    /// The last link error, for `packgate status`.
    last_error: Mutex<Option<String>>,
}

impl Deref for CloudMetrics {
    type Target = CloudCounts;

    fn deref(&self) -> &CloudCounts {
        &self.counts
    }
}

impl CloudMetrics {
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
        self.counts.counters()
    }

    /// The declared gauges, plus `link_up` (0 or 1) and `upload_lag_ms`
    /// (now minus the poll time of the last uploaded sample; absent before
    /// the first upload).
    fn gauges(&self) -> Vec<(String, f64)> {
        let mut gauges = self.counts.gauges();
        gauges.push(("link_up".to_owned(), f64::from(u8::from(self.link_up()))));
        if let Some(lag) = self.upload_lag_ms() {
            gauges.push(("upload_lag_ms".to_owned(), lag as f64));
        }
        gauges
    }

    /// `link_error`: why the link is down, while it is.
    fn notes(&self) -> Vec<(String, String)> {
        self.last_error()
            .filter(|_| !self.link_up())
            .map(|error| vec![(LINK_ERROR_NOTE.to_owned(), error)])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_names_the_dashboards_read() {
        let metrics = CloudMetrics::default();
        metrics.batches_sent.add(2);
        metrics.desired_retries.inc();
        metrics.backlog.set(7);
        let counters = metrics.counters();
        let names: Vec<&str> = counters.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "batches_sent",
                "samples_sent",
                "events_sent",
                "batches_failed",
                "upload_retries",
                "auth_failures",
                "control_requests",
                "ack_failures",
                "desired_applied",
                "desired_rejected",
                "desired_retries",
            ]
        );
        assert_eq!(counters[0].1, 2);
        assert_eq!(counters[10].1, 1);
        assert_eq!(
            metrics.gauges(),
            [
                ("backlog".to_owned(), 7.0),
                ("desired_settings".to_owned(), 0.0),
                ("link_up".to_owned(), 0.0),
            ]
        );
        metrics.set_link_up(true);
        metrics.set_last_uploaded(1);
        let gauges = metrics.gauges();
        assert_eq!(gauges[2], ("link_up".to_owned(), 1.0));
        assert_eq!(gauges[3].0, "upload_lag_ms");
    }
}
