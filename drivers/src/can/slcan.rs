//! Pure codec of slcan, the serial-line CAN protocol of USB-CAN adapters
//! (Lawicel CAN232/CANUSB, CANable with slcan firmware).
//!
//! Lines end in `\r`; an adapter answers a command with `\r` (done) or
//! `\x07` (BEL, refused). Frames:
//!
//! - `tIIILDD..` standard data frame: 3 hex id, 1 digit length, 2 hex per byte
//! - `TIIIIIIIILDD..` extended data frame: 8 hex id
//! - `rIIIL` / `RIIIIIIIIL` remote frames
//! - any of them may end in 4 hex digits of timestamp (milliseconds,
//!   0..=0xEA5F, when the adapter's timestamps are on)
//!
//! The decoder takes byte chunks cut anywhere and yields [`SlcanEvent`]s.
//! A line longer than [`MAX_LINE_LEN`] is discarded up to its terminator
//! and counted; garbage gives [`SlcanError`]s, never a panic.

use embedded_can::{ExtendedId, Frame, Id, StandardId};

use super::frame::CanFrame;

/// Longest line kept: an extended 8-byte frame with timestamp is 30
/// characters; adapter replies (`V1013`, serial numbers) are shorter.
pub const MAX_LINE_LEN: usize = 64;
/// The command / line terminator.
pub const CR: u8 = b'\r';
/// The adapter's error reply.
pub const BEL: u8 = 0x07;

/// The CAN bitrates of the `S0`..`S8` commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bitrate {
    /// `S0`: 10 kbit/s.
    Kbps10,
    /// `S1`: 20 kbit/s.
    Kbps20,
    /// `S2`: 50 kbit/s.
    Kbps50,
    /// `S3`: 100 kbit/s.
    Kbps100,
    /// `S4`: 125 kbit/s.
    Kbps125,
    /// `S5`: 250 kbit/s.
    Kbps250,
    /// `S6`: 500 kbit/s (the Pylontech protocol's rate).
    Kbps500,
    /// `S7`: 800 kbit/s.
    Kbps800,
    /// `S8`: 1 Mbit/s.
    Mbps1,
}

impl Bitrate {
    /// Every bitrate with its bits per second, slowest first.
    pub const ALL: [(Bitrate, u32); 9] = [
        (Bitrate::Kbps10, 10_000),
        (Bitrate::Kbps20, 20_000),
        (Bitrate::Kbps50, 50_000),
        (Bitrate::Kbps100, 100_000),
        (Bitrate::Kbps125, 125_000),
        (Bitrate::Kbps250, 250_000),
        (Bitrate::Kbps500, 500_000),
        (Bitrate::Kbps800, 800_000),
        (Bitrate::Mbps1, 1_000_000),
    ];

    /// The standard bitrate of `bps` bits per second, if slcan has one.
    pub fn from_bps(bps: u32) -> Option<Bitrate> {
        Self::ALL.iter().find(|(_, b)| *b == bps).map(|(r, _)| *r)
    }

    /// Bits per second.
    pub fn bps(self) -> u32 {
        Self::ALL[self.index()].1
    }

    /// The digit of the `S` command.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The bitrate of `S<digit>`.
    pub fn from_index(index: usize) -> Option<Bitrate> {
        Self::ALL.get(index).map(|(r, _)| *r)
    }
}

/// A command to the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlcanCommand {
    /// `S<n>`: set the bitrate (only while closed).
    Bitrate(Bitrate),
    /// `O`: open the channel (start receiving and sending).
    Open,
    /// `C`: close the channel.
    Close,
    /// `V`: ask the version.
    Version,
}

impl SlcanCommand {
    /// The command's bytes, `\r` included.
    pub fn encode(self) -> Vec<u8> {
        match self {
            SlcanCommand::Bitrate(rate) => format!("S{}\r", rate.index()).into_bytes(),
            SlcanCommand::Open => b"O\r".to_vec(),
            SlcanCommand::Close => b"C\r".to_vec(),
            SlcanCommand::Version => b"V\r".to_vec(),
        }
    }
}

/// Appends `frame` as one slcan line (`\r` included) to `out`.
pub fn encode_frame_into(frame: &CanFrame, out: &mut Vec<u8>) {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(32);
    let (kind, id) = match (frame.id(), frame.is_remote_frame()) {
        (Id::Standard(id), false) => ('t', format!("{:03X}", id.as_raw())),
        (Id::Standard(id), true) => ('r', format!("{:03X}", id.as_raw())),
        (Id::Extended(id), false) => ('T', format!("{:08X}", id.as_raw())),
        (Id::Extended(id), true) => ('R', format!("{:08X}", id.as_raw())),
    };
    line.push(kind);
    line.push_str(&id);
    let _ = write!(line, "{}", frame.dlc());
    for byte in frame.data() {
        let _ = write!(line, "{byte:02X}");
    }
    out.extend_from_slice(line.as_bytes());
    out.push(CR);
}

/// `frame` as one slcan line, `\r` included.
pub fn encode_frame(frame: &CanFrame) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    encode_frame_into(frame, &mut out);
    out
}

/// What the adapter said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlcanEvent {
    /// A received frame, with the adapter's timestamp if it sends them.
    Frame {
        /// The frame.
        frame: CanFrame,
        /// Milliseconds within the adapter's minute, if sent.
        timestamp_ms: Option<u16>,
    },
    /// An empty line: the last command was accepted.
    Ack,
    /// `BEL`: the last command was refused.
    Refused,
    /// Another reply: `V..`/`v..` version, `N..` serial number, `F..`
    /// status flags, `z`/`Z` transmit acknowledgements.
    Reply(String),
}

