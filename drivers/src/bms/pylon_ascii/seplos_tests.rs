//! The Seplos V2 layout against frames from its document and a published
//! capture. The checksums of the frames written here were computed apart
//! from this code (a separate script summing the ASCII codes between `~`
//! and CHKSUM, modulo 65536, inverted plus one, as the document's section
//! 3.3 says); the requests are the document's tables 7 and 10 verbatim.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use packgate_protocol::{AlarmFlags, BalancingState};
use proptest::prelude::*;

use super::codec::*;
use super::info::{decode_alarm_reply, decode_analog_reply, LimitState};
use super::layout::PylonAsciiLayout;
use super::pace::{decode_pace_alarm_reply, decode_pace_analog_reply};
use super::seplos::*;
use crate::bms::{FrameError, FrameErrorKind};

fn frames(text: &str) -> Vec<Vec<u8>> {
    vec![text.as_bytes().to_vec()]
}

/// A 16-cell Seplos pack at ADR 0 answering "~20004642E00200FD37"
/// (published with an open-source reader of these packs, 1101-SP15): the
/// COMMAND GROUP it echoes is 1.
pub(super) const CAPTURE_ANALOG: &str = "~2000460010960001100CD70CE90CF40CD60CEF0CE50CE10CDC0CE90CF00CE80CEF0CEA0CDA0CDE0CD8060BA60BA00B970BA60BA50BA2FD5C14A0344E0A426803134650004603E8149F0000000000000000DC6C\r";

/// ADR 0, 16 cells (cell 3 at its upper limit), environment at its
/// lower limit; event 2 cell high voltage alarm and over voltage
/// protection, event 3 charge high temperature alarm, event 5 output
/// short circuit, discharge switch only, cells 1, 3 and 16 balancing,
/// event 7 automatic charging waiting, event 8 voltage calibration not
/// performed.
const ALARM_REPLY: &str = "~20004600806200011000000200000000000000000000000000060000000001000000140003010020000105800100001004000000000000EB1A\r";

/// The same head; event 1 current sensor fault, event 4 bit 4 (power
/// temperature), both switches on, cell 16 disconnected.
const ALARM_REPLY_FAULTS: &str = "~20004600806200011000000200000000000000000000000000060000000001000000140400001000000300000000800000000000000000EB24\r";

#[test]
fn requests_are_the_documents_tables() {
    let seplos = PylonAsciiLayout::SeplosV2;
    assert_eq!(seplos.analog_request(0), b"~20004642E00200FD37\r".to_vec());
    assert_eq!(seplos.analog_request(15), b"~200F4642E0020FFD0B\r".to_vec());
    assert_eq!(seplos.alarm_request(2), b"~20024644E00202FD31\r".to_vec());
    assert_eq!(seplos.alarm_request(10), b"~200A4644E0020AFD13\r".to_vec());
    assert_eq!(seplos.addresses(), 0..=15);
}

#[test]
fn the_capture_decodes_as_the_documents_table_says() {
    let a = decode_seplos_analog_reply(&frames(CAPTURE_ANALOG), 0)
        .unwrap()
        .unwrap();
    assert_eq!((a.data_flag, a.command_group), (0, 1));
    assert_eq!(a.cell_voltages_mv.len(), 16);
    assert_eq!(&a.cell_voltages_mv[..2], &[3287, 3305]);
    assert_eq!(a.cell_voltages_mv[15], 3288);
    assert_eq!(a.temperatures_dk, vec![2982, 2976, 2967, 2982, 2981, 2978]);
    assert_eq!(a.environment_temperature_c(), Some(25.0));
    assert!((a.power_temperature_c().unwrap() - 24.7).abs() < 1e-4);
    assert_eq!(a.current_10ma, -676);
    assert_eq!(a.pack_voltage_10mv, 5280);
    assert_eq!(a.remaining_capacity_10mah, 13_390);
    assert_eq!(a.full_capacity_10mah, 17_000);
    assert_eq!(a.soc_permille, 787);
    assert_eq!(a.rated_capacity_10mah, 18_000);
    assert_eq!(a.cycles, 70);
    assert_eq!(a.soh_permille, 1000);
    assert_eq!(a.port_voltage_10mv, 5279);
    assert_eq!(a.reserved, [0; 4]);
}

