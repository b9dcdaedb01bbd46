//! The decoder's bounds: string caps and storable, physically possible
//! numbers, each a typed error naming the field.

use proptest::prelude::*;

use super::*;
use crate::limits::*;
use crate::sample::ClockQuality;
use crate::*;

fn sample() -> Sample {
    Sample {
        pack_id: PackId::new("p1").unwrap(),
        boot_id: BootId(1),
        seq: 1,
        timestamp_ms: 1_700_000_000_000,
        quality: DataQuality::Fresh,
        reading: PackReading {
            pack_voltage_v: 52.8,
            current_a: -3.0,
            soc_pct: 70.0,
            soh_pct: Some(98.0),
            cell_voltages_v: CellVoltages(vec![3.3; 16]),
            temperatures_c: Temperatures(vec![25.0; 4]),
            ..PackReading::default()
        },
        clock: ClockQuality::Trusted,
    }
}

fn command(id: String) -> Command {
    Command {
        id: CommandId(id),
        pack_id: PackId::new("p1").unwrap(),
        setting: SettingName("charge_current_limit_a".into()),
        value: 10.0,
        origin: CommandOrigin::Local,
        issued_at_ms: 0,
        expires_at_ms: 1,
    }
}

fn event(seq: u64, kind: EventKind) -> Event {
    Event {
        pack_id: PackId::new("p1").unwrap(),
        boot_id: BootId(1),
        seq,
        timestamp_ms: 0,
        kind,
    }
}

fn snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        worker: "data".into(),
        instance: "box/1".into(),
        timestamp_ms: 0,
        uptime_s: 1,
        version: "0.1.0".into(),
        rss_bytes: 1 << 20,
        cpu_s: 0.5,
        counters: vec![("samples_stored".into(), 3)],
        gauges: vec![("depth".into(), 1.0)],
        latencies: vec![],
        notes: vec![],
    }
}

fn too_long(error: Result<impl std::fmt::Debug, DecodeError>) -> (&'static str, usize, usize) {
    match error {
        Err(DecodeError::TooLong {
            field, len, max, ..
        }) => (field, len, max),
        other => panic!("not too long: {other:?}"),
    }
}

#[test]
fn a_command_id_of_900000_characters_is_rejected() {
    let bytes = encode(&command("x".repeat(900_000)));
    let error = decode::<Command>(&bytes).unwrap_err();
    assert_eq!(error.kind_name(), "too_long");
    assert_eq!(
        too_long(Err::<(), _>(error)),
        ("id", 900_000, MAX_COMMAND_ID_LEN)
    );
    let at_cap = command("x".repeat(MAX_COMMAND_ID_LEN));
    assert_eq!(decode::<Command>(&encode(&at_cap)), Ok(at_cap));
    let empty = decode::<Command>(&encode(&command(String::new()))).unwrap_err();
    assert_eq!(empty.kind_name(), "invalid");
}

