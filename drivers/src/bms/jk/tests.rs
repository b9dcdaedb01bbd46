//! The JK codec on frames from the document and from real packs, on each
//! way a frame can be wrong, and on arbitrary bytes.

use packgate_protocol::AlarmFlags;
use proptest::prelude::*;

use super::codec::*;
use super::pack_reading;
use crate::bms::switch::MosSwitch;
use crate::bms::{FrameError, FrameStatus, Framing};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A frame built for the tests from the document's table: the length
/// counts everything after `4E 57`, the checksum is the plain sum of
/// every byte up to `68` in the low 16 bits.
fn nw(command: u8, source: u8, transport: u8, info: &[u8]) -> Vec<u8> {
    let total = 2 + 2 + 4 + 3 + info.len() + 4 + 1 + 4;
    let mut frame = vec![
        0x4E,
        0x57,
        ((total - 2) >> 8) as u8,
        (total - 2) as u8,
        0,
        0,
        0,
        0,
    ];
    frame.extend_from_slice(&[command, source, transport]);
    frame.extend_from_slice(info);
    frame.extend_from_slice(&[0, 0, 0, 0, 0x68]);
    let sum: u32 = frame.iter().map(|b| u32::from(*b)).sum();
    frame.extend_from_slice(&[0, 0, (sum >> 8) as u8, sum as u8]);
    frame
}

fn read_all_reply(info: &[u8]) -> Vec<u8> {
    nw(0x06, 0x00, 0x01, info)
}

/// A read-all reply logged from a JK-B2A24S (14 cells, protocol version
/// 1), its checksum `54 D1` as sent.
const PACK_14S: &str = "4E 57 01 1B 00 00 00 00 06 00 01 79 2A 01 0E ED 02 0E FA 03 0E F7 04 0E \
    EC 05 0E F8 06 0E FA 07 0E F1 08 0E F8 09 0E E3 0A 0E FA 0B 0E F1 0C 0E FB 0D 0E FB 0E 0E F2 \
    80 00 1D 81 00 1E 82 00 1C 83 14 EF 84 80 D0 85 0F 86 02 87 00 04 89 00 00 00 00 8A 00 0E 8B \
    00 00 8C 00 07 8E 16 26 8F 10 AE 90 0F D2 91 0F A0 92 00 05 93 0B EA 94 0C 1C 95 00 05 96 01 \
    2C 97 00 07 98 00 03 99 00 05 9A 00 05 9B 0C E4 9C 00 08 9D 01 9E 00 5A 9F 00 46 A0 00 64 A1 \
    00 64 A2 00 14 A3 00 46 A4 00 46 A5 FF EC A6 FF F6 A7 FF EC A8 FF F6 A9 0E AA 00 00 00 0E AB \
    01 AC 01 AD 04 11 AE 01 AF 01 B0 00 0A B1 14 B2 31 32 33 34 35 36 00 00 00 00 B3 00 B4 49 6E \
    70 75 74 20 55 73 B5 32 31 30 31 B6 00 00 E2 00 B7 48 36 2E 58 5F 5F 53 36 2E 31 2E 33 53 5F \
    5F B8 00 B9 00 00 00 00 BA 42 54 33 30 37 32 30 32 30 31 32 30 30 30 30 32 30 30 35 32 31 30 \
    30 31 C0 01 00 00 00 00 68 00 00 54 D1";

/// A read-all reply logged from a JK-B1A8S20P (7 cells, at rest).
const PACK_7S: &str = "4E 57 01 06 00 00 00 00 06 00 01 79 15 01 0E D2 02 0E D2 03 0E D2 04 0E \
    D2 05 0E DB 06 0E DB 07 0E DB 80 00 1C 81 00 1C 82 00 1C 83 0A 62 84 00 00 85 5A 86 02 87 00 \
    00 89 00 00 00 05 8A 00 07 8B 00 00 8C 00 03 8E 0B 7C 8F 07 B6 90 10 68 91 10 54 92 00 03 93 \
    0B 04 94 0B 22 95 00 03 96 01 2C 97 00 C8 98 01 2C 99 00 19 9A 00 1E 9B 0B B8 9C 00 0A 9D 01 \
    9E 00 64 9F 00 50 A0 00 46 A1 00 3C A2 00 14 A3 00 46 A4 00 46 A5 FF EC A6 FF F6 A7 FF EC A8 \
    FF F6 A9 07 AA 00 00 00 75 AB 01 AC 01 AD 03 CC AE 01 AF 01 B0 00 0A B1 14 B2 31 32 33 34 35 \
    36 00 00 00 00 B3 00 B4 49 6E 70 75 74 20 55 73 B5 32 34 30 37 B6 00 00 08 19 B7 31 31 2E 58 \
    41 5F 53 31 31 2E 35 31 5F 5F 5F B8 00 B9 00 00 00 75 BA 49 6E 70 75 74 20 55 73 65 72 64 61 \
    4A 4B 5F 42 31 41 38 53 32 30 50 00 C0 01 00 00 00 00 68 00 00 4D 89";