#[test]
fn a_reading_is_made_of_both_replies() {
    let analog = decode_seplos_analog_reply(&frames(CAPTURE_ANALOG), 0)
        .unwrap()
        .unwrap();
    let alarm = decode_seplos_alarm_reply(&frames(ALARM_REPLY), 0)
        .unwrap()
        .unwrap();
    assert_eq!(alarm.cell_states[2], LimitState::AboveUpper);
    assert_eq!(alarm.temperature_states[4], LimitState::BelowLower);
    let r = seplos_pack_reading(&analog, &alarm).unwrap();
    assert!((r.pack_voltage_v - 52.8).abs() < 1e-4);
    assert!((r.current_a + 6.76).abs() < 1e-4, "negative: discharging");
    assert!((r.soc_pct - 78.7).abs() < 1e-4);
    assert_eq!(r.soh_pct, Some(100.0));
    assert_eq!(r.cell_voltages_v.0.len(), 16);
    assert!((r.cell_voltages_v.0[0] - 3.287).abs() < 1e-6);
    // The four cell sensors; environment and power kept apart.
    let t: Vec<f32> = r
        .temperatures_c
        .0
        .iter()
        .map(|c| (c * 10.0).round())
        .collect();
    assert_eq!(t, vec![251.0, 245.0, 236.0, 251.0]);
    assert_eq!(r.balancing, BalancingState(0x8005));
    // Only the protections: the warnings and the states raise nothing.
    assert_eq!(
        r.alarms,
        AlarmFlags::CELL_OVER_VOLTAGE.union(AlarmFlags::SHORT_CIRCUIT)
    );
    assert!(!r.charge_enabled && r.discharge_enabled);
    r.validate().unwrap();
    let faults = decode_seplos_alarm_reply(&frames(ALARM_REPLY_FAULTS), 0)
        .unwrap()
        .unwrap();
    let r = seplos_pack_reading(&analog, &faults).unwrap();
    assert_eq!(
        r.alarms,
        AlarmFlags::BMS_FAULT.union(AlarmFlags::OVER_TEMPERATURE)
    );
    assert!(r.charge_enabled && r.discharge_enabled);
    assert_eq!(r.balancing, BalancingState(0));
}

/// Every bit of the twenty alarm bytes, one at a time, against the
/// module's table.
#[test]
fn every_alarm_bit_is_mapped_as_documented() {
    use AlarmFlags as F;
    let none = F::NONE;
    let both_currents = F::CHARGE_OVER_CURRENT.union(F::DISCHARGE_OVER_CURRENT);
    let expected: [[AlarmFlags; 8]; 14] = [
        [F::BMS_FAULT; 8],
        [
            none,
            F::CELL_OVER_VOLTAGE,
            none,
            F::CELL_UNDER_VOLTAGE,
            none,
            F::PACK_OVER_VOLTAGE,
            none,
            F::PACK_UNDER_VOLTAGE,
        ],
        [
            none,
            F::OVER_TEMPERATURE,
            none,
            F::UNDER_TEMPERATURE,
            none,
            F::OVER_TEMPERATURE,
            none,
            F::UNDER_TEMPERATURE,
        ],
        [
            none,
            F::OVER_TEMPERATURE,
            none,
            F::UNDER_TEMPERATURE,
            F::OVER_TEMPERATURE,
            F::OVER_TEMPERATURE,
            none,
            none,
        ],
        [
            none,
            F::CHARGE_OVER_CURRENT,
            none,
            F::DISCHARGE_OVER_CURRENT,
            both_currents,
            F::SHORT_CIRCUIT,
            both_currents,
            F::SHORT_CIRCUIT,
        ],
        [
            F::PACK_OVER_VOLTAGE,
            none,
            none,
            none,
            F::CELL_UNDER_VOLTAGE,
            F::BMS_FAULT,
            F::BMS_FAULT,
            none,
        ],
        [none; 8],
        [none; 8],
        [none; 8],
        [none; 8],
        [F::BMS_FAULT; 8],
        [F::BMS_FAULT; 8],
        [none; 8],
        [F::BMS_FAULT, none, none, none, none, none, none, none],
    ];
    let base = decode_seplos_alarm_reply(&frames(ALARM_REPLY), 0)
        .unwrap()
        .unwrap();
    for index in 0..usize::from(SEPLOS_ALARM_BYTES) {
        for bit in 0..8 {
            let mut alarm = base.clone();
            alarm.bytes = [0; SEPLOS_ALARM_BYTES as usize];
            alarm.bytes[index] = 1 << bit;
            let want = expected.get(index).map_or(none, |row| row[bit]);
            assert_eq!(alarm.alarm_flags(), want, "byte {index} bit {bit}");
        }
    }
}

