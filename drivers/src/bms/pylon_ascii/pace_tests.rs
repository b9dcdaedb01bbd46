//! The Pace layout against its document's worked example, published
//! captures of PBmsTools and frames written here. The checksums of the
//! frames written here were computed apart from this code (a separate
//! script summing the ASCII codes between `~` and CHKSUM, modulo 65536,
//! inverted plus one, as the document's section 2.4 says).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use packgate_protocol::{AlarmFlags, BalancingState};
use proptest::prelude::*;

use super::codec::*;
use super::info::{decode_alarm_reply, decode_analog_reply, LimitState};
use super::layout::PylonAsciiLayout;
use super::pace::*;
use super::seplos::{decode_seplos_alarm_reply, decode_seplos_analog_reply};
use crate::bms::{FrameError, FrameErrorKind};

fn frames(text: &str) -> Vec<Vec<u8>> {
    vec![text.as_bytes().to_vec()]
}

/// The document's chapter 5 reply (ADR 0, asked with COMMAND FF): 16
/// cells, six temperatures, 47.50 of 50.00 Ah.
const DOC_ANALOG: &str = "~25004600F07A0001100D420D140D130D130D130D130D130D130D110D120D130D110D110D120D100D13060BB70BB70BB80BB60BB30BBD0000D155128E03138800001388E3AC\r";

/// PBmsTools 2.4 asking ADR 1 ("~25014642E00201FD30"), as published
/// with an open-source reader of these packs.
const CAPTURE_ANALOG: &str = "~25014600F07A0001100CC70CC80CC70CC70CC70CC50CC60CC70CC70CC60CC70CC60CC60CC70CC60CC7060B9B0B990B990B990BB30BBCFF1FCCCD12D303286A008C2710E1E4\r";

/// The same pack's warn reply ("~25014644E00201FD2E"): both MOSFETs on.
const CAPTURE_ALARM: &str = "~25014600004C000110000000000000000000000000000000000600000000000000000000000E000000000000EF3A\r";

/// A rebadged pack's warn reply, one byte longer than the document's.
const CAPTURE_ALARM_LONG: &str = "~25014600E04E000110000000000000000000000000000000000600000000000000000000000E00000000000000EEC3\r";

/// ADR 1, 15 cells (cell 15 below its limit), MOSFET temperature above
/// its limit, environment "other fault"; protect 1 cell over voltage and
/// short circuit, protect 2 MOSFET over temperature, both MOSFETs on,
/// buzzer enabled, balance bytes 03 00, warn 1 cell high, warn 2 low
/// power.
const ALARM_REPLY: &str =
    "~25014600204A00010F000000000000000000000000000001060000000002F0000000411006010003000180EF68\r";

#[test]
fn requests_match_the_documents_example() {
    // Chapter 5 asks ADR 0 for COMMAND 01; packgate asks ADR n for n.
    assert_eq!(
        encode_frame_with_version(0x25, 0, CID2_ANALOG_VALUE, &[1]).unwrap(),
        b"~25004642E00201FD31\r".to_vec()
    );
    assert_eq!(
        encode_frame_with_version(0x25, 0, CID2_ALARM_INFO, &[1]).unwrap(),
        b"~25004644E00201FD2F\r".to_vec()
    );
    let pace = PylonAsciiLayout::Pace;
    assert_eq!(pace.analog_request(1), b"~25014642E00201FD30\r".to_vec());
    assert_eq!(pace.alarm_request(1), b"~25014644E00201FD2E\r".to_vec());
    assert_eq!(pace.addresses(), 1..=15);
}