/// The required ids alone: 2 cells, 52.00 V, current `raw`, 50 %, both
/// MOS on; then `tail`.
fn minimal_info(raw_current: u16, tail: &[u8]) -> Vec<u8> {
    let mut info = hex("79 06 01 0C E4 02 0C E5 83 14 50");
    info.push(0x84);
    info.extend_from_slice(&raw_current.to_be_bytes());
    info.extend_from_slice(&hex("85 32 8C 00 03"));
    info.extend_from_slice(tail);
    info
}

#[test]
fn requests_are_the_documents_bytes() {
    assert_eq!(
        read_all_request(0),
        hex("4E 57 00 13 00 00 00 00 06 03 00 00 00 00 00 00 68 00 00 01 29")
    );
    // The switch frames users report working on B-series packs.
    let write = |switch, on| switch_write_request(0, switch, on);
    let frame = |tail: &str| hex(&format!("4E 57 00 14 00 00 00 00 02 03 00 {tail}"));
    assert_eq!(
        write(MosSwitch::Charge, true),
        frame("AB 01 00 00 00 00 68 00 00 01 D2")
    );
    assert_eq!(
        write(MosSwitch::Charge, false),
        frame("AB 00 00 00 00 00 68 00 00 01 D1")
    );
    assert_eq!(
        write(MosSwitch::Discharge, true),
        frame("AC 01 00 00 00 00 68 00 00 01 D3")
    );
    assert_eq!(
        write(MosSwitch::Discharge, false),
        frame("AC 00 00 00 00 00 68 00 00 01 D2")
    );
}

#[test]
fn a_real_14_cell_frame_decodes() {
    let frame = hex(PACK_14S);
    assert_eq!(
        JkFraming::frame_len(&frame),
        FrameStatus::Complete(frame.len())
    );
    let values = decode_read_all(&frame).unwrap();
    assert_eq!(values.cell_voltages_mv.len(), 14);
    assert_eq!(
        (values.cell_voltages_mv[0], values.cell_voltages_mv[13]),
        (3821, 3826)
    );
    assert_eq!(
        (
            values.mos_temperature_c,
            values.sensor_1_temperature_c,
            values.sensor_2_temperature_c
        ),
        (Some(29), Some(30), Some(28))
    );
    assert_eq!(values.pack_voltage_10mv, 5359);
    // 0x80D0: bit 15 charging, 0xD0 = 208 × 10 mA.
    assert_eq!(
        (values.current_10ma, values.current_encoding),
        (208, CurrentEncoding::SignMagnitude)
    );
    assert_eq!(
        (values.soc_pct, values.cycles, values.cell_count),
        (15, Some(4), Some(14))
    );
    assert_eq!(values.status, JkStatus(0x07));
    assert!(values.status.balancer_on());
    assert_eq!(
        (values.charge_switch_on, values.discharge_switch_on),
        (Some(true), Some(true))
    );
    assert_eq!(values.device_id.as_deref(), Some("Input Us"));
    assert_eq!(values.software_version.as_deref(), Some("H6.X__S6.1.3S__"));
    assert_eq!(values.serial_number(), Some("BT3072020120000200521001"));
    assert_eq!(
        (values.protocol_version, values.stopped_at),
        (Some(1), None)
    );

    let reading = pack_reading(&values);
    assert!((reading.pack_voltage_v - 53.59).abs() < 1e-4);
    assert!((reading.current_a - 2.08).abs() < 1e-4);
    assert_eq!(reading.soc_pct, 15.0);
    assert_eq!(reading.cell_voltages_v.0[0], 3.821);
    assert_eq!(reading.temperatures_c.0, vec![30.0, 28.0]);
    assert_eq!(reading.balancing.0, 0);
    assert_eq!(reading.alarms, AlarmFlags::NONE);
    assert!(reading.charge_enabled && reading.discharge_enabled);
}

