//! The inverter frames: known bytes, saturation, and a round trip
//! through the decoder every reader of these frames uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use embedded_can::Frame;
use proptest::prelude::*;

use super::*;
use crate::can::pylontech::{decode_frame, BmsFrame};

fn report() -> InverterReport {
    InverterReport {
        charge_voltage_limit_v: 55.2,
        charge_current_limit_a: 150.0,
        discharge_current_limit_a: 200.0,
        discharge_voltage_limit_v: 48.0,
        soc_pct: 76.4,
        soh_pct: 98.0,
        voltage_v: 52.31,
        current_a: -12.5,
        temperature_c: 24.6,
        alarms: AlarmFlags::NONE,
        warnings: AlarmFlags::NONE,
        module_count: 3,
        request: Request {
            charge_enable: true,
            discharge_enable: true,
            ..Request::default()
        },
        name: "packgate".into(),
    }
}

#[test]
fn known_bytes_of_a_report() {
    let frames = encode_report(&report());
    let bytes: Vec<(u32, Vec<u8>)> = frames
        .iter()
        .map(|f| (f.raw_id(), f.data().to_vec()))
        .collect();
    assert_eq!(
        bytes,
        vec![
            // 552 = 0x0228, 1500 = 0x05DC, 2000 = 0x07D0, 480 = 0x01E0
            (0x351, vec![0x28, 0x02, 0xDC, 0x05, 0xD0, 0x07, 0xE0, 0x01]),
            // 76 %, 98 %
            (0x355, vec![76, 0, 98, 0]),
            // 5231 = 0x146F, -125 = 0xFF83, 246 = 0x00F6
            (0x356, vec![0x6F, 0x14, 0x83, 0xFF, 0xF6, 0x00]),
            (0x359, vec![0, 0, 0, 0, 3, b'P', b'N']),
            (0x35C, vec![0b1100_0000]),
            (0x35E, b"packgate".to_vec()),
        ]
    );
}

#[test]
fn out_of_range_values_saturate_and_never_wrap() {
    let mut r = report();
    r.charge_current_limit_a = 5_000.0;
    r.discharge_current_limit_a = -20.0;
    r.charge_voltage_limit_v = f64::NAN;
    r.current_a = -4_000.0;
    r.soc_pct = 130.0;
    r.name = "Bänk-one-long".into();
    let frames = encode_report(&r);
    let BmsFrame::Limits(l) = decode_frame(&frames[0]).unwrap() else {
        panic!()
    };
    assert!((l.charge_current_limit_a - 3_276.7).abs() < 1e-3);
    assert_eq!(l.discharge_current_limit_a, 0.0);
    assert_eq!(l.charge_voltage_limit_v, 0.0);
    let BmsFrame::Measurements(m) = decode_frame(&frames[2]).unwrap() else {
        panic!()
    };
    assert!((m.current_a - -3_276.8).abs() < 1e-3);
    let BmsFrame::SocSoh(s) = decode_frame(&frames[1]).unwrap() else {
        panic!()
    };
    assert_eq!(s.soc_pct, 100);
    assert_eq!(
        decode_frame(&frames[5]).unwrap(),
        BmsFrame::Manufacturer("B?nk-one".into())
    );
}

#[test]
fn every_alarm_but_imbalance_reaches_the_protection_word() {
    for (flag, name) in AlarmFlags::ALL {
        let bits = pylon_flags(*flag);
        if *flag == AlarmFlags::CELL_IMBALANCE {
            assert_eq!(bits.0, 0, "{name}");
        } else {
            assert_ne!(bits.0, 0, "{name} is not sent");
            // What the decoder maps it back onto is the same condition or,
            // for pack-level and short-circuit flags, its cell-level or
            // over-current counterpart.
            assert!(!bits.alarm_flags().is_empty(), "{name}");
        }
    }
}

proptest! {
    #[test]
    fn reports_round_trip_through_the_decoder_within_resolution(
        cvl in 0f64..6_000.0,
        ccl in 0f64..3_000.0,
        dcl in 0f64..3_000.0,
        dvl in 0f64..6_000.0,
        soc in 0f64..=100.0,
        soh in 0f64..=100.0,
        voltage in -300f64..300.0,
        current in -3_000f64..3_000.0,
        temperature in -40f64..100.0,
        alarms in any::<u32>(),
        modules in any::<u8>(),
        enables in any::<(bool, bool, bool, bool, bool)>(),
    ) {
        let r = InverterReport {
            charge_voltage_limit_v: cvl,
            charge_current_limit_a: ccl,
            discharge_current_limit_a: dcl,
            discharge_voltage_limit_v: dvl,
            soc_pct: soc,
            soh_pct: soh,
            voltage_v: voltage,
            current_a: current,
            temperature_c: temperature,
            alarms: AlarmFlags(alarms & 0x7ff),
            warnings: AlarmFlags::NONE,
            module_count: modules,
            request: Request {
                charge_enable: enables.0,
                discharge_enable: enables.1,
                force_charge_1: enables.2,
                force_charge_2: enables.3,
                full_charge: enables.4,
            },
            name: "bank-1".into(),
        };
        let near = |a: f32, b: f64, resolution: f64| (f64::from(a) - b).abs() <= resolution / 2.0 + 1e-3;
        for frame in encode_report(&r) {
            match decode_frame(&frame).unwrap() {
                BmsFrame::Limits(l) => {
                    prop_assert!(near(l.charge_voltage_limit_v, cvl, 0.1));
                    prop_assert!(near(l.charge_current_limit_a, ccl, 0.1));
                    prop_assert!(near(l.discharge_current_limit_a, dcl, 0.1));
                    prop_assert!(near(l.discharge_voltage_limit_v.unwrap(), dvl, 0.1));
                }
                BmsFrame::SocSoh(s) => {
                    prop_assert!((f64::from(s.soc_pct) - soc).abs() <= 0.5);
                    prop_assert!((f64::from(s.soh_pct) - soh).abs() <= 0.5);
                }
                BmsFrame::Measurements(m) => {
                    prop_assert!(near(m.pack_voltage_v, voltage, 0.01));
                    prop_assert!(near(m.current_a, current, 0.1));
                    prop_assert!(near(m.temperature_c, temperature, 0.1));
                }
                BmsFrame::Protection(p) => {
                    prop_assert_eq!(p.protection, pylon_flags(r.alarms));
                    prop_assert_eq!(p.module_count, modules);
                    // Every alarm sent decodes as active.
                    prop_assert_eq!(p.protection.alarm_flags().is_empty(), pylon_flags(r.alarms).0 == 0);
                }
                BmsFrame::Request(q) => prop_assert_eq!(q, r.request),
                BmsFrame::Manufacturer(name) => prop_assert_eq!(name, "bank-1"),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn any_report_encodes_without_panicking(
        values in proptest::collection::vec(any::<f64>(), 9),
        name in ".{0,20}",
    ) {
        let r = InverterReport {
            charge_voltage_limit_v: values[0],
            charge_current_limit_a: values[1],
            discharge_current_limit_a: values[2],
            discharge_voltage_limit_v: values[3],
            soc_pct: values[4],
            soh_pct: values[5],
            voltage_v: values[6],
            current_a: values[7],
            temperature_c: values[8],
            name,
            ..report()
        };
        for frame in encode_report(&r) {
            let decoded = decode_frame(&frame);
            prop_assert!(decoded.is_ok(), "{decoded:?}");
            if let Ok(BmsFrame::Limits(l)) = decoded {
                prop_assert!(l.charge_current_limit_a >= 0.0 && l.discharge_current_limit_a >= 0.0);
            }
        }
    }
}
