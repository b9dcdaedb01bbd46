//! The codec against frames written from the document (checksums summed
//! apart from this code, with a separate script: the low byte of the sum
//! of the first 12 bytes), each error kind told apart, and properties.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use packgate_protocol::AlarmFlags;
use proptest::prelude::*;

use super::codec::*;
use super::reading::{pack_reading, DalyPoll, FAILURE_MAPPING};
use crate::bms::{FrameError, FrameErrorKind, FrameStatus, Framing};

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn one(text: &str) -> Vec<Vec<u8>> {
    vec![hex(text)]
}

/// 53.2 V, +12.3 A (raw 30123), SoC 65.4 %.
const STATUS_CHARGING: &str = "A5 01 90 08 02 14 00 00 75 AB 02 8E 04";
/// The same at −7.7 A (raw 29923).
const STATUS_DISCHARGING: &str = "A5 01 90 08 02 14 00 00 74 E3 02 8E 3B";
/// Charging, charge MOSFET on, discharge off; life 7; 65400 mAh.
const SWITCHES: &str = "A5 01 93 08 01 01 00 07 00 00 FF 78 C1";
/// 4 cells, 2 sensors, charger on, load off, DI1 and DO1, 12 cycles.
const SYSTEM: &str = "A5 01 94 08 04 02 01 00 11 00 0C 00 66";
const CELLS_1: &str = "A5 01 95 08 01 0C E4 0C EE 0C F8 00 32";
const CELLS_2: &str = "A5 01 95 08 02 0D 02 00 00 00 00 00 54";
/// 25 °C and 10 °C.
const TEMPERATURES: &str = "A5 01 96 08 01 41 32 00 00 00 00 00 B8";
/// Cells 1 and 3 balancing.
const BALANCING: &str = "A5 01 97 08 05 00 00 00 00 00 00 00 4A";
/// Cell high L1 and L2, charge current L1 (a warning), short circuit.
const FAILURES: &str = "A5 01 98 08 03 00 01 00 00 00 04 00 4E";

#[test]
fn requests_carry_the_host_address_and_checksum() {
    assert_eq!(
        encode_request(HOST_ADDRESS_UART, CMD_PACK_STATUS).to_vec(),
        hex("A5 40 90 08 00 00 00 00 00 00 00 00 7D")
    );
    assert_eq!(
        encode_request(HOST_ADDRESS_ALTERNATE, CMD_PACK_STATUS).to_vec(),
        hex("A5 80 90 08 00 00 00 00 00 00 00 00 BD")
    );
    // The `0x94` request as widely published: checksum 0x81.
    assert_eq!(encode_request(0x40, CMD_SYSTEM_STATUS)[12], 0x81);
}

#[test]
fn each_reply_decodes_as_the_document_says() {
    let s = decode_pack_status(&one(STATUS_CHARGING)).unwrap();
    assert_eq!(
        (s.pack_voltage_dv, s.current_da, s.soc_permille),
        (532, 123, 654)
    );
    assert_eq!(
        decode_pack_status(&one(STATUS_DISCHARGING))
            .unwrap()
            .current_da,
        -77
    );
    let w = decode_switches(&one(SWITCHES)).unwrap();
    assert_eq!(w.state, ChargeState::Charging);
    assert!(w.charge_mosfet_on && !w.discharge_mosfet_on);
    assert_eq!((w.bms_life_cycles, w.remaining_capacity_mah), (7, 65_400));
    let y = decode_system_status(&one(SYSTEM)).unwrap();
    assert_eq!((y.cells, y.temperature_sensors, y.cycles), (4, 2, 12));
    assert!(y.charger_connected && !y.load_connected);
    assert_eq!(y.io_bits, 0x11);
    assert_eq!(
        decode_cell_extremes(&one("A5 01 91 08 0D 02 04 0C E4 01 00 00 43")).unwrap(),
        CellExtremes {
            max_cell_mv: 3330,
            max_cell: 4,
            min_cell_mv: 3300,
            min_cell: 1
        }
    );
    assert_eq!(
        decode_temperature_extremes(&one("A5 01 92 08 41 01 32 02 00 00 00 00 B6")).unwrap(),
        TemperatureExtremes {
            max_c: 25,
            max_sensor: 1,
            min_c: 10,
            min_sensor: 2
        }
    );
    assert_eq!(decode_balancing(&one(BALANCING)).unwrap(), 0b101);
}

