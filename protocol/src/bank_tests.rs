//! Bank states through the codec: round trips, and hostile input (not a
//! number, out of range, too many packs, counts that disagree, bad ids)
//! refused with the field named.

use proptest::prelude::*;

use super::*;
use crate::limits::{MAX_STORABLE_SEQ, MAX_TIMESTAMP_MS};
use crate::{decode, encode, DecodeError, MessageKind};

fn pack(name: &str) -> PackId {
    PackId::new(name).unwrap()
}

/// Three packs, the third over-temperature and out of both currents.
fn state() -> BankState {
    let allowed = PackShare::Allowed {
        current_a: 100.0,
        derating: Derating::None,
    };
    let entry = |name: &str, seq, counted, alarms, share| BankPack {
        pack_id: pack(name),
        sample_seq: seq,
        counted,
        alarms,
        charge: share,
        discharge: share,
    };
    BankState {
        bank_id: BankId::new("house").unwrap(),
        boot_id: BootId(0xabc),
        seq: 7,
        timestamp_ms: 1_700_000_000_000,
        packs_total: 3,
        packs_online: 3,
        voltage_v: 53.1,
        current_a: -42.5,
        soc_pct: 61.5,
        soc_weighting: SocWeighting::Capacity,
        soh_pct: Some(97.0),
        min_cell: Some(Extreme {
            pack_id: pack("p1"),
            index: 3,
            value: 3.281,
        }),
        max_cell: Some(Extreme {
            pack_id: pack("p2"),
            index: 16,
            value: 3.322,
        }),
        min_temperature: Some(Extreme {
            pack_id: pack("p1"),
            index: 1,
            value: 21.5,
        }),
        max_temperature: Some(Extreme {
            pack_id: pack("p3"),
            index: 2,
            value: 61.0,
        }),
        alarms: AlarmFlags::OVER_TEMPERATURE,
        charge_voltage_v: 55.2,
        charge_current_a: 200.0,
        discharge_current_a: 200.0,
        discharge_voltage_v: 48.0,
        stage: ChargeStage::Absorption,
        charge_derating: Derating::None,
        discharge_derating: Derating::None,
        stop: None,
        packs: vec![
            entry("p1", 11, true, AlarmFlags::NONE, allowed),
            entry("p2", 12, true, AlarmFlags::NONE, allowed),
            entry(
                "p3",
                13,
                true,
                AlarmFlags::OVER_TEMPERATURE,
                PackShare::Alarm(AlarmFlags::OVER_TEMPERATURE),
            ),
        ],
        overrides: SiteOverrides::default(),
    }
}

fn out_of_range(bytes: &[u8]) -> &'static str {
    match decode::<BankState>(bytes) {
        Err(DecodeError::OutOfRange {
            kind: MessageKind::BankState,
            field,
            ..
        }) => field,
        other => panic!("not out of range: {other:?}"),
    }
}

#[test]
fn a_state_round_trips_and_names_itself() {
    let s = state();
    let bytes = encode(&s);
    assert_eq!(bytes[1], MessageKind::BankState as u8);
    assert_eq!(decode::<BankState>(&bytes), Ok(s.clone()));
    assert_eq!(s.msg_id(), "house:0000000000000abc:b7");
    assert_eq!(s.pack(&pack("p3")).unwrap().sample_seq, 13);
    assert!(s.pack(&pack("p4")).is_none());
    // A bank state is not a sample, and the other way round.
    assert!(matches!(
        decode::<crate::Sample>(&bytes),
        Err(DecodeError::WrongKind { found: 6, .. })
    ));
}

#[test]
fn overrides_round_trip_at_version_4_and_older_states_read_without() {
    let mut s = state();
    s.overrides.site_max_charge_a = Some(40.0);
    s.overrides.absorption_voltage_v = Some(54.0);
    let bytes = encode(&s);
    assert_eq!(bytes[0], 4);
    assert_eq!(decode::<BankState>(&bytes), Ok(s.clone()));
    // A version 3 writer's bytes: the same fields without the overrides
    // (three absent options at the end).
    let none = state();
    let mut v3 = vec![3, MessageKind::BankState as u8];
    let encoded = encode(&none);
    assert_eq!(&encoded[encoded.len() - 3..], [0, 0, 0]);
    v3.extend_from_slice(&encoded[2..encoded.len() - 3]);
    assert_eq!(decode::<BankState>(&v3), Ok(none));
    // An override out of range is refused by name.
    s.overrides.site_max_discharge_a = Some(-1.0);
    assert_eq!(out_of_range(&encode(&s)), "overrides.site_max_discharge_a");
}

#[test]
fn a_stopped_state_with_no_pack_counted_round_trips() {
    let mut s = state();
    for p in &mut s.packs {
        p.counted = false;
        p.charge = PackShare::NotCounted;
        p.discharge = PackShare::SwitchOpen;
    }
    s.packs_online = 0;
    s.stop = Some(BankStop::NoFreshData);
    (s.min_cell, s.max_cell, s.soh_pct) = (None, None, None);
    (s.charge_current_a, s.discharge_current_a) = (0.0, 0.0);
    assert_eq!(decode::<BankState>(&encode(&s)), Ok(s.clone()));
    s.stop = Some(BankStop::TooFewPacks {
        counted: 1,
        required: 2,
    });
    assert_eq!(decode::<BankState>(&encode(&s)), Ok(s));
}

