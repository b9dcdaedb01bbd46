//! The simulated pack as a Daly BMS, from Daly's "UART/485
//! Communications Protocol" V1.2: 13-byte frames `A5`, address (the host's
//! `40` or `80` in a request, `01` in a reply), data id, `08`, eight data
//! bytes, and the low byte of the sum of the twelve before.
//!
//! One BMS a line (the line's first unit). Answers `90`-`98`: `95` with
//! one frame per three cells, `96` one per seven sensors; stays silent on
//! any other id, as the boards do. The pack's alarms go out in `98` as
//! both the level-1 and the level-2 bit of their pair (a real BMS warns
//! before it protects); the SoC as `93`'s remaining capacity of a 100 Ah
//! pack.

use packgate_protocol::{AlarmFlags, PackReading};

use super::framed::{BadRequest, FramedDevice, FramedUnit, RequestScan};

/// The capacity the simulated packs report, mAh.
pub const NOMINAL_CAPACITY_MAH: u32 = 100_000;
/// A frame's length.
const FRAME: usize = 13;

/// The Daly BMS, for [`serve_framed`](super::framed::serve_framed).
#[derive(Debug, Clone, Copy)]
pub struct DalyDevice;

/// The reply frame for data id `id`.
fn reply(id: u8, data: [u8; 8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME);
    frame.extend_from_slice(&[0xA5, 0x01, id, 0x08]);
    frame.extend_from_slice(&data);
    let sum: u32 = frame.iter().map(|b| u32::from(*b)).sum();
    frame.push((sum & 0xFF) as u8);
    frame
}

fn round_u16(value: f32) -> u16 {
    value.round().clamp(0.0, f32::from(u16::MAX)) as u16
}

/// A temperature as sent: °C + 40 in one byte.
fn temperature_byte(c: f32) -> u8 {
    (c.round() + 40.0).clamp(0.0, 255.0) as u8
}

fn data(bytes: &[u8]) -> [u8; 8] {
    let mut d = [0u8; 8];
    for (slot, b) in d.iter_mut().zip(bytes) {
        *slot = *b;
    }
    d
}

fn pack_status(r: &PackReading) -> Vec<Vec<u8>> {
    let volts = round_u16(r.pack_voltage_v * 10.0).to_be_bytes();
    let current = round_u16(30_000.0 + r.current_a * 10.0).to_be_bytes();
    let soc = round_u16(r.soc_pct * 10.0).to_be_bytes();
    vec![reply(
        0x90,
        data(&[
            volts[0], volts[1], volts[0], volts[1], current[0], current[1], soc[0], soc[1],
        ]),
    )]
}

/// Index (from 1) and value of the highest (`highest`) or lowest value.
fn extreme(values: &[f32], highest: bool) -> (u8, f32) {
    let order = |a: &(usize, &f32), b: &(usize, &f32)| a.1.total_cmp(b.1);
    let found = if highest {
        values.iter().enumerate().max_by(order)
    } else {
        values.iter().enumerate().min_by(order)
    };
    found.map_or((0, 0.0), |(i, v)| (i as u8 + 1, *v))
}

fn extremes(r: &PackReading) -> [Vec<u8>; 2] {
    let cells = &r.cell_voltages_v.0;
    let (hi_cell, hi_v) = extreme(cells, true);
    let (lo_cell, lo_v) = extreme(cells, false);
    let [hi0, hi1] = round_u16(hi_v * 1000.0).to_be_bytes();
    let [lo0, lo1] = round_u16(lo_v * 1000.0).to_be_bytes();
    let sensors = &r.temperatures_c.0;
    let (hi_sensor, hi_c) = extreme(sensors, true);
    let (lo_sensor, lo_c) = extreme(sensors, false);
    [
        reply(0x91, data(&[hi0, hi1, hi_cell, lo0, lo1, lo_cell])),
        reply(
            0x92,
            data(&[
                temperature_byte(hi_c),
                hi_sensor,
                temperature_byte(lo_c),
                lo_sensor,
            ]),
        ),
    ]
}

