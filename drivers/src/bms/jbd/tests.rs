//! The JBD codec on the document's own frames, on each way a frame can be
//! wrong, and on arbitrary bytes.

use packgate_protocol::AlarmFlags;
use proptest::prelude::*;

use super::codec::*;
use super::pack_reading;
use crate::bms::{FrameError, FrameStatus, Framing};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A reply frame built for the tests, its checksum taken as the document
/// words it: 0x10000 minus the sum of status, length and data.
fn reply(register: u8, status: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xDD, register, status, data.len() as u8];
    frame.extend_from_slice(data);
    let sum: u32 = frame[2..].iter().map(|b| u32::from(*b)).sum();
    let checksum = (0x10000 - (sum & 0xFFFF)) & 0xFFFF;
    frame.extend_from_slice(&(checksum as u16).to_be_bytes());
    frame.push(0x77);
    frame
}

/// The data bytes of `info` as a BMS sends them.
fn basic_data(info: &BasicInfo) -> Vec<u8> {
    let mut d = Vec::new();
    for word in [
        info.pack_voltage_10mv,
        info.current_10ma as u16,
        info.remaining_capacity_10mah,
        info.nominal_capacity_10mah,
        info.cycles,
        info.production_date.0,
        info.balancing_cells as u16,
        (info.balancing_cells >> 16) as u16,
        info.protection.0,
    ] {
        d.extend_from_slice(&word.to_be_bytes());
    }
    let fet = u8::from(info.charge_mos_on) | u8::from(info.discharge_mos_on) << 1;
    d.extend_from_slice(&[
        info.software_version,
        info.soc_pct,
        fet,
        info.cell_count,
        info.ntc_temperatures_dk.len() as u8,
    ]);
    for t in &info.ntc_temperatures_dk {
        d.extend_from_slice(&t.to_be_bytes());
    }
    d
}

fn decode_basic(frame: &[u8]) -> Result<Result<BasicInfo, crate::DeviceException>, FrameError> {
    Ok(match expect_reply(frame, REG_BASIC_INFO)? {
        Ok(data) => Ok(decode_basic_info(data)?),
        Err(e) => Err(e),
    })
}

/// The V4 document's `0x03` example: 58.88 V, 0 A, 7.2 of 10 Ah, made
/// 2016-03-24, both MOS on, 15 cells, 20.3 and 21.5 °C (its checksum
/// `FB FF` checked by hand: the data sum is 0x401, 0x10000 - 0x401).
const DOC_BASIC: &str = "DD 03 00 1B 17 00 00 00 02 D0 03 E8 00 00 20 78 00 00 00 00 00 00 \
                         10 48 03 0F 02 0B 76 0B 82 FB FF 77";
/// The V4 document's worked example: 66.23 V, -20.12 A, 17 cells, 4 NTCs.
const DOC_BASIC_DISCHARGING: &str = "DD 03 00 1F 19 DF F8 24 0D A5 0F A0 00 02 24 91 00 00 00 00 \
                                     00 00 12 57 03 11 04 0B 98 0B A9 0B 96 0B 97 F8 9A 77";
/// Its 17 cell voltages.
const DOC_CELLS_17: &str = "DD 04 00 22 0E C8 0E C8 0E CB 0E CF 0E CA 0E C7 0E CA 0E CD 0E C9 \
                            0E CA 0E CB 0E CB 0E C8 0E CC 0E C8 0E C9 0E C9 F1 87 77";

#[test]
fn requests_are_the_documents_bytes() {
    assert_eq!(
        read_request(REG_BASIC_INFO).to_vec(),
        hex("DD A5 03 00 FF FD 77")
    );
    assert_eq!(
        read_request(REG_CELL_VOLTAGES).to_vec(),
        hex("DD A5 04 00 FF FC 77")
    );
    assert_eq!(
        read_request(REG_HARDWARE_VERSION).to_vec(),
        hex("DD A5 05 00 FF FB 77")
    );
    // The document's "software closes the discharge MOS".
    let discharge_off = MosControl {
        charge_on: true,
        discharge_on: false,
    };
    assert_eq!(
        mos_control_request(discharge_off).to_vec(),
        hex("DD 5A E1 02 00 02 FF 1B 77")
    );
    let bytes = |charge_on, discharge_on| {
        MosControl {
            charge_on,
            discharge_on,
        }
        .control_byte()
    };
    assert_eq!(
        [
            bytes(true, true),
            bytes(false, true),
            bytes(true, false),
            bytes(false, false)
        ],
        [0, 1, 2, 3]
    );
    // Both released: E1 + 02 = 0xE3, 0x10000 - 0xE3 = 0xFF1D.
    assert_eq!(
        mos_control_request(MosControl {
            charge_on: true,
            discharge_on: true
        })
        .to_vec(),
        hex("DD 5A E1 02 00 00 FF 1D 77")
    );
}

