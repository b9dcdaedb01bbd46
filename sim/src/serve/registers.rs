//! The simulator's Modbus register map ("packgate-sim" profile), pure:
//! a [`PackReading`] encoded into holding registers, request PDUs parsed,
//! reads served from the image and setting writes decoded. No I/O and no
//! locks; the servers glue this to a [`SimPack`](crate::SimPack).
//!
//! Holding registers (function 3; function 4 reads the same image):
//!
//! | register | content |
//! | --- | --- |
//! | 0 | pack voltage, u16, 0.01 V |
//! | 1 | current, i16, 0.1 A (positive = charging) |
//! | 2, 3 | state of charge, state of health, u16, 0.1 % |
//! | 4, 5 | cell count, temperature sensor count |
//! | 6-7 | balancing mask, u32, high word first |
//! | 8-9 | alarm flags (packgate `AlarmFlags` bits), u32, high word first |
//! | 10 | status: bit 0 charge enabled, bit 1 discharge enabled |
//! | 11-12 | serial number, u32, high word first |
//! | 13-15 | zero |
//! | 16..=47 | cell voltages, u16, 0.001 V (unused cells 0) |
//! | 48..=63 | temperatures, i16, 0.1 °C (unused sensors 0) |
//! | 100 | `charge_current_limit_a`, u16, 0.1 A, writable |
//! | 101 | `discharge_current_limit_a`, u16, 0.1 A, writable |
//!
//! Values are clamped into their type's range. Reading outside `0..64`
//! and `100..102` is an illegal data address.

use packgate_protocol::{PackReading, MAX_CELLS, MAX_TEMPERATURE_SENSORS};

use crate::model::{CHARGE_CURRENT_LIMIT_A, DISCHARGE_CURRENT_LIMIT_A};
use crate::rng::splitmix64;

/// Function code: read holding registers.
pub const FC_READ_HOLDING: u8 = 0x03;
/// Function code: read input registers (served from the same image).
pub const FC_READ_INPUT: u8 = 0x04;
/// Function code: write single register.
pub const FC_WRITE_SINGLE: u8 = 0x06;
/// Function code: write multiple registers.
pub const FC_WRITE_MULTIPLE: u8 = 0x10;

/// Exception: the function code is not supported.
pub const EXCEPTION_ILLEGAL_FUNCTION: u8 = 0x01;
/// Exception: a register of the request is not mapped.
pub const EXCEPTION_ILLEGAL_DATA_ADDRESS: u8 = 0x02;
/// Exception: a value or count of the request is not acceptable.
pub const EXCEPTION_ILLEGAL_DATA_VALUE: u8 = 0x03;
/// Exception: the gateway's target device did not answer (Modbus TCP
/// gateway in front of a unit it does not serve).
pub const EXCEPTION_GATEWAY_TARGET_FAILED: u8 = 0x0B;

/// Register of the first cell voltage.
pub const CELL_VOLTAGE_REGISTER: u16 = 16;
/// Register of the first temperature.
pub const TEMPERATURE_REGISTER: u16 = 48;
/// Number of measurement registers, from register 0.
pub const MEASUREMENT_REGISTER_COUNT: u16 = 64;
/// Register of `charge_current_limit_a`.
pub const CHARGE_LIMIT_REGISTER: u16 = 100;
/// Register of `discharge_current_limit_a`.
pub const DISCHARGE_LIMIT_REGISTER: u16 = 101;
/// Most registers one read may ask for (the Modbus limit).
pub const MAX_READ_COUNT: u16 = 125;
/// Most registers one write-multiple may carry (the Modbus limit).
pub const MAX_WRITE_COUNT: u16 = 123;

/// The register image of one pack at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterImage {
    measurements: [u16; MEASUREMENT_REGISTER_COUNT as usize],
    settings: [u16; 2],
}

/// `value / scale`, rounded and clamped into `u16`; NaN gives 0.
fn to_u16(value: f64, scale: f64) -> u16 {
    let raw = (value / scale).round();
    if raw.is_nan() {
        0
    } else {
        raw.clamp(0.0, f64::from(u16::MAX)) as u16
    }
}

