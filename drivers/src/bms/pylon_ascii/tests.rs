//! The codec against frames written from the document: checksums of the
//! fixtures were computed apart from this code (a separate script summing
//! the ASCII codes, as the document's section 2.3.3 says), each error
//! kind told apart, and properties over arbitrary bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use packgate_protocol::AlarmFlags;
use proptest::prelude::*;

use super::codec::*;
use super::info::*;
use super::reading::pack_reading;
use crate::bms::{FrameError, FrameErrorKind, FrameStatus, Framing};

fn frames(text: &str) -> Vec<Vec<u8>> {
    vec![text.as_bytes().to_vec()]
}

/// The reply of the document's chapter 4 (a 74 Ah pack at ADR 2), its
/// CHKSUM recomputed: the document prints E1A2, its contents sum to E27A.
const DOC_ANALOG_REPLY: &str = "~20024600F07A11020F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B\
0D4A0D4A0D4A0D4A050BC30BC30BC30BCD0BCD0000C725FFFF04FFFF000200CA58012110E27A\r";

/// Two cells (3300, 3310 mV), temperatures 25.0 and -10.0 °C, -2.5 A,
/// 6.610 V, 25000 of 50000 mAh in the 16-bit fields (2 items), 12 cycles.
const SMALL_ANALOG_REPLY: &str =
    "~20024600002E0002020CE40CEE020BA50A47FFE719D261A802C350000CF390\r";

/// Four cells (cell 2 above its limit), three temperatures (the third
/// below its limit), status 1 cell under voltage, status 2 charge MOSFET
/// only, status 3 charging current, no failed cell.
const ALARM_REPLY: &str = "~20024600802600020400020000030000010000000202800000F66A\r";

#[test]
fn lchksum_and_chksum_follow_the_documents_examples() {
    // Section 2.3.2: LENID 18 gives LENGTH D012.
    assert_eq!(length_field(18), 0xD012);
    assert_eq!(length_checksum(0), 0);
    assert_eq!(length_field(2), 0xE002);
    // Section 2.3.3: "1203400456ABCEFE" sums to 0x038F, so FC71.
    assert_eq!(frame_checksum(b"1203400456ABCEFE"), 0xFC71);
}

#[test]
fn requests_match_the_documents_example() {
    // Chapter 4's command to ADR 2.
    assert_eq!(analog_value_request(2), b"~20024642E00202FD33\r".to_vec());
    assert_eq!(alarm_info_request(2), b"~20024644E00202FD31\r".to_vec());
    assert_eq!(serial_number_request(2), b"~20024693E00202FD2D\r".to_vec());
    assert_eq!(
        encode_request(2, CID2_MANUFACTURER_INFO, None),
        b"~200246510000FDAC\r".to_vec()
    );
}

#[test]
fn the_documents_reply_decodes_as_its_table_says() {
    let bytes = DOC_ANALOG_REPLY.as_bytes();
    assert_eq!(
        PylonAsciiFraming::frame_len(bytes),
        FrameStatus::Complete(bytes.len())
    );
    let a = decode_analog_reply(&frames(DOC_ANALOG_REPLY), 2)
        .unwrap()
        .unwrap();
    assert_eq!(a.data_flag, 0x11);
    assert_eq!(a.cell_voltages_mv.len(), 15);
    assert_eq!(&a.cell_voltages_mv[..2], &[3397, 3396]);
    assert_eq!(a.cell_voltages_mv[14], 3402);
    assert_eq!(a.temperatures_dk, vec![3011, 3011, 3011, 3021, 3021]);
    assert_eq!(a.bms_temperature_c(), Some(28.0));
    assert_eq!(a.current_100ma, 0);
    assert_eq!(a.pack_voltage_mv, 50981);
    assert_eq!(a.remaining_capacity_mah, 51_800);
    assert_eq!(a.total_capacity_mah, 74_000);
    assert_eq!(a.cycles, 2);
    assert!((a.soc_pct() - 70.0).abs() < 1e-4);
}