fn kind<T: std::fmt::Debug>(r: Result<T, FrameError>) -> FrameErrorKind {
    r.unwrap_err().kind()
}

#[test]
fn each_error_kind_is_told_apart() {
    // The pack's refusal (RTN E3 device fault).
    let refused = decode_seplos_analog_reply(&frames("~200046E30000FD9C\r"), 0).unwrap();
    let e = refused.unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (0xE3, "device fault"));
    // Another pack's reply.
    assert_eq!(
        decode_seplos_analog_reply(&frames(CAPTURE_ANALOG), 1).unwrap_err(),
        FrameError::WrongAddress {
            expected: 1,
            found: 0
        }
    );
    // A flipped digit.
    let mut bad = CAPTURE_ANALOG.as_bytes().to_vec();
    bad[40] = if bad[40] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        kind(decode_seplos_analog_reply(&[bad], 0)),
        FrameErrorKind::Checksum
    );
    // A SoC above 100.0 %: malformed.
    let mut info = analog_info(
        &decode_seplos_analog_reply(&frames(CAPTURE_ANALOG), 0)
            .unwrap()
            .unwrap(),
    );
    let soc_at = info.len() - 18;
    info[soc_at..soc_at + 2].copy_from_slice(&1001u16.to_be_bytes());
    assert!(matches!(
        decode_seplos_analog(&info),
        Err(FrameError::Malformed(m)) if m.contains("SoC")
    ));
    // Five temperatures: malformed.
    let five = [
        0u8, 0, 0, 5, 0x0B, 0xA6, 0x0B, 0xA6, 0x0B, 0xA6, 0x0B, 0xA6, 0x0B, 0xA6, 0, 0, 0x14, 0xA0,
        0, 0, 10,
    ];
    assert!(matches!(
        decode_seplos_analog(&five),
        Err(FrameError::Malformed(m)) if m.contains("5 temperatures")
    ));
}

#[test]
fn another_layouts_reply_is_refused_by_name() {
    // The Seplos capture read as Pylontech, and as Pace.
    let e = decode_analog_reply(&frames(CAPTURE_ANALOG), 0).unwrap_err();
    assert_eq!(e.kind(), FrameErrorKind::Unexpected);
    assert_eq!(
        e.to_string(),
        "unexpected reply: user-defined count 10: this looks like a Seplos V2 pack, not Pylontech; set layout = \"seplos_v2\""
    );
    let e = decode_pace_analog_reply(&frames(CAPTURE_ANALOG), 0).unwrap_err();
    assert!(e.to_string().contains("set layout = \"seplos_v2\""), "{e}");
    // Its alarm reply read as Pylontech and as Pace.
    let e = decode_alarm_reply(&frames(ALARM_REPLY), 0).unwrap_err();
    assert!(
        e.to_string().contains("Seplos V2 pack, not Pylontech"),
        "{e}"
    );
    let e = decode_pace_alarm_reply(&frames(ALARM_REPLY), 0).unwrap_err();
    assert!(e.to_string().contains("Seplos V2 pack, not Pace"), "{e}");
    // A Pylontech reply (chapter 4 of its document) read as Seplos.
    let pylon = "~20024600F07A11020F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B\
0D4A0D4A0D4A0D4A050BC30BC30BC30BCD0BCD0000C725FFFF04FFFF000200CA58012110E27A\r";
    let e = decode_seplos_analog_reply(&frames(pylon), 2).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected reply: user-defined count 4: this looks like a Pylontech pack, not Seplos V2; set layout = \"pylontech\""
    );
    // A count no layout has: malformed, not a guess.
    let mut info = analog_info(
        &decode_seplos_analog_reply(&frames(CAPTURE_ANALOG), 0)
            .unwrap()
            .unwrap(),
    );
    let count_at = info.len() - 21;
    assert_eq!(info[count_at], 10);
    info[count_at] = 7;
    assert_eq!(kind(decode_seplos_analog(&info)), FrameErrorKind::Malformed);
}