fn switches(r: &PackReading) -> Vec<u8> {
    let state = if r.current_a > 0.0 {
        1
    } else if r.current_a < 0.0 {
        2
    } else {
        0
    };
    let remaining = (f64::from(r.soc_pct) / 100.0 * f64::from(NOMINAL_CAPACITY_MAH)).round() as u32;
    let mut bytes = vec![
        state,
        u8::from(r.charge_enabled),
        u8::from(r.discharge_enabled),
        0,
    ];
    bytes.extend_from_slice(&remaining.to_be_bytes());
    reply(0x93, data(&bytes))
}

fn system_status(r: &PackReading) -> Vec<u8> {
    reply(
        0x94,
        data(&[
            r.cell_voltages_v.0.len() as u8,
            r.temperatures_c.0.len() as u8,
            u8::from(r.current_a > 0.0),
            u8::from(r.current_a < 0.0),
            0,
            0,
            0,
        ]),
    )
}

fn cell_voltages(r: &PackReading) -> Vec<Vec<u8>> {
    r.cell_voltages_v
        .0
        .chunks(3)
        .enumerate()
        .map(|(i, chunk)| {
            let mut bytes = vec![i as u8 + 1];
            for v in chunk {
                bytes.extend_from_slice(&round_u16(v * 1000.0).to_be_bytes());
            }
            reply(0x95, data(&bytes))
        })
        .collect()
}

fn temperatures(r: &PackReading) -> Vec<Vec<u8>> {
    r.temperatures_c
        .0
        .chunks(7)
        .enumerate()
        .map(|(i, chunk)| {
            let mut bytes = vec![i as u8 + 1];
            bytes.extend(chunk.iter().map(|c| temperature_byte(*c)));
            reply(0x96, data(&bytes))
        })
        .collect()
}

fn balancing(r: &PackReading) -> Vec<u8> {
    reply(0x97, u64::from(r.balancing.0).to_le_bytes())
}

/// `98`: each alarm as its warning and protection pair.
fn failures(r: &PackReading) -> Vec<u8> {
    let mut bits = [0u8; 8];
    let pairs = [
        (AlarmFlags::CELL_OVER_VOLTAGE, 0, 0b0000_0011),
        (AlarmFlags::CELL_UNDER_VOLTAGE, 0, 0b0000_1100),
        (AlarmFlags::PACK_OVER_VOLTAGE, 0, 0b0011_0000),
        (AlarmFlags::PACK_UNDER_VOLTAGE, 0, 0b1100_0000),
        // Too hot to charge and to discharge; too cold to charge.
        (AlarmFlags::OVER_TEMPERATURE, 1, 0b0011_0011),
        (AlarmFlags::UNDER_TEMPERATURE, 1, 0b0000_1100),
        (AlarmFlags::CHARGE_OVER_CURRENT, 2, 0b0000_0011),
        (AlarmFlags::DISCHARGE_OVER_CURRENT, 2, 0b0000_1100),
        (AlarmFlags::CELL_IMBALANCE, 3, 0b0000_0011),
        (AlarmFlags::SHORT_CIRCUIT, 6, 0b0000_0100),
        (AlarmFlags::BMS_FAULT, 5, 0b0000_0001),
    ];
    for (flag, byte, mask) in pairs {
        if r.alarms.contains(flag) {
            bits[byte] |= mask;
        }
    }
    reply(0x98, bits)
}

impl FramedDevice for DalyDevice {
    fn scan_request(buf: &[u8]) -> RequestScan {
        match buf.first() {
            None => RequestScan::NeedMore,
            Some(0xA5) if buf.len() >= FRAME => RequestScan::Frame(FRAME),
            Some(0xA5) => RequestScan::NeedMore,
            Some(_) => RequestScan::Junk(buf.iter().position(|b| *b == 0xA5).unwrap_or(buf.len())),
        }
    }

    fn address(request: &[u8]) -> Result<Option<u8>, BadRequest> {
        if request.len() != FRAME || request[0] != 0xA5 || request[3] != 0x08 {
            return Err(BadRequest::Malformed);
        }
        let sum: u32 = request[..FRAME - 1].iter().map(|b| u32::from(*b)).sum();
        if (sum & 0xFF) as u8 != request[FRAME - 1] {
            return Err(BadRequest::Checksum);
        }
        match request[1] {
            0x40 | 0x80 => Ok(None),
            _ => Err(BadRequest::Malformed),
        }
    }

