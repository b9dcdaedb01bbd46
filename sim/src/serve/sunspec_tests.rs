use packgate_protocol::{BalancingState, CellVoltages, Temperatures};

use super::*;

fn reading() -> PackReading {
    PackReading {
        pack_voltage_v: 52.3,
        current_a: -12.5,
        soc_pct: 76.5,
        soh_pct: Some(98.0),
        cell_voltages_v: CellVoltages(vec![3.312, 3.254, 3.3]),
        temperatures_c: Temperatures(vec![25.1, -5.2]),
        balancing: BalancingState(0b101),
        alarms: AlarmFlags::OVER_TEMPERATURE.union(AlarmFlags::SHORT_CIRCUIT),
        charge_enabled: true,
        discharge_enabled: true,
    }
}

/// The (ID, L) headers found walking the image.
fn headers(image: &SunSpecImage) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut at = SUNSPEC_BASE + 2;
    loop {
        let h = image.read(at, 2).unwrap();
        if h[0] == 0xFFFF {
            return out;
        }
        out.push((h[0], h[1]));
        at += 2 + h[1];
    }
}

#[test]
fn every_layout_chains_to_its_end() {
    for layout in SunSpecLayout::ALL {
        let image = SunSpecImage::encode(&reading(), 7, layout);
        assert_eq!(image.read(SUNSPEC_BASE, 2).unwrap(), vec![0x5375, 0x6e53]);
        assert_eq!(headers(&image), layout.models(), "{layout}");
        assert_eq!(layout.as_str().parse::<SunSpecLayout>(), Ok(layout));
    }
    assert!("other".parse::<SunSpecLayout>().is_err());
}

#[test]
fn the_battery_model_holds_the_reading() {
    let image = SunSpecImage::encode(&reading(), 7, SunSpecLayout::Standard);
    let body = image.read(40072, 62).unwrap();
    assert_eq!(body[32], 5230); // V, V_SF -2
    assert_eq!(body[42], 125); // A, positive discharging
    assert_eq!(body[14], 3); // ChaSt: discharging
    assert_eq!((body[9], body[11]), (765, 980));
    assert_eq!((body[35], body[38]), (3312, 3254));
    assert_eq!((body[24], body[25]), (0, 1 << 1));
    assert_eq!(body[57], (-2i16) as u16);
    let bank = image.read(40136, 26).unwrap();
    assert_eq!((bank[2], bank[5]), (251, (-52i16) as u16));
}

#[test]
fn outside_the_map_is_refused() {
    let image = SunSpecImage::encode(&reading(), 7, SunSpecLayout::No803);
    assert_eq!(image.read(0, 2), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
    assert_eq!(image.read(39999, 2), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
    let end = 40000 + 2 + 68 + 64;
    assert_eq!(image.read(end, 2), Ok(vec![0xFFFF, 0]));
    assert_eq!(image.read(end + 1, 2), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
    assert_eq!(image.read(40000, 0), Err(EXCEPTION_ILLEGAL_DATA_VALUE));
}

#[test]
fn alarms_without_an_evt1_bit_are_not_served() {
    assert_eq!(
        served_alarms(reading().alarms),
        AlarmFlags::OVER_TEMPERATURE
    );
    assert_eq!(evt1(AlarmFlags::CELL_IMBALANCE), 1 << 17);
}