/// The INFO of `a` as a Seplos pack sends it.
pub(super) fn analog_info(a: &SeplosAnalog) -> Vec<u8> {
    let mut info = vec![a.data_flag, a.command_group, a.cell_voltages_mv.len() as u8];
    for mv in &a.cell_voltages_mv {
        info.extend_from_slice(&mv.to_be_bytes());
    }
    info.push(a.temperatures_dk.len() as u8);
    for t in &a.temperatures_dk {
        info.extend_from_slice(&t.to_be_bytes());
    }
    for word in [
        a.current_10ma as u16,
        a.pack_voltage_10mv,
        a.remaining_capacity_10mah,
    ] {
        info.extend_from_slice(&word.to_be_bytes());
    }
    info.push(SEPLOS_CUSTOM_ITEMS);
    for word in [
        a.full_capacity_10mah,
        a.soc_permille,
        a.rated_capacity_10mah,
        a.cycles,
        a.soh_permille,
        a.port_voltage_10mv,
    ]
    .into_iter()
    .chain(a.reserved)
    {
        info.extend_from_slice(&word.to_be_bytes());
    }
    info
}

fn seplos_analog() -> impl Strategy<Value = SeplosAnalog> {
    (
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(0u16..=10_000, 0..=16),
        ),
        prop::collection::vec(1731i16..=5231, 6),
        (any::<i16>(), any::<u16>(), any::<u16>(), any::<u16>()),
        (
            0u16..=1000,
            any::<u16>(),
            any::<u16>(),
            0u16..=1000,
            any::<u16>(),
        ),
        any::<[u16; 4]>(),
    )
        .prop_map(
            |(
                (flag, group, cells),
                temps,
                (i, v, rem, full),
                (soc, rated, cycles, soh, port),
                reserved,
            )| {
                SeplosAnalog {
                    data_flag: flag,
                    command_group: group,
                    cell_voltages_mv: cells,
                    temperatures_dk: temps,
                    current_10ma: i,
                    pack_voltage_10mv: v,
                    remaining_capacity_10mah: rem,
                    full_capacity_10mah: full,
                    soc_permille: soc,
                    rated_capacity_10mah: rated,
                    cycles,
                    soh_permille: soh,
                    port_voltage_10mv: port,
                    reserved,
                }
            },
        )
}

proptest! {
    #[test]
    fn analog_values_round_trip(a in seplos_analog()) {
        let frame = encode_frame(0, 0, &analog_info(&a)).unwrap();
        prop_assert_eq!(decode_seplos_analog_reply(&[frame], 0), Ok(Ok(a)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_seplos_analog(&bytes);
        let _ = decode_seplos_alarm(&bytes);
        let frames = [encode_frame(0, 0, &bytes).unwrap()];
        let _ = decode_seplos_analog_reply(&frames, 0);
        let _ = decode_seplos_alarm_reply(&frames, 0);
        let mut raw = vec![SOI];
        raw.extend_from_slice(&bytes);
        let _ = decode_seplos_analog_reply(&[raw.clone()], 0);
        let _ = decode_seplos_alarm_reply(&[raw], 0);
    }

    #[test]
    fn a_flipped_byte_is_never_another_reading(
        a in seplos_analog(),
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let frame = encode_frame(0, 0, &analog_info(&a)).unwrap();
        let i = at.index(frame.len());
        prop_assume!(frame[i] != to);
        let mut flipped = frame.clone();
        flipped[i] = to;
        match decode_seplos_analog_reply(&[flipped], 0) {
            Err(_) => {}
            Ok(read) => prop_assert_eq!(read, Ok(a)),
        }
    }

    #[test]
    fn a_flipped_alarm_byte_is_never_another_reading(
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let frame = ALARM_REPLY.as_bytes().to_vec();
        let good = decode_seplos_alarm_reply(std::slice::from_ref(&frame), 0);
        let i = at.index(frame.len());
        prop_assume!(frame[i] != to);
        let mut flipped = frame;
        flipped[i] = to;
        match decode_seplos_alarm_reply(&[flipped], 0) {
            Err(_) => {}
            Ok(read) => prop_assert_eq!(Ok(read), good),
        }
    }
}
