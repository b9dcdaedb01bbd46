//! The JBD frames as bytes: request encoders, the reply [`Framing`],
//! typed replies. Pure; every length is checked before use and nothing
//! allocates more than a frame's own bytes (see the module above for the
//! layouts).

use packgate_protocol::{AlarmFlags, MAX_CELLS, MAX_TEMPERATURE_SENSORS};

use crate::bms::{FrameError, FrameStatus, Framing};
use crate::DeviceException;

/// First byte of every frame.
pub const START: u8 = 0xDD;
/// Last byte of every frame.
pub const END: u8 = 0x77;
/// Request operation: read a register.
pub const OP_READ: u8 = 0xA5;
/// Request operation: write a register.
pub const OP_WRITE: u8 = 0x5A;
/// Register: basic information and status.
pub const REG_BASIC_INFO: u8 = 0x03;
/// Register: cell voltages.
pub const REG_CELL_VOLTAGES: u8 = 0x04;
/// Register: hardware version (the model name).
pub const REG_HARDWARE_VERSION: u8 = 0x05;
/// Register: MOS control (write only).
pub const REG_MOS_CONTROL: u8 = 0xE1;
/// Reply status of a request served.
pub const STATUS_OK: u8 = 0x00;
/// Bytes of a frame around its data: start, register, status, length;
/// checksum (2) and end.
pub const OVERHEAD: usize = 7;
/// Longest frame: 255 data bytes.
pub const MAX_FRAME_LEN: usize = OVERHEAD + 255;
/// Offset of 0.1 K temperatures: 0 °C is 2731.
pub const KELVIN_OFFSET_DK: i32 = 2731;
/// Highest cell voltage a lithium cell can read, mV: more is a broken
/// reading (0xFFFF is what an unread channel gives).
pub const MAX_CELL_MV: u16 = 5_000;
/// Range of a plausible NTC reading, °C; outside it the sensor is open or
/// shorted and its number would be a lie.
pub const NTC_RANGE_C: (f32, f32) = (-60.0, 150.0);
/// Bytes of `0x03` before the NTC temperatures.
pub const BASIC_INFO_FIXED_LEN: usize = 23;
/// Longest model name the V4 document allows.
pub const MAX_MODEL_LEN: usize = 31;

/// The JBD checksum of `bytes`: `0x10000` minus their sum, in 16 bits.
pub fn checksum(bytes: &[u8]) -> u16 {
    let sum = bytes
        .iter()
        .fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)));
    0u16.wrapping_sub(sum)
}

/// The request reading `register` (`DD A5 reg 00 cs cs 77`).
pub fn read_request(register: u8) -> [u8; 7] {
    let [hi, lo] = checksum(&[register, 0]).to_be_bytes();
    [START, OP_READ, register, 0, hi, lo, END]
}

/// What an `0xE1` write asks of the two MOSs: `true` releases a MOS to
/// the BMS's own protection, `false` holds it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MosControl {
    /// The charge MOS may close.
    pub charge_on: bool,
    /// The discharge MOS may close.
    pub discharge_on: bool,
}

impl MosControl {
    /// The `XX` byte: bit 0 set holds the charge MOS open, bit 1 the
    /// discharge MOS.
    pub fn control_byte(self) -> u8 {
        u8::from(!self.charge_on) | u8::from(!self.discharge_on) << 1
    }
}

/// The request writing `control` to register `0xE1`
/// (`DD 5A E1 02 00 XX cs cs 77`).
pub fn mos_control_request(control: MosControl) -> [u8; 9] {
    let xx = control.control_byte();
    let [hi, lo] = checksum(&[REG_MOS_CONTROL, 2, 0, xx]).to_be_bytes();
    [START, OP_WRITE, REG_MOS_CONTROL, 2, 0, xx, hi, lo, END]
}

/// Where the first frame in `buf` ends, or why it is no frame: the length
/// it announces, its end byte and its checksum. `Ok(None)`: too few bytes
/// to tell.
fn check_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    match buf.first() {
        None => return Ok(None),
        Some(&START) => {}
        Some(b) => return Err(FrameError::Malformed(format!("start byte {b:#04x}"))),
    }
    let Some(&n) = buf.get(3) else {
        return Ok(None);
    };
    let total = OVERHEAD + usize::from(n);
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    if frame[total - 1] != END {
        return Err(FrameError::Malformed(format!(
            "end byte {:#04x} where {END:#04x} belongs",
            frame[total - 1]
        )));
    }
    let computed = checksum(&frame[2..total - 3]);
    let received = u16::from_be_bytes([frame[total - 3], frame[total - 2]]);
    if computed != received {
        return Err(FrameError::Checksum {
            computed: u32::from(computed),
            received: u32::from(received),
        });
    }
    Ok(Some(total))
}

/// How JBD reply frames are delimited: by their length byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct JbdFraming;

impl Framing for JbdFraming {
    const START: u8 = START;
    const MAX_LEN: usize = MAX_FRAME_LEN;

    fn frame_len(buf: &[u8]) -> FrameStatus {
        check_frame(buf).into()
    }
}