#[test]
fn the_documents_basic_information_decodes() {
    let frame = hex(DOC_BASIC);
    assert_eq!(
        JbdFraming::frame_len(&frame),
        FrameStatus::Complete(frame.len())
    );
    let info = decode_basic(&frame).unwrap().unwrap();
    assert_eq!(info.pack_voltage_10mv, 5888);
    assert_eq!(info.current_10ma, 0);
    assert_eq!(info.remaining_capacity_10mah, 720);
    assert_eq!(info.nominal_capacity_10mah, 1000);
    let date = info.production_date;
    assert_eq!((date.year(), date.month(), date.day()), (2016, 3, 24));
    assert_eq!((info.software_version, info.soc_pct), (0x10, 72));
    assert!(info.charge_mos_on && info.discharge_mos_on);
    assert_eq!((info.cell_count, info.ntc_temperatures_dk.len()), (15, 2));
    let temperatures: Vec<f32> = info.temperatures_c().collect();
    assert_eq!(temperatures, vec![20.3, 21.5]);

    let info = decode_basic(&hex(DOC_BASIC_DISCHARGING)).unwrap().unwrap();
    assert_eq!(info.current_10ma, -2012);
    assert_eq!((info.soc_pct, info.cell_count), (87, 17));
    let cells = decode_cell_voltages(
        expect_reply(&hex(DOC_CELLS_17), REG_CELL_VOLTAGES)
            .unwrap()
            .unwrap(),
        info.cell_count,
    )
    .unwrap();
    assert_eq!(cells.0.len(), 17);
    assert_eq!((cells.0[0], cells.0[3]), (3784, 3791));
    let reading = pack_reading(&info, &cells);
    assert!((reading.pack_voltage_v - 66.23).abs() < 1e-4);
    assert!((reading.current_a + 20.12).abs() < 1e-4);
    assert_eq!(reading.soc_pct, 87.0);
    assert_eq!(reading.cell_voltages_v.0[0], 3.784);
    // 0x0B98 = 2968: the document writes "2968 - 2731 = 247", but it is 237.
    assert_eq!(reading.temperatures_c.0[0], 23.7);
    assert!(reading.charge_enabled && reading.discharge_enabled);
    assert_eq!(reading.alarms, AlarmFlags::NONE);
}

#[test]
fn the_documents_cells_and_model_decode() {
    let frame = hex(
        "DD 04 00 1E 0F 66 0F 63 0F 63 0F 64 0F 3E 0F 63 0F 37 0F 5B 0F 65 0F 3B 0F 63 0F 63 \
         0F 3C 0F 66 0F 3D F9 F9 77",
    );
    let data = expect_reply(&frame, REG_CELL_VOLTAGES).unwrap().unwrap();
    let cells = decode_cell_voltages(data, 15).unwrap();
    assert_eq!(cells.0[0], 3942);
    assert_eq!(cells.0[14], 3901);
    let frame = hex("DD 05 00 0A 30 31 32 33 34 35 36 37 38 39 FD E9 77");
    let data = expect_reply(&frame, REG_HARDWARE_VERSION).unwrap().unwrap();
    assert_eq!(decode_hardware_version(data).unwrap(), "0123456789");
    // A length byte in front, as some firmware sends, and NUL padding.
    assert_eq!(decode_hardware_version(b"JBD1\0\0  ").unwrap(), "JBD1");
    assert_eq!(decode_hardware_version(b"\x04JBD1").unwrap(), "JBD1");
    assert!(decode_hardware_version(b"JB\x01D").is_err());
    assert!(decode_hardware_version(&[b'A'; 32]).is_err());
}

