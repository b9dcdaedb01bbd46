//! The pure codec's framing: request frames, the reply framing, the
//! return codes and a reply's INFO (typed in [`info`](super::info)). No
//! I/O.

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
    encode_frame_with_version(PROTOCOL_VERSION, address, cid2, info)
}

/// A frame as [`encode_frame`] makes it, with VER `version` (Pace's
/// packs speak `25`).
pub fn encode_frame_with_version(
    version: u8,
    address: u8,
    cid2: u8,
    info: &[u8],
) -> Option<Vec<u8>> {
    let lenid = u16::try_from(2 * info.len())
        .ok()
        .filter(|n| usize::from(*n) <= MAX_INFO_CHARS)?;
    let mut frame = Vec::with_capacity(FRAME_OVERHEAD + usize::from(lenid));
    frame.push(SOI);
    for byte in [version, address, CID1_BATTERY, cid2] {
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
        frame_len(buf).into()
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
        // Seplos V2.0's further codes, and Pace's.
        0x07 => "no data",
        0x09 => "operation or write error",
        0xE1 => "CID1 invalid",
        0xE2 => "command execution failure",
        0xE3 => "device fault",
        0xE4 => "invalid permissions",
        _ => "unknown return code",
    }
}

/// The single reply to command `cid2` sent to `address`, its INFO decoded
/// by `decode` (see [`reply_info`]): the pack's refusal apart from a frame
/// that is wrong.
pub fn decode_reply<T>(
    frames: &[Vec<u8>],
    address: u8,
    cid2: u8,
    decode: impl FnOnce(&[u8]) -> Result<T, FrameError>,
) -> Result<Result<T, DeviceException>, FrameError> {
    Ok(match reply_info(frames, address, cid2)? {
        Err(refused) => Err(refused),
        Ok(info) => Ok(decode(&info)?),
    })
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
