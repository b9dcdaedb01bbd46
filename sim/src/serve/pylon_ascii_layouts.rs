//! The INFO of the Seplos V2 and Pace layouts of a simulated
//! Pylontech-style BMS, built from Seplos's "BMS Communication Protocol"
//! V2.0 (tables 8 to 13) and Pace's "PACE-RS232-TY16S" (2018-07-05,
//! charts A.13 to A.25).
//!
//! Both carry six temperatures: the pack's first four sensors as the
//! cell temperatures (their mean where it has fewer), then Seplos's
//! environment and power sensors, Pace's MOSFET and environment sensors
//! (the environment at the sensors' mean, the power stage 1.5 °C above
//! it). Capacities are those of a 100 Ah pack ([`NOMINAL_CAPACITY_MAH`]):
//! full capacity by the pack's SoH, remaining by its SoC. A protection
//! raises its protection bit and the matching warning bit.

use packgate_protocol::{AlarmFlags, PackReading};

use super::pylon_ascii::{clamp_i16, clamp_u16, extreme, NOMINAL_CAPACITY_MAH};

/// Cell temperatures every layout here sends.
const CELL_SENSORS: usize = 4;
/// The power stage's rise over the environment, °C.
const POWER_RISE_C: f32 = 1.5;

/// A temperature as 0.1 K above `zero_dk` (Seplos 2731, Pace 2730).
fn temperature_dk(c: f32, zero_dk: f32) -> i16 {
    clamp_i16(c * 10.0 + zero_dk)
}

/// The four cell temperatures and the environment temperature, °C.
fn temperatures(r: &PackReading) -> ([f32; CELL_SENSORS], f32) {
    let sensors = &r.temperatures_c.0;
    let mean = sensors.iter().sum::<f32>() / sensors.len().max(1) as f32;
    let mut cells = [mean; CELL_SENSORS];
    for (slot, c) in cells.iter_mut().zip(sensors) {
        *slot = *c;
    }
    (cells, mean)
}

/// Full and remaining capacity, 10 mAh.
fn capacities_10mah(r: &PackReading) -> (u16, u16) {
    let rated = f64::from(NOMINAL_CAPACITY_MAH) / 10.0;
    let full = rated * f64::from(r.soh_pct.unwrap_or(100.0)) / 100.0;
    let remaining = full * f64::from(r.soc_pct) / 100.0;
    (full.round() as u16, remaining.round() as u16)
}

fn push_u16(info: &mut Vec<u8>, value: u16) {
    info.extend_from_slice(&value.to_be_bytes());
}

/// The head both analog layouts share: flag, command value, cells, the
/// six temperatures (`last_two` after the cells' four), in 0.1 K above
/// `zero_dk`.
fn analog_head(address: u8, r: &PackReading, last_two: [f32; 2], zero_dk: f32) -> Vec<u8> {
    let cells = &r.cell_voltages_v.0;
    let mut info = vec![0x00, address, cells.len() as u8];
    for v in cells {
        push_u16(&mut info, clamp_u16(v * 1000.0));
    }
    let (cell_temperatures, _) = temperatures(r);
    info.push((CELL_SENSORS + 2) as u8);
    for c in cell_temperatures.iter().chain(&last_two) {
        push_u16(&mut info, temperature_dk(*c, zero_dk) as u16);
    }
    info
}

/// Seplos V2 `0x42` INFO (table 8).
pub fn seplos_analog_info(address: u8, r: &PackReading) -> Vec<u8> {
    let (_, environment) = temperatures(r);
    let mut info = analog_head(
        address,
        r,
        [environment, environment + POWER_RISE_C],
        2731.0,
    );
    let (full, remaining) = capacities_10mah(r);
    push_u16(&mut info, clamp_i16(r.current_a * 100.0) as u16);
    push_u16(&mut info, clamp_u16(r.pack_voltage_v * 100.0));
    push_u16(&mut info, remaining);
    info.push(10);
    push_u16(&mut info, full);
    push_u16(&mut info, clamp_u16(r.soc_pct * 10.0));
    push_u16(&mut info, (NOMINAL_CAPACITY_MAH / 10) as u16);
    push_u16(&mut info, 0); // cycles
    push_u16(&mut info, clamp_u16(r.soh_pct.unwrap_or(100.0) * 10.0));
    push_u16(&mut info, clamp_u16(r.pack_voltage_v * 100.0));
    info.extend_from_slice(&[0; 8]);
    info
}

