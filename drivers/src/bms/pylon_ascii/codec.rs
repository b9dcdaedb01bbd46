//! The pure codec: request frames, the reply framing, return codes and
//! the typed INFO of the analog value (`0x42`), alarm (`0x44`) and serial
//! number (`0x93`) replies. No I/O.

use crate::bms::{FrameError, FrameStatus, Framing};
use crate::DeviceException;

/// Start of every frame (SOI, `~`).
pub const SOI: u8 = b'~';
/// End of every frame (EOI, carriage return).
pub const EOI: u8 = b'\r';
/// The protocol version packgate sends (VER `20`); a BMS ignores it.
pub const PROTOCOL_VERSION: u8 = 0x20;
/// CID1 of battery data, in every request and reply.
pub const CID1_BATTERY: u8 = 0x46;
/// CID2 "get analog value, fixed point".
pub const CID2_ANALOG_VALUE: u8 = 0x42;
/// CID2 "get alarm info".
pub const CID2_ALARM_INFO: u8 = 0x44;
/// CID2 "get manufacturer info".
pub const CID2_MANUFACTURER_INFO: u8 = 0x51;
/// CID2 "get module SN number".
pub const CID2_SERIAL_NUMBER: u8 = 0x93;
/// Most ASCII characters of INFO: LENID has 12 bits.
pub const MAX_INFO_CHARS: usize = 0x0FFF;
/// Characters of VER, ADR, CID1, CID2 and LENGTH.
const HEADER_CHARS: usize = 12;
/// Characters around INFO: SOI, the header, CHKSUM, EOI.
pub const FRAME_OVERHEAD: usize = 1 + HEADER_CHARS + 4 + 1;
/// Longest frame: LENID at its 12-bit maximum.
pub const MAX_FRAME_LEN: usize = FRAME_OVERHEAD + MAX_INFO_CHARS;
/// Characters of the module serial number in a `0x93` reply.
pub const SERIAL_NUMBER_LEN: usize = 16;
/// A cell reading above this, millivolts, is no cell (`0xFFFF` is the
/// usual "not measured"): an error, never a number.
pub const MAX_CELL_MV: u16 = 10_000;
/// Offset of the temperatures: 0.1 K above absolute zero as the document
/// counts it (°C = (raw − 2731) / 10).
pub const KELVIN_OFFSET_DK: i16 = 2731;
/// Temperatures a sensor of a pack can read, °C; outside is an error.
pub const PLAUSIBLE_TEMPERATURE_C: (f32, f32) = (-100.0, 250.0);

/// LCHKSUM: the three nibbles of LENID summed, modulo 16, inverted, plus
/// one (modulo 16); 0 for LENID 0.
pub fn length_checksum(lenid: u16) -> u8 {
    let lenid = lenid & 0x0FFF;
    let sum = (lenid & 0xF) + ((lenid >> 4) & 0xF) + (lenid >> 8);
    ((!sum).wrapping_add(1) & 0xF) as u8
}

/// The LENGTH field: LCHKSUM in the top nibble, LENID below.
pub fn length_field(lenid: u16) -> u16 {
    (u16::from(length_checksum(lenid)) << 12) | (lenid & 0x0FFF)
}

