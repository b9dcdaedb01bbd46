//! The simulated pack as a JBD (Overkill, Xiaoxiang) BMS, after the
//! "Jiabaida Software Board General Protocol V4": `DD`-framed requests
//! read `0x03` (basic information), `0x04` (cell voltages) and `0x05`
//! (hardware version), and write `0xE1` (MOS control). One BMS per line:
//! the first unit answers.
//!
//! The hardware version names the unit by its serial number (JBD carries
//! no serial number; the name is whatever the maker wrote). The capacity
//! is not modelled: the BMS reports a nominal [`NOMINAL_CAPACITY_10MAH`]
//! with the remaining share at the state of charge. Protection bits come
//! from the pack's alarms, bit 12 (software MOS lock) from its switch
//! settings.

use packgate_protocol::{AlarmFlags, PackReading};

use super::framed::{BadRequest, FramedDevice, FramedUnit, RequestScan};
use crate::model::{CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON};

/// Nominal capacity the simulated BMS reports, 10 mAh (100 Ah).
pub const NOMINAL_CAPACITY_10MAH: u16 = 10_000;
/// Status of a served request.
const STATUS_OK: u8 = 0x00;
/// Status of a refused request (unknown register, bad value).
pub const STATUS_ERROR: u8 = 0x80;
/// Production date: 2024-01-15, packed as year-2000 / month / day.
const PRODUCTION_DATE: u16 = 24 << 9 | 1 << 5 | 15;
/// Software version 2.1.
const SOFTWARE_VERSION: u8 = 0x21;

/// The JBD protocol's device side.
#[derive(Debug, Clone, Copy, Default)]
pub struct JbdDevice;

/// `0x10000` minus the sum of `bytes`, in 16 bits, high byte first.
fn jbd_checksum(bytes: &[u8]) -> [u8; 2] {
    let sum: u32 = bytes.iter().map(|b| u32::from(*b)).sum();
    (((0x1_0000 - (sum & 0xFFFF)) & 0xFFFF) as u16).to_be_bytes()
}

/// A reply: `DD reg status len data checksum 77`, the checksum over
/// status, length and data.
fn reply(register: u8, status: u8, data: &[u8]) -> Vec<u8> {
    let len = data.len().min(255);
    let mut frame = vec![0xDD, register, status, len as u8];
    frame.extend_from_slice(&data[..len]);
    let checksum = jbd_checksum(&frame[2..]);
    frame.extend_from_slice(&checksum);
    frame.push(0x77);
    frame
}

fn clamp_u16(value: f64) -> u16 {
    value.round().clamp(0.0, f64::from(u16::MAX)) as u16
}

/// The protection word for `alarms`, with bit 12 while a switch setting
/// holds a MOS open.
fn protection_bits(alarms: AlarmFlags, locked: bool) -> u16 {
    [
        (AlarmFlags::CELL_OVER_VOLTAGE, 1 << 0),
        (AlarmFlags::CELL_UNDER_VOLTAGE, 1 << 1),
        (AlarmFlags::PACK_OVER_VOLTAGE, 1 << 2),
        (AlarmFlags::PACK_UNDER_VOLTAGE, 1 << 3),
        // The model's over-temperature opens both MOSs: charge and
        // discharge over-temperature; its under-temperature only stops
        // charging.
        (AlarmFlags::OVER_TEMPERATURE, 1 << 4 | 1 << 6),
        (AlarmFlags::UNDER_TEMPERATURE, 1 << 5),
        (AlarmFlags::CHARGE_OVER_CURRENT, 1 << 8),
        (AlarmFlags::DISCHARGE_OVER_CURRENT, 1 << 9),
        (AlarmFlags::SHORT_CIRCUIT, 1 << 10),
        (AlarmFlags::BMS_FAULT, 1 << 11),
    ]
    .into_iter()
    .filter(|(flag, _)| alarms.contains(*flag))
    .fold(u16::from(locked) << 12, |bits, (_, bit)| bits | bit)
}

