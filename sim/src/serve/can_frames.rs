//! A simulated pack's state as the frames of the Pylontech low-voltage BMS
//! CAN protocol (11-bit ids, little-endian), the way such a BMS broadcasts
//! them to an inverter about once a second. Written from the protocol
//! description, independently of packgate's decoder, so a test can check
//! that the two agree.
//!
//! | id      | content                                                        |
//! |---------|----------------------------------------------------------------|
//! | `0x351` | charge voltage limit u16 0.1 V, charge current limit i16 0.1 A, discharge current limit i16 0.1 A, discharge voltage limit u16 0.1 V |
//! | `0x355` | SoC u16 %, SoH u16 %                                           |
//! | `0x356` | pack voltage i16 0.01 V, current i16 0.1 A (+ charging), temperature i16 0.1 °C (the hottest sensor) |
//! | `0x359` | protection word (bit 1 cell over voltage, 2 cell under voltage, 3 over temperature, 4 under temperature, 7 discharge over current, 8 charge over current, 11 system error), warning word (0), 1 module, `"PN"` |
//! | `0x35A` | SMA alarm bit pairs (`01` active, `10` inactive) for bytes 0-3, warnings all inactive |
//! | `0x35C` | bit 7 charge enable, bit 6 discharge enable                     |
//! | `0x35E` | `"PGSIM   "`                                                    |
//! | `0x373` | min / max cell voltage u16 mV, min / max temperature u16 K       |

use packgate_protocol::{AlarmFlags, PackReading};

use crate::pack::SimPack;
use crate::protection::{CELL_OVER_VOLTAGE_RELEASE_V, CELL_UNDER_VOLTAGE_TRIP_V};
use crate::{CHARGE_CURRENT_LIMIT_A, DISCHARGE_CURRENT_LIMIT_A};

/// The manufacturer name the simulator sends in `0x35E`.
pub const SIM_MANUFACTURER: &[u8; 8] = b"PGSIM   ";

/// What the simulated BMS allows the inverter (frame `0x351`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BmsLimits {
    /// Highest charge voltage, volts.
    pub charge_voltage_limit_v: f64,
    /// Highest charge current, amperes.
    pub charge_current_limit_a: f64,
    /// Highest discharge current, amperes (a magnitude).
    pub discharge_current_limit_a: f64,
    /// Lowest discharge voltage, volts.
    pub discharge_voltage_limit_v: f64,
}

impl BmsLimits {
    /// The limits of `pack` with `cells` cells in series: its current-limit
    /// settings; charge up to the cells' over-voltage release level,
    /// discharge down to their under-voltage trip level.
    pub fn for_pack(pack: &SimPack, cells: usize) -> Self {
        let cells = cells as f64;
        Self {
            charge_voltage_limit_v: cells * CELL_OVER_VOLTAGE_RELEASE_V,
            charge_current_limit_a: pack.setting(CHARGE_CURRENT_LIMIT_A).unwrap_or(0.0),
            discharge_current_limit_a: pack.setting(DISCHARGE_CURRENT_LIMIT_A).unwrap_or(0.0),
            discharge_voltage_limit_v: cells * CELL_UNDER_VOLTAGE_TRIP_V,
        }
    }
}

/// `value / resolution` rounded, as a little-endian u16 (saturating).
fn le_u16(value: f64, resolution: f64) -> [u8; 2] {
    let scaled = (value / resolution).round();
    (scaled.clamp(0.0, f64::from(u16::MAX)) as u16).to_le_bytes()
}

/// `value / resolution` rounded, as a little-endian i16 (saturating).
fn le_i16(value: f64, resolution: f64) -> [u8; 2] {
    let scaled = (value / resolution).round();
    (scaled.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16).to_le_bytes()
}

fn has(alarms: AlarmFlags, flag: AlarmFlags) -> bool {
    alarms.contains(flag)
}

/// The `0x359` protection word of `alarms`.
fn protection_word(alarms: AlarmFlags) -> u16 {
    [
        (AlarmFlags::CELL_OVER_VOLTAGE, 1),
        (AlarmFlags::CELL_UNDER_VOLTAGE, 2),
        (AlarmFlags::OVER_TEMPERATURE, 3),
        (AlarmFlags::UNDER_TEMPERATURE, 4),
        (AlarmFlags::DISCHARGE_OVER_CURRENT, 7),
        (AlarmFlags::CHARGE_OVER_CURRENT, 8),
        (AlarmFlags::BMS_FAULT, 11),
    ]
    .into_iter()
    .filter(|(flag, _)| has(alarms, *flag))
    .fold(0u16, |word, (_, bit)| word | (1 << bit))
}

/// The eight `0x35A` bytes of `alarms`: conditions 0..=12 in bit-pair
/// order (general, high V, low V, high T, low T, high T charge, low T
/// charge, high discharge I, high charge I, contactor, short circuit, BMS
/// internal, cell imbalance); unused pairs and warnings inactive (`10`).
fn sma_alarm_bytes(alarms: AlarmFlags) -> [u8; 8] {
    let conditions = [
        !alarms.is_empty(),
        has(alarms, AlarmFlags::PACK_OVER_VOLTAGE),
        has(alarms, AlarmFlags::PACK_UNDER_VOLTAGE),
        has(alarms, AlarmFlags::OVER_TEMPERATURE),
        has(alarms, AlarmFlags::UNDER_TEMPERATURE),
        false,
        false,
        has(alarms, AlarmFlags::DISCHARGE_OVER_CURRENT),
        has(alarms, AlarmFlags::CHARGE_OVER_CURRENT),
        false,
        has(alarms, AlarmFlags::SHORT_CIRCUIT),
        has(alarms, AlarmFlags::BMS_FAULT),
        has(alarms, AlarmFlags::CELL_IMBALANCE),
    ];
    let mut bytes = [0xAAu8; 8];
    for (index, active) in conditions.into_iter().enumerate() {
        if active {
            let (byte, shift) = (index / 4, (index % 4) * 2);
            bytes[byte] = (bytes[byte] & !(0b11 << shift)) | (0b01 << shift);
        }
    }
    bytes
}