/// Pace `0x42` INFO (charts A.13, A.14).
pub fn pace_analog_info(address: u8, r: &PackReading) -> Vec<u8> {
    let (_, environment) = temperatures(r);
    let mut info = analog_head(
        address,
        r,
        [environment + POWER_RISE_C, environment],
        2730.0,
    );
    let (full, remaining) = capacities_10mah(r);
    push_u16(&mut info, clamp_i16(r.current_a * 100.0) as u16);
    push_u16(&mut info, clamp_u16(r.pack_voltage_v * 1000.0));
    push_u16(&mut info, remaining);
    info.push(3);
    push_u16(&mut info, full);
    push_u16(&mut info, 0); // cycles
    push_u16(&mut info, (NOMINAL_CAPACITY_MAH / 10) as u16);
    info
}

/// Each cell's and each of the six sensors' state: the extreme cell at
/// its limit under a cell voltage alarm, the extreme cell sensor under a
/// temperature alarm.
fn limit_states(r: &PackReading) -> (Vec<u8>, Vec<u8>) {
    let cells = &r.cell_voltages_v.0;
    let (sensors, _) = temperatures(r);
    let mut cell_states = vec![0u8; cells.len()];
    let mut sensor_states = vec![0u8; CELL_SENSORS + 2];
    let marks: [(&[f32], AlarmFlags, bool, u8, bool); 4] = [
        (cells, AlarmFlags::CELL_OVER_VOLTAGE, true, 2, true),
        (cells, AlarmFlags::CELL_UNDER_VOLTAGE, false, 1, true),
        (&sensors, AlarmFlags::OVER_TEMPERATURE, true, 2, false),
        (&sensors, AlarmFlags::UNDER_TEMPERATURE, false, 1, false),
    ];
    for (values, flag, highest, code, is_cell) in marks {
        if r.alarms.contains(flag) {
            if let Some(i) = extreme(values, highest) {
                let states = if is_cell {
                    &mut cell_states
                } else {
                    &mut sensor_states
                };
                states[i] = code;
            }
        }
    }
    (cell_states, sensor_states)
}

/// `bits` where `r` has `flag`, else nothing.
fn when(r: &PackReading, flag: AlarmFlags, bits: u8) -> u8 {
    if r.alarms.contains(flag) {
        bits
    } else {
        0
    }
}

/// Seplos V2 `0x44` INFO (tables 11 to 13).
pub fn seplos_alarm_info(address: u8, r: &PackReading) -> Vec<u8> {
    use AlarmFlags as F;
    let (cell_states, sensor_states) = limit_states(r);
    let mut info = vec![0x00, address, cell_states.len() as u8];
    info.extend_from_slice(&cell_states);
    info.push(sensor_states.len() as u8);
    info.extend_from_slice(&sensor_states);
    info.extend_from_slice(&[0, 0, 20]);
    let balancing = r.balancing.0.to_le_bytes();
    let mut bytes = [0u8; 20];
    // Alarm event 1: voltage sensor fault for a BMS fault.
    bytes[0] = when(r, F::BMS_FAULT, 0x01);
    // Event 2: alarm (even bit) and protection (odd bit) of cell high,
    // cell low, total high, total low.
    bytes[1] = when(r, F::CELL_OVER_VOLTAGE, 0b11)
        | when(r, F::CELL_UNDER_VOLTAGE, 0b1100)
        | when(r, F::PACK_OVER_VOLTAGE, 0b11_0000)
        | when(r, F::PACK_UNDER_VOLTAGE, 0b1100_0000);
    // Event 3: charge and discharge high / low temperature, alarm and
    // protection.
    bytes[2] =
        when(r, F::OVER_TEMPERATURE, 0b0011_0011) | when(r, F::UNDER_TEMPERATURE, 0b1100_1100);
    // Event 5: over current alarm and protection, short circuit.
    bytes[4] = when(r, F::CHARGE_OVER_CURRENT, 0b11)
        | when(r, F::DISCHARGE_OVER_CURRENT, 0b1100)
        | when(r, F::SHORT_CIRCUIT, 0b10_0000);
    // On/off: bit 0 discharge switch, bit 1 charge switch.
    bytes[6] = u8::from(r.discharge_enabled) | (u8::from(r.charge_enabled) << 1);
    bytes[7] = balancing[0];
    bytes[8] = balancing[1];
    // System state: bit 0 discharge, bit 1 charge, bit 4 standby.
    bytes[9] = if r.current_a > 0.1 {
        0x02
    } else if r.current_a < -0.1 {
        0x01
    } else {
        0x10
    };
    info.extend_from_slice(&bytes);
    info
}