#[test]
fn a_reading_is_made_of_both_replies() {
    let analog = decode_analog_reply(&frames(SMALL_ANALOG_REPLY), 2)
        .unwrap()
        .unwrap();
    assert_eq!(analog.current_100ma, -25);
    assert_eq!(analog.total_capacity_mah, 50_000);
    let alarm = decode_alarm_reply(&frames(ALARM_REPLY), 2)
        .unwrap()
        .unwrap();
    assert_eq!(alarm.cell_states[1], LimitState::AboveUpper);
    assert_eq!(alarm.temperature_states[2], LimitState::BelowLower);
    assert_eq!(alarm.cell_failure_bits, Some(0));
    assert_eq!(
        alarm.alarm_flags(),
        AlarmFlags::CELL_OVER_VOLTAGE
            .union(AlarmFlags::UNDER_TEMPERATURE)
            .union(AlarmFlags::CELL_UNDER_VOLTAGE)
    );
    // Counts disagree (4 cells against 2): no reading.
    assert!(pack_reading(&analog, &alarm).is_err());
    let alarm2 = decode_alarm_reply(
        &frames("~20024600301C0002020000020000000000000600F84F\r"),
        2,
    )
    .unwrap()
    .unwrap();
    // Three status bytes: a pre-V2.5 pack.
    assert_eq!(alarm2.cell_failure_bits, None);
    let r = pack_reading(&analog, &alarm2).unwrap();
    assert_eq!(r.cell_voltages_v.0, vec![3.3, 3.31]);
    assert_eq!(r.temperatures_c.0, vec![-10.0]);
    assert!((r.current_a + 2.5).abs() < 1e-6);
    assert!((r.pack_voltage_v - 6.61).abs() < 1e-6);
    assert_eq!(r.soc_pct, 50.0);
    assert_eq!(r.soh_pct, None);
    assert!(r.alarms.is_empty());
    assert!(r.charge_enabled && r.discharge_enabled);
    r.validate().unwrap();
}

#[test]
fn every_status_bit_is_mapped_as_documented() {
    let info = |status1: u8, status4: u8| AlarmInfo {
        data_flag: 0,
        command_value: 2,
        cell_states: vec![],
        temperature_states: vec![],
        charge_current_state: LimitState::Normal,
        pack_voltage_state: LimitState::Normal,
        discharge_current_state: LimitState::Normal,
        status1,
        status2: 0,
        status3: 0xFF,
        cell_failure_bits: Some(u16::from(status4)),
    };
    let expected = [
        AlarmFlags::PACK_OVER_VOLTAGE,
        AlarmFlags::CELL_UNDER_VOLTAGE,
        AlarmFlags::CHARGE_OVER_CURRENT,
        AlarmFlags::NONE,
        AlarmFlags::DISCHARGE_OVER_CURRENT,
        AlarmFlags::OVER_TEMPERATURE,
        AlarmFlags::OVER_TEMPERATURE,
        AlarmFlags::PACK_UNDER_VOLTAGE,
    ];
    for (bit, flag) in expected.iter().enumerate() {
        assert_eq!(info(1 << bit, 0).alarm_flags(), *flag, "status 1 bit {bit}");
    }
    assert_eq!(info(0, 0x10).alarm_flags(), AlarmFlags::BMS_FAULT);
    let mut states = info(0, 0);
    states.charge_current_state = LimitState::BelowLower;
    states.discharge_current_state = LimitState::Unknown(7);
    assert!(states.alarm_flags().is_empty());
    states.pack_voltage_state = LimitState::OtherError;
    assert_eq!(states.alarm_flags(), AlarmFlags::BMS_FAULT);
}

#[test]
fn serial_numbers_are_trimmed_ascii() {
    let reply = "~20024600C02202504753494D3030303030303432000000F6DE\r";
    assert_eq!(
        decode_serial_number_reply(&frames(reply), 2).unwrap(),
        Ok("PGSIM00000042".to_owned())
    );
    let mut info = vec![2u8];
    info.extend_from_slice(b"AB\x01DEFGHIJKLMNOP");
    assert!(matches!(
        decode_serial_number(&info),
        Err(FrameError::Malformed(_))
    ));
}