#[test]
fn numbers_that_are_not_possible_are_refused_by_name() {
    let mut s = state();
    s.charge_current_a = f32::NAN;
    assert_eq!(out_of_range(&encode(&s)), "charge_current_a");
    let mut s = state();
    s.discharge_current_a = -1.0;
    assert_eq!(out_of_range(&encode(&s)), "discharge_current_a");
    let mut s = state();
    s.soc_pct = 100.5;
    assert_eq!(out_of_range(&encode(&s)), "soc_pct");
    let mut s = state();
    s.soh_pct = Some(f32::INFINITY);
    assert_eq!(out_of_range(&encode(&s)), "soh_pct");
    let mut s = state();
    s.voltage_v = f32::NEG_INFINITY;
    assert_eq!(out_of_range(&encode(&s)), "voltage_v");
    let mut s = state();
    s.max_temperature.as_mut().unwrap().value = -300.0;
    assert_eq!(out_of_range(&encode(&s)), "max_temperature");
    let mut s = state();
    s.min_cell.as_mut().unwrap().value = f32::NAN;
    assert_eq!(out_of_range(&encode(&s)), "min_cell");
    let mut s = state();
    s.packs[0].charge = PackShare::Allowed {
        current_a: f32::NAN,
        derating: Derating::None,
    };
    assert_eq!(out_of_range(&encode(&s)), "packs");
    let mut s = state();
    s.seq = 0;
    assert_eq!(out_of_range(&encode(&s)), "seq");
    let mut s = state();
    s.seq = MAX_STORABLE_SEQ + 1;
    assert_eq!(out_of_range(&encode(&s)), "seq");
    let mut s = state();
    s.timestamp_ms = MAX_TIMESTAMP_MS + 1;
    assert_eq!(out_of_range(&encode(&s)), "timestamp_ms");
}

#[test]
fn counts_that_disagree_with_the_packs_and_too_many_packs_are_invalid() {
    let invalid = |s: &BankState| {
        matches!(
            decode::<BankState>(&encode(s)),
            Err(DecodeError::Invalid {
                kind: MessageKind::BankState,
                ..
            })
        )
    };
    let mut s = state();
    s.packs_online = 2;
    assert!(invalid(&s));
    let mut s = state();
    s.packs_total = 4;
    assert!(invalid(&s));
    let mut s = state();
    let one = s.packs[0].clone();
    s.packs = vec![one; MAX_BANK_PACKS + 1];
    s.packs_total = s.packs.len() as u32;
    s.packs_online = s.packs.len() as u32;
    assert!(invalid(&s));
}

#[test]
fn a_bank_id_that_breaks_the_rules_does_not_decode() {
    // The bank id is the first field after the envelope: a length, then
    // the text. "house" becomes "ho.se".
    let mut bytes = encode(&state());
    let at = bytes
        .windows(5)
        .position(|w| w == b"house")
        .expect("the id is in the bytes");
    bytes[at + 2] = b'.';
    assert!(matches!(
        decode::<BankState>(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

fn share() -> impl Strategy<Value = PackShare> {
    prop_oneof![
        (0.0f32..1000.0).prop_map(|current_a| PackShare::Allowed {
            current_a,
            derating: Derating::Temperature,
        }),
        Just(PackShare::NotCounted),
        Just(PackShare::SwitchOpen),
        any::<u32>().prop_map(|bits| PackShare::Alarm(AlarmFlags(bits))),
    ]
}

prop_compose! {
    fn bank_pack()(name in "[a-z0-9_-]{1,64}", seq in any::<u64>(), counted in any::<bool>(),
                   alarms in any::<u32>(), charge in share(), discharge in share()) -> BankPack {
        BankPack {
            pack_id: PackId::new(name).unwrap(), sample_seq: seq, counted,
            alarms: AlarmFlags(alarms), charge, discharge,
        }
    }
}

prop_compose! {
    fn any_state()(packs in prop::collection::vec(bank_pack(), 0..=8),
                   seq in 1..=MAX_STORABLE_SEQ, timestamp_ms in 0..=MAX_TIMESTAMP_MS,
                   current_a in -1.0e5f32..1.0e5, soc_pct in 0.0f32..=100.0,
                   ccl in 0.0f32..1.0e4, dcl in 0.0f32..1.0e4, float in any::<bool>()) -> BankState {
        let online = packs.iter().filter(|p| p.counted).count() as u32;
        BankState {
            seq, timestamp_ms, current_a, soc_pct,
            packs_total: packs.len() as u32,
            packs_online: online,
            charge_current_a: ccl,
            discharge_current_a: dcl,
            stage: if float { ChargeStage::Float } else { ChargeStage::Absorption },
            packs,
            ..state()
        }
    }
}

proptest! {
    #[test]
    fn states_round_trip(s in any_state()) {
        prop_assert_eq!(decode::<BankState>(&encode(&s)), Ok(s));
    }

    #[test]
    fn arbitrary_payloads_never_panic(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = vec![crate::SCHEMA_VERSION, MessageKind::BankState as u8];
        bytes.extend(payload);
        let _ = decode::<BankState>(&bytes);
    }

    #[test]
    fn a_truncated_state_is_an_error(cut in 0usize..400) {
        let bytes = encode(&state());
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(decode::<BankState>(&bytes[..cut]).is_err());
    }
}
