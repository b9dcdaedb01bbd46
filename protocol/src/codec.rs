//! The wire format: a two-byte envelope (schema version, message kind)
//! followed by the message in postcard.
//!
//! A reader that meets a version or kind it does not know rejects the
//! message with a typed error instead of misreading it; garbage never
//! panics the decoder.

use serde::{de::DeserializeOwned, Serialize};

use crate::limits::RuleError;

/// The newest schema version this build writes and reads.
///
/// Version 2 made a sample's state of health optional (absent where the
/// BMS does not report it) and added the `suspect` quality. Version 3 gave
/// a metrics snapshot its notes (short named texts, such as why the cloud
/// link is down). Version 4 gave a bank state the site limits lowered by
/// commands. Each message is written at the last version that changed its
/// own layout ([`WireMessage::VERSION`]): samples, events, commands and
/// replies at 2, so a reader of version 2 reads them as before; snapshots
/// at 3; bank states at 4. Messages of older versions, still on a stream or in a dead-letter
/// table after an upgrade, are read too (see [`WireMessage::decode_older`]).
pub const SCHEMA_VERSION: u8 = 4;

/// The oldest schema version this build still reads.
pub const OLDEST_READABLE_VERSION: u8 = 1;

/// Bytes of the envelope before the postcard payload.
const HEADER_LEN: usize = 2;

/// Which message an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    /// A [`Sample`].
    Sample = 1,
    /// An [`Event`].
    Event = 2,
    /// A [`Command`].
    Command = 3,
    /// A [`CommandReply`].
    CommandReply = 4,
    /// A [`MetricsSnapshot`].
    MetricsSnapshot = 5,
    /// A [`BankState`](crate::BankState).
    BankState = 6,
}

impl MessageKind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => MessageKind::Sample,
            2 => MessageKind::Event,
            3 => MessageKind::Command,
            4 => MessageKind::CommandReply,
            5 => MessageKind::MetricsSnapshot,
            6 => MessageKind::BankState,
            _ => return None,
        })
    }
}

/// Why bytes did not decode into the expected message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the envelope.
    #[error("message of {0} bytes is shorter than the envelope")]
    Truncated(usize),
    /// Written by a schema version this build cannot read.
    #[error("schema version {found} is not readable by this build (reads {OLDEST_READABLE_VERSION} to {SCHEMA_VERSION})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The envelope names a different (or unknown) message kind.
    #[error("expected a {expected:?} message, found kind byte {found}")]
    WrongKind {
        /// What the reader wanted.
        expected: MessageKind,
        /// The kind byte found.
        found: u8,
    },
    /// The payload is not valid postcard for the message.
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed {
        /// The message kind.
        kind: MessageKind,
        /// The postcard error.
        reason: String,
    },
    /// Bytes left over after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// Decoded, but a string field is longer than its cap (see
    /// [`crate::limits`]).
    #[error("invalid {kind:?}: field {field} is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// The message kind.
        kind: MessageKind,
        /// The field.
        field: &'static str,
        /// Its length, bytes.
        len: usize,
        /// The cap, bytes.
        max: usize,
    },
    /// Decoded, but a number cannot be stored (a sequence number beyond
    /// SQLite's integer) or is not physically possible (NaN, infinity, a
    /// value outside its physical range).
    #[error("invalid {kind:?}: field {field} is out of range: {detail}")]
    OutOfRange {
        /// The message kind.
        kind: MessageKind,
        /// The field.
        field: &'static str,
        /// The value and the range it breaks.
        detail: String,
    },
    /// Decoded, but the values break another of the message's rules.
    #[error("invalid {kind:?}: {reason}")]
    Invalid {
        /// The message kind.
        kind: MessageKind,
        /// The broken rule.
        reason: String,
    },
}

