//! The simulated pack as a JK BMS (B / BD series) on its RS-485 port,
//! after JK's "Communication protocol between monitoring platform and
//! BMS" V2.5: "NW" frames, a read-all (`06`) answered with every value
//! the document lists, and writes (`02`) of the charge and discharge MOS
//! switches (`AB`, `AC`). One BMS per line: the first unit answers,
//! whatever the terminal number.
//!
//! The current goes out in the protocol-version-1 form (`C0` = 1: bit 15
//! set while charging). Temperatures are whole degrees, -40 to 100 °C:
//! sensor 1 (`81`) and sensor 2 (`82`) are the pack's first two sensors,
//! the MOS (`80`) reads the hottest of all. The factory id (`BA`) is the
//! unit's serial number. Alarms become the `8B` bits (a short circuit has
//! none), the switches and protection the `8C` MOS bits.

use packgate_protocol::{AlarmFlags, PackReading};

use super::framed::{BadRequest, FramedDevice, FramedUnit, RequestScan};
use crate::model::{CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON};

/// The JK "NW" protocol's device side.
#[derive(Debug, Clone, Copy, Default)]
pub struct JkDevice;

/// Device id code (`B4`), 8 characters.
const DEVICE_ID: &[u8; 8] = b"PGSIM-JK";
/// Software version (`B7`), 15 characters.
const SOFTWARE_VERSION: &[u8; 15] = b"PGSIM_JK_1_0_0_";

/// A frame from the BMS: `4E 57`, length, terminal 0, `command`, source
/// BMS, reply, `info`, record 0, `68`, checksum (sum from `4E` to `68`,
/// high 16 bits 0).
fn bms_frame(command: u8, info: &[u8]) -> Vec<u8> {
    let len = (2 + 4 + 3 + info.len() + 4 + 1 + 4) as u16;
    let mut frame = vec![0x4E, 0x57];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, command, 0x00, 0x01]);
    frame.extend_from_slice(info);
    frame.extend_from_slice(&[0, 0, 0, 0, 0x68]);
    let sum: u32 = frame.iter().map(|b| u32::from(*b)).sum();
    frame.extend_from_slice(&(sum & 0xFFFF).to_be_bytes());
    frame
}

fn clamp_u16(value: f64) -> u16 {
    value.round().clamp(0.0, f64::from(u16::MAX)) as u16
}

/// A temperature as JK sends it: 0 to 100 °C as is, -1 to -40 as 101 to
/// 140.
fn jk_temperature(c: f32) -> [u8; 2] {
    let c = f64::from(c).round().clamp(-40.0, 100.0) as i16;
    let raw = if c < 0 { 100 - c } else { c };
    (raw as u16).to_be_bytes()
}

/// The `8B` bits for `alarms`.
fn warning_bits(alarms: AlarmFlags) -> u16 {
    [
        (AlarmFlags::PACK_OVER_VOLTAGE, 1 << 2),
        (AlarmFlags::PACK_UNDER_VOLTAGE, 1 << 3),
        (AlarmFlags::OVER_TEMPERATURE, 1 << 4),
        (AlarmFlags::CHARGE_OVER_CURRENT, 1 << 5),
        (AlarmFlags::DISCHARGE_OVER_CURRENT, 1 << 6),
        (AlarmFlags::CELL_IMBALANCE, 1 << 7),
        (AlarmFlags::UNDER_TEMPERATURE, 1 << 9),
        (AlarmFlags::CELL_OVER_VOLTAGE, 1 << 10),
        (AlarmFlags::CELL_UNDER_VOLTAGE, 1 << 11),
        (AlarmFlags::BMS_FAULT, 1 << 12),
    ]
    .into_iter()
    .filter(|(flag, _)| alarms.contains(*flag))
    .fold(0, |bits, (_, bit)| bits | bit)
}

/// The settings a read-all carries after `8C`, with the lengths the
/// document gives them: u16 values, then the byte-sized ones, the u32
/// ones and the text.
fn settings(unit: &FramedUnit, info: &mut Vec<u8>) {
    let switch = |name| u8::from(unit.pack.setting(name) != Some(0.0));
    for (id, value) in [
        (0x8E, 5840),
        (0x8F, 4000),
        (0x90, 3650),
        (0x91, 3400),
        (0x92, 5),
        (0x93, 2800),
        (0x94, 3100),
        (0x95, 5),
        (0x96, 300),
        (0x97, 100),
        (0x98, 3),
        (0x99, 100),
        (0x9A, 3),
        (0x9B, 3400),
        (0x9C, 15),
    ] {
        info.push(id);
        info.extend_from_slice(&u16::to_be_bytes(value));
    }
    info.extend_from_slice(&[0x9D, 1]);
    for (id, value) in [
        (0x9E, 90),
        (0x9F, 70),
        (0xA0, 55),
        (0xA1, 50),
        (0xA2, 20),
        (0xA3, 55),
        (0xA4, 55),
        (0xA5, 0),
        (0xA6, 3),
        (0xA7, 0xFFEC),
        (0xA8, 0xFFF6),
    ] {
        info.push(id);
        info.extend_from_slice(&u16::to_be_bytes(value));
    }
    info.extend_from_slice(&[0xA9, 16, 0xAA, 0, 0, 0, 100]);
    info.extend_from_slice(&[0xAB, switch(CHARGE_SWITCH_ON)]);
    info.extend_from_slice(&[0xAC, switch(DISCHARGE_SWITCH_ON)]);
    info.extend_from_slice(&[0xAD, 0x03, 0xE8, 0xAE, 1, 0xAF, 0, 0xB0, 0, 10, 0xB1, 20]);
    info.push(0xB2);
    info.extend_from_slice(b"000000\0\0\0\0");
    info.extend_from_slice(&[0xB3, 0, 0xB4]);
    info.extend_from_slice(DEVICE_ID);
    info.push(0xB5);
    info.extend_from_slice(b"2401");
    info.extend_from_slice(&[0xB6, 0, 0, 0, 60, 0xB7]);
    info.extend_from_slice(SOFTWARE_VERSION);
    info.extend_from_slice(&[0xB8, 0, 0xB9, 0, 0, 0, 100, 0xBA]);
    let mut factory_id = [0u8; 24];
    let serial = unit.serial_number.as_bytes();
    let n = serial.len().min(24);
    factory_id[..n].copy_from_slice(&serial[..n]);
    info.extend_from_slice(&factory_id);
}