#[test]
fn a_sample_that_sqlite_cannot_hold_is_out_of_range() {
    let mut s = sample();
    s.seq = 1 << 63;
    let error = decode::<Sample>(&encode(&s)).unwrap_err();
    assert!(
        matches!(
            error,
            DecodeError::OutOfRange {
                kind: MessageKind::Sample,
                field: "seq",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.kind_name(), "out_of_range");
    s.seq = MAX_STORABLE_SEQ;
    assert_eq!(decode::<Sample>(&encode(&s)), Ok(s));
}

#[test]
fn events_replies_and_snapshots_keep_their_bounds() {
    let e = event(1 << 63, EventKind::PackOnline);
    assert!(matches!(
        decode::<Event>(&encode(&e)),
        Err(DecodeError::OutOfRange { field: "seq", .. })
    ));
    let e = event(
        1,
        EventKind::PackOffline {
            reason: "r".repeat(MAX_REASON_LEN + 1),
        },
    );
    assert_eq!(too_long(decode::<Event>(&encode(&e))).0, "reason");
    let e = event(1, EventKind::pack_offline("r".repeat(5000)));
    assert!(decode::<Event>(&encode(&e)).is_ok(), "the constructor cuts");
    let e = event(1, EventKind::pack_online(Some("S".repeat(500))));
    assert!(decode::<Event>(&encode(&e)).is_ok(), "the constructor cuts");

    let reply = CommandReply {
        command_id: CommandId("c".into()),
        outcome: CommandOutcome::Applied {
            read_back: f64::NAN,
        },
    };
    assert!(matches!(
        decode::<CommandReply>(&encode(&reply)),
        Err(DecodeError::OutOfRange {
            field: "read_back",
            ..
        })
    ));

    let mut m = snapshot();
    m.cpu_s = f64::NAN;
    assert!(matches!(
        decode::<MetricsSnapshot>(&encode(&m)),
        Err(DecodeError::OutOfRange { field: "cpu_s", .. })
    ));
    let mut m = snapshot();
    m.rss_bytes = u64::MAX;
    assert!(matches!(
        decode::<MetricsSnapshot>(&encode(&m)),
        Err(DecodeError::OutOfRange {
            field: "rss_bytes",
            ..
        })
    ));
    let mut m = snapshot();
    m.counters = (0..=MAX_METRICS_PER_SNAPSHOT)
        .map(|i| (format!("c{i}"), 1))
        .collect();
    assert_eq!(
        decode::<MetricsSnapshot>(&encode(&m))
            .unwrap_err()
            .kind_name(),
        "invalid"
    );
}

/// A string longer than `max` bytes (by 1 to 4000 bytes).
fn longer_than(max: usize) -> impl Strategy<Value = String> {
    (max + 1..max + 4000).prop_map(|n| "é".repeat(n / 2 + 1))
}

proptest! {
    #[test]
    fn every_string_field_past_its_cap_is_too_long(
        id in longer_than(MAX_COMMAND_ID_LEN),
        setting in longer_than(MAX_SETTING_NAME_LEN),
        reason in longer_than(MAX_REASON_LEN),
        serial in longer_than(MAX_SERIAL_NUMBER_LEN),
        worker in longer_than(MAX_WORKER_NAME_LEN),
        instance in longer_than(MAX_INSTANCE_LEN),
        name in longer_than(MAX_METRIC_NAME_LEN),
    ) {
        prop_assert_eq!(too_long(decode::<Command>(&encode(&command(id.clone())))).0, "id");
        let mut c = command("c".into());
        c.setting = SettingName(setting);
        prop_assert_eq!(too_long(decode::<Command>(&encode(&c))).0, "setting");
        let reply = CommandReply { command_id: CommandId(id), outcome: CommandOutcome::TimedOut };
        prop_assert_eq!(too_long(decode::<CommandReply>(&encode(&reply))).0, "command_id");
        let reply = CommandReply {
            command_id: CommandId("c".into()),
            outcome: CommandOutcome::Failed { error: reason.clone() },
        };
        prop_assert_eq!(too_long(decode::<CommandReply>(&encode(&reply))).0, "error");
        let e = event(1, EventKind::PackOffline { reason });
        prop_assert_eq!(too_long(decode::<Event>(&encode(&e))).0, "reason");
        let e = event(1, EventKind::PackOnlineIdentified { serial_number: serial });
        prop_assert_eq!(too_long(decode::<Event>(&encode(&e))).0, "serial_number");
        let mut m = snapshot();
        m.worker = worker;
        prop_assert_eq!(too_long(decode::<MetricsSnapshot>(&encode(&m))).0, "worker");
        let mut m = snapshot();
        m.instance = instance;
        prop_assert_eq!(too_long(decode::<MetricsSnapshot>(&encode(&m))).0, "instance");
        let mut m = snapshot();
        m.gauges = vec![(name, 1.0)];
        prop_assert_eq!(too_long(decode::<MetricsSnapshot>(&encode(&m))).0, "gauges");
    }

    #[test]
    fn strings_within_their_caps_decode(
        id in "[a-z0-9-]{1,128}",
        reason in ".{0,256}",
        serial in ".{0,16}",
    ) {
        let c = command(id);
        prop_assert_eq!(decode::<Command>(&encode(&c)), Ok(c));
        let e = event(1, EventKind::PackOffline { reason });
        prop_assert_eq!(decode::<Event>(&encode(&e)), Ok(e));
        let e = event(2, EventKind::PackOnlineIdentified { serial_number: serial });
        prop_assert_eq!(decode::<Event>(&encode(&e)), Ok(e));
    }

    #[test]
    fn unstorable_sequence_numbers_are_out_of_range(seq in MAX_STORABLE_SEQ + 1..) {
        let mut s = sample();
        s.seq = seq;
        let sample_seq = decode::<Sample>(&encode(&s));
        let rejected = matches!(sample_seq, Err(DecodeError::OutOfRange { field: "seq", .. }));
        prop_assert!(rejected);
        let event_seq = decode::<Event>(&encode(&event(seq, EventKind::PackOnline)));
        let rejected = matches!(event_seq, Err(DecodeError::OutOfRange { field: "seq", .. }));
        prop_assert!(rejected);
    }

    #[test]
    fn timestamps_outside_the_calendar_are_out_of_range(
        timestamp_ms in prop_oneof![i64::MIN..0, MAX_TIMESTAMP_MS + 1..],
    ) {
        let mut s = sample();
        s.timestamp_ms = timestamp_ms;
        let decoded = decode::<Sample>(&encode(&s));
        let rejected = matches!(decoded, Err(DecodeError::OutOfRange { field: "timestamp_ms", .. }));
        prop_assert!(rejected);
    }

    #[test]
    fn impossible_readings_are_out_of_range(
        which in 0usize..6,
        value in prop_oneof![
            Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY),
            1.0e5f32..1.0e30, -1.0e30f32..-1.0e5,
        ],
    ) {
        let mut s = sample();
        let r = &mut s.reading;
        let field = match which {
            0 => { r.pack_voltage_v = value; "pack_voltage_v" }
            1 => { r.current_a = value * 10.0; "current_a" }
            2 => { r.soc_pct = value; "soc_pct" }
            3 => { r.soh_pct = Some(value); "soh_pct" }
            4 => { r.cell_voltages_v.0[3] = value; "cell_voltages_v" }
            _ => { r.temperatures_c.0[1] = value; "temperatures_c" }
        };
        match decode::<Sample>(&encode(&s)) {
            Err(DecodeError::OutOfRange { kind: MessageKind::Sample, field: f, .. }) => {
                prop_assert_eq!(f, field);
            }
            other => prop_assert!(false, "{} = {}: {:?}", field, value, other),
        }
    }
}