impl DecodeError {
    /// Stable short name of the error kind, for counters.
    pub fn kind_name(&self) -> &'static str {
        match self {
            DecodeError::Truncated(_) => "truncated",
            DecodeError::UnknownVersion { .. } => "unknown_version",
            DecodeError::WrongKind { .. } => "wrong_kind",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
            DecodeError::TooLong { .. } => "too_long",
            DecodeError::OutOfRange { .. } => "out_of_range",
            DecodeError::Invalid { .. } => "invalid",
        }
    }

    /// The error of a decoded `kind` message breaking `rule`.
    fn broken(kind: MessageKind, rule: RuleError) -> Self {
        match rule {
            RuleError::TooLong { field, len, max } => DecodeError::TooLong {
                kind,
                field,
                len,
                max,
            },
            RuleError::OutOfRange { field, detail } => DecodeError::OutOfRange {
                kind,
                field,
                detail,
            },
            RuleError::Invalid(reason) => DecodeError::Invalid { kind, reason },
        }
    }
}

/// A message that travels in the envelope.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// Its kind byte.
    const KIND: MessageKind;

    /// Rules the values must keep beyond their types: string caps,
    /// storable and physically possible numbers (see [`crate::limits`]).
    fn check(&self) -> Result<(), RuleError> {
        Ok(())
    }

    /// The schema version this message is written at: the last one that
    /// changed its layout. A message of this version or newer (up to
    /// [`SCHEMA_VERSION`]) has today's layout.
    const VERSION: u8 = 2;

    /// Decodes a payload written at `version`, older than
    /// [`Self::VERSION`]: the same layout as today's unless the message
    /// overrides it.
    fn decode_older(version: u8, payload: &[u8]) -> postcard::Result<(Self, &[u8])> {
        let _ = version;
        postcard::take_from_bytes(payload)
    }
}

/// Encodes a message at its schema version ([`WireMessage::VERSION`]).
pub fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    let out = vec![M::VERSION, M::KIND as u8];
    // postcard only fails on a writer error or a type serde cannot express
    // (such as a map with unknown length); a Vec writer and these plain
    // derive types do neither, so the error arm is unreachable in practice.
    match postcard::to_extend(message, out) {
        Ok(bytes) => bytes,
        Err(_) => vec![M::VERSION, M::KIND as u8],
    }
}

