//! Every NATS name packgate uses, and the shape of its streams and
//! consumers, in one place.
//!
//! The specs here are plain data; the gateway turns them into broker calls.
//! Limits (bytes, age) are defaults the configuration may override.

use std::time::Duration;

use crate::ids::{BankId, PackId};

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

/// Subject of one bank's states: `packgate.banks.<bank>`.
pub fn bank_subject(bank: &BankId) -> String {
    format!("{SUBJECT_ROOT}.banks.{bank}")
}

/// Every bank's states, for live views.
pub const ALL_BANKS_SUBJECT: &str = "packgate.banks.>";

/// The bank a bank subject names: `packgate.banks.<bank>`; `None` for any
/// other subject or an invalid bank id.
pub fn bank_of_subject(subject: &str) -> Option<BankId> {
    BankId::new(subject.strip_prefix("packgate.banks.")?).ok()
}

/// Request-reply subject of the bank worker for a validated command
/// lowering one of a bank's site limits: `packgate.bank.<bank>.limits`
/// (outside the bank states' stream, which captures `packgate.banks.>`).
pub fn bank_limits_subject(bank: &BankId) -> String {
    format!("{SUBJECT_ROOT}.bank.{bank}.limits")
}

/// Every bank-limits subject, for the bank worker's subscription.
pub const BANK_LIMITS_SUBJECTS: &str = "packgate.bank.*.limits";

/// The bank a bank-limits subject names: `packgate.bank.<bank>.limits`;
/// `None` for any other subject or an invalid bank id.
pub fn bank_of_limits_subject(subject: &str) -> Option<BankId> {
    let rest = subject.strip_prefix("packgate.bank.")?;
    BankId::new(rest.strip_suffix(".limits")?).ok()
}

/// Request-reply subject of the control worker (commands in, replies out).
pub const CONTROL_SUBJECT: &str = "packgate.control.command";

/// Queue group of the control subscription: several control workers share
/// the commands, each handled by one of them.
pub const CONTROL_QUEUE_GROUP: &str = "packgate-control";

/// Request-reply subject of the task that owns a pack's bus, for writes:
/// `packgate.bus.<pack>.write`.
pub fn bus_write_subject(pack: &PackId) -> String {
    format!("{SUBJECT_ROOT}.bus.{pack}.write")
}

/// Every bus-write subject, for the bus owners' subscription.
pub const BUS_WRITE_SUBJECTS: &str = "packgate.bus.*.write";

/// The pack a bus-write subject names: `packgate.bus.<pack>.write`;
/// `None` for any other subject or an invalid pack id.
pub fn pack_of_bus_write_subject(subject: &str) -> Option<PackId> {
    let rest = subject.strip_prefix("packgate.bus.")?;
    let pack = rest.strip_suffix(".write")?;
    PackId::new(pack).ok()
}

/// Every pack's samples, for live views.
pub const ALL_SAMPLES_SUBJECT: &str = "packgate.samples.>";

/// Every worker's metrics snapshots, for live views.
pub const ALL_METRICS_SUBJECT: &str = "packgate.metrics.>";

/// Every pack's events, for the outputs and live views.
pub const ALL_EVENTS_SUBJECT: &str = "packgate.events.>";

/// The pack a sample subject names: `packgate.samples.<pack>`; `None` for
/// any other subject or an invalid pack id.
pub fn pack_of_sample_subject(subject: &str) -> Option<PackId> {
    PackId::new(subject.strip_prefix("packgate.samples.")?).ok()
}

/// Request subject that resets a latched alarm relay.
pub const OUTPUTS_RESET_SUBJECT: &str = "packgate.outputs.reset";

/// The JetStream API's account-info request: answered only while
/// JetStream itself works, so it serves as the broker's health probe.
pub const JS_API_INFO_SUBJECT: &str = "$JS.API.INFO";

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

/// Bank states (one a second per bank), a few hundred bytes each.
pub const BANKS_STREAM: StreamSpec = StreamSpec {
    name: "PACKGATE_BANKS",
    subjects: &["packgate.banks.>"],
    max_bytes: 256 * 1024 * 1024,
    max_age: Duration::from_secs(7 * 24 * 3600),
    duplicate_window: Duration::from_secs(120),
};

/// Every stream, in creation order.
pub const STREAMS: [&StreamSpec; 4] = [
    &SAMPLES_STREAM,
    &EVENTS_STREAM,
    &METRICS_STREAM,
    &BANKS_STREAM,
];

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

/// The data worker's consumer of bank states.
pub const DATA_BANKS_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-data-banks",
    stream: BANKS_STREAM.name,
    ack_wait: Duration::from_secs(30),
    max_ack_pending: 2_000,
};

