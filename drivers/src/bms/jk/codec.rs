//! The JK "NW" frames as bytes: request encoders, the reply [`Framing`],
//! the read-all reply as typed values. Pure; every length is checked
//! before use, and nothing allocates more than a frame's own bytes (see
//! the module above for the layouts).

use packgate_protocol::{AlarmFlags, MAX_CELLS};

use crate::bms::switch::MosSwitch;
use crate::bms::{FrameError, FrameStatus, Framing};

/// First byte of every frame (`N`).
pub const START: u8 = 0x4E;
/// Second byte of every frame (`W`).
pub const START_2: u8 = 0x57;
/// End byte, before the checksum.
pub const END: u8 = 0x68;
/// Command: write one value.
pub const CMD_WRITE: u8 = 0x02;
/// Command: read all values.
pub const CMD_READ_ALL: u8 = 0x06;
/// Frame source: the BMS.
pub const SOURCE_BMS: u8 = 0x00;
/// Frame source: a PC (what this driver is).
pub const SOURCE_PC: u8 = 0x03;
/// Transport type: a request.
pub const TRANSPORT_REQUEST: u8 = 0x00;
/// Transport type: a reply.
pub const TRANSPORT_REPLY: u8 = 0x01;
/// Transport type: data the BMS uploads unasked.
pub const TRANSPORT_UPLOAD: u8 = 0x02;
/// Bytes before the information field.
pub const HEADER_LEN: usize = 11;
/// Bytes after it: record number, end byte, checksum.
pub const TRAILER_LEN: usize = 9;
/// Shortest frame: no information at all.
pub const MIN_FRAME_LEN: usize = HEADER_LEN + TRAILER_LEN;
/// Longest frame accepted: a read-all of 32 cells is under 400 bytes.
pub const MAX_FRAME_LEN: usize = 1024;
/// Id of the charge MOS switch.
pub const ID_CHARGE_SWITCH: u8 = 0xAB;
/// Id of the discharge MOS switch.
pub const ID_DISCHARGE_SWITCH: u8 = 0xAC;
/// Highest cell voltage a lithium cell can read, mV.
pub const MAX_CELL_MV: u16 = 5_000;
/// The ids a read-all reply must carry.
pub const REQUIRED_IDS: [u8; 5] = [0x79, 0x83, 0x84, 0x85, 0x8C];

/// The JK checksum of `bytes` (start to end byte): their sum in the low
/// 16 bits, the high 16 bits 0.
pub fn checksum(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |acc, b| acc.wrapping_add(u32::from(*b)))
        & 0xFFFF
}

/// A frame from the PC to terminal `terminal` with `info` (at most a few
/// bytes: the callers' own requests).
fn request(terminal: u32, command: u8, info: &[u8]) -> Vec<u8> {
    let len = (MIN_FRAME_LEN - 2 + info.len()) as u16;
    let mut frame = Vec::with_capacity(MIN_FRAME_LEN + info.len());
    frame.extend_from_slice(&[START, START_2]);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&terminal.to_be_bytes());
    frame.extend_from_slice(&[command, SOURCE_PC, TRANSPORT_REQUEST]);
    frame.extend_from_slice(info);
    frame.extend_from_slice(&[0, 0, 0, 0, END]);
    let sum = checksum(&frame);
    frame.extend_from_slice(&sum.to_be_bytes());
    frame
}

/// The read-all request to `terminal` (information `00`).
pub fn read_all_request(terminal: u32) -> Vec<u8> {
    request(terminal, CMD_READ_ALL, &[0x00])
}

/// The id of a MOS switch.
pub fn switch_id(switch: MosSwitch) -> u8 {
    match switch {
        MosSwitch::Charge => ID_CHARGE_SWITCH,
        MosSwitch::Discharge => ID_DISCHARGE_SWITCH,
    }
}

/// The write turning `switch` on (the BMS may close the MOS) or off.
pub fn switch_write_request(terminal: u32, switch: MosSwitch, on: bool) -> Vec<u8> {
    request(terminal, CMD_WRITE, &[switch_id(switch), u8::from(on)])
}