/// One reply frame taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The register it answers.
    pub register: u8,
    /// `0` served, anything else refused.
    pub status: u8,
    /// The data bytes.
    pub data: &'a [u8],
}

/// Takes one whole reply frame apart, checking its start, length, end and
/// checksum.
pub fn parse_reply(frame: &[u8]) -> Result<Reply<'_>, FrameError> {
    match check_frame(frame)? {
        None => Err(FrameError::Short {
            got: frame.len(),
            expected: frame
                .get(3)
                .map_or(OVERHEAD, |n| OVERHEAD + usize::from(*n)),
        }),
        Some(len) if len != frame.len() => Err(FrameError::Malformed(format!(
            "{} bytes after the frame's end",
            frame.len() - len
        ))),
        Some(_) => Ok(Reply {
            register: frame[1],
            status: frame[2],
            data: &frame[4..frame.len() - 3],
        }),
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

/// The data of a reply to `register`: a refusal is the device's
/// exception, a reply to another register is unexpected.
pub fn expect_reply(
    frame: &[u8],
    register: u8,
) -> Result<Result<&[u8], DeviceException>, FrameError> {
    let reply = parse_reply(frame)?;
    if reply.register != register {
        return Err(FrameError::Unexpected(format!(
            "reply to register {:#04x}, awaited {register:#04x}",
            reply.register
        )));
    }
    if reply.status != STATUS_OK {
        return Ok(Err(DeviceException {
            code: reply.status,
            message: format!(
                "JBD BMS refused register {register:#04x} (status {:#04x})",
                reply.status
            ),
        }));
    }
    Ok(Ok(reply.data))
}

fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// The protection status word of `0x03` (bits in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct JbdProtection(pub u16);

impl JbdProtection {
    /// Bit 12: software (an `0xE1` write) holds a MOS open.
    pub const SOFTWARE_MOS_LOCK: u16 = 1 << 12;

    /// Each protection bit with the packgate flag it maps onto; bits 12 to
    /// 15 map onto none.
    pub const MAPPING: &'static [(u16, AlarmFlags)] = &[
        (1 << 0, AlarmFlags::CELL_OVER_VOLTAGE),
        (1 << 1, AlarmFlags::CELL_UNDER_VOLTAGE),
        (1 << 2, AlarmFlags::PACK_OVER_VOLTAGE),
        (1 << 3, AlarmFlags::PACK_UNDER_VOLTAGE),
        (1 << 4, AlarmFlags::OVER_TEMPERATURE),
        (1 << 5, AlarmFlags::UNDER_TEMPERATURE),
        (1 << 6, AlarmFlags::OVER_TEMPERATURE),
        (1 << 7, AlarmFlags::UNDER_TEMPERATURE),
        (1 << 8, AlarmFlags::CHARGE_OVER_CURRENT),
        (1 << 9, AlarmFlags::DISCHARGE_OVER_CURRENT),
        (1 << 10, AlarmFlags::SHORT_CIRCUIT),
        (1 << 11, AlarmFlags::BMS_FAULT),
    ];

    /// The packgate flags of the set bits.
    pub fn alarm_flags(self) -> AlarmFlags {
        Self::MAPPING
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(*flag))
    }

    /// Whether software holds a MOS open (bit 12).
    pub fn software_mos_lock(self) -> bool {
        self.0 & Self::SOFTWARE_MOS_LOCK != 0
    }
}

/// The production date as the BMS packs it into 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProductionDate(pub u16);

impl ProductionDate {
    /// The year (2000 to 2127).
    pub fn year(self) -> u16 {
        2000 + (self.0 >> 9)
    }

    /// The month, 1 to 12 on a set date.
    pub fn month(self) -> u8 {
        ((self.0 >> 5) & 0x0F) as u8
    }

    /// The day of the month, 1 to 31 on a set date.
    pub fn day(self) -> u8 {
        (self.0 & 0x1F) as u8
    }
}

/// The `0x03` basic information, in the BMS's own units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicInfo {
    /// Pack voltage, 10 mV.
    pub pack_voltage_10mv: u16,
    /// Current, 10 mA, positive while charging.
    pub current_10ma: i16,
    /// Remaining capacity, 10 mAh.
    pub remaining_capacity_10mah: u16,
    /// Nominal capacity, 10 mAh.
    pub nominal_capacity_10mah: u16,
    /// Full cycles counted.
    pub cycles: u16,
    /// Production date.
    pub production_date: ProductionDate,
    /// Cells being balanced, bit 0 = cell 1 (both words).
    pub balancing_cells: u32,
    /// Protection status.
    pub protection: JbdProtection,
    /// Software version, BCD (`0x10` = 1.0).
    pub software_version: u8,
    /// Relative state of charge, percent (0 to 100).
    pub soc_pct: u8,
    /// The charge MOS is closed.
    pub charge_mos_on: bool,
    /// The discharge MOS is closed.
    pub discharge_mos_on: bool,
    /// Series cells (at most [`MAX_CELLS`]).
    pub cell_count: u8,
    /// NTC temperatures, 0.1 K (at most [`MAX_TEMPERATURE_SENSORS`], each
    /// within [`NTC_RANGE_C`]).
    pub ntc_temperatures_dk: Vec<u16>,
}