/// CHKSUM: the ASCII codes of `chars` (everything between SOI and
/// CHKSUM) summed modulo 65536, inverted, plus one.
pub fn frame_checksum(chars: &[u8]) -> u16 {
    let sum = chars
        .iter()
        .fold(0u16, |acc, c| acc.wrapping_add(u16::from(*c)));
    (!sum).wrapping_add(1)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex_u8(out: &mut Vec<u8>, byte: u8) {
    out.push(HEX_DIGITS[usize::from(byte >> 4)]);
    out.push(HEX_DIGITS[usize::from(byte & 0xF)]);
}

fn push_hex_u16(out: &mut Vec<u8>, value: u16) {
    let [hi, lo] = value.to_be_bytes();
    push_hex_u8(out, hi);
    push_hex_u8(out, lo);
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The value of the hex characters `chars` (at most four).
fn hex_field(chars: &[u8]) -> Option<u16> {
    chars.iter().try_fold(0u16, |acc, c| {
        hex_value(*c).map(|v| (acc << 4) | u16::from(v))
    })
}

/// A frame: `address`, CID1 battery data, `cid2` (a command, or a
/// reply's return code) and `info`; `None` if `info` is longer than
/// LENID can say.
pub fn encode_frame(address: u8, cid2: u8, info: &[u8]) -> Option<Vec<u8>> {
    let lenid = u16::try_from(2 * info.len())
        .ok()
        .filter(|n| usize::from(*n) <= MAX_INFO_CHARS)?;
    let mut frame = Vec::with_capacity(FRAME_OVERHEAD + usize::from(lenid));
    frame.push(SOI);
    for byte in [PROTOCOL_VERSION, address, CID1_BATTERY, cid2] {
        push_hex_u8(&mut frame, byte);
    }
    push_hex_u16(&mut frame, length_field(lenid));
    for byte in info {
        push_hex_u8(&mut frame, *byte);
    }
    let checksum = frame_checksum(&frame[1..]);
    push_hex_u16(&mut frame, checksum);
    frame.push(EOI);
    Some(frame)
}

/// A request frame to the pack at `address`: command `cid2` with an INFO
/// of one byte (the command value: the pack's address for `0x42`,
/// `0x44` and `0x93`) or none.
pub fn encode_request(address: u8, cid2: u8, info: Option<u8>) -> Vec<u8> {
    let info: &[u8] = match &info {
        Some(byte) => std::slice::from_ref(byte),
        None => &[],
    };
    encode_frame(address, cid2, info).unwrap_or_default()
}

/// "Get analog value" of the pack at `address`.
pub fn analog_value_request(address: u8) -> Vec<u8> {
    encode_request(address, CID2_ANALOG_VALUE, Some(address))
}

/// "Get alarm info" of the pack at `address`.
pub fn alarm_info_request(address: u8) -> Vec<u8> {
    encode_request(address, CID2_ALARM_INFO, Some(address))
}

/// "Get module SN number" of the pack at `address`.
pub fn serial_number_request(address: u8) -> Vec<u8> {
    encode_request(address, CID2_SERIAL_NUMBER, Some(address))
}

/// The reply framing: SOI, twelve header characters whose LENGTH gives
/// the INFO length, INFO, CHKSUM, EOI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PylonAsciiFraming;

/// Checks that `chars` are hex digits; `offset` is where they sit in the
/// frame, for the message.
fn check_hex(chars: &[u8], offset: usize) -> Result<(), FrameError> {
    match chars.iter().position(|c| hex_value(*c).is_none()) {
        None => Ok(()),
        Some(i) => Err(FrameError::Malformed(format!(
            "byte {:#04x} at {} is no hex digit",
            chars[i],
            offset + i
        ))),
    }
}

impl Framing for PylonAsciiFraming {
    const START: u8 = SOI;
    const MAX_LEN: usize = MAX_FRAME_LEN;

    fn frame_len(buf: &[u8]) -> FrameStatus {
        match frame_len(buf) {
            Ok(Some(len)) => FrameStatus::Complete(len),
            Ok(None) => FrameStatus::Incomplete,
            Err(e) => FrameStatus::Invalid(e),
        }
    }
}

/// The whole frame's length once its checksums are good; `None` while
/// more bytes are needed.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.first() != Some(&SOI) {
        return Err(FrameError::Malformed(
            "frame does not begin with SOI".into(),
        ));
    }
    let header_end = 1 + HEADER_CHARS;
    let Some(header) = buf.get(1..header_end) else {
        check_hex(&buf[1..], 1)?;
        return Ok(None);
    };
    check_hex(header, 1)?;
    let length = hex_field(&header[8..12]).unwrap_or(0);
    let lenid = length & 0x0FFF;
    let received = (length >> 12) as u8;
    let computed = length_checksum(lenid);
    if received != computed {
        return Err(FrameError::Checksum {
            computed: u32::from(computed),
            received: u32::from(received),
        });
    }
    let total = FRAME_OVERHEAD + usize::from(lenid);
    let Some(frame) = buf.get(..total) else {
        check_hex(&buf[header_end..], header_end)?;
        return Ok(None);
    };
    check_hex(&frame[header_end..total - 1], header_end)?;
    if frame[total - 1] != EOI {
        return Err(FrameError::Malformed(format!(
            "byte {:#04x} where EOI belongs, at {}",
            frame[total - 1],
            total - 1
        )));
    }
    let body = &frame[1..total - 5];
    let computed = frame_checksum(body);
    let received = hex_field(&frame[total - 5..total - 1]).unwrap_or(0);
    if computed != received {
        return Err(FrameError::Checksum {
            computed: u32::from(computed),
            received: u32::from(received),
        });
    }
    Ok(Some(total))
}

