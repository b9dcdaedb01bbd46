//! Unit tests of the Pylontech decoder, with known bytes.

use super::*;
use crate::can::frame::CanFrame;
use embedded_can::{ExtendedId, StandardId};

fn decode(id: u16, data: &[u8]) -> Result<BmsFrame, FrameError> {
    decode_frame(&CanFrame::standard(id, data).unwrap())
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-3
}

#[test]
fn limits_0x351() {
    let BmsFrame::Limits(l) =
        decode(0x351, &[0x30, 0x02, 0xF4, 0x01, 0xF4, 0x01, 0xC2, 0x01]).unwrap()
    else {
        panic!()
    };
    assert!(close(l.charge_voltage_limit_v, 56.0));
    assert!(close(l.charge_current_limit_a, 50.0));
    assert!(close(l.discharge_current_limit_a, 50.0));
    assert!(close(l.discharge_voltage_limit_v.unwrap(), 45.0));
    let BmsFrame::Limits(short) = decode(0x351, &[0x30, 0x02, 0xF4, 0x01, 0xF4, 0x01]).unwrap()
    else {
        panic!()
    };
    assert_eq!(short.discharge_voltage_limit_v, None);
    assert_eq!(
        decode(0x351, &[0; 5]),
        Err(FrameError::Length {
            id: 0x351,
            len: 5,
            min: 6
        })
    );
}

#[test]
fn soc_soh_0x355() {
    assert_eq!(
        decode(0x355, &[0x4B, 0x00, 0x63, 0x00]),
        Ok(BmsFrame::SocSoh(SocSoh {
            soc_pct: 75,
            soh_pct: 99
        }))
    );
    assert!(matches!(
        decode(0x355, &[1, 2, 3]),
        Err(FrameError::Length { .. })
    ));
}

#[test]
fn measurements_0x356() {
    let BmsFrame::Measurements(m) = decode(0x356, &[0x14, 0x15, 0xE6, 0xFF, 0xF0, 0x00]).unwrap()
    else {
        panic!()
    };
    assert!(close(m.pack_voltage_v, 53.96));
    assert!(close(m.current_a, -2.6));
    assert!(close(m.temperature_c, 24.0));
    let BmsFrame::Measurements(m) = decode(0x356, &[0, 0, 0, 0, 0x9C, 0xFF, 0xAA, 0xBB]).unwrap()
    else {
        panic!()
    };
    assert!(close(m.temperature_c, -10.0));
}

#[test]
fn protection_0x359_maps_onto_alarm_flags() {
    let frame = decode(0x359, &[0x0A, 0x01, 0x02, 0x08, 0x03, b'P', b'N']).unwrap();
    assert_eq!(frame.id(), ID_PROTECTION);
    let BmsFrame::Protection(p) = frame else {
        panic!()
    };
    assert_eq!(p.module_count, 3);
    assert_eq!(
        p.protection.alarm_flags(),
        AlarmFlags::CELL_OVER_VOLTAGE
            .union(AlarmFlags::OVER_TEMPERATURE)
            .union(AlarmFlags::CHARGE_OVER_CURRENT)
    );
    assert_eq!(p.warning, PylonFlags(0x0802));
    assert_eq!(
        PylonFlags(0x0894).alarm_flags(),
        AlarmFlags::CELL_UNDER_VOLTAGE
            .union(AlarmFlags::UNDER_TEMPERATURE)
            .union(AlarmFlags::DISCHARGE_OVER_CURRENT)
            .union(AlarmFlags::BMS_FAULT)
    );
    assert_eq!(
        PylonFlags(0x7461).alarm_flags(),
        AlarmFlags::NONE,
        "unnamed bits only"
    );
    assert!(matches!(
        decode(0x359, &[0; 4]),
        Err(FrameError::Length { min: 5, .. })
    ));
}

