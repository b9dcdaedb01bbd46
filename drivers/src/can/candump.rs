//! candump log replay: parses the two text forms of can-utils' `candump`
//! and describes each frame through the Pylontech decoder, for the
//! `packgate can decode FILE` command.
//!
//! - log form (`candump -l`, and `-L`): `(1700000000.123456) can0 356#1415E6FFF000`;
//!   `123#R` / `123#R4` remote; extended ids in 8 hex digits; a trailing
//!   direction token (`R` / `T`, newer can-utils) is ignored.
//! - default form (`candump can0`, optionally with `-t a` timestamps):
//!   `  can0  356   [6]  14 15 E6 FF F0 00`, `  can0  123   [4]  remote request`.
//!
//! Empty lines and lines starting with `#` are skipped. CAN FD (`##`) is
//! not supported and is an error.

use embedded_can::{ExtendedId, Frame, Id, StandardId};

use super::frame::CanFrame;
use super::pylontech::decode_frame;

/// One frame of a log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Seconds since the Unix epoch, when the line carries a timestamp.
    pub time_s: Option<f64>,
    /// The interface it was received on (`can0`).
    pub interface: String,
    /// The frame.
    pub frame: CanFrame,
}

/// Why a log line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogLineError {
    /// Not one of the two candump forms.
    #[error("line {line}: not a candump line")]
    Format {
        /// 1-based line number.
        line: usize,
    },
    /// A bad timestamp.
    #[error("line {line}: bad timestamp")]
    Timestamp {
        /// 1-based line number.
        line: usize,
    },
    /// A bad or out-of-range id.
    #[error("line {line}: bad CAN id")]
    Id {
        /// 1-based line number.
        line: usize,
    },
    /// Bad data bytes (not hex, odd count, more than 8, length mismatch).
    #[error("line {line}: bad data")]
    Data {
        /// 1-based line number.
        line: usize,
    },
}

fn parse_id(s: &str) -> Option<Id> {
    let raw = u32::from_str_radix(s, 16).ok()?;
    match s.len() {
        1..=3 => StandardId::new(u16::try_from(raw).ok()?).map(Id::from),
        8 => ExtendedId::new(raw).map(Id::from),
        _ => None,
    }
}

fn parse_hex_bytes<'a>(bytes: impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    let data: Vec<u8> = bytes
        .map(|b| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    (data.len() <= 8).then_some(data)
}

fn parse_time(token: &str, line: usize) -> Result<f64, LogLineError> {
    token
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .ok_or(LogLineError::Timestamp { line })
}

/// `356#1415E6FFF000`, `356#R`, `356#R4`.
fn parse_compact(token: &str, line: usize) -> Result<CanFrame, LogLineError> {
    let (id, data) = token.split_once('#').ok_or(LogLineError::Format { line })?;
    let id = parse_id(id).ok_or(LogLineError::Id { line })?;
    let bad_data = LogLineError::Data { line };
    if let Some(dlc) = data.strip_prefix('R') {
        let dlc = if dlc.is_empty() {
            Some(0)
        } else {
            dlc.parse::<usize>().ok()
        };
        return dlc
            .and_then(|d| CanFrame::new_remote(id, d))
            .ok_or(bad_data);
    }
    if data.len() % 2 != 0 || !data.is_ascii() {
        return Err(bad_data);
    }
    let bytes = parse_hex_bytes((0..data.len()).step_by(2).map(|i| &data[i..i + 2]));
    bytes.and_then(|b| CanFrame::new(id, &b)).ok_or(bad_data)
}

/// `can0  356   [6]  14 15 E6 FF F0 00` (tokens after an optional time).
fn parse_default(tokens: &[&str], line: usize) -> Result<(String, CanFrame), LogLineError> {
    let [interface, id, dlc, rest @ ..] = tokens else {
        return Err(LogLineError::Format { line });
    };
    let dlc = dlc
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .and_then(|d| d.parse::<usize>().ok())
        .ok_or(LogLineError::Format { line })?;
    let id = parse_id(id).ok_or(LogLineError::Id { line })?;
    let bad_data = LogLineError::Data { line };
    let frame = if rest == ["remote", "request"] {
        CanFrame::new_remote(id, dlc).ok_or(bad_data)?
    } else {
        let data = parse_hex_bytes(rest.iter().copied()).ok_or(bad_data.clone())?;
        if data.len() != dlc {
            return Err(bad_data);
        }
        CanFrame::new(id, &data).ok_or(bad_data)?
    };
    Ok(((*interface).to_owned(), frame))
}

