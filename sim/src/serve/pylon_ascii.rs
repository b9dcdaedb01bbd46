//! The simulated pack as a Pylontech-style RS-485 ASCII BMS, from
//! Pylontech's "PYLON low voltage Protocol RS485" V3.3: `~`, then VER,
//! ADR, CID1, CID2/RTN, LENGTH (LCHKSUM and LENID), INFO, all as ASCII
//! hex, CHKSUM, carriage return. Several packs share a line, each at its
//! ADR.
//!
//! Three layouts of INFO, one per device type: [`PylonAsciiDevice`]
//! (Pylontech), [`SeplosV2Device`] (Seplos "BMS Communication Protocol"
//! V2.0) and [`PaceDevice`] (Pace "PACE-RS232-TY16S", VER `25`); the
//! Seplos and Pace layouts are built in
//! [`pylon_ascii_layouts`](super::pylon_ascii_layouts). Whatever VER a
//! request carries, each answers with its own.
//!
//! The Pylontech device answers `0x42` (analog values: one board
//! temperature, then the pack's sensors; capacities in the 24-bit fields
//! of a 100 Ah pack), `0x44` (alarm info: the pack's alarms as cell and
//! temperature states and status 1, its switches in status 2) and `0x93`
//! (serial number); the Seplos and Pace devices `0x42` and `0x44`. Each
//! answers RTN `04` for any other command, `90` (Pylontech) or `05`
//! (Seplos, Pace) when the command value is not the pack's ADR, and the
//! code of an injected [`Faults::exception`](crate::Faults::exception)
//! for every request. A request with a bad CHKSUM gets no answer, as on
//! a real line.

use packgate_protocol::{AlarmFlags, PackReading};

use super::framed::{BadRequest, FramedDevice, FramedUnit, RequestScan};
use super::pylon_ascii_layouts as layouts;

/// The capacity every simulated pack reports, mAh: 100 Ah, so the 24-bit
/// capacity fields (four user-defined items) carry it.
pub const NOMINAL_CAPACITY_MAH: u32 = 100_000;

/// RTN for a command the BMS does not know.
const RTN_CID2_INVALID: u8 = 0x04;
/// RTN for a request whose CID1 is not battery data.
const RTN_FORMAT_ERROR: u8 = 0x05;
/// RTN for a command value that is not the pack's address.
const RTN_ADDRESS_ERROR: u8 = 0x90;

/// The Pylontech-style ASCII BMS in Pylontech's layout, for
/// [`serve_framed`](super::framed::serve_framed).
#[derive(Debug, Clone, Copy)]
pub struct PylonAsciiDevice;

/// The Pylontech-style ASCII BMS in the Seplos V2 layout.
#[derive(Debug, Clone, Copy)]
pub struct SeplosV2Device;

/// The Pylontech-style ASCII BMS in the Pace layout (VER `25`).
#[derive(Debug, Clone, Copy)]
pub struct PaceDevice;

/// Which INFO layout a simulated Pylontech-style line answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PylonAsciiSimLayout {
    /// Pylontech's (`pylontech`).
    #[default]
    Pylontech,
    /// Seplos V2's (`seplos-v2`).
    SeplosV2,
    /// Pace's (`pace`).
    Pace,
}

impl PylonAsciiSimLayout {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PylonAsciiSimLayout::Pylontech => "pylontech",
            PylonAsciiSimLayout::SeplosV2 => "seplos-v2",
            PylonAsciiSimLayout::Pace => "pace",
        }
    }
}

impl std::fmt::Display for PylonAsciiSimLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A layout name that is none of `pylontech`, `seplos-v2`, `pace`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layout {0:?}: use pylontech, seplos-v2 or pace")]
pub struct UnknownSimLayout(pub String);

impl std::str::FromStr for PylonAsciiSimLayout {
    type Err = UnknownSimLayout;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            PylonAsciiSimLayout::Pylontech,
            PylonAsciiSimLayout::SeplosV2,
            PylonAsciiSimLayout::Pace,
        ]
        .into_iter()
        .find(|l| l.name() == s)
        .ok_or_else(|| UnknownSimLayout(s.to_owned()))
    }
}