/// Where the first frame in `buf` ends, or why it is no frame. `Ok(None)`:
/// too few bytes to tell.
fn check_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    match buf.first() {
        None => return Ok(None),
        Some(&START) => {}
        Some(b) => return Err(FrameError::Malformed(format!("start byte {b:#04x}"))),
    }
    match buf.get(1) {
        None => return Ok(None),
        Some(&START_2) => {}
        Some(b) => return Err(FrameError::Malformed(format!("second byte {b:#04x}"))),
    }
    let Some(len) = buf.get(2..4) else {
        return Ok(None);
    };
    let total = usize::from(u16::from_be_bytes([len[0], len[1]])) + 2;
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&total) {
        return Err(FrameError::Malformed(format!("frame length {total}")));
    }
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    if frame[total - 5] != END {
        return Err(FrameError::Malformed(format!(
            "byte {:#04x} where the end byte {END:#04x} belongs",
            frame[total - 5]
        )));
    }
    let computed = checksum(&frame[..total - 4]);
    let tail = &frame[total - 4..];
    let received = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if computed != received {
        return Err(FrameError::Checksum { computed, received });
    }
    Ok(Some(total))
}

/// How JK "NW" frames are delimited: by their length field.
#[derive(Debug, Clone, Copy, Default)]
pub struct JkFraming;

impl Framing for JkFraming {
    const START: u8 = START;
    const MAX_LEN: usize = MAX_FRAME_LEN;

    fn frame_len(buf: &[u8]) -> FrameStatus {
        check_frame(buf).into()
    }
}

/// One frame taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NwFrame<'a> {
    /// Terminal number.
    pub terminal: u32,
    /// Command word.
    pub command: u8,
    /// Frame source.
    pub source: u8,
    /// Transport type.
    pub transport: u8,
    /// The information field.
    pub info: &'a [u8],
    /// Record number.
    pub record: u32,
}

/// Takes one whole frame apart, checking its start, length, end and
/// checksum.
pub fn parse_frame(frame: &[u8]) -> Result<NwFrame<'_>, FrameError> {
    match check_frame(frame)? {
        None => Err(FrameError::Short {
            got: frame.len(),
            expected: frame.get(2..4).map_or(MIN_FRAME_LEN, |len| {
                usize::from(u16::from_be_bytes([len[0], len[1]])) + 2
            }),
        }),
        Some(len) if len != frame.len() => Err(FrameError::Malformed(format!(
            "{} bytes after the frame's end",
            frame.len() - len
        ))),
        Some(len) => {
            let be32 = |at: usize| {
                u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
            };
            Ok(NwFrame {
                terminal: be32(4),
                command: frame[8],
                source: frame[9],
                transport: frame[10],
                info: &frame[HEADER_LEN..len - TRAILER_LEN],
                record: be32(len - TRAILER_LEN),
            })
        }
    }
}

/// The one frame of a one-frame answer.
pub fn single_frame(frames: &[Vec<u8>]) -> Result<&[u8], FrameError> {
    match frames {
        [frame] => Ok(frame),
        _ => Err(FrameError::Malformed(format!(
            "{} frames where one was awaited",
            frames.len()
        ))),
    }
}

/// Checks that a write's reply acknowledges `id`.
pub fn decode_write_ack(frame: &[u8], id: u8) -> Result<(), FrameError> {
    let frame = parse_frame(frame)?;
    if frame.command != CMD_WRITE || frame.transport != TRANSPORT_REPLY {
        return Err(FrameError::Unexpected(format!(
            "command {:#04x} transport {:#04x}, awaited a write's reply",
            frame.command, frame.transport
        )));
    }
    match frame.info.first() {
        Some(&written) if written == id => Ok(()),
        other => Err(FrameError::Unexpected(format!(
            "write reply for id {other:02x?}, awaited {id:#04x}"
        ))),
    }
}

/// The `8B` warning bits (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct JkWarnings(pub u16);

