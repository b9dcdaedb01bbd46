//! Every NATS name packgate uses, and the shape of its streams and
//! consumers, in one place.
//!
//! The specs here are plain data; the gateway turns them into broker calls.
//! Limits (bytes, age) are defaults the configuration may override.

use std::time::Duration;

use crate::ids::PackId;

/// Root of every packgate subject on the local broker.
pub const SUBJECT_ROOT: &str = "packgate";

/// Subject of one pack's samples: `packgate.samples.<pack>`.
pub fn sample_subject(pack: &PackId) -> String {
    format!("{SUBJECT_ROOT}.samples.{pack}")
}

/// Subject of one pack's events: `packgate.events.<pack>`.
pub fn event_subject(pack: &PackId) -> String {
    format!("{SUBJECT_ROOT}.events.{pack}")
}

/// Subject of one worker's metrics: `packgate.metrics.<worker>`.
pub fn metrics_subject(worker: &str) -> String {
    format!("{SUBJECT_ROOT}.metrics.{worker}")
}

/// Request-reply subject of the control worker (commands in, replies out).
pub const CONTROL_SUBJECT: &str = "packgate.control.command";

/// Request-reply subject of the task that owns a pack's bus, for writes:
/// `packgate.bus.<pack>.write`.
pub fn bus_write_subject(pack: &PackId) -> String {
    format!("{SUBJECT_ROOT}.bus.{pack}.write")
}

/// Header carrying JetStream's de-duplication id.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// What a stream is for and its default limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name.
    pub name: &'static str,
    /// Subjects it captures.
    pub subjects: &'static [&'static str],
    /// Default cap on stored bytes; the oldest messages go first.
    pub max_bytes: i64,
    /// Default cap on message age.
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
}

/// Samples of every pack. Sized for days of 1 Hz polling of tens of packs on
/// an SD card.
pub const SAMPLES_STREAM: StreamSpec = StreamSpec {
    name: "PACKGATE_SAMPLES",
    subjects: &["packgate.samples.>"],
    max_bytes: 2 * 1024 * 1024 * 1024,
    max_age: Duration::from_secs(7 * 24 * 3600),
    duplicate_window: Duration::from_secs(120),
};

/// Pack events (alarms, online/offline).
pub const EVENTS_STREAM: StreamSpec = StreamSpec {
    name: "PACKGATE_EVENTS",
    subjects: &["packgate.events.>"],
    max_bytes: 256 * 1024 * 1024,
    max_age: Duration::from_secs(30 * 24 * 3600),
    duplicate_window: Duration::from_secs(120),
};

/// Worker metrics snapshots.
pub const METRICS_STREAM: StreamSpec = StreamSpec {
    name: "PACKGATE_METRICS",
    subjects: &["packgate.metrics.>"],
    max_bytes: 256 * 1024 * 1024,
    max_age: Duration::from_secs(3 * 24 * 3600),
    duplicate_window: Duration::from_secs(120),
};

/// Every stream, in creation order.
pub const STREAMS: [&StreamSpec; 3] = [&SAMPLES_STREAM, &EVENTS_STREAM, &METRICS_STREAM];

/// A durable pull consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Durable name.
    pub durable: &'static str,
    /// Stream it reads.
    pub stream: &'static str,
    /// Time the broker waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Most unacknowledged messages outstanding; the broker stops
    /// delivering past it, which bounds the worker's memory.
    pub max_ack_pending: i64,
}

/// The data worker's consumer of samples.
pub const DATA_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-data",
    stream: SAMPLES_STREAM.name,
    ack_wait: Duration::from_secs(30),
    max_ack_pending: 20_000,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fall_in_their_streams() {
        let pack = PackId::new("p-1").unwrap();
        let covered = |subject: &str, spec: &StreamSpec| {
            spec.subjects
                .iter()
                .any(|pattern| subject.starts_with(pattern.trim_end_matches('>')))
        };
        assert!(covered(&sample_subject(&pack), &SAMPLES_STREAM));
        assert!(covered(&event_subject(&pack), &EVENTS_STREAM));
        assert!(covered(&metrics_subject("data"), &METRICS_STREAM));
        assert!(!covered(&bus_write_subject(&pack), &SAMPLES_STREAM));
        assert!(!covered(CONTROL_SUBJECT, &EVENTS_STREAM));
    }
}