#[test]
fn the_mos_write_acknowledgement_decodes() {
    // The document's answer to 0xE1: status 0, no data, checksum 0x10000 in 16 bits.
    let ack = hex("DD E1 00 00 00 00 77");
    assert_eq!(JbdFraming::frame_len(&ack), FrameStatus::Complete(7));
    assert_eq!(expect_reply(&ack, REG_MOS_CONTROL), Ok(Ok(&[][..])));
}

#[test]
fn each_error_kind_is_told_apart() {
    let good = hex(DOC_BASIC);
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 0x01;
    assert!(matches!(
        JbdFraming::frame_len(&bad_sum),
        FrameStatus::Invalid(FrameError::Checksum { .. })
    ));
    assert!(matches!(
        decode_basic(&bad_sum),
        Err(FrameError::Checksum { .. })
    ));

    assert_eq!(JbdFraming::frame_len(&good[..20]), FrameStatus::Incomplete);
    assert_eq!(
        decode_basic(&good[..20]),
        Err(FrameError::Short {
            got: 20,
            expected: good.len()
        })
    );

    let mut bad_end = good.clone();
    *bad_end.last_mut().unwrap() = 0x78;
    assert!(matches!(
        decode_basic(&bad_end),
        Err(FrameError::Malformed(_))
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        decode_basic(&trailing),
        Err(FrameError::Malformed(_))
    ));
    assert!(matches!(
        JbdFraming::frame_len(&[0xDE, 0x03]),
        FrameStatus::Invalid(FrameError::Malformed(_))
    ));

    let cells = reply(REG_CELL_VOLTAGES, 0, &[0x0D, 0x05]);
    assert!(matches!(
        decode_basic(&cells),
        Err(FrameError::Unexpected(_))
    ));

    let refused = decode_basic(&reply(REG_BASIC_INFO, 0x80, &[]))
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, 0x80);
}

#[test]
fn impossible_values_are_errors_not_numbers() {
    let info = decode_basic(&hex(DOC_BASIC)).unwrap().unwrap();
    let mut data = basic_data(&info);
    let malformed = |data: &[u8]| {
        matches!(
            decode_basic(&reply(REG_BASIC_INFO, 0, data)),
            Err(FrameError::Malformed(_))
        )
    };
    assert!(!malformed(&data));
    data[19] = 101;
    assert!(malformed(&data), "SoC 101 %");
    data[19] = 50;
    data[23..25].copy_from_slice(&0u16.to_be_bytes());
    assert!(malformed(&data), "NTC at 0 K");
    data[23..25].copy_from_slice(&0xFFFFu16.to_be_bytes());
    assert!(malformed(&data), "NTC unread");
    data[23..25].copy_from_slice(&2981u16.to_be_bytes());
    assert!(!malformed(&data));
    data[22] = 3;
    assert!(malformed(&data), "three NTCs, two sent");
    data[22] = 2;
    data[21] = 33;
    assert!(malformed(&data), "33 cells");
    assert!(malformed(&data[..22]), "cut before the NTC count");
    // Newer firmware's extra bytes after the NTCs are ignored.
    data[21] = 15;
    data.extend_from_slice(&[0, 0, 0, 0, 0x12]);
    assert!(!malformed(&data));

    assert!(decode_cell_voltages(&[0x0D, 0x05, 0xFF, 0xFF], 2).is_err());
    assert!(decode_cell_voltages(&[0x0D, 0x05], 2).is_err());
    assert!(decode_cell_voltages(&[0x0D, 0x05, 0x0D], 1).is_err());
    assert_eq!(
        decode_cell_voltages(&[0x0D, 0x05, 0x13, 0x88], 2)
            .unwrap()
            .0,
        vec![3333, 5000]
    );
}

#[test]
fn protection_bits_map_onto_alarms_and_lock_stays_apart() {
    let flags = |bits: u16| JbdProtection(bits).alarm_flags();
    assert_eq!(flags(1 << 0), AlarmFlags::CELL_OVER_VOLTAGE);
    assert_eq!(flags(1 << 1), AlarmFlags::CELL_UNDER_VOLTAGE);
    assert_eq!(flags(1 << 2), AlarmFlags::PACK_OVER_VOLTAGE);
    assert_eq!(flags(1 << 3), AlarmFlags::PACK_UNDER_VOLTAGE);
    assert_eq!(flags(1 << 4 | 1 << 6), AlarmFlags::OVER_TEMPERATURE);
    assert_eq!(flags(1 << 5 | 1 << 7), AlarmFlags::UNDER_TEMPERATURE);
    assert_eq!(flags(1 << 8), AlarmFlags::CHARGE_OVER_CURRENT);
    assert_eq!(flags(1 << 9), AlarmFlags::DISCHARGE_OVER_CURRENT);
    assert_eq!(flags(1 << 10), AlarmFlags::SHORT_CIRCUIT);
    assert_eq!(flags(1 << 11), AlarmFlags::BMS_FAULT);
    assert_eq!(flags(0xF000), AlarmFlags::NONE);
    assert!(JbdProtection(1 << 12).software_mos_lock());
}

