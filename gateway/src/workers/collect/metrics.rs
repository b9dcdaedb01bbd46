//! Counters of the collect worker.

use packgate_drivers::DriverErrorKind;

crate::worker_metrics! {
    /// What the collect worker has done, for metrics snapshots and tests.
    pub struct CollectMetrics {
        counters {
            /// Polls answered.
            polls_ok,
            /// Polls that timed out.
            polls_timeout,
            /// Polls that failed on the link.
            polls_transport,
            /// Polls answered with garbage.
            polls_protocol,
            /// Polls refused by the device.
            polls_exception,
            /// Schedule ticks missed because a round overran its period.
            late_ticks,
            /// Samples acknowledged by JetStream (new).
            samples_published,
            /// Samples JetStream acknowledged as duplicates (already stored).
            samples_duplicate,
            /// Stale samples published (the pack did not answer).
            samples_stale,
            /// Suspect samples published (read, but not believable: a cell
            /// outside 0.5-5 V, a current past the pack's maximum, a pack
            /// voltage far from its cells' sum).
            samples_suspect,
            /// Samples dropped because the pending queue was full (data loss).
            samples_dropped,
            /// Events acknowledged by JetStream.
            events_published,
            /// Publish attempts that failed and were retried.
            publish_failures,
            /// Messages accepted but not published at exit (data loss).
            unpublished_at_exit,
            /// Wall-clock jumps seen (a step the monotonic clock does not account
            /// for); samples stamped during the hold after one are clock-untrusted.
            clock_jumps,
            /// Write requests the bus owner refused on its own check (malformed,
            /// out of bounds, expired, or sent for another pack than the
            /// command names); nothing was written.
            writes_refused,
            /// Acknowledged messages sent again after a reconnection, in
            /// case the broker lost them.
            messages_replayed,
            /// Of those, the ones the broker had lost: stored now, not lost.
            messages_recovered,
        }
        gauges {
            /// Messages waiting to be published.
            pending,
            /// Publishes awaiting their ack.
            inflight,
            /// Packs currently offline.
            packs_offline,
        }
        latencies {
            /// Poll duration.
            poll_latency: "poll",
            /// From poll to JetStream ack.
            publish_latency: "poll_to_ack",
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
}