fn poll() -> DalyPoll {
    DalyPoll {
        status: decode_pack_status(&one(STATUS_CHARGING)).unwrap(),
        switches: decode_switches(&one(SWITCHES)).unwrap(),
        system: decode_system_status(&one(SYSTEM)).unwrap(),
        cell_voltages_mv: decode_cell_voltages(&[hex(CELLS_1), hex(CELLS_2)], 4).unwrap(),
        temperatures_c: decode_temperatures(&one(TEMPERATURES), 2).unwrap(),
        balancing_bits: decode_balancing(&one(BALANCING)).unwrap(),
        failures: decode_failures(&one(FAILURES)).unwrap(),
    }
}

#[test]
fn a_poll_makes_a_reading() {
    let r = pack_reading(&poll()).unwrap();
    assert!((r.pack_voltage_v - 53.2).abs() < 1e-5);
    assert!((r.current_a - 12.3).abs() < 1e-5);
    assert!((r.soc_pct - 65.4).abs() < 1e-5);
    assert_eq!(r.soh_pct, None);
    assert_eq!(r.cell_voltages_v.0, vec![3.3, 3.31, 3.32, 3.33]);
    assert_eq!(r.temperatures_c.0, vec![25.0, 10.0]);
    assert_eq!(r.balancing.0, 0b101);
    assert_eq!(
        r.alarms,
        AlarmFlags::CELL_OVER_VOLTAGE.union(AlarmFlags::SHORT_CIRCUIT)
    );
    assert!(r.charge_enabled && !r.discharge_enabled);
    r.validate().unwrap();
    // Balancing bits past the last cell are dropped.
    let mut p = poll();
    p.balancing_bits = 0xFF;
    assert_eq!(pack_reading(&p).unwrap().balancing.0, 0b1111);
}

#[test]
fn only_level_two_and_faults_raise_flags() {
    for index in 0..56 {
        let mut f = Failures::default();
        f.bits[index / 8] = 1 << (index % 8);
        let mapped = FAILURE_MAPPING.iter().find(|(i, _)| *i == index);
        match mapped {
            Some((_, flag)) => assert_eq!(f.alarm_flags(), *flag, "bit {index}"),
            None => assert!(f.alarm_flags().is_empty(), "bit {index}"),
        }
        if index < 28 && index % 2 == 0 {
            assert!(mapped.is_none(), "level-1 bit {index} must stay a warning");
        }
    }
}

#[test]
fn cell_frames_in_any_order_and_no_shifted_list() {
    let ordered = [hex(CELLS_1), hex(CELLS_2)];
    let swapped = [hex(CELLS_2), hex(CELLS_1)];
    assert_eq!(
        decode_cell_voltages(&ordered, 4),
        decode_cell_voltages(&swapped, 4)
    );
    let twice = [hex(CELLS_1), hex(CELLS_1)];
    assert!(matches!(
        decode_cell_voltages(&twice, 4),
        Err(FrameError::Malformed(m)) if m.contains("twice")
    ));
    assert!(decode_cell_voltages(&ordered[..1], 4).is_err());
    // A frame number past the count.
    assert!(decode_cell_voltages(&ordered, 3).is_err());
    assert!(decode_cell_voltages(&[], 49).is_err());
    assert_eq!(cell_voltage_frames(16), 6);
    assert_eq!(temperature_frames(8), 2);
}

