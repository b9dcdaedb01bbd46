use proptest::prelude::*;

use super::*;

/// A model 802 body with every optional point not implemented, then the
/// points given set.
fn body_802(points: &[(usize, u16)]) -> Vec<u16> {
    let mut regs = vec![0xFFFF; m802::LEN];
    regs[50..62].fill(0x8000);
    for at in [m802::A, 47, 49] {
        regs[at] = 0x8000;
    }
    for &(at, v) in points {
        regs[at] = v;
    }
    regs
}

/// The pack: 52.3 V, -12.5 A, SoC 76.5 %, SoH 98 %.
fn served() -> Vec<u16> {
    body_802(&[
        (m802::V, 523),
        (m802::V_SF, (-1i16) as u16),
        (m802::A, (-125i16) as u16),
        (m802::A_SF, (-1i16) as u16),
        (m802::SOC, 765),
        (m802::SOC_SF, (-1i16) as u16),
        (m802::SOH, 98),
        (m802::SOH_SF, 0),
        (m802::STATE, STATE_CONNECTED),
        (m802::EVT1, 0),
        (m802::EVT1 + 1, 1 << 1),
        (m802::CELL_V_MAX, 3312),
        (m802::CELL_V_MIN, 3254),
        (m802::CELL_V_SF, (-3i16) as u16),
    ])
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-4
}

#[test]
fn the_points_are_read_with_their_scale_factors() {
    let r = decode(&served(), None, None).unwrap();
    let reading = r.reading(false).unwrap();
    assert!(close(reading.pack_voltage_v, 52.3));
    assert!(close(reading.current_a, -12.5));
    assert!(close(reading.soc_pct, 76.5));
    assert!(close(reading.soh_pct.unwrap(), 98.0));
    assert_eq!(reading.cell_voltages_v.0.len(), 2);
    assert!(close(reading.cell_voltages_v.0[0], 3.312));
    assert!(close(reading.cell_voltages_v.0[1], 3.254));
    assert!(reading.temperatures_c.0.is_empty());
    assert_eq!(reading.alarms, AlarmFlags::OVER_TEMPERATURE);
    assert!(reading.charge_enabled && reading.discharge_enabled);
    assert_eq!(r.battery.cycles, None);
    assert_eq!(r.battery.charge_status, None);
    reading.validate().unwrap();
}

#[test]
fn required_points_not_implemented_are_refused() {
    for (at, name) in [
        (m802::V, "V"),
        (m802::V_SF, "V"),
        (m802::SOC, "SoC"),
        (m802::SOC_SF, "SoC"),
    ] {
        let mut regs = served();
        regs[at] = if at == m802::SOC || at == m802::V {
            0xFFFF
        } else {
            0x8000
        };
        let r = decode(&regs, None, None).unwrap();
        assert_eq!(r.reading(false), Err(DecodeError::Missing(name)), "{name}");
    }
    let mut regs = served();
    regs[m802::A] = 0x8000;
    let r = decode(&regs, None, None).unwrap();
    assert_eq!(r.reading(false), Err(DecodeError::Missing("A")));
}

#[test]
fn a_state_of_health_not_implemented_is_absent_not_a_number() {
    for (at, not_implemented) in [(m802::SOH, 0xFFFF), (m802::SOH_SF, 0x8000)] {
        let mut regs = served();
        regs[at] = not_implemented;
        let reading = decode(&regs, None, None).unwrap().reading(false).unwrap();
        assert_eq!(reading.soh_pct, None);
        assert!((reading.soc_pct - 76.5).abs() < 1e-3);
        reading.validate().unwrap();
    }
}

#[test]
fn optional_points_not_implemented_are_absent() {
    let mut regs = served();
    regs[m802::CELL_V_MIN] = 0xFFFF;
    regs[m802::EVT1] = 0xFFFF;
    regs[m802::EVT1 + 1] = 0xFFFF;
    let r = decode(&regs, None, None).unwrap();
    let reading = r.reading(false).unwrap();
    assert_eq!(reading.cell_voltages_v.0.len(), 1);
    assert_eq!(reading.alarms, AlarmFlags::NONE);
    regs[m802::CELL_V_SF] = 0x8000;
    let reading = decode(&regs, None, None).unwrap().reading(false).unwrap();
    assert!(reading.cell_voltages_v.0.is_empty());
}

#[test]
fn charge_status_gives_the_current_direction() {
    let with = |cha_st: u16, a: i16, invert: bool| {
        let mut regs = served();
        regs[m802::CHA_ST] = cha_st;
        regs[m802::A] = a as u16;
        decode(&regs, None, None)
            .unwrap()
            .reading(invert)
            .unwrap()
            .current_a
    };
    assert!(close(with(CHA_ST_CHARGING, -125, false), 12.5));
    assert!(close(with(CHA_ST_CHARGING, 125, true), 12.5));
    assert!(close(with(CHA_ST_DISCHARGING, 125, false), -12.5));
    assert!(close(with(CHA_ST_DISCHARGING, -125, true), -12.5));
    // Holding, or not implemented: the device's sign, inverted on request.
    assert!(close(with(6, 125, false), 12.5));
    assert!(close(with(0xFFFF, 125, true), -12.5));
}

#[test]
fn the_bank_gives_temperatures_and_the_common_model_the_serial() {
    let mut bank = vec![0xFFFF; 26 + 32];
    bank[m803::N_STR] = 1;
    bank[m803::MOD_TMP_MAX] = 251;
    bank[m803::MOD_TMP_MIN] = (-52i16) as u16;
    bank[m803::MOD_TMP_AVG] = 0x8000;
    bank[m803::MOD_TMP_SF] = (-1i16) as u16;
    let mut common = vec![0u16; 65];
    common[m1::SN] = u16::from_be_bytes(*b"SN");
    common[m1::SN + 1] = u16::from_be_bytes(*b"42");
    let r = decode(&served(), Some(&bank), Some(&common)).unwrap();
    assert_eq!(r.serial_number.as_deref(), Some("SN42"));
    let b = r.bank.unwrap();
    assert_eq!(b.module_temp_avg_c, None);
    let t = r.reading(false).unwrap().temperatures_c.0;
    assert!(close(t[0], 25.1) && close(t[1], -5.2));
}

#[test]
fn short_models_are_refused() {
    assert_eq!(
        decode(&served()[..61], None, None),
        Err(DecodeError::ShortModel {
            id: 802,
            length: 61,
            needed: 62
        })
    );
    assert!(decode(&served(), Some(&[0; 25]), None).is_err());
    assert!(decode(&served(), None, Some(&[0; 64])).is_err());
}

proptest! {
    #[test]
    fn arbitrary_models_never_panic(
        battery in proptest::collection::vec(any::<u16>(), 0..80),
        bank in proptest::option::of(proptest::collection::vec(any::<u16>(), 0..40)),
        common in proptest::option::of(proptest::collection::vec(any::<u16>(), 0..70)),
        invert in any::<bool>(),
    ) {
        if let Ok(r) = decode(&battery, bank.as_deref(), common.as_deref()) {
            if let Ok(reading) = r.reading(invert) {
                prop_assert!(reading.pack_voltage_v.is_finite());
                prop_assert!(reading.current_a.is_finite());
            }
            let _ = r.warnings();
        }
    }
}
