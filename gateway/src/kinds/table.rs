//! The facts of every kind of worker, one block per kind. A new worker
//! gets its variant in [`WorkerKind`], its block here and its line in
//! [`spec`].

use packgate_protocol::names;

use super::{Permissions, Stage, WorkerKind, WorkerSpec};

/// The facts of `kind`.
pub(super) const fn spec(kind: WorkerKind) -> &'static WorkerSpec {
    match kind {
        WorkerKind::Collect => &COLLECT,
        WorkerKind::Data => &DATA,
        WorkerKind::Control => &CONTROL,
        WorkerKind::Monitor => &MONITOR,
        WorkerKind::Cloud => &CLOUD,
        WorkerKind::Outputs => &OUTPUTS,
        WorkerKind::Http => &HTTP,
        WorkerKind::Mqtt => &MQTT,
        WorkerKind::Bank => &BANK,
    }
}

static COLLECT: WorkerSpec = WorkerSpec {
    name: "collect",
    stage: Stage::Source,
    command: Some("Run only the collect worker: poll the packs and publish."),
    key_counters: &["samples_published"],
    consumers: &[],
    grants: |p| {
        p.publish_to(names::SAMPLES_STREAM.subjects);
        p.publish_to(names::EVENTS_STREAM.subjects);
        // Writes the control worker validated, answered.
        p.subscribe_to(&[names::BUS_WRITE_SUBJECTS]);
        p.allow_responses = true;
    },
    disabled_by: |_| None,
};

// The bank worker is a source of bank states: it stops before the store,
// its last publishes flushed.
static BANK: WorkerSpec = WorkerSpec {
    name: "bank",
    stage: Stage::Source,
    command: Some("Run only the bank worker: each bank's state and charge limits."),
    key_counters: &["states_published"],
    consumers: &[],
    grants: |p| {
        p.subscribe_to(&[
            names::ALL_SAMPLES_SUBJECT,
            // The control worker's validated commands to the banks'
            // limits, answered.
            names::BANK_LIMITS_SUBJECTS,
        ]);
        p.publish_to(names::BANKS_STREAM.subjects);
        p.allow_responses = true;
    },
    disabled_by: |config| config.banks.is_empty().then_some("no [[banks]] configured"),
};

static DATA: WorkerSpec = WorkerSpec {
    name: "data",
    stage: Stage::Store,
    command: Some("Run only the data worker: store samples in SQLite."),
    key_counters: &["samples_stored"],
    consumers: &[names::DATA_CONSUMER, names::DATA_BANKS_CONSUMER],
    grants: |p| {
        p.consume(&names::DATA_CONSUMER);
        p.consume(&names::DATA_BANKS_CONSUMER);
        // Told when the broker gives up on a sample, so it is counted and
        // recorded, never gone silently ...
        p.subscribe.push(names::max_deliveries_advisory_subject(
            &names::DATA_CONSUMER,
        ));
        // ... and reads that one sample back by its stream sequence to
        // keep its content.
        p.publish.push(format!(
            "$JS.API.STREAM.MSG.GET.{}",
            names::DATA_CONSUMER.stream
        ));
    },
    disabled_by: |_| None,
};

static CONTROL: WorkerSpec = WorkerSpec {
    name: "control",
    stage: Stage::Sink,
    command: Some("Run only the control worker: validated, audited writes to packs."),
    key_counters: &["commands_received", "applied"],
    consumers: &[],
    grants: |p| {
        p.publish_to(&[
            names::BUS_WRITE_SUBJECTS,
            // Validated commands lowering a bank's limits.
            names::BANK_LIMITS_SUBJECTS,
        ]);
        p.subscribe_to(&[names::CONTROL_SUBJECT]);
        p.allow_responses = true;
    },
    disabled_by: |_| None,
};