#[test]
fn the_documents_example_decodes_as_its_explanation_says() {
    let a = decode_pace_analog_reply(&frames(DOC_ANALOG), 0)
        .unwrap()
        .unwrap();
    assert_eq!((a.info_flag, a.command_value), (0, 1));
    assert_eq!(a.cell_voltages_mv.len(), 16);
    assert_eq!(&a.cell_voltages_mv[..3], &[3394, 3348, 3347]);
    assert_eq!(a.cell_voltages_mv[14], 3344);
    // 2999 is 26.9 °C: the offset is 2730.
    assert_eq!(a.temperatures_dk[0], 2999);
    assert!((a.mosfet_temperature_c().unwrap() - 26.5).abs() < 1e-4);
    assert!((a.environment_temperature_c().unwrap() - 27.5).abs() < 1e-4);
    assert_eq!(a.current_10ma, 0);
    assert_eq!(a.pack_voltage_mv, 53_589);
    assert_eq!(a.remaining_capacity_10mah, 4750);
    assert_eq!(a.full_capacity_10mah, 5000);
    assert_eq!(a.cycles, 0);
    assert_eq!(a.design_capacity_10mah, 5000);
    assert!((a.soc_pct() - 95.0).abs() < 1e-4);
}

#[test]
fn a_reading_is_made_of_both_captured_replies() {
    let analog = decode_pace_analog_reply(&frames(CAPTURE_ANALOG), 1)
        .unwrap()
        .unwrap();
    let alarm = decode_pace_alarm_reply(&frames(CAPTURE_ALARM), 1)
        .unwrap()
        .unwrap();
    assert_eq!(alarm.instruction, 0x0E);
    let r = pace_pack_reading(&analog, &alarm).unwrap();
    assert!((r.current_a + 2.25).abs() < 1e-4, "negative: discharging");
    assert!((r.pack_voltage_v - 52.429).abs() < 1e-4);
    assert!((r.soc_pct - 481_900.0 / 10_346.0).abs() < 1e-3);
    // No SoH field: full (103.46 Ah) over design (100 Ah) is no health.
    assert_eq!(analog.full_capacity_10mah, 10_346);
    assert_eq!(analog.design_capacity_10mah, 10_000);
    assert_eq!(r.soh_pct, None);
    let t: Vec<f32> = r
        .temperatures_c
        .0
        .iter()
        .map(|c| (c * 10.0).round())
        .collect();
    assert_eq!(t, vec![241.0, 239.0, 239.0, 239.0]);
    assert!((analog.mosfet_temperature_c().unwrap() - 26.5).abs() < 1e-4);
    assert!(r.alarms.is_empty());
    assert!(r.charge_enabled && r.discharge_enabled);
    assert_eq!(r.balancing, BalancingState(0));
    r.validate().unwrap();
}

#[test]
fn protections_and_faults_raise_flags_and_warnings_do_not() {
    let alarm = decode_pace_alarm_reply(&frames(ALARM_REPLY), 1)
        .unwrap()
        .unwrap();
    assert_eq!(alarm.cell_states[14], LimitState::BelowLower);
    assert_eq!(alarm.temperature_states[4], LimitState::AboveUpper);
    assert_eq!(alarm.temperature_states[5], LimitState::OtherError);
    assert_eq!((alarm.balance, alarm.warn), ([0x03, 0x00], [0x01, 0x80]));
    assert_eq!(
        alarm.alarm_flags(),
        AlarmFlags::CELL_OVER_VOLTAGE
            .union(AlarmFlags::SHORT_CIRCUIT)
            .union(AlarmFlags::OVER_TEMPERATURE)
            .union(AlarmFlags::BMS_FAULT)
    );
    assert!(alarm.charge_mosfet_on() && alarm.discharge_mosfet_on());
    // Bit by bit.
    use AlarmFlags as F;
    let mut quiet = alarm.clone();
    quiet.temperature_states = vec![LimitState::Normal; 6];
    quiet.protect1 = 0;
    quiet.protect2 = 0;
    assert_eq!(quiet.alarm_flags(), F::NONE);
    let protect1 = [
        F::CELL_OVER_VOLTAGE,
        F::CELL_UNDER_VOLTAGE,
        F::PACK_OVER_VOLTAGE,
        F::PACK_UNDER_VOLTAGE,
        F::CHARGE_OVER_CURRENT,
        F::DISCHARGE_OVER_CURRENT,
        F::SHORT_CIRCUIT,
        F::NONE,
    ];
    let protect2 = [
        F::OVER_TEMPERATURE,
        F::OVER_TEMPERATURE,
        F::UNDER_TEMPERATURE,
        F::UNDER_TEMPERATURE,
        F::OVER_TEMPERATURE,
        F::OVER_TEMPERATURE,
        F::UNDER_TEMPERATURE,
        F::NONE,
    ];
    let fault = [
        F::BMS_FAULT,
        F::BMS_FAULT,
        F::BMS_FAULT,
        F::NONE,
        F::BMS_FAULT,
        F::BMS_FAULT,
        F::NONE,
        F::NONE,
    ];
    for bit in 0..8 {
        let one = |set: &dyn Fn(&mut PaceAlarm)| {
            let mut a = quiet.clone();
            set(&mut a);
            a.alarm_flags()
        };
        assert_eq!(
            one(&|a| a.protect1 = 1 << bit),
            protect1[bit],
            "protect 1 bit {bit}"
        );
        assert_eq!(
            one(&|a| a.protect2 = 1 << bit),
            protect2[bit],
            "protect 2 bit {bit}"
        );
        assert_eq!(one(&|a| a.fault = 1 << bit), fault[bit], "fault bit {bit}");
        let instruction = if bit == 4 { F::BMS_FAULT } else { F::NONE };
        assert_eq!(
            one(&|a| a.instruction = 1 << bit),
            instruction,
            "instruction bit {bit}"
        );
        assert_eq!(one(&|a| a.control = 1 << bit), F::NONE, "control bit {bit}");
        assert_eq!(
            one(&|a| a.warn = [1 << bit, 1 << bit]),
            F::NONE,
            "warn bit {bit}"
        );
        assert_eq!(
            one(&|a| a.balance = [1 << bit, 1 << bit]),
            F::NONE,
            "balance bit {bit}"
        );
    }
    assert_eq!(
        quiet.clone().alarm_flags(),
        F::NONE,
        "states below or above a warn limit raise nothing"
    );
}