/// CHKSUM of the characters between `~` and the checksum.
fn chksum(chars: &[u8]) -> u16 {
    let sum: u32 = chars.iter().map(|c| u32::from(*c)).sum();
    (0x1_0000 - (sum & 0xFFFF)) as u16
}

/// LCHKSUM of a LENID.
fn lchksum(lenid: usize) -> usize {
    let nibbles = (lenid & 0xF) + ((lenid >> 4) & 0xF) + ((lenid >> 8) & 0xF);
    (16 - nibbles % 16) % 16
}

/// A reply frame from `address` with return code `rtn`, VER `20`.
#[cfg(test)]
fn reply(address: u8, rtn: u8, info: &[u8]) -> Vec<u8> {
    reply_with_version(0x20, address, rtn, info)
}

/// A reply frame with VER `version` from `address` with return code
/// `rtn`.
pub(super) fn reply_with_version(version: u8, address: u8, rtn: u8, info: &[u8]) -> Vec<u8> {
    let lenid = (2 * info.len()).min(0xFFF);
    let mut body = format!(
        "{version:02X}{address:02X}46{rtn:02X}{:04X}",
        (lchksum(lenid) << 12) | lenid
    );
    for byte in info {
        body.push_str(&format!("{byte:02X}"));
    }
    let check = chksum(body.as_bytes());
    format!("~{body}{check:04X}\r").into_bytes()
}

/// A request's ADR, CID1, CID2 and INFO.
pub(super) struct Request {
    address: u8,
    cid1: u8,
    cid2: u8,
    info: Vec<u8>,
}

fn hex_byte(pair: &str) -> Result<u8, BadRequest> {
    u8::from_str_radix(pair, 16).map_err(|_| BadRequest::Malformed)
}

/// Parses one request frame, checking CHKSUM, LCHKSUM and LENID.
pub(super) fn parse(frame: &[u8]) -> Result<Request, BadRequest> {
    let text = std::str::from_utf8(frame).map_err(|_| BadRequest::Malformed)?;
    let inner = text
        .strip_prefix('~')
        .and_then(|t| t.strip_suffix('\r'))
        .ok_or(BadRequest::Malformed)?;
    if inner.len() < 16 || !inner.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(BadRequest::Malformed);
    }
    let (body, check) = inner.split_at(inner.len() - 4);
    let received = u16::from_str_radix(check, 16).map_err(|_| BadRequest::Malformed)?;
    if chksum(body.as_bytes()) != received {
        return Err(BadRequest::Checksum);
    }
    let length = usize::from_str_radix(&body[8..12], 16).map_err(|_| BadRequest::Malformed)?;
    let lenid = length & 0xFFF;
    let info = &body[12..];
    if length >> 12 != lchksum(lenid) || lenid != info.len() || lenid % 2 != 0 {
        return Err(BadRequest::Malformed);
    }
    Ok(Request {
        address: hex_byte(&body[2..4])?,
        cid1: hex_byte(&body[4..6])?,
        cid2: hex_byte(&body[6..8])?,
        info: (0..info.len() / 2)
            .map(|i| hex_byte(&info[2 * i..2 * i + 2]))
            .collect::<Result<_, _>>()?,
    })
}

pub(super) fn clamp_u16(value: f32) -> u16 {
    value.round().clamp(0.0, f32::from(u16::MAX)) as u16
}