#[test]
fn a_real_7_cell_frame_decodes() {
    let values = decode_read_all(&hex(PACK_7S)).unwrap();
    assert_eq!(
        values.cell_voltages_mv,
        vec![3794, 3794, 3794, 3794, 3803, 3803, 3803]
    );
    assert_eq!((values.current_10ma, values.soc_pct), (0, 90));
    assert_eq!(values.serial_number(), Some("Input UserdaJK_B1A8S20P"));
    assert!(!values.status.balancer_on());
}

#[test]
fn both_current_forms_are_positive_while_charging() {
    let current = |info: Vec<u8>| decode_read_all(&read_all_reply(&info)).map(|v| v.current_10ma);
    // Protocol version 1: bit 15 charging.
    assert_eq!(current(minimal_info(0x87D0, &hex("C0 01"))), Ok(2000));
    assert_eq!(current(minimal_info(0x07D0, &hex("C0 01"))), Ok(-2000));
    // The older form, the document's examples: 11000 → -10 A, 9500 → +5 A.
    assert_eq!(current(minimal_info(11000, &[])), Ok(-1000));
    assert_eq!(current(minimal_info(9500, &hex("C0 00"))), Ok(500));
    // An unknown id before C0: the form cannot be known.
    assert!(matches!(
        current(minimal_info(0x87D0, &hex("88 01 C0 01"))),
        Err(FrameError::Malformed(_))
    ));
    // After C0 an unknown id only ends the parse.
    let values = decode_read_all(&read_all_reply(&minimal_info(
        0x87D0,
        &hex("C0 01 8D 00 11"),
    )))
    .unwrap();
    assert_eq!((values.current_10ma, values.stopped_at), (2000, Some(0x8D)));
    assert!(current(minimal_info(0, &hex("C0 02"))).is_err());
}

#[test]
fn the_write_acknowledgement_decodes() {
    // 4E+57+13+02+01+AB+68 = 0x1CE.
    let ack = hex("4E 57 00 13 00 00 00 00 02 00 01 AB 00 00 00 00 68 00 00 01 CE");
    assert_eq!(JkFraming::frame_len(&ack), FrameStatus::Complete(ack.len()));
    assert_eq!(decode_write_ack(&ack, ID_CHARGE_SWITCH), Ok(()));
    assert!(matches!(
        decode_write_ack(&ack, ID_DISCHARGE_SWITCH),
        Err(FrameError::Unexpected(_))
    ));
    assert!(matches!(
        decode_read_all(&ack),
        Err(FrameError::Unexpected(_))
    ));
    // The request itself (an echo) is not a reply.
    assert!(matches!(
        decode_read_all(&read_all_request(0)),
        Err(FrameError::Unexpected(_))
    ));
}

#[test]
fn each_error_kind_is_told_apart() {
    let good = hex(PACK_7S);
    let mut bad_sum = good.clone();
    bad_sum[40] ^= 0x10;
    assert!(matches!(
        JkFraming::frame_len(&bad_sum),
        FrameStatus::Invalid(FrameError::Checksum { .. })
    ));
    let mut high_sum = good.clone();
    let at = good.len() - 4;
    high_sum[at] = 0x01;
    assert!(matches!(
        decode_read_all(&high_sum),
        Err(FrameError::Checksum { .. })
    ));

    assert_eq!(JkFraming::frame_len(&good[..100]), FrameStatus::Incomplete);
    assert_eq!(
        decode_read_all(&good[..100]),
        Err(FrameError::Short {
            got: 100,
            expected: good.len()
        })
    );

    let malformed = |bytes: &[u8]| {
        matches!(
            JkFraming::frame_len(bytes),
            FrameStatus::Invalid(FrameError::Malformed(_))
        )
    };
    assert!(malformed(&[0x4E, 0x58]));
    assert!(
        malformed(&[0x4E, 0x57, 0x00, 0x11]),
        "shorter than any frame"
    );
    assert!(
        malformed(&[0x4E, 0x57, 0x04, 0x00]),
        "longer than any frame"
    );
    let mut bad_end = good.clone();
    let end = good.len() - 5;
    bad_end[end] = 0x69;
    assert!(malformed(&bad_end));
}