/// One frame split into its fields, its checksums good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// VER.
    pub version: u8,
    /// ADR: the pack's address.
    pub address: u8,
    /// CID1 (`0x46` for battery data).
    pub cid1: u8,
    /// CID2: the command of a request, the return code (RTN) of a reply.
    pub cid2: u8,
    /// INFO, as bytes.
    pub info: Vec<u8>,
}

/// Splits one whole frame (SOI to EOI, nothing after) into its fields,
/// checking LCHKSUM and CHKSUM.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    let len = match frame_len(bytes)? {
        Some(len) => len,
        None => {
            return Err(FrameError::Short {
                got: bytes.len(),
                expected: FRAME_OVERHEAD.max(bytes.len() + 1),
            })
        }
    };
    if len != bytes.len() {
        return Err(FrameError::Malformed(format!(
            "{} bytes after the frame's EOI",
            bytes.len() - len
        )));
    }
    let info_chars = &bytes[1 + HEADER_CHARS..len - 5];
    if info_chars.len() % 2 != 0 {
        return Err(FrameError::Malformed(format!(
            "INFO of {} characters is no whole number of bytes",
            info_chars.len()
        )));
    }
    let byte_at = |i: usize| hex_field(&bytes[1 + 2 * i..3 + 2 * i]).unwrap_or(0) as u8;
    let info = info_chars
        .chunks_exact(2)
        .map(|pair| hex_field(pair).unwrap_or(0) as u8)
        .collect();
    Ok(Frame {
        version: byte_at(0),
        address: byte_at(1),
        cid1: byte_at(2),
        cid2: byte_at(3),
        info,
    })
}

/// The meaning of a return code (RTN).
pub fn return_code_message(rtn: u8) -> &'static str {
    match rtn {
        0x00 => "normal",
        0x01 => "VER error",
        0x02 => "CHKSUM error",
        0x03 => "LCHKSUM error",
        0x04 => "CID2 invalid",
        0x05 => "command format error",
        0x06 => "invalid data",
        0x90 => "ADR error",
        0x91 => "internal communication error",
        _ => "unknown return code",
    }
}

/// The INFO of the single reply to command `cid2` sent to `address`:
/// another address's frame is [`FrameError::WrongAddress`], a CID1 other
/// than battery data or a reply carrying the command itself (the
/// request's own echo on a two-wire line) is [`FrameError::Unexpected`],
/// and a return code other than normal is the pack's refusal.
pub fn reply_info(
    frames: &[Vec<u8>],
    address: u8,
    cid2: u8,
) -> Result<Result<Vec<u8>, DeviceException>, FrameError> {
    let [bytes] = frames else {
        return Err(FrameError::Malformed(format!(
            "{} frames where one reply belongs",
            frames.len()
        )));
    };
    let frame = parse_frame(bytes)?;
    if frame.address != address {
        return Err(FrameError::WrongAddress {
            expected: address,
            found: frame.address,
        });
    }
    if frame.cid1 != CID1_BATTERY {
        return Err(FrameError::Unexpected(format!(
            "CID1 {:#04x}, not battery data",
            frame.cid1
        )));
    }
    if frame.cid2 == cid2 && cid2 != 0 {
        return Err(FrameError::Unexpected(format!(
            "the request's own command {cid2:#04x} came back (an echo)"
        )));
    }
    if frame.cid2 != 0 {
        return Ok(Err(DeviceException {
            code: frame.cid2,
            message: return_code_message(frame.cid2).to_owned(),
        }));
    }
    Ok(Ok(frame.info))
}