fn kind<T: std::fmt::Debug>(r: Result<T, FrameError>) -> FrameErrorKind {
    r.unwrap_err().kind()
}

#[test]
fn each_error_kind_is_told_apart() {
    // RTN 04: the pack's refusal, not a link error.
    let refused = decode_analog_reply(&frames("~200246040000FDAE\r"), 2).unwrap();
    let e = refused.unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (4, "CID2 invalid"));
    // Another address's reply.
    let other = "~20034600002E0003020CE40CEE020BA50A47FFE719D261A802C350000CF38E\r";
    assert_eq!(
        decode_analog_reply(&frames(other), 2).unwrap_err(),
        FrameError::WrongAddress {
            expected: 2,
            found: 3
        }
    );
    // A flipped character: CHKSUM.
    let mut bad = SMALL_ANALOG_REPLY.as_bytes().to_vec();
    bad[20] = b'9';
    assert_eq!(
        kind(decode_analog_reply(&[bad.clone()], 2)),
        FrameErrorKind::Checksum
    );
    assert!(matches!(
        PylonAsciiFraming::frame_len(&bad),
        FrameStatus::Invalid(FrameError::Checksum { .. })
    ));
    // LCHKSUM wrong: a checksum error too, found from the header alone.
    assert!(matches!(
        PylonAsciiFraming::frame_len(b"~2002460010"),
        FrameStatus::Incomplete
    ));
    assert!(matches!(
        PylonAsciiFraming::frame_len(b"~200246001002"),
        FrameStatus::Invalid(FrameError::Checksum { .. })
    ));
    // Cut off: incomplete to the framing, short once it is all there is.
    let cut = &SMALL_ANALOG_REPLY.as_bytes()[..30];
    assert_eq!(PylonAsciiFraming::frame_len(cut), FrameStatus::Incomplete);
    assert_eq!(kind(parse_frame(cut)), FrameErrorKind::Short);
    // Layout: a non-hex character, no EOI, 3 user-defined items, a cell
    // of 0xFFFF mV, bytes after EOI.
    assert!(matches!(
        PylonAsciiFraming::frame_len(b"~20G2"),
        FrameStatus::Invalid(FrameError::Malformed(_))
    ));
    let mut no_eoi = SMALL_ANALOG_REPLY.as_bytes().to_vec();
    *no_eoi.last_mut().unwrap() = b'\n';
    assert_eq!(kind(parse_frame(&no_eoi)), FrameErrorKind::Malformed);
    // Three user-defined items: Pace's layout, refused by name; seven:
    // no layout's, malformed.
    let three = "~20024600002E0002020CE40CEE020BA50A47FFE719D261A803C350000CF38F\r";
    let e = decode_analog_reply(&frames(three), 2).unwrap_err();
    assert_eq!(e.kind(), FrameErrorKind::Unexpected);
    assert!(e.to_string().contains("set layout = \"pace\""), "{e}");
    let mut seven = parse_frame(SMALL_ANALOG_REPLY.as_bytes()).unwrap().info;
    seven[18] = 7;
    assert_eq!(
        kind(decode_analog_values(&seven)),
        FrameErrorKind::Malformed
    );
    let ffff = "~20024600002E000202FFFF0CEE020BA50A47FFE719D261A802C350000CF364\r";
    assert_eq!(
        kind(decode_analog_reply(&frames(ffff), 2)),
        FrameErrorKind::Malformed
    );
    let mut trailing = SMALL_ANALOG_REPLY.as_bytes().to_vec();
    trailing.push(b'0');
    assert_eq!(kind(parse_frame(&trailing)), FrameErrorKind::Malformed);
    // Our own request coming back (an echo): not the pack's refusal.
    assert_eq!(
        kind(decode_analog_reply(&[analog_value_request(2)], 2)),
        FrameErrorKind::Unexpected
    );
    // The alarm reply is no analog reply: its INFO does not parse so.
    assert!(decode_analog_reply(&frames(ALARM_REPLY), 2).is_err());
}