#[test]
fn balancing_bits_past_the_cell_count_are_dropped() {
    let mut info = decode_basic(&hex(DOC_BASIC)).unwrap().unwrap();
    info.balancing_cells = 0x8001_4001;
    let cells = CellVoltagesMv(vec![3300; 15]);
    assert_eq!(pack_reading(&info, &cells).balancing.0, 0x4001);
    info.cell_count = 32;
    assert_eq!(pack_reading(&info, &cells).balancing.0, 0x8001_4001);
}

fn basic_info() -> impl Strategy<Value = BasicInfo> {
    (
        (
            any::<u16>(),
            any::<i16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
        ),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u8>(),
            0u8..=100,
            any::<bool>(),
            any::<bool>(),
        ),
        (0u8..=32, proptest::collection::vec(2131u16..=4231, 0..=16)),
    )
        .prop_map(|(a, b, c)| BasicInfo {
            pack_voltage_10mv: a.0,
            current_10ma: a.1,
            remaining_capacity_10mah: a.2,
            nominal_capacity_10mah: a.3,
            cycles: a.4,
            production_date: ProductionDate(a.5),
            balancing_cells: b.0,
            protection: JbdProtection(b.1),
            software_version: b.2,
            soc_pct: b.3,
            charge_mos_on: b.4,
            discharge_mos_on: b.5,
            cell_count: c.0,
            ntc_temperatures_dk: c.1,
        })
}

proptest! {
    #[test]
    fn basic_information_round_trips(info in basic_info()) {
        let frame = reply(REG_BASIC_INFO, 0, &basic_data(&info));
        prop_assert_eq!(JbdFraming::frame_len(&frame), FrameStatus::Complete(frame.len()));
        prop_assert_eq!(decode_basic(&frame), Ok(Ok(info)));
    }

    #[test]
    fn cell_voltages_round_trip(cells in proptest::collection::vec(0u16..=MAX_CELL_MV, 0..=32)) {
        let data: Vec<u8> = cells.iter().flat_map(|mv| mv.to_be_bytes()).collect();
        let frame = reply(REG_CELL_VOLTAGES, 0, &data);
        let data = expect_reply(&frame, REG_CELL_VOLTAGES).unwrap().unwrap();
        prop_assert_eq!(decode_cell_voltages(data, cells.len() as u8), Ok(CellVoltagesMv(cells)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = JbdFraming::frame_len(&bytes);
        let _ = decode_basic(&bytes);
        let _ = decode_basic_info(&bytes);
        let _ = decode_cell_voltages(&bytes, bytes.first().copied().unwrap_or(0));
        let _ = decode_hardware_version(&bytes);
        let mut started = vec![START];
        started.extend_from_slice(&bytes);
        let _ = JbdFraming::frame_len(&started);
        let _ = parse_reply(&started);
        // A frame whose checksum is right whatever it holds.
        let framed = reply(bytes.first().copied().unwrap_or(3), 0, &bytes[..bytes.len().min(255)]);
        let _ = decode_basic(&framed);
    }

    #[test]
    fn a_flipped_byte_is_never_a_different_reading(
        info in basic_info(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let frame = reply(REG_BASIC_INFO, 0, &basic_data(&info));
        let mut spoiled = frame.clone();
        let at = at.index(frame.len());
        spoiled[at] ^= flip;
        let accepted = match JbdFraming::frame_len(&spoiled) {
            FrameStatus::Complete(len) => decode_basic(&spoiled[..len]).ok(),
            _ => None,
        };
        prop_assert!(accepted.is_none(), "byte {} ^ {:#04x} accepted: {:?}", at, flip, accepted);
    }
}