/// Pace `0x44` INFO (charts A.17 to A.25).
pub fn pace_alarm_info(address: u8, r: &PackReading) -> Vec<u8> {
    use AlarmFlags as F;
    let (cell_states, sensor_states) = limit_states(r);
    let mut info = vec![0x00, address, cell_states.len() as u8];
    info.extend_from_slice(&cell_states);
    info.push(sensor_states.len() as u8);
    info.extend_from_slice(&sensor_states);
    info.extend_from_slice(&[0, 0, 0]);
    let protect1 = when(r, F::CELL_OVER_VOLTAGE, 1 << 0)
        | when(r, F::CELL_UNDER_VOLTAGE, 1 << 1)
        | when(r, F::PACK_OVER_VOLTAGE, 1 << 2)
        | when(r, F::PACK_UNDER_VOLTAGE, 1 << 3)
        | when(r, F::CHARGE_OVER_CURRENT, 1 << 4)
        | when(r, F::DISCHARGE_OVER_CURRENT, 1 << 5)
        | when(r, F::SHORT_CIRCUIT, 1 << 6);
    // Above charge and discharge temperature; below them.
    let protect2 = when(r, F::OVER_TEMPERATURE, 0b11) | when(r, F::UNDER_TEMPERATURE, 0b1100);
    // Bit 1 CFET, bit 2 DFET, bit 3 pack indicate.
    let instruction =
        (u8::from(r.charge_enabled) << 1) | (u8::from(r.discharge_enabled) << 2) | (1 << 3);
    // Bit 5: sampling fault.
    let fault = when(r, F::BMS_FAULT, 1 << 5);
    let balancing = r.balancing.0.to_le_bytes();
    // Warn 1 mirrors protect 1's cell and total voltage bits; warn 2 the
    // charge and discharge temperatures.
    let warn1 = protect1 & 0x0F;
    let warn2 = protect2;
    info.extend_from_slice(&[
        protect1,
        protect2,
        instruction,
        0x01,
        fault,
        balancing[0],
        balancing[1],
        warn1,
        warn2,
    ]);
    info
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{Faults, SimPack, SimPackConfig};

    #[test]
    fn the_layouts_have_their_documents_lengths() {
        let pack = SimPack::new(&SimPackConfig::default());
        let r = pack.reading();
        // 16 cells: Seplos's 75 and 49 bytes, Pace's 61 and 38.
        assert_eq!(seplos_analog_info(1, &r).len(), 75);
        assert_eq!(seplos_alarm_info(1, &r).len(), 49);
        assert_eq!(pace_analog_info(1, &r).len(), 61);
        assert_eq!(pace_alarm_info(1, &r).len(), 38);
    }

    #[test]
    fn alarms_and_switches_are_encoded() {
        let pack = SimPack::new(&SimPackConfig::default());
        pack.set_faults(Faults {
            over_temperature: true,
            ..Faults::default()
        });
        let r = pack.advance(900.0);
        assert!(r.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
        let seplos = seplos_alarm_info(1, &r);
        let bytes = &seplos[seplos.len() - 20..];
        // Event 3: both high temperature protections and alarms.
        assert_eq!(bytes[2], 0b0011_0011);
        assert_eq!(bytes[6] & 0b11, 0, "both switches open");
        let pace = pace_alarm_info(1, &r);
        let tail = &pace[pace.len() - 9..];
        assert_eq!((tail[0], tail[1]), (0, 0b11));
        assert_eq!(tail[2] & 0b110, 0, "both MOSFETs off");
        // 16 cell states after the head, then six sensor states.
        assert!(pace[3 + 16 + 1..3 + 16 + 1 + 4].contains(&2));
    }

    #[test]
    fn temperatures_and_capacities_follow_each_document() {
        let pack = SimPack::new(&SimPackConfig::default());
        let r = pack.reading();
        let seplos = seplos_analog_info(1, &r);
        let pace = pace_analog_info(1, &r);
        let word = |info: &[u8], at: usize| u16::from_be_bytes([info[at], info[at + 1]]);
        let first_temperature = 3 + 32 + 1;
        let c = r.temperatures_c.0[0];
        assert_eq!(
            word(&seplos, first_temperature),
            temperature_dk(c, 2731.0) as u16
        );
        assert_eq!(
            word(&pace, first_temperature),
            temperature_dk(c, 2730.0) as u16
        );
        // Pace: remaining, 3, full, cycles, design at the end.
        let n = pace.len();
        assert_eq!(pace[n - 7], 3);
        assert_eq!(word(&pace, n - 2), 10_000);
        let (full, remaining) = capacities_10mah(&r);
        assert_eq!((word(&pace, n - 6), word(&pace, n - 9)), (full, remaining));
        // Seplos: SoC and SoH per mille.
        let n = seplos.len();
        assert_eq!(seplos[n - 21], 10);
        assert_eq!(word(&seplos, n - 18), clamp_u16(r.soc_pct * 10.0));
        assert_eq!(word(&seplos, n - 12), clamp_u16(r.soh_pct.unwrap() * 10.0));
    }
}