/// The INFO of `a` as a pack sends it, 24-bit capacities when they do not
/// fit 16 bits.
fn analog_info(a: &AnalogValues) -> Vec<u8> {
    let mut info = vec![a.data_flag, a.command_value, a.cell_voltages_mv.len() as u8];
    for mv in &a.cell_voltages_mv {
        info.extend_from_slice(&mv.to_be_bytes());
    }
    info.push(a.temperatures_dk.len() as u8);
    for t in &a.temperatures_dk {
        info.extend_from_slice(&t.to_be_bytes());
    }
    info.extend_from_slice(&a.current_100ma.to_be_bytes());
    info.extend_from_slice(&a.pack_voltage_mv.to_be_bytes());
    let wide = a.total_capacity_mah > 0xFFFF;
    let narrow = |v: u32| if wide { 0xFFFF } else { v as u16 };
    info.extend_from_slice(&narrow(a.remaining_capacity_mah).to_be_bytes());
    info.push(if wide { 4 } else { 2 });
    info.extend_from_slice(&narrow(a.total_capacity_mah).to_be_bytes());
    info.extend_from_slice(&a.cycles.to_be_bytes());
    if wide {
        info.extend_from_slice(&a.remaining_capacity_mah.to_be_bytes()[1..]);
        info.extend_from_slice(&a.total_capacity_mah.to_be_bytes()[1..]);
    }
    info
}

fn analog_values() -> impl Strategy<Value = AnalogValues> {
    (
        any::<u8>(),
        prop::collection::vec(0..=MAX_CELL_MV, 0..40),
        prop::collection::vec(1731i16..=5231, 0..20),
        any::<i16>(),
        any::<u16>(),
        1u32..=0xFF_FFFF,
        any::<u16>(),
        0.0f64..=1.0,
    )
        .prop_map(
            |(flag, cells, temps, current, volts, total, cycles, f)| AnalogValues {
                data_flag: flag,
                command_value: 2,
                cell_voltages_mv: cells,
                temperatures_dk: temps,
                current_100ma: current,
                pack_voltage_mv: volts,
                remaining_capacity_mah: (f64::from(total) * f) as u32,
                total_capacity_mah: total,
                cycles,
            },
        )
}

proptest! {
    #[test]
    fn analog_values_round_trip(a in analog_values()) {
        let frame = encode_frame(2, 0, &analog_info(&a)).unwrap();
        prop_assert_eq!(decode_analog_reply(&[frame], 2), Ok(Ok(a)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = PylonAsciiFraming::frame_len(&bytes);
        let mut framed = vec![SOI];
        framed.extend_from_slice(&bytes);
        let _ = PylonAsciiFraming::frame_len(&framed);
        let _ = decode_analog_reply(&[framed.clone()], 2);
        let _ = decode_alarm_reply(&[framed.clone()], 2);
        let _ = decode_serial_number_reply(&[framed], 2);
        let _ = decode_analog_values(&bytes);
        let _ = decode_alarm_info(&bytes);
        let _ = decode_serial_number(&bytes);
    }

    #[test]
    fn arbitrary_hex_frames_never_panic(info in prop::collection::vec(any::<u8>(), 0..120)) {
        let frames = [encode_frame(2, 0, &info).unwrap()];
        let _ = decode_analog_reply(&frames, 2);
        let _ = decode_alarm_reply(&frames, 2);
        let _ = decode_serial_number_reply(&frames, 2);
    }

    #[test]
    fn a_flipped_byte_is_never_another_reading(
        a in analog_values(),
        at in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let frame = encode_frame(2, 0, &analog_info(&a)).unwrap();
        let i = at.index(frame.len());
        prop_assume!(frame[i] != to);
        let mut flipped = frame.clone();
        flipped[i] = to;
        // Only a hex digit of CHKSUM turned to its other case reads the
        // same: never a different reading.
        match decode_analog_reply(&[flipped], 2) {
            Err(_) => {}
            Ok(read) => prop_assert_eq!(read, Ok(a)),
        }
    }
}