/// Decodes and checks a message, rejecting unknown versions, other kinds,
/// malformed payloads, trailing bytes and broken rules.
pub fn decode<M: WireMessage>(bytes: &[u8]) -> Result<M, DecodeError> {
    let (header, payload) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(DecodeError::Truncated(bytes.len()))?;
    let [version, kind] = *header;
    if !(OLDEST_READABLE_VERSION..=SCHEMA_VERSION).contains(&version) {
        return Err(DecodeError::UnknownVersion { found: version });
    }
    if MessageKind::from_byte(kind) != Some(M::KIND) {
        return Err(DecodeError::WrongKind {
            expected: M::KIND,
            found: kind,
        });
    }
    let taken = if version < M::VERSION {
        M::decode_older(version, payload)
    } else {
        postcard::take_from_bytes(payload)
    };
    let (message, rest): (M, &[u8]) = taken.map_err(|e| DecodeError::Malformed {
        kind: M::KIND,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    message
        .check()
        .map_err(|rule| DecodeError::broken(M::KIND, rule))?;
    Ok(message)
}

#[cfg(test)]
#[path = "codec_limits_tests.rs"]
mod limits_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::ClockQuality;
    use crate::*;
    use proptest::prelude::*;

    fn finite_f32() -> impl Strategy<Value = f32> {
        -1.0e4f32..1.0e4f32
    }

    fn pack_id() -> impl Strategy<Value = PackId> {
        "[A-Za-z0-9_-]{1,64}".prop_map(|s| PackId::new(s).unwrap())
    }

    prop_compose! {
        fn reading()(
            pack_voltage_v in finite_f32(),
            current_a in finite_f32(),
            soc_pct in 0.0f32..100.0,
            soh_pct in prop::option::of(0.0f32..100.0),
            cells in prop::collection::vec(0.0f32..5.0, 1..=MAX_CELLS),
            temps in prop::collection::vec(-40.0f32..120.0, 1..=MAX_TEMPERATURE_SENSORS),
            balancing in any::<u32>(),
            alarms in any::<u32>(),
            charge_enabled in any::<bool>(),
            discharge_enabled in any::<bool>(),
        ) -> PackReading {
            PackReading {
                pack_voltage_v, current_a, soc_pct, soh_pct,
                cell_voltages_v: CellVoltages(cells),
                temperatures_c: Temperatures(temps),
                balancing: BalancingState(balancing),
                alarms: AlarmFlags(alarms),
                charge_enabled, discharge_enabled,
            }
        }
    }

    prop_compose! {
        fn sample()(
            pack_id in pack_id(),
            boot in any::<u64>(),
            seq in 1u64..=limits::MAX_STORABLE_SEQ,
            timestamp_ms in 0..=limits::MAX_TIMESTAMP_MS,
            stale in any::<bool>(),
            reading in reading(),
            untrusted in any::<bool>(),
        ) -> Sample {
            Sample {
                pack_id, boot_id: BootId(boot), seq, timestamp_ms,
                quality: if stale { DataQuality::Stale } else { DataQuality::Fresh },
                reading,
                clock: if untrusted { ClockQuality::Untrusted } else { ClockQuality::Trusted },
            }
        }
    }

    fn event_kind() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            any::<u32>().prop_map(|b| EventKind::AlarmRaised(AlarmFlags(b))),
            any::<u32>().prop_map(|b| EventKind::AlarmCleared(AlarmFlags(b))),
            Just(EventKind::PackOnline),
            ".{0,40}".prop_map(|reason| EventKind::PackOffline { reason }),
            "[A-Z0-9]{0,24}"
                .prop_map(|serial_number| EventKind::PackOnlineIdentified { serial_number }),
        ]
    }

    prop_compose! {
        fn event()(pack_id in pack_id(), boot in any::<u64>(), seq in 1..=limits::MAX_STORABLE_SEQ,
                   timestamp_ms in any::<i64>(), kind in event_kind()) -> Event {
            Event { pack_id, boot_id: BootId(boot), seq, timestamp_ms, kind }
        }
    }

    prop_compose! {
        fn command()(id in ".{1,32}", pack_id in pack_id(), setting in "[a-z_]{1,30}",
                     value in -1.0e9f64..1.0e9, cloud in any::<bool>(),
                     issued_at_ms in any::<i64>(), expires_at_ms in any::<i64>()) -> Command {
            Command {
                id: CommandId(id), pack_id, setting: SettingName(setting), value,
                origin: if cloud { CommandOrigin::Cloud } else { CommandOrigin::Local },
                issued_at_ms, expires_at_ms,
            }
        }
    }

    fn outcome() -> impl Strategy<Value = CommandOutcome> {
        prop_oneof![
            (-1.0e9f64..1.0e9).prop_map(|read_back| CommandOutcome::Applied { read_back }),
            ".{0,40}".prop_map(|reason| CommandOutcome::Rejected { reason }),
            ".{0,40}".prop_map(|error| CommandOutcome::Failed { error }),
            Just(CommandOutcome::TimedOut),
        ]
    }

    prop_compose! {
        fn metrics()(worker in "[a-z]{1,10}", instance in ".{0,20}", timestamp_ms in any::<i64>(),
                     uptime_s in 0..=limits::MAX_STORABLE_SEQ, rss_bytes in 0..=limits::MAX_STORABLE_SEQ,
                     cpu_s in 0.0f64..1.0e6,
                     counters in prop::collection::vec(("[a-z_]{1,20}", any::<u64>()), 0..8),
                     gauges in prop::collection::vec(("[a-z_]{1,20}", -1.0e9f64..1.0e9), 0..8),
                     count in any::<u64>(), p50 in 0.0f64..1e4, p99 in 0.0f64..1e4,
                     notes in prop::collection::vec(("[a-z_]{1,20}", ".{0,40}"), 0..4)) -> MetricsSnapshot {
            MetricsSnapshot {
                worker, instance, timestamp_ms, uptime_s, version: "0.1.0".into(), rss_bytes, cpu_s,
                counters, gauges,
                latencies: vec![LatencySummary { name: "x".into(), count, p50_ms: p50, p99_ms: p99, max_ms: p99 }],
                notes,
            }
        }
    }

    proptest! {
        #[test]
        fn sample_round_trips(s in sample()) {
            prop_assert_eq!(decode::<Sample>(&encode(&s)), Ok(s));
        }

        #[test]
        fn event_round_trips(e in event()) {
            prop_assert_eq!(decode::<Event>(&encode(&e)), Ok(e));
        }

        #[test]
        fn command_round_trips(c in command()) {
            prop_assert_eq!(decode::<Command>(&encode(&c)), Ok(c));
        }

        #[test]
        fn reply_round_trips(id in ".{1,32}", outcome in outcome()) {
            let reply = CommandReply { command_id: CommandId(id), outcome };
            prop_assert_eq!(decode::<CommandReply>(&encode(&reply)), Ok(reply));
        }

        #[test]
        fn metrics_round_trip(m in metrics()) {
            prop_assert_eq!(decode::<MetricsSnapshot>(&encode(&m)), Ok(m));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Sample>(&bytes);
            let _ = decode::<Event>(&bytes);
            let _ = decode::<Command>(&bytes);
            let _ = decode::<CommandReply>(&bytes);
            let _ = decode::<MetricsSnapshot>(&bytes);
            let _ = decode::<BankState>(&bytes);
        }

        #[test]
        fn valid_envelope_with_garbage_payload_never_panics(
            kind in 1u8..=6, payload in prop::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut bytes = vec![SCHEMA_VERSION, kind];
            bytes.extend(payload);
            let _ = decode::<Sample>(&bytes);
            let _ = decode::<Event>(&bytes);
            let _ = decode::<MetricsSnapshot>(&bytes);
            let _ = decode::<BankState>(&bytes);
        }

        #[test]
        fn truncated_sample_is_an_error(s in sample(), cut in 0usize..64) {
            let bytes = encode(&s);
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode::<Sample>(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn unknown_version_and_kind_are_typed_errors() {
        let ev = Event {
            pack_id: PackId::new("p").unwrap(),
            boot_id: BootId(1),
            seq: 1,
            timestamp_ms: 0,
            kind: EventKind::PackOnline,
        };
        let mut bytes = encode(&ev);
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(DecodeError::WrongKind {
                expected: MessageKind::Sample,
                found: 2
            })
        ));
        bytes[0] = 9;
        assert_eq!(
            decode::<Event>(&bytes),
            Err(DecodeError::UnknownVersion { found: 9 })
        );
        assert_eq!(decode::<Event>(&[]), Err(DecodeError::Truncated(0)));
        let mut long = encode(&ev);
        long.push(0);
        assert_eq!(decode::<Event>(&long), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn online_events_keep_their_encoding_and_the_serial_number_decodes() {
        let online = Event {
            pack_id: PackId::new("p").unwrap(),
            boot_id: BootId(1),
            seq: 1,
            timestamp_ms: 0,
            kind: EventKind::PackOnline,
        };
        // Envelope, then pack id "p", boot 1, seq 1, time 0, variant 2:
        // the bytes events had before the serial number was added.
        assert_eq!(encode(&online), [2, 2, 1, b'p', 1, 1, 0, 2]);
        let identified = Event {
            kind: EventKind::pack_online(Some("JK-0042".into())),
            ..online.clone()
        };
        let decoded = decode::<Event>(&encode(&identified)).unwrap();
        assert_eq!(
            decoded.kind,
            EventKind::PackOnlineIdentified {
                serial_number: "JK-0042".into()
            }
        );
        assert!(decoded.kind.is_pack_online());
        assert_eq!(decoded.kind.name(), "pack_online");
        assert_eq!(EventKind::pack_online(None), EventKind::PackOnline);
    }

    #[test]
    fn a_sample_breaking_its_rules_is_invalid() {
        let s = Sample {
            pack_id: PackId::new("p").unwrap(),
            boot_id: BootId(1),
            seq: 1,
            timestamp_ms: 0,
            quality: DataQuality::Fresh,
            reading: PackReading {
                cell_voltages_v: crate::CellVoltages(vec![3.3; crate::MAX_CELLS + 1]),
                ..PackReading::default()
            },
            clock: ClockQuality::Trusted,
        };
        assert!(matches!(
            decode::<Sample>(&encode(&s)),
            Err(DecodeError::Invalid {
                kind: MessageKind::Sample,
                ..
            })
        ));
    }
}