/// `value / scale`, rounded and clamped into `i16`, as its register bits.
fn to_i16(value: f64, scale: f64) -> u16 {
    let raw = (value / scale).round();
    let clamped = if raw.is_nan() {
        0
    } else {
        raw.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
    };
    clamped as u16
}

/// The stable serial number of the pack built from `seed`.
pub fn serial_number_from_seed(seed: u64) -> u32 {
    let mut state = seed ^ 0x5345_5249_414C_u64;
    (splitmix64(&mut state) >> 32) as u32
}

impl RegisterImage {
    /// Encodes `reading`, the two current limits (amperes) and the serial
    /// number into the register map.
    pub fn encode(
        reading: &PackReading,
        charge_limit_a: f64,
        discharge_limit_a: f64,
        serial_number: u32,
    ) -> Self {
        let mut m = [0u16; MEASUREMENT_REGISTER_COUNT as usize];
        m[0] = to_u16(f64::from(reading.pack_voltage_v), 0.01);
        m[1] = to_i16(f64::from(reading.current_a), 0.1);
        m[2] = to_u16(f64::from(reading.soc_pct), 0.1);
        m[3] = to_u16(f64::from(reading.soh_pct.unwrap_or(0.0)), 0.1);
        let cells = &reading.cell_voltages_v.0[..reading.cell_voltages_v.0.len().min(MAX_CELLS)];
        let temps = &reading.temperatures_c.0
            [..reading.temperatures_c.0.len().min(MAX_TEMPERATURE_SENSORS)];
        m[4] = cells.len() as u16;
        m[5] = temps.len() as u16;
        let split = |v: u32| [(v >> 16) as u16, v as u16];
        m[6..8].copy_from_slice(&split(reading.balancing.0));
        m[8..10].copy_from_slice(&split(reading.alarms.0));
        m[10] = u16::from(reading.charge_enabled) | (u16::from(reading.discharge_enabled) << 1);
        m[11..13].copy_from_slice(&split(serial_number));
        let cell_base = usize::from(CELL_VOLTAGE_REGISTER);
        for (i, v) in cells.iter().enumerate() {
            m[cell_base + i] = to_u16(f64::from(*v), 0.001);
        }
        let temp_base = usize::from(TEMPERATURE_REGISTER);
        for (i, t) in temps.iter().enumerate() {
            m[temp_base + i] = to_i16(f64::from(*t), 0.1);
        }
        Self {
            measurements: m,
            settings: [to_u16(charge_limit_a, 0.1), to_u16(discharge_limit_a, 0.1)],
        }
    }

    /// Registers `start..start + count`, or the exception code when the
    /// range is empty, too long or not entirely mapped.
    pub fn read(&self, start: u16, count: u16) -> Result<Vec<u16>, u8> {
        if count == 0 || count > MAX_READ_COUNT {
            return Err(EXCEPTION_ILLEGAL_DATA_VALUE);
        }
        let start = usize::from(start);
        let end = start + usize::from(count);
        let settings_base = usize::from(CHARGE_LIMIT_REGISTER);
        if end <= self.measurements.len() {
            Ok(self.measurements[start..end].to_vec())
        } else if start >= settings_base && end <= settings_base + self.settings.len() {
            Ok(self.settings[start - settings_base..end - settings_base].to_vec())
        } else {
            Err(EXCEPTION_ILLEGAL_DATA_ADDRESS)
        }
    }
}

/// A request PDU, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Function 3 or 4.
    Read {
        /// The function code (3 or 4).
        function: u8,
        /// First register.
        start: u16,
        /// Number of registers.
        count: u16,
    },
    /// Function 6 or 16.
    Write {
        /// The function code (6 or 16).
        function: u8,
        /// First register.
        start: u16,
        /// The values, one per register.
        values: Vec<u16>,
    },
}

fn be(pdu: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([pdu[at], pdu[at + 1]])
}