#[test]
fn each_error_kind_is_told_apart() {
    let good = hex(STATUS_CHARGING);
    assert_eq!(DalyFraming::frame_len(&good), FrameStatus::Complete(13));
    assert_eq!(DalyFraming::frame_len(&good[..7]), FrameStatus::Incomplete);
    let mut bad = good.clone();
    bad[6] ^= 0x10;
    assert!(matches!(
        DalyFraming::frame_len(&bad),
        FrameStatus::Invalid(FrameError::Checksum { .. })
    ));
    let kind = |r: Result<PackStatus, FrameError>| r.unwrap_err().kind();
    assert_eq!(kind(decode_pack_status(&[bad])), FrameErrorKind::Checksum);
    assert_eq!(
        kind(decode_pack_status(&[good[..12].to_vec()])),
        FrameErrorKind::Short
    );
    // Our own request echoed: not the BMS.
    let echo = encode_request(HOST_ADDRESS_UART, CMD_PACK_STATUS).to_vec();
    assert_eq!(
        decode_pack_status(&[echo]),
        Err(FrameError::WrongAddress {
            expected: 1,
            found: 0x40
        })
    );
    assert_eq!(
        kind(decode_pack_status(&one(SWITCHES))),
        FrameErrorKind::Unexpected
    );
    assert!(matches!(
        DalyFraming::frame_len(&hex("A5 01 90 07")),
        FrameStatus::Invalid(FrameError::Malformed(_))
    ));
    // SoC 100.1 %, a MOSFET state 2, 0xFFFF mV, 215 °C: errors, not numbers.
    let soc = hex("A5 01 90 08 02 14 00 00 75 AB 03 E9 60");
    assert_eq!(kind(decode_pack_status(&[soc])), FrameErrorKind::Malformed);
    assert!(decode_switches(&one("A5 01 93 08 01 02 00 07 00 00 FF 78 C2")).is_err());
    assert!(decode_cell_voltages(&one("A5 01 95 08 01 FF FF 0C EE 0C F8 00 40"), 3).is_err());
    assert!(decode_temperatures(&one("A5 01 96 08 01 FF 32 00 00 00 00 00 76"), 2).is_err());
}

proptest! {
    #[test]
    fn replies_round_trip(
        volts in any::<u16>(),
        current in -30000i32..=35535,
        soc in 0u16..=1000,
        cells in prop::collection::vec(0..=MAX_CELL_MV, 1..=MAX_CELLS),
        order in any::<prop::sample::Index>(),
    ) {
        let raw = (current + CURRENT_OFFSET_DA) as u16;
        let mut data = [0u8; 8];
        data[..2].copy_from_slice(&volts.to_be_bytes());
        data[4..6].copy_from_slice(&raw.to_be_bytes());
        data[6..].copy_from_slice(&soc.to_be_bytes());
        let frame = reply_frame(CMD_PACK_STATUS, data);
        let status = decode_pack_status(&[frame]).unwrap();
        prop_assert_eq!((status.pack_voltage_dv, status.current_da, status.soc_permille), (volts, current, soc));
        let mut frames: Vec<Vec<u8>> = cells
            .chunks(CELLS_PER_FRAME)
            .enumerate()
            .map(|(i, chunk)| {
                let mut d = [0u8; 8];
                d[0] = i as u8 + 1;
                for (j, mv) in chunk.iter().enumerate() {
                    d[1 + 2 * j..3 + 2 * j].copy_from_slice(&mv.to_be_bytes());
                }
                reply_frame(CMD_CELL_VOLTAGES, d)
            })
            .collect();
        let n = frames.len();
        frames.rotate_left(order.index(n));
        prop_assert_eq!(decode_cell_voltages(&frames, cells.len()), Ok(cells));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..40),
        count in 0usize..60,
    ) {
        let _ = DalyFraming::frame_len(&bytes);
        let frames = vec![bytes.clone(), bytes.clone()];
        let _ = decode_pack_status(&frames[..1]);
        let _ = decode_switches(&frames[..1]);
        let _ = decode_system_status(&frames[..1]);
        let _ = decode_cell_voltages(&frames, count);
        let _ = decode_temperatures(&frames, count);
        let _ = decode_balancing(&frames);
        let _ = decode_failures(&frames[..1]);
    }

    #[test]
    fn a_flipped_byte_is_never_another_reply(
        data in any::<[u8; 8]>(),
        at in 0usize..FRAME_LEN,
        to in any::<u8>(),
    ) {
        let frame = reply_frame(CMD_FAILURES, data);
        prop_assume!(frame[at] != to);
        let mut flipped = frame;
        flipped[at] = to;
        prop_assert!(decode_failures(&[flipped]).is_err());
    }
}

/// A BMS reply frame, built here apart from the codec's request encoder.
fn reply_frame(command: u8, data: [u8; 8]) -> Vec<u8> {
    let mut frame = vec![START, BMS_ADDRESS, command, DATA_LEN];
    frame.extend_from_slice(&data);
    let sum: u32 = frame.iter().map(|b| u32::from(*b)).sum();
    frame.push((sum % 256) as u8);
    frame
}