pub(super) fn clamp_i16(value: f32) -> i16 {
    value
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// A temperature as sent: 0.1 K above the document's zero (2731).
fn temperature_dk(c: f32) -> i16 {
    clamp_i16(c * 10.0 + 2731.0)
}

/// The `0x42` INFO for `reading` at `address`.
fn analog_info(address: u8, r: &PackReading) -> Vec<u8> {
    let cells = &r.cell_voltages_v.0;
    let sensors = &r.temperatures_c.0;
    let mut info = vec![0x00, address, cells.len() as u8];
    for v in cells {
        info.extend_from_slice(&clamp_u16(v * 1000.0).to_be_bytes());
    }
    // The BMS board sits at the sensors' mean.
    let board_c = sensors.iter().sum::<f32>() / sensors.len().max(1) as f32;
    info.push(sensors.len() as u8 + 1);
    for c in std::iter::once(&board_c).chain(sensors) {
        info.extend_from_slice(&temperature_dk(*c).to_be_bytes());
    }
    info.extend_from_slice(&clamp_i16(r.current_a * 10.0).to_be_bytes());
    info.extend_from_slice(&clamp_u16(r.pack_voltage_v * 1000.0).to_be_bytes());
    let remaining_mah =
        (f64::from(r.soc_pct) / 100.0 * f64::from(NOMINAL_CAPACITY_MAH)).round() as u32;
    info.extend_from_slice(&[0xFF, 0xFF, 4, 0xFF, 0xFF, 0, 0]);
    info.extend_from_slice(&remaining_mah.to_be_bytes()[1..]);
    info.extend_from_slice(&NOMINAL_CAPACITY_MAH.to_be_bytes()[1..]);
    info
}

/// Index of the largest (`highest`) or smallest value.
pub(super) fn extreme(values: &[f32], highest: bool) -> Option<usize> {
    let order = |a: &(usize, &f32), b: &(usize, &f32)| a.1.total_cmp(b.1);
    let found = if highest {
        values.iter().enumerate().max_by(order)
    } else {
        values.iter().enumerate().min_by(order)
    };
    found.map(|(i, _)| i)
}

/// The `0x44` INFO for `reading`: a cell voltage alarm on the extreme
/// cell, a temperature alarm on the extreme sensor (the board normal),
/// status 1 for cell under voltage and over temperature, status 2 the
/// switches, status 3 the current's direction.
fn alarm_info(address: u8, r: &PackReading) -> Vec<u8> {
    let alarms = r.alarms;
    let cells = &r.cell_voltages_v.0;
    let sensors = &r.temperatures_c.0;
    let mut cell_states = vec![0u8; cells.len()];
    let mut sensor_states = vec![0u8; sensors.len()];
    let mark = |states: &mut [u8], values: &[f32], flag, highest, code| {
        if alarms.contains(flag) {
            if let Some(i) = extreme(values, highest) {
                states[i] = code;
            }
        }
    };
    mark(
        &mut cell_states,
        cells,
        AlarmFlags::CELL_OVER_VOLTAGE,
        true,
        2,
    );
    mark(
        &mut cell_states,
        cells,
        AlarmFlags::CELL_UNDER_VOLTAGE,
        false,
        1,
    );
    mark(
        &mut sensor_states,
        sensors,
        AlarmFlags::OVER_TEMPERATURE,
        true,
        2,
    );
    mark(
        &mut sensor_states,
        sensors,
        AlarmFlags::UNDER_TEMPERATURE,
        false,
        1,
    );
    let mut status1 = 0u8;
    if alarms.contains(AlarmFlags::CELL_UNDER_VOLTAGE) {
        status1 |= 1 << 1;
    }
    if alarms.contains(AlarmFlags::OVER_TEMPERATURE) {
        status1 |= (1 << 6) | (1 << 5);
    }
    let status2 =
        (1 << 3) | (u8::from(r.charge_enabled) << 1) | (u8::from(r.discharge_enabled) << 2);
    let status3 = (u8::from(r.current_a > 0.1) << 7) | (u8::from(r.current_a < -0.1) << 6);
    let mut info = vec![0x00, address, cells.len() as u8];
    info.extend_from_slice(&cell_states);
    info.push(sensors.len() as u8 + 1);
    info.push(0);
    info.extend_from_slice(&sensor_states);
    info.extend_from_slice(&[0, 0, 0, status1, status2, status3, 0, 0]);
    info
}

/// The `0x93` INFO: the command value and the serial number, 16
/// characters, NUL padded.
fn serial_number_info(address: u8, serial_number: &str) -> Vec<u8> {
    let mut info = vec![address];
    info.extend(serial_number.bytes().chain(std::iter::repeat(0)).take(16));
    info
}

fn scan_request(buf: &[u8]) -> RequestScan {
    match buf.first() {
        None => RequestScan::NeedMore,
        Some(b'~') => match buf.iter().position(|b| *b == b'\r') {
            Some(end) => RequestScan::Frame(end + 1),
            None => RequestScan::NeedMore,
        },
        Some(_) => RequestScan::Junk(buf.iter().position(|b| *b == b'~').unwrap_or(buf.len())),
    }
}

/// The frames that answer `request` for `unit` in `layout`.
fn answer(layout: PylonAsciiSimLayout, unit: &FramedUnit, request: &[u8]) -> Vec<Vec<u8>> {
    let Ok(request) = parse(request) else {
        return Vec::new();
    };
    let address = unit.address;
    let version = match layout {
        PylonAsciiSimLayout::Pace => 0x25,
        PylonAsciiSimLayout::Pylontech | PylonAsciiSimLayout::SeplosV2 => 0x20,
    };
    let frame = |rtn: u8, info: &[u8]| vec![reply_with_version(version, address, rtn, info)];
    if let Some(code) = unit.pack.faults().exception {
        return frame(code, &[]);
    }
    if request.cid1 != 0x46 {
        return frame(RTN_FORMAT_ERROR, &[]);
    }
    let serial = layout == PylonAsciiSimLayout::Pylontech && request.cid2 == 0x93;
    if !(serial || matches!(request.cid2, 0x42 | 0x44)) {
        return frame(RTN_CID2_INVALID, &[]);
    }
    if request.info != [address] {
        let rtn = match layout {
            PylonAsciiSimLayout::Pylontech => RTN_ADDRESS_ERROR,
            PylonAsciiSimLayout::SeplosV2 | PylonAsciiSimLayout::Pace => RTN_FORMAT_ERROR,
        };
        return frame(rtn, &[]);
    }
    if serial {
        return frame(0, &serial_number_info(address, &unit.serial_number));
    }
    let reading = unit.pack.advance_to(tokio::time::Instant::now().into_std());
    let analog = request.cid2 == 0x42;
    let info = match (layout, analog) {
        (PylonAsciiSimLayout::Pylontech, true) => analog_info(address, &reading),
        (PylonAsciiSimLayout::Pylontech, false) => alarm_info(address, &reading),
        (PylonAsciiSimLayout::SeplosV2, true) => layouts::seplos_analog_info(address, &reading),
        (PylonAsciiSimLayout::SeplosV2, false) => layouts::seplos_alarm_info(address, &reading),
        (PylonAsciiSimLayout::Pace, true) => layouts::pace_analog_info(address, &reading),
        (PylonAsciiSimLayout::Pace, false) => layouts::pace_alarm_info(address, &reading),
    };
    frame(0, &info)
}

/// The [`FramedDevice`] of each layout's device type.
macro_rules! ascii_device {
    ($device:ty, $layout:expr) => {
        impl FramedDevice for $device {
            fn scan_request(buf: &[u8]) -> RequestScan {
                scan_request(buf)
            }

            fn address(request: &[u8]) -> Result<Option<u8>, BadRequest> {
                parse(request).map(|r| Some(r.address))
            }

            fn answer(unit: &FramedUnit, request: &[u8]) -> Vec<Vec<u8>> {
                answer($layout, unit, request)
            }

            fn corrupt(frame: &mut [u8]) {
                corrupt(frame)
            }
        }
    };
}

ascii_device!(PylonAsciiDevice, PylonAsciiSimLayout::Pylontech);
ascii_device!(SeplosV2Device, PylonAsciiSimLayout::SeplosV2);
ascii_device!(PaceDevice, PylonAsciiSimLayout::Pace);

/// The last CHKSUM digit changed, still a hex digit: a checksum error,
/// not a malformed frame.
fn corrupt(frame: &mut [u8]) {
    if let Some(digit) = frame.len().checked_sub(2).and_then(|i| frame.get_mut(i)) {
        *digit = if *digit == b'0' { b'1' } else { b'0' };
    }
}

#[cfg(test)]
#[path = "pylon_ascii_tests.rs"]
mod tests;