/// The `0x03` data for `reading`.
fn basic_info(unit: &FramedUnit, r: &PackReading) -> Vec<u8> {
    let locked = [CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON]
        .iter()
        .any(|name| unit.pack.setting(name) == Some(0.0));
    let soc = f64::from(r.soc_pct).round().clamp(0.0, 100.0);
    let current = (f64::from(r.current_a) * 100.0)
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
    let mut data = Vec::with_capacity(23 + 2 * r.temperatures_c.0.len());
    for word in [
        clamp_u16(f64::from(r.pack_voltage_v) * 100.0),
        current as u16,
        clamp_u16(soc / 100.0 * f64::from(NOMINAL_CAPACITY_10MAH)),
        NOMINAL_CAPACITY_10MAH,
        0,
        PRODUCTION_DATE,
        r.balancing.0 as u16,
        (r.balancing.0 >> 16) as u16,
        protection_bits(r.alarms, locked),
    ] {
        data.extend_from_slice(&word.to_be_bytes());
    }
    let fet = u8::from(r.charge_enabled) | u8::from(r.discharge_enabled) << 1;
    data.extend_from_slice(&[
        SOFTWARE_VERSION,
        soc as u8,
        fet,
        r.cell_voltages_v.0.len() as u8,
        r.temperatures_c.0.len() as u8,
    ]);
    for t in &r.temperatures_c.0 {
        // 0.1 K with the document's 2731 for 0 °C.
        data.extend_from_slice(&clamp_u16(f64::from(*t) * 10.0 + 2731.0).to_be_bytes());
    }
    data
}

/// Applies an `0xE1` control byte: bit 0 holds the charge MOS open, bit 1
/// the discharge MOS.
fn apply_mos_control(unit: &FramedUnit, xx: u8) -> bool {
    let open = |bit: u8| if xx & bit != 0 { 0.0 } else { 1.0 };
    unit.pack.apply_setting(CHARGE_SWITCH_ON, open(1)).is_ok()
        && unit
            .pack
            .apply_setting(DISCHARGE_SWITCH_ON, open(2))
            .is_ok()
}

impl FramedDevice for JbdDevice {
    fn scan_request(buf: &[u8]) -> RequestScan {
        match buf {
            [] | [0xDD] => RequestScan::NeedMore,
            [0xDD, 0xA5 | 0x5A, ..] if buf.len() < 4 => RequestScan::NeedMore,
            [0xDD, 0xA5 | 0x5A, _, len, ..] => {
                let total = 7 + usize::from(*len);
                if buf.len() < total {
                    RequestScan::NeedMore
                } else {
                    RequestScan::Frame(total)
                }
            }
            _ => RequestScan::Junk(1),
        }
    }

    fn address(request: &[u8]) -> Result<Option<u8>, BadRequest> {
        let n = usize::from(*request.get(3).ok_or(BadRequest::Malformed)?);
        if request.len() != 7 + n || request[6 + n] != 0x77 {
            return Err(BadRequest::Malformed);
        }
        if jbd_checksum(&request[2..4 + n]) != [request[4 + n], request[5 + n]] {
            return Err(BadRequest::Checksum);
        }
        Ok(None)
    }

    fn answer(unit: &FramedUnit, request: &[u8]) -> Vec<Vec<u8>> {
        let (op, register) = (request[1], request[2]);
        let data = &request[4..request.len() - 3];
        let now = || unit.pack.advance_to(tokio::time::Instant::now().into_std());
        let frame = match (op, register, data) {
            (0xA5, 0x03, []) => reply(register, STATUS_OK, &basic_info(unit, &now())),
            (0xA5, 0x04, []) => {
                let cells: Vec<u8> = now()
                    .cell_voltages_v
                    .0
                    .iter()
                    .flat_map(|v| clamp_u16(f64::from(*v) * 1000.0).to_be_bytes())
                    .collect();
                reply(register, STATUS_OK, &cells)
            }
            (0xA5, 0x05, []) => reply(register, STATUS_OK, unit.serial_number.as_bytes()),
            (0x5A, 0xE1, [0, xx]) if *xx <= 3 && apply_mos_control(unit, *xx) => {
                reply(register, STATUS_OK, &[])
            }
            _ => reply(register, STATUS_ERROR, &[]),
        };
        vec![frame]
    }

    fn corrupt(frame: &mut [u8]) {
        if let Some(at) = frame.len().checked_sub(2) {
            frame[at] ^= 0x5A;
        }
    }
}

#[cfg(test)]
#[path = "jbd_tests.rs"]
mod tests;