fn kind<T: std::fmt::Debug>(r: Result<T, FrameError>) -> FrameErrorKind {
    r.unwrap_err().kind()
}

#[test]
fn each_error_kind_is_told_apart() {
    // RTN 09: the pack's refusal.
    let e = decode_pace_analog_reply(&frames("~250146090000FDA5\r"), 1)
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (9, "operation or write error")
    );
    assert_eq!(
        decode_pace_analog_reply(&frames(CAPTURE_ANALOG), 2).unwrap_err(),
        FrameError::WrongAddress {
            expected: 2,
            found: 1
        }
    );
    let mut bad = CAPTURE_ANALOG.as_bytes().to_vec();
    bad[30] = if bad[30] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        kind(decode_pace_analog_reply(&[bad], 1)),
        FrameErrorKind::Checksum
    );
    // One byte more than the document's warn reply: refused.
    let e = decode_pace_alarm_reply(&frames(CAPTURE_ALARM_LONG), 1).unwrap_err();
    assert!(
        matches!(&e, FrameError::Malformed(m) if m.contains("13 bytes")),
        "{e:?}"
    );
    // A remaining capacity above the full one.
    let mut a = decode_pace_analog_reply(&frames(CAPTURE_ANALOG), 1)
        .unwrap()
        .unwrap();
    a.remaining_capacity_10mah = a.full_capacity_10mah + 1;
    assert_eq!(
        kind(decode_pace_analog(&analog_info(&a))),
        FrameErrorKind::Malformed
    );
    // P = 9 (wall-mount packs with 28 undocumented bytes): malformed.
    let mut info = analog_info(
        &decode_pace_analog_reply(&frames(CAPTURE_ANALOG), 1)
            .unwrap()
            .unwrap(),
    );
    let count_at = info.len() - 7;
    assert_eq!(info[count_at], 3);
    info[count_at] = 9;
    info.extend_from_slice(&[0; 28]);
    assert_eq!(kind(decode_pace_analog(&info)), FrameErrorKind::Malformed);
}