/// Reads INFO fields in order; a field past the end is malformed (the
/// frame was whole, so its INFO is simply too short for its counts).
#[derive(Debug)]
struct Reader<'a> {
    info: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(info: &'a [u8]) -> Self {
        Self { info, at: 0 }
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        let end = self.at.saturating_add(n);
        let field = self.info.get(self.at..end).ok_or_else(|| {
            FrameError::Malformed(format!(
                "{what} at INFO byte {} past its end ({} bytes)",
                self.at,
                self.info.len()
            ))
        })?;
        self.at = end;
        Ok(field)
    }

    fn u8(&mut self, what: &str) -> Result<u8, FrameError> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, FrameError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self, what: &str) -> Result<u32, FrameError> {
        let b = self.bytes(3, what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    fn remaining(&self) -> usize {
        self.info.len().saturating_sub(self.at)
    }

    fn finish(&self) -> Result<(), FrameError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(FrameError::Malformed(format!(
                "{n} INFO bytes past the last field"
            ))),
        }
    }
}

/// The `0x42` reply: the pack's measurements, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalogValues {
    /// DATAFLAG (unread switch or alarm changes); informative.
    pub data_flag: u8,
    /// The command value echoed: the pack's address.
    pub command_value: u8,
    /// Cell voltages, millivolts, cell 1 first.
    pub cell_voltages_mv: Vec<u16>,
    /// Temperatures, 0.1 K from the document's zero (see
    /// [`KELVIN_OFFSET_DK`]): the BMS board first, then the cell groups.
    pub temperatures_dk: Vec<i16>,
    /// Pack current, 100 mA, positive while charging.
    pub current_100ma: i16,
    /// Pack voltage, millivolts.
    pub pack_voltage_mv: u16,
    /// Remaining capacity, mAh (the 24-bit field where the pack sends
    /// four user-defined items).
    pub remaining_capacity_mah: u32,
    /// Total (full) capacity, mAh, likewise.
    pub total_capacity_mah: u32,
    /// Charge cycles.
    pub cycles: u16,
}

/// Converts one temperature to °C, refusing what no sensor reads.
pub fn temperature_c(raw_dk: i16) -> Result<f32, FrameError> {
    let c = f32::from(raw_dk.wrapping_sub(KELVIN_OFFSET_DK)) / 10.0;
    let (min, max) = PLAUSIBLE_TEMPERATURE_C;
    if (min..=max).contains(&c) {
        Ok(c)
    } else {
        Err(FrameError::Malformed(format!(
            "temperature reads {c} °C (raw {raw_dk})"
        )))
    }
}

