//! Counters of the collect worker.

use packgate_drivers::DriverErrorKind;

use crate::telemetry::{Counter, Gauge, LatencyHistogram};

/// What the collect worker has done, for metrics snapshots and tests.
#[derive(Debug)]
pub struct CollectMetrics {
    /// Polls answered.
    pub polls_ok: Counter,
    /// Polls that timed out.
    pub polls_timeout: Counter,
    /// Polls that failed on the link.
    pub polls_transport: Counter,
    /// Polls answered with garbage.
    pub polls_protocol: Counter,
    /// Polls refused by the device.
    pub polls_exception: Counter,
    /// Schedule ticks missed because a round overran its period.
    pub late_ticks: Counter,
    /// Samples acknowledged by JetStream (new).
    pub samples_published: Counter,
    /// Samples JetStream acknowledged as duplicates (already stored).
    pub samples_duplicate: Counter,
    /// Stale samples published (the pack did not answer).
    pub samples_stale: Counter,
    /// Samples dropped because the pending queue was full (data loss).
    pub samples_dropped: Counter,
    /// Events acknowledged by JetStream.
    pub events_published: Counter,
    /// Publish attempts that failed and were retried.
    pub publish_failures: Counter,
    /// Messages accepted but not published at exit (data loss).
    pub unpublished_at_exit: Counter,
    /// Wall-clock jumps seen (a step the monotonic clock does not account
    /// for); samples stamped during the hold after one are clock-untrusted.
    pub clock_jumps: Counter,
    /// Messages waiting to be published.
    pub pending: Gauge,
    /// Publishes awaiting their ack.
    pub inflight: Gauge,
    /// Packs currently offline.
    pub packs_offline: Gauge,
    /// Poll duration.
    pub poll_latency: LatencyHistogram,
    /// From poll to JetStream ack.
    pub publish_latency: LatencyHistogram,
}

impl Default for CollectMetrics {
    fn default() -> Self {
        Self {
            polls_ok: Counter::default(),
            polls_timeout: Counter::default(),
            polls_transport: Counter::default(),
            polls_protocol: Counter::default(),
            polls_exception: Counter::default(),
            late_ticks: Counter::default(),
            samples_published: Counter::default(),
            samples_duplicate: Counter::default(),
            samples_stale: Counter::default(),
            samples_dropped: Counter::default(),
            events_published: Counter::default(),
            publish_failures: Counter::default(),
            unpublished_at_exit: Counter::default(),
            clock_jumps: Counter::default(),
            pending: Gauge::default(),
            inflight: Gauge::default(),
            packs_offline: Gauge::default(),
            poll_latency: LatencyHistogram::new("poll"),
            publish_latency: LatencyHistogram::new("poll_to_ack"),
        }
    }
}

impl CollectMetrics {
    /// Counts a failed poll by kind.
    pub fn poll_failed(&self, kind: DriverErrorKind) {
        match kind {
            DriverErrorKind::Timeout => self.polls_timeout.inc(),
            DriverErrorKind::Transport => self.polls_transport.inc(),
            DriverErrorKind::Protocol => self.polls_protocol.inc(),
            DriverErrorKind::UnsupportedSetting => self.polls_exception.inc(),
        }
    }

    /// Named counter values, for a metrics snapshot.
    pub fn counters(&self) -> Vec<(String, u64)> {
        [
            ("polls_ok", &self.polls_ok),
            ("polls_timeout", &self.polls_timeout),
            ("polls_transport", &self.polls_transport),
            ("polls_protocol", &self.polls_protocol),
            ("polls_exception", &self.polls_exception),
            ("late_ticks", &self.late_ticks),
            ("samples_published", &self.samples_published),
            ("samples_duplicate", &self.samples_duplicate),
            ("samples_stale", &self.samples_stale),
            ("samples_dropped", &self.samples_dropped),
            ("events_published", &self.events_published),
            ("publish_failures", &self.publish_failures),
            ("unpublished_at_exit", &self.unpublished_at_exit),
            ("clock_jumps", &self.clock_jumps),
        ]
        .into_iter()
        .map(|(name, counter)| (name.to_owned(), counter.get()))
        .collect()
    }
}