#[test]
fn another_layouts_reply_is_refused_by_name() {
    let e = decode_analog_reply(&frames(CAPTURE_ANALOG), 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected reply: user-defined count 3: this looks like a Pace pack, not Pylontech; set layout = \"pace\""
    );
    let e = decode_seplos_analog_reply(&frames(CAPTURE_ANALOG), 1).unwrap_err();
    assert!(e.to_string().contains("Pace pack, not Seplos V2"), "{e}");
    let e = decode_alarm_reply(&frames(CAPTURE_ALARM), 1).unwrap_err();
    assert!(e.to_string().contains("Pace pack, not Pylontech"), "{e}");
    let e = decode_seplos_alarm_reply(&frames(CAPTURE_ALARM), 1).unwrap_err();
    assert!(e.to_string().contains("set layout = \"pace\""), "{e}");
    // A Pylontech alarm reply (five status bytes) read as Pace.
    let pylon = "~20024600802600020400020000030000010000000202800000F66A\r";
    let e = decode_pace_alarm_reply(&frames(pylon), 2).unwrap_err();
    assert!(e.to_string().contains("set layout = \"pylontech\""), "{e}");
}

/// The INFO of `a` as a Pace pack sends it.
fn analog_info(a: &PaceAnalog) -> Vec<u8> {
    let mut info = vec![a.info_flag, a.command_value, a.cell_voltages_mv.len() as u8];
    for mv in &a.cell_voltages_mv {
        info.extend_from_slice(&mv.to_be_bytes());
    }
    info.push(a.temperatures_dk.len() as u8);
    for t in &a.temperatures_dk {
        info.extend_from_slice(&t.to_be_bytes());
    }
    for word in [
        a.current_10ma as u16,
        a.pack_voltage_mv,
        a.remaining_capacity_10mah,
    ] {
        info.extend_from_slice(&word.to_be_bytes());
    }
    info.push(PACE_USER_DEFINED_ITEMS);
    for word in [a.full_capacity_10mah, a.cycles, a.design_capacity_10mah] {
        info.extend_from_slice(&word.to_be_bytes());
    }
    info
}

fn pace_analog() -> impl Strategy<Value = PaceAnalog> {
    (
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(0u16..=10_000, 0..=16),
        ),
        prop::collection::vec(1730i16..=5230, 6),
        (any::<i16>(), any::<u16>(), 1u16..=u16::MAX, 0.0f64..=1.0),
        (any::<u16>(), any::<u16>()),
    )
        .prop_map(
            |((flag, command, cells), temps, (i, v, full, f), (cycles, design))| PaceAnalog {
                info_flag: flag,
                command_value: command,
                cell_voltages_mv: cells,
                temperatures_dk: temps,
                current_10ma: i,
                pack_voltage_mv: v,
                remaining_capacity_10mah: (f64::from(full) * f) as u16,
                full_capacity_10mah: full,
                cycles,
                design_capacity_10mah: design,
            },
        )
}

proptest! {
    #[test]
    fn analog_values_round_trip(a in pace_analog()) {
        let frame = encode_frame_with_version(0x25, 1, 0, &analog_info(&a)).unwrap();
        prop_assert_eq!(decode_pace_analog_reply(&[frame], 1), Ok(Ok(a)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_pace_analog(&bytes);
        let _ = decode_pace_alarm(&bytes);
        let frames = [encode_frame_with_version(0x25, 1, 0, &bytes).unwrap()];
        let _ = decode_pace_analog_reply(&frames, 1);
        let _ = decode_pace_alarm_reply(&frames, 1);
        let mut raw = vec![SOI];
        raw.extend_from_slice(&bytes);
        let _ = decode_pace_analog_reply(&[raw.clone()], 1);
        let _ = decode_pace_alarm_reply(&[raw], 1);
    }

    #[test]
    fn a_flipped_byte_is_never_another_reading(
        a in pace_analog(),
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let frame = encode_frame_with_version(0x25, 1, 0, &analog_info(&a)).unwrap();
        let i = at.index(frame.len());
        prop_assume!(frame[i] != to);
        let mut flipped = frame.clone();
        flipped[i] = to;
        match decode_pace_analog_reply(&[flipped], 1) {
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
        let good = decode_pace_alarm_reply(std::slice::from_ref(&frame), 1);
        let i = at.index(frame.len());
        prop_assume!(frame[i] != to);
        let mut flipped = frame;
        flipped[i] = to;
        match decode_pace_alarm_reply(&[flipped], 1) {
            Err(_) => {}
            Ok(read) => prop_assert_eq!(Ok(read), good),
        }
    }
}