/// Parses a request PDU (function code first). An error is the exception
/// code to answer with; an empty PDU gives [`EXCEPTION_ILLEGAL_FUNCTION`].
pub fn parse_request(pdu: &[u8]) -> Result<Request, u8> {
    let Some(&function) = pdu.first() else {
        return Err(EXCEPTION_ILLEGAL_FUNCTION);
    };
    match function {
        FC_READ_HOLDING | FC_READ_INPUT | FC_WRITE_SINGLE if pdu.len() != 5 => {
            Err(EXCEPTION_ILLEGAL_DATA_VALUE)
        }
        FC_READ_HOLDING | FC_READ_INPUT => Ok(Request::Read {
            function,
            start: be(pdu, 1),
            count: be(pdu, 3),
        }),
        FC_WRITE_SINGLE => Ok(Request::Write {
            function,
            start: be(pdu, 1),
            values: vec![be(pdu, 3)],
        }),
        FC_WRITE_MULTIPLE => {
            if pdu.len() < 6 {
                return Err(EXCEPTION_ILLEGAL_DATA_VALUE);
            }
            let count = be(pdu, 3);
            let bytes = usize::from(pdu[5]);
            if count == 0
                || count > MAX_WRITE_COUNT
                || bytes != 2 * usize::from(count)
                || pdu.len() != 6 + bytes
            {
                return Err(EXCEPTION_ILLEGAL_DATA_VALUE);
            }
            let values = (0..usize::from(count))
                .map(|i| be(pdu, 6 + 2 * i))
                .collect();
            Ok(Request::Write {
                function,
                start: be(pdu, 1),
                values,
            })
        }
        _ => Err(EXCEPTION_ILLEGAL_FUNCTION),
    }
}

/// The settings a write sets, with their values in amperes, or the
/// exception code when a register of it is not writable.
pub fn setting_writes(start: u16, values: &[u16]) -> Result<Vec<(&'static str, f64)>, u8> {
    values
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let register = usize::from(start) + i;
            let name = match u16::try_from(register) {
                Ok(CHARGE_LIMIT_REGISTER) => CHARGE_CURRENT_LIMIT_A,
                Ok(DISCHARGE_LIMIT_REGISTER) => DISCHARGE_CURRENT_LIMIT_A,
                _ => return Err(EXCEPTION_ILLEGAL_DATA_ADDRESS),
            };
            Ok((name, f64::from(*raw) / 10.0))
        })
        .collect()
}

/// The response PDU of a read.
pub fn read_response(function: u8, registers: &[u16]) -> Vec<u8> {
    let mut pdu = Vec::with_capacity(2 + 2 * registers.len());
    pdu.push(function);
    pdu.push((2 * registers.len()).min(usize::from(u8::MAX)) as u8);
    for r in registers {
        pdu.extend_from_slice(&r.to_be_bytes());
    }
    pdu
}

/// The response PDU of a successful write.
pub fn write_response(function: u8, start: u16, values: &[u16]) -> Vec<u8> {
    let mut pdu = vec![function];
    pdu.extend_from_slice(&start.to_be_bytes());
    if function == FC_WRITE_SINGLE {
        pdu.extend_from_slice(&values.first().copied().unwrap_or(0).to_be_bytes());
    } else {
        pdu.extend_from_slice(&(values.len() as u16).to_be_bytes());
    }
    pdu
}