impl BasicInfo {
    /// The NTC temperatures in °C.
    pub fn temperatures_c(&self) -> impl Iterator<Item = f32> + '_ {
        self.ntc_temperatures_dk.iter().map(|&dk| dk_to_c(dk))
    }
}

/// 0.1 K to °C, by the document's 2731 offset.
pub fn dk_to_c(dk: u16) -> f32 {
    (i32::from(dk) - KELVIN_OFFSET_DK) as f32 / 10.0
}

/// Decodes the data of a `0x03` reply, refusing counts past what a
/// sample carries and values no pack can read.
pub fn decode_basic_info(data: &[u8]) -> Result<BasicInfo, FrameError> {
    if data.len() < BASIC_INFO_FIXED_LEN {
        return Err(FrameError::Malformed(format!(
            "basic information of {} bytes, needs {BASIC_INFO_FIXED_LEN}",
            data.len()
        )));
    }
    let cell_count = data[21];
    if usize::from(cell_count) > MAX_CELLS {
        return Err(FrameError::Malformed(format!("{cell_count} cells")));
    }
    let ntc_count = usize::from(data[22]);
    if ntc_count > MAX_TEMPERATURE_SENSORS {
        return Err(FrameError::Malformed(format!("{ntc_count} NTCs")));
    }
    let needed = BASIC_INFO_FIXED_LEN + 2 * ntc_count;
    if data.len() < needed {
        return Err(FrameError::Malformed(format!(
            "basic information of {} bytes, {ntc_count} NTCs need {needed}",
            data.len()
        )));
    }
    let soc_pct = data[19];
    if soc_pct > 100 {
        return Err(FrameError::Malformed(format!(
            "state of charge {soc_pct} %"
        )));
    }
    let ntc_temperatures_dk: Vec<u16> = (0..ntc_count)
        .map(|i| be16(data, BASIC_INFO_FIXED_LEN + 2 * i))
        .collect();
    for (i, &dk) in ntc_temperatures_dk.iter().enumerate() {
        let c = dk_to_c(dk);
        if !(NTC_RANGE_C.0..=NTC_RANGE_C.1).contains(&c) {
            return Err(FrameError::Malformed(format!(
                "NTC {} reads {c} °C (raw {dk:#06x})",
                i + 1
            )));
        }
    }
    let fet = data[20];
    Ok(BasicInfo {
        pack_voltage_10mv: be16(data, 0),
        current_10ma: be16(data, 2) as i16,
        remaining_capacity_10mah: be16(data, 4),
        nominal_capacity_10mah: be16(data, 6),
        cycles: be16(data, 8),
        production_date: ProductionDate(be16(data, 10)),
        balancing_cells: u32::from(be16(data, 12)) | u32::from(be16(data, 14)) << 16,
        protection: JbdProtection(be16(data, 16)),
        software_version: data[18],
        soc_pct,
        charge_mos_on: fet & 0x01 != 0,
        discharge_mos_on: fet & 0x02 != 0,
        cell_count,
        ntc_temperatures_dk,
    })
}

/// The `0x04` cell voltages, mV, cell 1 first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CellVoltagesMv(pub Vec<u16>);

/// Decodes the data of a `0x04` reply: two bytes a cell, as many cells as
/// `0x03` counted, none above [`MAX_CELL_MV`].
pub fn decode_cell_voltages(data: &[u8], cell_count: u8) -> Result<CellVoltagesMv, FrameError> {
    if data.len() != 2 * usize::from(cell_count) {
        return Err(FrameError::Malformed(format!(
            "{} bytes of cell voltages for {cell_count} cells",
            data.len()
        )));
    }
    let cells: Vec<u16> = data
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    if let Some((i, mv)) = cells.iter().enumerate().find(|(_, mv)| **mv > MAX_CELL_MV) {
        return Err(FrameError::Malformed(format!(
            "cell {} reads {mv} mV",
            i + 1
        )));
    }
    Ok(CellVoltagesMv(cells))
}

/// Decodes the data of a `0x05` reply: the model name, printable ASCII,
/// trailing NULs and spaces dropped, and a leading length byte dropped
/// where the firmware sends one.
pub fn decode_hardware_version(data: &[u8]) -> Result<String, FrameError> {
    let text = match data.split_first() {
        Some((&n, rest)) if usize::from(n) == rest.len() && n < 0x20 => rest,
        _ => data,
    };
    let end = text
        .iter()
        .rposition(|b| *b != 0 && *b != b' ')
        .map_or(0, |i| i + 1);
    let text = &text[..end];
    if text.len() > MAX_MODEL_LEN || !text.iter().all(|b| (0x20..0x7F).contains(b)) {
        return Err(FrameError::Malformed(
            "hardware version is not a printable name of at most 31 characters".into(),
        ));
    }
    Ok(text.iter().map(|b| char::from(*b)).collect())
}