/// Parses one line (1-based number `line`); `None` for an empty or
/// comment line.
pub fn decode_line(text: &str, line: usize) -> Option<Result<LogEntry, LogLineError>> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let tokens: Vec<&str> = trimmed.split_whitespace().collect();
    let (time_s, tokens) = match tokens.split_first() {
        Some((first, rest)) if first.starts_with('(') => match parse_time(first, line) {
            Ok(t) => (Some(t), rest),
            Err(e) => return Some(Err(e)),
        },
        _ => (None, &tokens[..]),
    };
    let entry = match tokens {
        [interface, frame] | [interface, frame, "R" | "T"] if frame.contains('#') => {
            parse_compact(frame, line).map(|frame| LogEntry {
                time_s,
                interface: (*interface).to_owned(),
                frame,
            })
        }
        _ => parse_default(tokens, line).map(|(interface, frame)| LogEntry {
            time_s,
            interface,
            frame,
        }),
    };
    Some(entry)
}

/// Every frame of a log, in order, with an error for each bad line.
pub fn decode_log(text: &str) -> impl Iterator<Item = Result<LogEntry, LogLineError>> + '_ {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| decode_line(line, i + 1))
}

/// One line for a person: the frame, then what the Pylontech decoder made
/// of it (`356#1415E6FFF000  0x356 measurements: 53.96 V, -2.6 A, 24.0 °C`).
pub fn describe(frame: &CanFrame) -> String {
    match decode_frame(frame) {
        Ok(msg) => format!("{frame}  {msg}"),
        Err(e) => format!("{frame}  ({e})"),
    }
}

/// Replays a whole log through the decoder: one printable line per log
/// line, `(time) interface description`, or the line's error.
pub fn replay(text: &str) -> impl Iterator<Item = String> + '_ {
    decode_log(text).map(|entry| match entry {
        Ok(LogEntry {
            time_s,
            interface,
            frame,
        }) => match time_s {
            Some(t) => format!("({t:.6}) {interface} {}", describe(&frame)),
            None => format!("{interface} {}", describe(&frame)),
        },
        Err(e) => format!("error: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_form() {
        let e = decode_line("(1700000000.123456) can0 356#1415E6FFF000", 1)
            .unwrap()
            .unwrap();
        assert_eq!(e.time_s, Some(1_700_000_000.123_456));
        assert_eq!(e.interface, "can0");
        assert_eq!(
            e.frame,
            CanFrame::standard(0x356, &[0x14, 0x15, 0xE6, 0xFF, 0xF0, 0]).unwrap()
        );
        let r = decode_line("(1.0) vcan0 123#R4 R", 1).unwrap().unwrap();
        assert!(r.frame.is_remote_frame());
        assert_eq!(r.frame.dlc(), 4);
        let x = decode_line("(1.0) can0 1ABCDEF0#", 1).unwrap().unwrap();
        assert!(x.frame.is_extended());
        assert_eq!(x.frame.data(), &[] as &[u8]);
    }

    #[test]
    fn default_form() {
        let e = decode_line("  can0  356   [6]  14 15 E6 FF F0 00", 1)
            .unwrap()
            .unwrap();
        assert_eq!(e.time_s, None);
        assert_eq!(e.frame.to_string(), "356#1415E6FFF000");
        let t = decode_line(" (1700000000.5)  can1  35C   [2]  C0 00", 1)
            .unwrap()
            .unwrap();
        assert_eq!(t.time_s, Some(1_700_000_000.5));
        assert_eq!(t.interface, "can1");
        let r = decode_line("  can0  123   [4]  remote request", 1)
            .unwrap()
            .unwrap();
        assert!(r.frame.is_remote_frame());
    }

    #[test]
    fn bad_lines_are_errors_with_their_number() {
        let log = "# comment\n\n(x) can0 356#00\ncan0 800#00\ncan0 356#0\ncan0 356#GG\n\
                   can0 356 [3] 01 02\ncan0 356#001122334455667788\nhello\ncan0 356##1\n";
        let errors: Vec<_> = decode_log(log).map(|e| e.unwrap_err()).collect();
        assert_eq!(
            errors,
            vec![
                LogLineError::Timestamp { line: 3 },
                LogLineError::Id { line: 4 },
                LogLineError::Data { line: 5 },
                LogLineError::Data { line: 6 },
                LogLineError::Data { line: 7 },
                LogLineError::Data { line: 8 },
                LogLineError::Format { line: 9 },
                LogLineError::Data { line: 10 },
            ]
        );
    }

    #[test]
    fn replay_describes_every_line() {
        let log = "(1700000000.000000) can0 356#1415E6FFF000\ncan0 370#00\nbad\n";
        let lines: Vec<String> = replay(log).collect();
        assert_eq!(
            lines,
            vec![
                "(1700000000.000000) can0 356#1415E6FFF000  0x356 measurements: 53.96 V, -2.6 A, 24.0 °C",
                "can0 370#00  (unknown standard id 0x370)",
                "error: line 3: not a candump line",
            ]
        );
    }
}