/// The read-all information field for `r`.
fn read_all_info(unit: &FramedUnit, r: &PackReading) -> Vec<u8> {
    let cells = &r.cell_voltages_v.0;
    let mut info = vec![0x79, (3 * cells.len()).min(255) as u8];
    for (i, v) in cells.iter().enumerate() {
        info.push(i as u8 + 1);
        info.extend_from_slice(&clamp_u16(f64::from(*v) * 1000.0).to_be_bytes());
    }
    let temps = &r.temperatures_c.0;
    let sensor = |i: usize| temps.get(i).or(temps.first()).copied().unwrap_or(25.0);
    let hottest = temps
        .iter()
        .copied()
        .fold(f32::MIN, f32::max)
        .max(sensor(0));
    for (id, c) in [(0x80, hottest), (0x81, sensor(0)), (0x82, sensor(1))] {
        info.push(id);
        info.extend_from_slice(&jk_temperature(c));
    }
    info.push(0x83);
    info.extend_from_slice(&clamp_u16(f64::from(r.pack_voltage_v) * 100.0).to_be_bytes());
    let magnitude = clamp_u16(f64::from(r.current_a.abs()) * 100.0).min(0x7FFF);
    let charging = if r.current_a > 0.0 { 0x8000 } else { 0 };
    info.push(0x84);
    info.extend_from_slice(&(charging | magnitude).to_be_bytes());
    let soc = f64::from(r.soc_pct).round().clamp(0.0, 100.0) as u8;
    info.extend_from_slice(&[0x85, soc, 0x86, temps.len().min(2) as u8]);
    info.extend_from_slice(&[0x87, 0, 0, 0x89, 0, 0, 0, 0, 0x8A, 0, cells.len() as u8]);
    info.push(0x8B);
    info.extend_from_slice(&warning_bits(r.alarms).to_be_bytes());
    let status = u16::from(r.charge_enabled)
        | u16::from(r.discharge_enabled) << 1
        | u16::from(r.balancing.0 != 0) << 2
        | 1 << 3;
    info.push(0x8C);
    info.extend_from_slice(&status.to_be_bytes());
    settings(unit, &mut info);
    info.extend_from_slice(&[0xC0, 0x01]);
    info
}

impl FramedDevice for JkDevice {
    fn scan_request(buf: &[u8]) -> RequestScan {
        match buf {
            [] | [0x4E] | [0x4E, 0x57] | [0x4E, 0x57, _] => RequestScan::NeedMore,
            [0x4E, 0x57, hi, lo, ..] => {
                let total = usize::from(u16::from_be_bytes([*hi, *lo])) + 2;
                if !(20..=super::framed::MAX_REQUEST_LEN).contains(&total) {
                    RequestScan::Junk(1)
                } else if buf.len() < total {
                    RequestScan::NeedMore
                } else {
                    RequestScan::Frame(total)
                }
            }
            _ => RequestScan::Junk(1),
        }
    }

    fn address(request: &[u8]) -> Result<Option<u8>, BadRequest> {
        let total = request.len();
        if total < 20 || request[total - 5] != 0x68 {
            return Err(BadRequest::Malformed);
        }
        let sum: u32 = request[..total - 4].iter().map(|b| u32::from(*b)).sum();
        let sent = u32::from_be_bytes([
            request[total - 4],
            request[total - 3],
            request[total - 2],
            request[total - 1],
        ]);
        if sum & 0xFFFF != sent {
            return Err(BadRequest::Checksum);
        }
        Ok(None)
    }

    fn answer(unit: &FramedUnit, request: &[u8]) -> Vec<Vec<u8>> {
        let command = request[8];
        let info = &request[11..request.len() - 9];
        match (command, info) {
            (0x06, _) => {
                let reading = unit.pack.advance_to(tokio::time::Instant::now().into_std());
                vec![bms_frame(0x06, &read_all_info(unit, &reading))]
            }
            (0x02, [id @ (0xAB | 0xAC), value @ (0 | 1)]) => {
                let name = if *id == 0xAB {
                    CHARGE_SWITCH_ON
                } else {
                    DISCHARGE_SWITCH_ON
                };
                match unit.pack.apply_setting(name, f64::from(*value)) {
                    Ok(_) => vec![bms_frame(0x02, &[*id])],
                    Err(_) => Vec::new(),
                }
            }
            // No error frame in this protocol: anything else goes unanswered.
            _ => Vec::new(),
        }
    }

    fn corrupt(frame: &mut [u8]) {
        if let Some(last) = frame.last_mut() {
            *last ^= 0x5A;
        }
    }
}

#[cfg(test)]
#[path = "jk_tests.rs"]
mod tests;