static MONITOR: WorkerSpec = WorkerSpec {
    name: "monitor",
    stage: Stage::Sink,
    command: Some("Run only the monitor worker: every worker's metrics, pack events."),
    key_counters: &["snapshots_stored"],
    consumers: &[
        names::MONITOR_METRICS_CONSUMER,
        names::MONITOR_EVENTS_CONSUMER,
    ],
    grants: |p| {
        p.consume(&names::MONITOR_METRICS_CONSUMER);
        p.consume(&names::MONITOR_EVENTS_CONSUMER);
    },
    disabled_by: |_| None,
};

// `packgate cloud` has a command line of its own (it also talks to the
// cloud as an application does), so no plain worker command.
static CLOUD: WorkerSpec = WorkerSpec {
    name: "cloud",
    stage: Stage::Sink,
    command: None,
    key_counters: &["samples_sent", "batches_sent"],
    consumers: &[names::CLOUD_SAMPLES_CONSUMER, names::CLOUD_EVENTS_CONSUMER],
    grants: |p| {
        p.consume(&names::CLOUD_SAMPLES_CONSUMER);
        p.consume(&names::CLOUD_EVENTS_CONSUMER);
        p.publish_to(&[names::CONTROL_SUBJECT]);
        // The packs' online events: a pack back (or replaced) gets its
        // desired settings at once.
        p.subscribe_to(&[names::ALL_EVENTS_SUBJECT]);
    },
    disabled_by: |config| (!config.cloud.enabled).then_some("cloud.enabled = false"),
};

// The GPIO outputs run with the collector, on the box that has the packs:
// no command of their own.
static OUTPUTS: WorkerSpec = WorkerSpec {
    name: "outputs",
    stage: Stage::Sink,
    command: None,
    key_counters: &[],
    consumers: &[],
    grants: |p| {
        p.subscribe_to(&[names::ALL_EVENTS_SUBJECT, names::OUTPUTS_RESET_SUBJECT]);
        p.allow_responses = true;
    },
    disabled_by: |config| {
        let outputs = &config.outputs;
        (outputs.alarm_relay.is_none() && outputs.status_led.is_none())
            .then_some("no [outputs] configured")
    },
};

static HTTP: WorkerSpec = WorkerSpec {
    name: "http",
    stage: Stage::Sink,
    command: Some("Run only the HTTP worker: Prometheus metrics on `/metrics`."),
    key_counters: &["scrapes"],
    consumers: &[],
    grants: http_grants,
    disabled_by: |config| (!config.http.enabled).then_some("http.enabled = false"),
};

/// The web page's live data, and its pipeline health read only: stream
/// sizes and every worker's consumer lags.
fn http_grants(p: &mut Permissions) {
    p.subscribe_to(&[
        names::ALL_SAMPLES_SUBJECT,
        names::ALL_METRICS_SUBJECT,
        names::ALL_BANKS_SUBJECT,
    ]);
    p.publish.extend(
        names::STREAMS
            .iter()
            .map(|s| format!("$JS.API.STREAM.INFO.{}", s.name)),
    );
    p.publish.extend(
        WorkerKind::ALL
            .into_iter()
            .flat_map(WorkerKind::consumers)
            .map(|c| format!("$JS.API.CONSUMER.INFO.{}.{}", c.stream, c.durable)),
    );
}

static MQTT: WorkerSpec = WorkerSpec {
    name: "mqtt",
    stage: Stage::Sink,
    command: Some("Run only the mqtt worker: the packs in Home Assistant."),
    key_counters: &["states_published"],
    consumers: &[],
    grants: |p| {
        p.subscribe_to(&[
            names::ALL_SAMPLES_SUBJECT,
            // The serial numbers of the packs' online events.
            names::ALL_EVENTS_SUBJECT,
        ]);
        // Home Assistant's setting changes, as commands the control
        // worker checks and audits.
        p.publish_to(&[names::CONTROL_SUBJECT]);
    },
    disabled_by: |config| (!config.mqtt.enabled).then_some("mqtt.enabled = false"),
};