impl JkWarnings {
    /// Each alarm bit with the packgate flag it maps onto; bits 0, 14 and
    /// 15 map onto none.
    pub const MAPPING: &'static [(u16, AlarmFlags)] = &[
        (1 << 1, AlarmFlags::OVER_TEMPERATURE),
        (1 << 2, AlarmFlags::PACK_OVER_VOLTAGE),
        (1 << 3, AlarmFlags::PACK_UNDER_VOLTAGE),
        (1 << 4, AlarmFlags::OVER_TEMPERATURE),
        (1 << 5, AlarmFlags::CHARGE_OVER_CURRENT),
        (1 << 6, AlarmFlags::DISCHARGE_OVER_CURRENT),
        (1 << 7, AlarmFlags::CELL_IMBALANCE),
        (1 << 8, AlarmFlags::OVER_TEMPERATURE),
        (1 << 9, AlarmFlags::UNDER_TEMPERATURE),
        (1 << 10, AlarmFlags::CELL_OVER_VOLTAGE),
        (1 << 11, AlarmFlags::CELL_UNDER_VOLTAGE),
        (1 << 12, AlarmFlags::BMS_FAULT),
        (1 << 13, AlarmFlags::BMS_FAULT),
    ];
    /// Bit 0: low capacity, a warning only.
    pub const LOW_CAPACITY: u16 = 1 << 0;

    /// The packgate flags of the set alarm bits.
    pub fn alarm_flags(self) -> AlarmFlags {
        Self::MAPPING
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(*flag))
    }
}

/// The `8C` status bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct JkStatus(pub u16);

impl JkStatus {
    /// Bit 0: the charge MOS is on.
    pub fn charge_mos_on(self) -> bool {
        self.0 & 1 != 0
    }

    /// Bit 1: the discharge MOS is on.
    pub fn discharge_mos_on(self) -> bool {
        self.0 & 2 != 0
    }

    /// Bit 2: the balancer is on.
    pub fn balancer_on(self) -> bool {
        self.0 & 4 != 0
    }

    /// Bit 3: the battery is connected (the document: "1 is normal, 0 is
    /// disconnected"; packs read 0 here while working, so nothing is
    /// concluded from it).
    pub fn battery_connected(self) -> bool {
        self.0 & 8 != 0
    }
}

/// Which form the `84` current came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentEncoding {
    /// `C0` = 1: bit 15 charging, low 15 bits 10 mA.
    SignMagnitude,
    /// No `C0`, or `C0` = 0: `(10000 - raw) × 10 mA`.
    Offset,
}

/// The values of a read-all reply, in the BMS's own units; `None` for an
/// id the frame did not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAll {
    /// Cell voltages, mV, cell 1 first (`79`).
    pub cell_voltages_mv: Vec<u16>,
    /// MOS temperature, °C (`80`).
    pub mos_temperature_c: Option<i16>,
    /// Sensor 1, the battery box, °C (`81`).
    pub sensor_1_temperature_c: Option<i16>,
    /// Sensor 2, the battery, °C (`82`).
    pub sensor_2_temperature_c: Option<i16>,
    /// Pack voltage, 10 mV (`83`).
    pub pack_voltage_10mv: u16,
    /// Current, 10 mA, positive while charging (`84`, decoded).
    pub current_10ma: i32,
    /// The form `84` came in.
    pub current_encoding: CurrentEncoding,
    /// State of charge, percent, 0 to 100 (`85`).
    pub soc_pct: u8,
    /// Battery temperature sensors (`86`).
    pub temperature_sensor_count: Option<u8>,
    /// Cycles (`87`).
    pub cycles: Option<u16>,
    /// Total cycle capacity, Ah (`89`).
    pub cycle_capacity_ah: Option<u32>,
    /// Cell count (`8A`).
    pub cell_count: Option<u16>,
    /// Warnings (`8B`; 0 when absent).
    pub warnings: JkWarnings,
    /// Status (`8C`).
    pub status: JkStatus,
    /// Charge MOS switch setting (`AB`).
    pub charge_switch_on: Option<bool>,
    /// Discharge MOS switch setting (`AC`).
    pub discharge_switch_on: Option<bool>,
    /// Device id code (`B4`), when printable.
    pub device_id: Option<String>,
    /// Software version (`B7`), when printable.
    pub software_version: Option<String>,
    /// Factory id (`BA`), when printable.
    pub factory_id: Option<String>,
    /// Protocol version (`C0`).
    pub protocol_version: Option<u8>,
    /// The id of unknown length that ended the parse, if one did.
    pub stopped_at: Option<u8>,
}

impl ReadAll {
    /// The pack's serial number: the factory id, else the device id code.
    pub fn serial_number(&self) -> Option<&str> {
        self.factory_id.as_deref().or(self.device_id.as_deref())
    }
}

#[path = "values.rs"]
mod values;

pub use values::{decode_read_all, decode_read_all_info, temperature_c, value_len};