/// Decodes a `0x42` reply's INFO, refusing impossible values: a cell
/// above [`MAX_CELL_MV`], a temperature outside
/// [`PLAUSIBLE_TEMPERATURE_C`], a total capacity of zero or a remaining
/// capacity above it, a user-defined item count other than 2 or 4.
pub fn decode_analog_values(info: &[u8]) -> Result<AnalogValues, FrameError> {
    let mut r = Reader::new(info);
    let data_flag = r.u8("DATAFLAG")?;
    let command_value = r.u8("command value")?;
    let cells = r.u8("cell count")?;
    let cell_voltages_mv = (0..cells)
        .map(|_| r.u16("cell voltage"))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, mv)) = cell_voltages_mv
        .iter()
        .enumerate()
        .find(|(_, mv)| **mv > MAX_CELL_MV)
    {
        return Err(FrameError::Malformed(format!(
            "cell {} reads {mv} mV",
            i + 1
        )));
    }
    let sensors = r.u8("temperature count")?;
    let temperatures_dk = (0..sensors)
        .map(|_| r.u16("temperature").map(|t| t as i16))
        .collect::<Result<Vec<_>, _>>()?;
    for t in &temperatures_dk {
        temperature_c(*t)?;
    }
    let current_100ma = r.u16("current")? as i16;
    let pack_voltage_mv = r.u16("pack voltage")?;
    let remaining_16 = r.u16("remaining capacity")?;
    let user_defined = r.u8("user-defined item count")?;
    let total_16 = r.u16("total capacity")?;
    let cycles = r.u16("cycle count")?;
    let (remaining_capacity_mah, total_capacity_mah) = match user_defined {
        2 => (u32::from(remaining_16), u32::from(total_16)),
        4 => (
            r.u24("remaining capacity (24 bit)")?,
            r.u24("total capacity (24 bit)")?,
        ),
        n => {
            return Err(FrameError::Malformed(format!(
                "{n} user-defined items; the layout has 2 or 4"
            )))
        }
    };
    r.finish()?;
    if total_capacity_mah == 0 || remaining_capacity_mah > total_capacity_mah {
        return Err(FrameError::Malformed(format!(
            "remaining capacity {remaining_capacity_mah} mAh of a total of {total_capacity_mah} mAh"
        )));
    }
    Ok(AnalogValues {
        data_flag,
        command_value,
        cell_voltages_mv,
        temperatures_dk,
        current_100ma,
        pack_voltage_mv,
        remaining_capacity_mah,
        total_capacity_mah,
        cycles,
    })
}

/// One value's state in a `0x44` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitState {
    /// `00`: normal.
    Normal,
    /// `01`: below the lower limit (the document: acts as protection).
    BelowLower,
    /// `02`: above the upper limit (acts as protection).
    AboveUpper,
    /// `F0`: another error.
    OtherError,
    /// A code the document does not define.
    Unknown(u8),
}

impl LimitState {
    /// The state of code `code`.
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => LimitState::Normal,
            0x01 => LimitState::BelowLower,
            0x02 => LimitState::AboveUpper,
            0xF0 => LimitState::OtherError,
            other => LimitState::Unknown(other),
        }
    }

    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            LimitState::Normal => 0x00,
            LimitState::BelowLower => 0x01,
            LimitState::AboveUpper => 0x02,
            LimitState::OtherError => 0xF0,
            LimitState::Unknown(code) => code,
        }
    }
}

/// The `0x44` reply: each value's state and the status bytes, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmInfo {
    /// DATAFLAG; informative.
    pub data_flag: u8,
    /// The command value echoed: the pack's address.
    pub command_value: u8,
    /// Each cell's voltage state, cell 1 first.
    pub cell_states: Vec<LimitState>,
    /// Each temperature's state, the BMS board first.
    pub temperature_states: Vec<LimitState>,
    /// Charge current state.
    pub charge_current_state: LimitState,
    /// Pack voltage state.
    pub pack_voltage_state: LimitState,
    /// Discharge current state.
    pub discharge_current_state: LimitState,
    /// Status 1: protections (see the module's table).
    pub status1: u8,
    /// Status 2: switches (MOSFETs).
    pub status2: u8,
    /// Status 3: current flowing, heater, full, buzzer.
    pub status3: u8,
    /// Status 4 (cells 1-8 failed) and 5 (cells 9-16), bit 0 of status
    /// 4 being cell 1; `None` from packs older than protocol V2.5, which
    /// send three status bytes.
    pub cell_failure_bits: Option<u16>,
}