/// The exception response PDU for `function`.
pub fn exception_response(function: u8, code: u8) -> Vec<u8> {
    vec![function | 0x80, code]
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_protocol::{AlarmFlags, BalancingState, CellVoltages, Temperatures};

    fn reading() -> PackReading {
        PackReading {
            pack_voltage_v: 52.81,
            current_a: -12.34,
            soc_pct: 71.26,
            soh_pct: Some(98.0),
            cell_voltages_v: CellVoltages(vec![3.301, 3.2804, 3.3]),
            temperatures_c: Temperatures(vec![24.04, -5.56]),
            balancing: BalancingState(0x0001_0004),
            alarms: AlarmFlags::OVER_TEMPERATURE.union(AlarmFlags(1 << 20)),
            charge_enabled: false,
            discharge_enabled: true,
        }
    }

    #[test]
    fn reading_is_encoded_into_the_map() {
        let image = RegisterImage::encode(&reading(), 50.0, 120.5, 0xDEAD_BEEF);
        let m = image.read(0, 64).unwrap();
        assert_eq!(&m[..6], &[5281, (-123i16) as u16, 713, 980, 3, 2]);
        assert_eq!(&m[6..13], &[1, 4, 0x10, 0x40, 0b10, 0xDEAD, 0xBEEF]);
        assert_eq!(&m[13..16], &[0, 0, 0]);
        assert_eq!(&m[16..20], &[3301, 3280, 3300, 0]);
        assert_eq!(&m[48..51], &[240, (-56i16) as u16, 0]);
        assert_eq!(image.read(100, 2).unwrap(), vec![500, 1205]);
        assert_eq!(image.read(101, 1).unwrap(), vec![1205]);
    }

    #[test]
    fn values_clamp_into_their_type() {
        let mut r = reading();
        r.pack_voltage_v = 1000.0;
        r.current_a = -5000.0;
        r.soc_pct = f32::NAN;
        let m = RegisterImage::encode(&r, -3.0, 1e9, 0).read(0, 3).unwrap();
        assert_eq!(m, vec![u16::MAX, i16::MIN as u16, 0]);
        let s = RegisterImage::encode(&r, -3.0, 1e9, 0)
            .read(100, 2)
            .unwrap();
        assert_eq!(s, vec![0, u16::MAX]);
    }

    #[test]
    fn unmapped_or_bad_ranges_are_refused() {
        let image = RegisterImage::encode(&reading(), 1.0, 1.0, 1);
        assert_eq!(image.read(60, 5), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
        assert_eq!(image.read(64, 1), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
        assert_eq!(image.read(99, 2), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
        assert_eq!(image.read(101, 2), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
        assert_eq!(image.read(65535, 1), Err(EXCEPTION_ILLEGAL_DATA_ADDRESS));
        assert_eq!(image.read(0, 0), Err(EXCEPTION_ILLEGAL_DATA_VALUE));
        assert_eq!(image.read(0, 126), Err(EXCEPTION_ILLEGAL_DATA_VALUE));
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(&[3, 0, 16, 0, 32]),
            Ok(Request::Read {
                function: 3,
                start: 16,
                count: 32
            })
        );
        assert_eq!(
            parse_request(&[6, 0, 100, 0x01, 0xF4]),
            Ok(Request::Write {
                function: 6,
                start: 100,
                values: vec![500]
            })
        );
        assert_eq!(
            parse_request(&[16, 0, 100, 0, 2, 4, 0, 1, 0, 2]),
            Ok(Request::Write {
                function: 16,
                start: 100,
                values: vec![1, 2]
            })
        );
        assert_eq!(parse_request(&[16, 0, 100, 0, 2, 3, 0, 1, 0]), Err(3));
        assert_eq!(parse_request(&[3, 0, 16, 0]), Err(3));
        assert_eq!(parse_request(&[1, 0, 0, 0, 1]), Err(1));
        assert_eq!(parse_request(&[]), Err(1));
    }

    #[test]
    fn writes_map_to_settings() {
        assert_eq!(
            setting_writes(100, &[500, 1205]),
            Ok(vec![
                (CHARGE_CURRENT_LIMIT_A, 50.0),
                (DISCHARGE_CURRENT_LIMIT_A, 120.5)
            ])
        );
        assert_eq!(setting_writes(101, &[1, 2]), Err(2));
        assert_eq!(setting_writes(0, &[1]), Err(2));
        assert_eq!(setting_writes(65535, &[1, 2]), Err(2));
    }

    #[test]
    fn responses_are_encoded() {
        assert_eq!(read_response(3, &[0x0102, 0x0304]), vec![3, 4, 1, 2, 3, 4]);
        assert_eq!(write_response(6, 100, &[500]), vec![6, 0, 100, 1, 0xF4]);
        assert_eq!(write_response(16, 100, &[1, 2]), vec![16, 0, 100, 0, 2]);
        assert_eq!(exception_response(3, 2), vec![0x83, 2]);
    }

    #[test]
    fn serial_numbers_are_stable_and_differ_by_seed() {
        assert_eq!(serial_number_from_seed(7), serial_number_from_seed(7));
        assert_ne!(serial_number_from_seed(7), serial_number_from_seed(8));
    }
}