/// A line that is not valid slcan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlcanError {
    /// A line longer than [`MAX_LINE_LEN`]; it was discarded.
    #[error("line longer than {MAX_LINE_LEN} bytes discarded")]
    Overlong,
    /// Bytes that are not printable ASCII.
    #[error("line is not printable ASCII: {0:?}")]
    NotAscii(String),
    /// A line that starts with no known frame kind or reply.
    #[error("unknown line {0:?}")]
    Unknown(String),
    /// A frame line with a non-hex digit where hex belongs.
    #[error("bad hex in {0:?}")]
    Hex(String),
    /// A frame line whose length does not match its length digit.
    #[error("length mismatch in {0:?}")]
    Length(String),
    /// A length digit above 8.
    #[error("data length above 8 in {0:?}")]
    Dlc(String),
    /// A standard id above 0x7FF or an extended one above 0x1FFFFFFF.
    #[error("id out of range in {0:?}")]
    Id(String),
}

/// Line decoder over arbitrary chunks. Keeps at most [`MAX_LINE_LEN`]
/// bytes between calls.
#[derive(Debug, Default)]
pub struct SlcanDecoder {
    line: Vec<u8>,
    discarding: bool,
    overlong_lines: u64,
}

fn hex(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &c| {
        let digit = char::from(c).to_digit(16)?;
        Some((acc << 4) | digit)
    })
}

fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// Decodes one complete line (without its terminator).
pub fn decode_line(line: &[u8]) -> Result<SlcanEvent, SlcanError> {
    let Some(&kind) = line.first() else {
        return Ok(SlcanEvent::Ack);
    };
    if !line.iter().all(|b| (0x20..0x7F).contains(b)) {
        return Err(SlcanError::NotAscii(shown(line)));
    }
    let (id_len, remote, extended) = match kind {
        b't' => (3, false, false),
        b'T' => (8, false, true),
        b'r' => (3, true, false),
        b'R' => (8, true, true),
        b'V' | b'v' | b'N' | b'F' | b'z' | b'Z' => {
            return Ok(SlcanEvent::Reply(shown(line)));
        }
        _ => return Err(SlcanError::Unknown(shown(line))),
    };
    let err = |f: fn(String) -> SlcanError| f(shown(line));
    let header = 1 + id_len + 1;
    if line.len() < header {
        return Err(err(SlcanError::Length));
    }
    let raw_id = hex(&line[1..1 + id_len]).ok_or_else(|| err(SlcanError::Hex))?;
    let dlc = hex(&line[1 + id_len..header]).ok_or_else(|| err(SlcanError::Hex))? as usize;
    if dlc > 8 {
        return Err(err(SlcanError::Dlc));
    }
    let data_len = if remote { 0 } else { dlc * 2 };
    let rest = &line[header..];
    let timestamp_ms = match rest.len().checked_sub(data_len) {
        Some(0) => None,
        Some(4) => Some(hex(&rest[data_len..]).ok_or_else(|| err(SlcanError::Hex))? as u16),
        _ => return Err(err(SlcanError::Length)),
    };
    let id: Id = if extended {
        ExtendedId::new(raw_id)
            .ok_or_else(|| err(SlcanError::Id))?
            .into()
    } else {
        let std = u16::try_from(raw_id).ok().and_then(StandardId::new);
        std.ok_or_else(|| err(SlcanError::Id))?.into()
    };
    let mut data = [0u8; 8];
    for (i, byte) in data
        .iter_mut()
        .enumerate()
        .take(if remote { 0 } else { dlc })
    {
        *byte = hex(&rest[2 * i..2 * i + 2]).ok_or_else(|| err(SlcanError::Hex))? as u8;
    }
    let frame = if remote {
        CanFrame::new_remote(id, dlc)
    } else {
        CanFrame::new(id, &data[..dlc])
    };
    let frame = frame.ok_or_else(|| err(SlcanError::Dlc))?;
    Ok(SlcanEvent::Frame {
        frame,
        timestamp_ms,
    })
}

impl SlcanDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lines discarded for being longer than [`MAX_LINE_LEN`] so far.
    pub fn overlong_lines(&self) -> u64 {
        self.overlong_lines
    }

    /// Feeds a chunk and calls `emit` for every line it completes. `\n` is
    /// ignored (some adapters send `\r\n`).
    pub fn feed_with(
        &mut self,
        bytes: &[u8],
        mut emit: impl FnMut(Result<SlcanEvent, SlcanError>),
    ) {
        for &byte in bytes {
            match byte {
                CR | BEL => {
                    if self.discarding {
                        self.discarding = false;
                        emit(Err(SlcanError::Overlong));
                    } else if byte == BEL {
                        if !self.line.is_empty() {
                            emit(Err(SlcanError::Unknown(shown(&self.line))));
                        }
                        emit(Ok(SlcanEvent::Refused));
                    } else {
                        emit(decode_line(&self.line));
                    }
                    self.line.clear();
                }
                b'\n' => {}
                _ if self.discarding => {}
                _ if self.line.len() >= MAX_LINE_LEN => {
                    self.line.clear();
                    self.discarding = true;
                    self.overlong_lines += 1;
                }
                _ => self.line.push(byte),
            }
        }
    }

    /// Feeds a chunk and returns the events of the lines it completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<SlcanEvent, SlcanError>> {
        let mut events = Vec::new();
        self.feed_with(bytes, |e| events.push(e));
        events
    }
}

#[cfg(test)]
#[path = "slcan_tests.rs"]
mod tests;