#[test]
fn sma_alarms_0x35a_bit_pairs() {
    let BmsFrame::SmaAlarms(a) = decode(0x35A, &[0xA5, 0xAA, 0x1A, 0x01, 0, 0x01, 0, 0]).unwrap()
    else {
        panic!()
    };
    assert_eq!(a.alarm(SmaCondition::General), PairState::Active);
    assert_eq!(a.alarm(SmaCondition::HighVoltage), PairState::Active);
    assert_eq!(a.alarm(SmaCondition::LowVoltage), PairState::Inactive);
    assert_eq!(a.alarm(SmaCondition::BmsInternal), PairState::NotAvailable);
    assert_eq!(a.warning(SmaCondition::LowTemperature), PairState::Active);
    assert_eq!(a.warning(SmaCondition::General), PairState::NotAvailable);
    assert_eq!(
        a.alarm_flags(),
        AlarmFlags::PACK_OVER_VOLTAGE
            .union(AlarmFlags::SHORT_CIRCUIT)
            .union(AlarmFlags::CELL_IMBALANCE)
    );
    assert!(matches!(
        decode(0x35A, &[0; 7]),
        Err(FrameError::Length { .. })
    ));
}

#[test]
fn request_0x35c() {
    assert_eq!(
        decode(0x35C, &[0xC0, 0x00]),
        Ok(BmsFrame::Request(Request {
            charge_enable: true,
            discharge_enable: true,
            ..Request::default()
        }))
    );
    let BmsFrame::Request(r) = decode(0x35C, &[0x38]).unwrap() else {
        panic!()
    };
    assert!(r.force_charge_1 && r.force_charge_2 && r.full_charge);
    assert!(!r.charge_enable && !r.discharge_enable);
    assert!(matches!(decode(0x35C, &[]), Err(FrameError::Length { .. })));
}

#[test]
fn manufacturer_0x35e() {
    assert_eq!(
        decode(0x35E, b"PYLON   "),
        Ok(BmsFrame::Manufacturer("PYLON".into()))
    );
    assert_eq!(
        decode(0x35E, b"SIM\0\0"),
        Ok(BmsFrame::Manufacturer("SIM".into()))
    );
    assert_eq!(
        decode(0x35E, b""),
        Ok(BmsFrame::Manufacturer(String::new()))
    );
    assert_eq!(
        decode(0x35E, &[b'A', 0xFF]),
        Err(FrameError::NotAscii { id: 0x35E })
    );
}

#[test]
fn cell_extremes_0x373() {
    let BmsFrame::CellExtremes(c) =
        decode(0x373, &[0xE4, 0x0C, 0x02, 0x0D, 0x2A, 0x01, 0x2C, 0x01]).unwrap()
    else {
        panic!()
    };
    assert!(close(c.min_cell_v, 3.300));
    assert!(close(c.max_cell_v, 3.330));
    assert!(close(c.min_cell_temperature_c, 24.85));
    assert!(close(c.max_cell_temperature_c, 26.85));
}

#[test]
fn unknown_extended_and_remote_frames_are_errors() {
    assert_eq!(
        decode(0x370, &[0; 8]),
        Err(FrameError::UnknownId {
            id: 0x370,
            extended: false
        })
    );
    let ext = CanFrame::extended(0x356, &[0; 8]).unwrap();
    assert_eq!(
        decode_frame(&ext),
        Err(FrameError::UnknownId {
            id: 0x356,
            extended: true
        })
    );
    let remote = CanFrame::new_remote(StandardId::new(0x356).unwrap(), 6).unwrap();
    assert_eq!(decode_frame(&remote), Err(FrameError::Remote { id: 0x356 }));
    let _ = ExtendedId::ZERO;
}

#[test]
fn display_is_one_readable_line() {
    let f = decode(0x356, &[0x14, 0x15, 0xE6, 0xFF, 0xF0, 0x00]).unwrap();
    assert_eq!(
        f.to_string(),
        "0x356 measurements: 53.96 V, -2.6 A, 24.0 °C"
    );
    let f = decode(0x359, &[0x08, 0, 0, 0, 1]).unwrap();
    assert!(f.to_string().contains("over_temperature"), "{f}");
}

#[test]
fn random_payloads_of_every_length_never_panic() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoded = 0;
    for id in KNOWN_IDS.iter().copied().chain([0x000, 0x370, 0x7FF]) {
        for len in 0..=8 {
            for _ in 0..200 {
                let bytes = next().to_le_bytes();
                let frame = CanFrame::standard(id, &bytes[..len]).unwrap();
                if let Ok(f) = decode_frame(&frame) {
                    decoded += 1;
                    assert_eq!(f.id(), id);
                    let _ = f.to_string();
                }
            }
        }
    }
    assert!(decoded > 1000);
}