/// Decodes a `0x44` reply's INFO: three or five status bytes after the
/// states, nothing else.
pub fn decode_alarm_info(info: &[u8]) -> Result<AlarmInfo, FrameError> {
    let mut r = Reader::new(info);
    let data_flag = r.u8("DATAFLAG")?;
    let command_value = r.u8("command value")?;
    let cells = r.u8("cell count")?;
    let cell_states = r
        .bytes(usize::from(cells), "cell states")?
        .iter()
        .map(|c| LimitState::from_code(*c))
        .collect();
    let sensors = r.u8("temperature count")?;
    let temperature_states = r
        .bytes(usize::from(sensors), "temperature states")?
        .iter()
        .map(|c| LimitState::from_code(*c))
        .collect();
    let charge_current_state = LimitState::from_code(r.u8("charge current state")?);
    let pack_voltage_state = LimitState::from_code(r.u8("pack voltage state")?);
    let discharge_current_state = LimitState::from_code(r.u8("discharge current state")?);
    let status = r.bytes(r.remaining(), "status")?;
    let (status1, status2, status3, cell_failure_bits) = match *status {
        [s1, s2, s3] => (s1, s2, s3, None),
        [s1, s2, s3, s4, s5] => (s1, s2, s3, Some(u16::from_le_bytes([s4, s5]))),
        _ => {
            return Err(FrameError::Malformed(format!(
                "{} status bytes; the layout has 3 or 5",
                status.len()
            )))
        }
    };
    Ok(AlarmInfo {
        data_flag,
        command_value,
        cell_states,
        temperature_states,
        charge_current_state,
        pack_voltage_state,
        discharge_current_state,
        status1,
        status2,
        status3,
        cell_failure_bits,
    })
}

/// Decodes a `0x93` reply's INFO: the command value, then 16 ASCII
/// characters, NUL or space padded. Anything but printable ASCII is
/// malformed.
pub fn decode_serial_number(info: &[u8]) -> Result<String, FrameError> {
    let mut r = Reader::new(info);
    r.u8("command value")?;
    let chars = r.bytes(SERIAL_NUMBER_LEN, "serial number")?;
    r.finish()?;
    let end = chars
        .iter()
        .rposition(|c| *c != 0 && *c != b' ')
        .map_or(0, |i| i + 1);
    let text = &chars[..end];
    if text.iter().any(|c| !(0x20..0x7F).contains(c)) {
        return Err(FrameError::Malformed(
            "serial number is not printable ASCII".into(),
        ));
    }
    Ok(text.iter().map(|c| char::from(*c)).collect())
}

/// The command value a reply echoes must be the address asked.
fn check_command_value(found: u8, address: u8) -> Result<(), FrameError> {
    if found == address {
        Ok(())
    } else {
        Err(FrameError::Unexpected(format!(
            "reply for command value {found:#04x}, asked {address:#04x}"
        )))
    }
}

/// The `0x42` reply of the pack at `address`, decoded (see
/// [`reply_info`] and [`decode_analog_values`]).
pub fn decode_analog_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<AnalogValues, DeviceException>, FrameError> {
    match reply_info(frames, address, CID2_ANALOG_VALUE)? {
        Err(refused) => Ok(Err(refused)),
        Ok(info) => {
            let values = decode_analog_values(&info)?;
            check_command_value(values.command_value, address)?;
            Ok(Ok(values))
        }
    }
}

/// The `0x44` reply of the pack at `address`, decoded.
pub fn decode_alarm_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<AlarmInfo, DeviceException>, FrameError> {
    match reply_info(frames, address, CID2_ALARM_INFO)? {
        Err(refused) => Ok(Err(refused)),
        Ok(info) => {
            let alarm = decode_alarm_info(&info)?;
            check_command_value(alarm.command_value, address)?;
            Ok(Ok(alarm))
        }
    }
}

/// The `0x93` reply of the pack at `address`, decoded.
pub fn decode_serial_number_reply(
    frames: &[Vec<u8>],
    address: u8,
) -> Result<Result<String, DeviceException>, FrameError> {
    match reply_info(frames, address, CID2_SERIAL_NUMBER)? {
        Err(refused) => Ok(Err(refused)),
        Ok(info) => {
            let serial_number = decode_serial_number(&info)?;
            check_command_value(info.first().copied().unwrap_or(0), address)?;
            Ok(Ok(serial_number))
        }
    }
}