    fn answer(unit: &FramedUnit, request: &[u8]) -> Vec<Vec<u8>> {
        let Some(&id) = request.get(2) else {
            return Vec::new();
        };
        if !(0x90..=0x98).contains(&id) {
            return Vec::new();
        }
        let r = unit.pack.advance_to(tokio::time::Instant::now().into_std());
        match id {
            0x90 => pack_status(&r),
            0x91 => vec![extremes(&r)[0].clone()],
            0x92 => vec![extremes(&r)[1].clone()],
            0x93 => vec![switches(&r)],
            0x94 => vec![system_status(&r)],
            0x95 => cell_voltages(&r),
            0x96 => temperatures(&r),
            0x97 => vec![balancing(&r)],
            _ => vec![failures(&r)],
        }
    }

    fn corrupt(frame: &mut [u8]) {
        if let Some(last) = frame.last_mut() {
            *last ^= 0x5A;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Faults, SimPack, SimPackConfig};

    fn unit() -> FramedUnit {
        FramedUnit::new(0, SimPack::new(&SimPackConfig::default()), 5)
    }

    /// `A5 40 90 08`, eight zeros, and 0x7D (0xA5 + 0x40 + 0x90 + 0x08 =
    /// 0x17D), written out by hand.
    const STATUS_REQUEST: [u8; 13] = [0xA5, 0x40, 0x90, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0x7D];

    #[test]
    fn requests_are_delimited_and_checked() {
        assert_eq!(
            DalyDevice::scan_request(&[1, 2, 0xA5]),
            RequestScan::Junk(2)
        );
        assert_eq!(
            DalyDevice::scan_request(&STATUS_REQUEST[..5]),
            RequestScan::NeedMore
        );
        assert_eq!(
            DalyDevice::scan_request(&STATUS_REQUEST),
            RequestScan::Frame(13)
        );
        assert_eq!(DalyDevice::address(&STATUS_REQUEST), Ok(None));
        let mut alternate = STATUS_REQUEST;
        alternate[1] = 0x80;
        alternate[12] = 0xBD;
        assert_eq!(DalyDevice::address(&alternate), Ok(None));
        let mut bad = STATUS_REQUEST;
        bad[12] = 0x7E;
        assert_eq!(DalyDevice::address(&bad), Err(BadRequest::Checksum));
    }

    #[test]
    fn a_request_is_answered_from_the_pack() {
        let u = unit();
        let frames = DalyDevice::answer(&u, &STATUS_REQUEST);
        let [frame] = frames.as_slice() else {
            panic!("one frame")
        };
        assert_eq!(&frame[..4], &[0xA5, 0x01, 0x90, 0x08]);
        let r = u.pack.reading();
        let soc = u16::from_be_bytes([frame[10], frame[11]]);
        assert_eq!(soc, round_u16(r.soc_pct * 10.0));
        let sum: u32 = frame[..12].iter().map(|b| u32::from(*b)).sum();
        assert_eq!(frame[12], (sum & 0xFF) as u8);
        // 16 cells in 6 frames numbered from 1; 4 sensors in one.
        let mut cells = STATUS_REQUEST;
        cells[2] = 0x95;
        cells[12] = 0x82;
        let frames = DalyDevice::answer(&u, &cells);
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[5][4], 6);
        // Unknown ids: silence.
        let mut unknown = STATUS_REQUEST;
        unknown[2] = 0x50;
        assert!(DalyDevice::answer(&u, &unknown).is_empty());
    }

    #[test]
    fn alarms_go_out_as_warning_and_protection() {
        let u = unit();
        u.pack.set_faults(Faults {
            over_temperature: true,
            ..Faults::default()
        });
        let r = u.pack.advance(900.0);
        let frame = failures(&r);
        assert_eq!(frame[5], 0b0011_0011);
        let mut corrupt = frame.clone();
        DalyDevice::corrupt(&mut corrupt);
        assert_ne!(corrupt[12], frame[12]);
    }
}