/// Subject of the advisory the broker sends when it gives up on a message
/// of `spec`'s consumer after its last allowed delivery:
/// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<durable>`.
pub fn max_deliveries_advisory_subject(spec: &ConsumerSpec) -> String {
    format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        spec.stream, spec.durable
    )
}

/// Subjects of the advisories the broker sends when a consumer is
/// deleted, any stream's: `$JS.EVENT.ADVISORY.CONSUMER.DELETED.>`.
pub const CONSUMER_DELETED_ADVISORIES: &str = "$JS.EVENT.ADVISORY.CONSUMER.DELETED.>";

/// The monitor's consumer of metrics snapshots.
pub const MONITOR_METRICS_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-monitor-metrics",
    stream: METRICS_STREAM.name,
    ack_wait: Duration::from_secs(30),
    max_ack_pending: 2_000,
};

/// The monitor's consumer of pack events.
pub const MONITOR_EVENTS_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-monitor-events",
    stream: EVENTS_STREAM.name,
    ack_wait: Duration::from_secs(30),
    max_ack_pending: 2_000,
};

/// The cloud worker's consumer of the local samples stream. Its
/// `max_ack_pending` is set to `cloud.batch_max_samples` at start.
pub const CLOUD_SAMPLES_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-cloud-samples",
    stream: SAMPLES_STREAM.name,
    // Long enough for a retry cycle; a batch being retried is kept alive
    // with progress acks.
    ack_wait: Duration::from_secs(120),
    max_ack_pending: 500,
};

/// The cloud worker's consumer of the local events stream.
pub const CLOUD_EVENTS_CONSUMER: ConsumerSpec = ConsumerSpec {
    durable: "packgate-cloud-events",
    stream: EVENTS_STREAM.name,
    ack_wait: Duration::from_secs(120),
    max_ack_pending: 500,
};

/// Names on the cloud's broker, where every gateway has its own subtree
/// `packgate.<gateway_id>.…`.
pub mod cloud {
    use super::SUBJECT_ROOT;

    /// The cloud subject of a local sample or event subject:
    /// `packgate.samples.<pack>` becomes
    /// `packgate.<gateway_id>.samples.<pack>`. `None` for a subject outside
    /// `packgate.`.
    pub fn uplink_subject(gateway_id: &str, local_subject: &str) -> Option<String> {
        let rest = local_subject
            .strip_prefix(SUBJECT_ROOT)
            .and_then(|s| s.strip_prefix('.'))?;
        Some(format!("{SUBJECT_ROOT}.{gateway_id}.{rest}"))
    }

    /// The cloud subject on which a gateway serves control requests:
    /// `packgate.<gateway_id>.control`.
    pub fn control_subject(gateway_id: &str) -> String {
        format!("{SUBJECT_ROOT}.{gateway_id}.control")
    }

    /// The subjects the cloud stream must capture for a gateway: its
    /// samples, events and reports on its desired settings.
    pub fn stream_subjects(gateway_id: &str) -> Vec<String> {
        vec![
            format!("{SUBJECT_ROOT}.{gateway_id}.samples.>"),
            format!("{SUBJECT_ROOT}.{gateway_id}.events.>"),
            format!("{SUBJECT_ROOT}.{gateway_id}.desired.>"),
        ]
    }

    /// Where a gateway reports what became of a desired setting:
    /// `packgate.<gateway_id>.desired.<pack>.<setting>`.
    pub fn desired_report_subject(gateway_id: &str, pack: &str, setting: &str) -> String {
        format!("{SUBJECT_ROOT}.{gateway_id}.desired.{pack}.{setting}")
    }

    /// Where an upload whose local subject is unknown goes.
    pub fn unknown_subject(gateway_id: &str) -> String {
        format!("{SUBJECT_ROOT}.{gateway_id}.unknown")
    }

    /// The cloud connection's name, shown in the cloud server's monitoring.
    pub fn connection_name(gateway_id: &str) -> String {
        format!("{SUBJECT_ROOT}-cloud-{gateway_id}")
    }

    /// The prefix of a gateway's reply subjects on the cloud connection,
    /// `_INBOX.<gateway_id>`: a cloud lets each gateway subscribe to its own
    /// inbox and no other.
    pub fn inbox_prefix(gateway_id: &str) -> String {
        format!("_INBOX.{gateway_id}")
    }

    /// The cloud stream a gateway uploads to unless `stream_name` says
    /// otherwise.
    pub const DEFAULT_STREAM: &str = "PACKGATE_CLOUD";

    /// The cloud's key-value bucket of desired settings, shared by the
    /// fleet; each gateway's keys start with its id.
    pub const DESIRED_BUCKET: &str = "PACKGATE_DESIRED";