#[test]
fn broken_information_is_malformed() {
    let malformed = |info: Vec<u8>| {
        matches!(
            decode_read_all(&read_all_reply(&info)),
            Err(FrameError::Malformed(_))
        )
    };
    assert!(!malformed(minimal_info(10_000, &[])));
    assert!(
        malformed(hex("79 03 01 0C E4 83 14 50 84 27 10 85 32")),
        "no 8C"
    );
    assert!(malformed(hex(
        "88 00 79 03 01 0C E4 83 14 50 84 27 10 85 32 8C 00 03"
    )));
    assert!(malformed(minimal_info(10_000, &hex("85 10"))), "85 twice");
    assert!(
        malformed(minimal_info(10_000, &hex("87 00"))),
        "87 past the end"
    );
    assert!(
        malformed(minimal_info(10_000, &hex("8A 00 03"))),
        "3 cells counted, 2 sent"
    );
    assert!(!malformed(minimal_info(10_000, &hex("8A 00 02"))));
    assert!(
        malformed(minimal_info(10_000, &hex("80 00 8D"))),
        "temperature 141"
    );
    let mut info = minimal_info(10_000, &[]);
    info[2] = 2; // cell numbers 2, 2
    assert!(malformed(info));
    let mut info = minimal_info(10_000, &[]);
    info[3..5].copy_from_slice(&[0xFF, 0xFF]);
    assert!(malformed(info), "cell 1 at 65535 mV");
    let mut info = minimal_info(10_000, &[]);
    info[1] = 5;
    assert!(malformed(info), "a cell list of 5 bytes");
    let mut info = minimal_info(10_000, &[]);
    let soc = info.iter().position(|b| *b == 0x85).unwrap() + 1;
    info[soc] = 101;
    assert!(malformed(info), "SoC 101 %");
}

#[test]
fn temperatures_and_warnings() {
    assert_eq!(temperature_c(0), Some(0));
    assert_eq!(temperature_c(100), Some(100));
    assert_eq!(temperature_c(101), Some(-1));
    assert_eq!(temperature_c(140), Some(-40));
    assert_eq!(temperature_c(141), None);
    let flags = |bits: u16| JkWarnings(bits).alarm_flags();
    assert_eq!(flags(JkWarnings::LOW_CAPACITY), AlarmFlags::NONE);
    assert_eq!(
        flags(1 << 1 | 1 << 4 | 1 << 8),
        AlarmFlags::OVER_TEMPERATURE
    );
    assert_eq!(flags(1 << 2), AlarmFlags::PACK_OVER_VOLTAGE);
    assert_eq!(flags(1 << 3), AlarmFlags::PACK_UNDER_VOLTAGE);
    assert_eq!(flags(1 << 5), AlarmFlags::CHARGE_OVER_CURRENT);
    assert_eq!(flags(1 << 6), AlarmFlags::DISCHARGE_OVER_CURRENT);
    assert_eq!(flags(1 << 7), AlarmFlags::CELL_IMBALANCE);
    assert_eq!(flags(1 << 9), AlarmFlags::UNDER_TEMPERATURE);
    assert_eq!(flags(1 << 10), AlarmFlags::CELL_OVER_VOLTAGE);
    assert_eq!(flags(1 << 11), AlarmFlags::CELL_UNDER_VOLTAGE);
    assert_eq!(flags(1 << 12 | 1 << 13), AlarmFlags::BMS_FAULT);
    assert_eq!(flags(0xC000), AlarmFlags::NONE);
    // One sensor counted: only sensor 1 is a temperature.
    let values = decode_read_all(&read_all_reply(&minimal_info(
        10_000,
        &hex("80 00 14 81 00 15 82 00 66 86 01"),
    )))
    .unwrap();
    assert_eq!(pack_reading(&values).temperatures_c.0, vec![21.0]);
    assert_eq!(values.sensor_2_temperature_c, Some(-2));
}

#[path = "property_tests.rs"]
mod properties;