/// The frames a Pylontech-protocol BMS would send for `reading`, as
/// `(id, data)` in id order. The extremes of `0x373` come from the
/// reading's cells and sensors (a reading without them gets zeros).
pub fn bms_frames(reading: &PackReading, limits: &BmsLimits) -> Vec<(u16, Vec<u8>)> {
    let cells = &reading.cell_voltages_v.0;
    let temps = &reading.temperatures_c.0;
    let min_of = |v: &[f32]| v.iter().copied().map(f64::from).reduce(f64::min);
    let max_of = |v: &[f32]| v.iter().copied().map(f64::from).reduce(f64::max);
    let hottest_c = max_of(temps).unwrap_or(0.0);
    let concat = |parts: &[[u8; 2]]| parts.concat();

    let mut frames = vec![
        (
            0x351,
            concat(&[
                le_u16(limits.charge_voltage_limit_v, 0.1),
                le_i16(limits.charge_current_limit_a, 0.1),
                le_i16(limits.discharge_current_limit_a, 0.1),
                le_u16(limits.discharge_voltage_limit_v, 0.1),
            ]),
        ),
        (
            0x355,
            concat(&[
                le_u16(f64::from(reading.soc_pct), 1.0),
                le_u16(f64::from(reading.soh_pct.unwrap_or(0.0)), 1.0),
            ]),
        ),
        (
            0x356,
            concat(&[
                le_i16(f64::from(reading.pack_voltage_v), 0.01),
                le_i16(f64::from(reading.current_a), 0.1),
                le_i16(hottest_c, 0.1),
            ]),
        ),
    ];
    let mut protection = protection_word(reading.alarms).to_le_bytes().to_vec();
    protection.extend_from_slice(&[0, 0, 1, b'P', b'N']);
    frames.push((0x359, protection));
    frames.push((0x35A, sma_alarm_bytes(reading.alarms).to_vec()));
    let request =
        (u8::from(reading.charge_enabled) << 7) | (u8::from(reading.discharge_enabled) << 6);
    frames.push((0x35C, vec![request, 0]));
    frames.push((0x35E, SIM_MANUFACTURER.to_vec()));
    let kelvin = |c: Option<f64>| le_u16(c.map_or(0.0, |c| c + 273.15), 1.0);
    frames.push((
        0x373,
        concat(&[
            le_u16(min_of(cells).unwrap_or(0.0), 0.001),
            le_u16(max_of(cells).unwrap_or(0.0), 0.001),
            kelvin(min_of(temps)),
            kelvin(max_of(temps)),
        ]),
    ));
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_protocol::{CellVoltages, Temperatures};

    fn reading() -> PackReading {
        PackReading {
            pack_voltage_v: 53.96,
            current_a: -2.6,
            soc_pct: 74.6,
            soh_pct: Some(99.0),
            cell_voltages_v: CellVoltages(vec![3.300, 3.330, 3.310]),
            temperatures_c: Temperatures(vec![24.0, 23.0]),
            alarms: AlarmFlags::NONE,
            charge_enabled: true,
            discharge_enabled: false,
            ..PackReading::default()
        }
    }

    #[test]
    fn known_frames() {
        let limits = BmsLimits {
            charge_voltage_limit_v: 56.0,
            charge_current_limit_a: 50.0,
            discharge_current_limit_a: 50.0,
            discharge_voltage_limit_v: 45.0,
        };
        let frames = bms_frames(&reading(), &limits);
        let ids: Vec<u16> = frames.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            [0x351, 0x355, 0x356, 0x359, 0x35A, 0x35C, 0x35E, 0x373]
        );
        assert_eq!(
            frames[0].1,
            [0x30, 0x02, 0xF4, 0x01, 0xF4, 0x01, 0xC2, 0x01]
        );
        assert_eq!(frames[1].1, [75, 0, 99, 0]);
        assert_eq!(frames[2].1, [0x14, 0x15, 0xE6, 0xFF, 0xF0, 0x00]);
        assert_eq!(frames[3].1, [0, 0, 0, 0, 1, b'P', b'N']);
        assert_eq!(frames[4].1, [0xAA; 8]);
        assert_eq!(frames[5].1, [0x80, 0]);
        assert_eq!(
            frames[7].1,
            [0xE4, 0x0C, 0x02, 0x0D, 0x28, 0x01, 0x29, 0x01]
        );
        assert!(frames.iter().all(|(_, d)| d.len() <= 8));
    }

    #[test]
    fn alarms_are_encoded_in_both_frames() {
        let mut r = reading();
        r.alarms = AlarmFlags::CELL_OVER_VOLTAGE
            .union(AlarmFlags::OVER_TEMPERATURE)
            .union(AlarmFlags::SHORT_CIRCUIT);
        let frames = bms_frames(
            &r,
            &BmsLimits::for_pack(&SimPack::new(&Default::default()), 16),
        );
        assert_eq!(frames[3].1[..2], [0x0A, 0x00]);
        // general 01, high V 10, low V 10, high T 01.
        assert_eq!(frames[4].1[0], 0b01_10_10_01);
        assert_eq!(frames[4].1[2], 0b10_01_10_10);
        assert_eq!(frames[0].1[..2], 544u16.to_le_bytes(), "16 cells x 3.40 V");
    }
}