    /// The stream that holds a key-value bucket: `KV_<bucket>`.
    pub fn bucket_stream(bucket: &str) -> String {
        format!("KV_{bucket}")
    }

    /// The prefix of a key-value bucket's subjects, `$KV.<bucket>.`: the
    /// key follows it.
    pub fn bucket_subject_prefix(bucket: &str) -> String {
        format!("$KV.{bucket}.")
    }

    /// The key of a desired setting: `<gateway_id>.<pack>.<setting>`.
    pub fn desired_key(gateway_id: &str, pack: &str, setting: &str) -> String {
        format!("{gateway_id}.{pack}.{setting}")
    }

    /// The key filter of a gateway's desired settings in the bucket:
    /// `<gateway_id>.>`.
    pub fn desired_keys(gateway_id: &str) -> String {
        format!("{gateway_id}.>")
    }

    /// The name of the consumer through which a gateway follows its
    /// desired settings, `desired-<gateway_id>`: fixed per gateway, so a
    /// cloud's permissions can name it.
    pub fn desired_consumer(gateway_id: &str) -> String {
        format!("desired-{gateway_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lives_in_its_stream_under_its_prefix() {
        assert_eq!(
            cloud::bucket_stream(cloud::DESIRED_BUCKET),
            "KV_PACKGATE_DESIRED"
        );
        assert_eq!(
            format!(
                "{}{}",
                cloud::bucket_subject_prefix(cloud::DESIRED_BUCKET),
                cloud::desired_keys("gw-1")
            ),
            "$KV.PACKGATE_DESIRED.gw-1.>"
        );
    }

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
        assert!(covered(ALL_SAMPLES_SUBJECT, &SAMPLES_STREAM));
        assert!(covered(ALL_EVENTS_SUBJECT, &EVENTS_STREAM));
        let bank = BankId::new("house").unwrap();
        assert_eq!(bank_subject(&bank), "packgate.banks.house");
        assert!(covered(&bank_subject(&bank), &BANKS_STREAM));
        assert!(covered(ALL_BANKS_SUBJECT, &BANKS_STREAM));
        assert!(!covered(&bank_subject(&bank), &SAMPLES_STREAM));
        assert!(!covered(&sample_subject(&pack), &BANKS_STREAM));
        assert_eq!(bank_of_subject(&bank_subject(&bank)), Some(bank.clone()));
        assert_eq!(bank_of_subject("packgate.banks.a.b"), None);
        assert_eq!(bank_of_subject("packgate.samples.a"), None);
        let limits = bank_limits_subject(&bank);
        assert_eq!(limits, "packgate.bank.house.limits");
        assert!(STREAMS.iter().all(|spec| !covered(&limits, spec)));
        assert_eq!(bank_of_limits_subject(&limits), Some(bank));
        assert_eq!(bank_of_limits_subject("packgate.bank.a.b.limits"), None);
        assert_eq!(bank_of_limits_subject("packgate.banks.a"), None);
    }

    #[test]
    fn subjects_parse_back_to_their_pack() {
        let pack = PackId::new("rack-1").unwrap();
        assert_eq!(
            pack_of_bus_write_subject(&bus_write_subject(&pack)),
            Some(pack.clone())
        );
        assert_eq!(pack_of_sample_subject(&sample_subject(&pack)), Some(pack));
        assert_eq!(pack_of_bus_write_subject("packgate.bus.rack-1.read"), None);
        assert_eq!(
            pack_of_bus_write_subject("packgate.bus.rack-1.write.x"),
            None
        );
        assert_eq!(pack_of_bus_write_subject("packgate.bus.a.b.write"), None);
        assert_eq!(pack_of_bus_write_subject("other.bus.rack-1.write"), None);
        assert_eq!(pack_of_sample_subject("packgate.samples."), None);
        assert_eq!(pack_of_sample_subject("packgate.events.rack-1"), None);
    }

    #[test]
    fn cloud_subjects_live_under_the_gateway() {
        assert_eq!(
            cloud::uplink_subject("gw1", "packgate.samples.p-1").as_deref(),
            Some("packgate.gw1.samples.p-1")
        );
        assert_eq!(cloud::uplink_subject("gw1", "other.samples.p"), None);
        assert_eq!(cloud::uplink_subject("gw1", "packgatex.samples.p"), None);
        assert_eq!(cloud::control_subject("gw1"), "packgate.gw1.control");
        // The stream's subjects never capture the control subject.
        assert!(cloud::stream_subjects("gw1")
            .iter()
            .all(|s| !cloud::control_subject("gw1").starts_with(s.trim_end_matches('>'))));
    }
}
