//! Modbus framing on the master side, pure: request PDUs, RTU frames
//! (CRC-16/MODBUS), MBAP headers, and the checks that tell a good reply
//! from a bad CRC, a short frame, a reply from the wrong unit, garbage and
//! a Modbus exception.

use std::time::Duration;

use crate::{DeviceException, DriverError, DriverResult};

/// Function code: read holding registers.
pub const FC_READ_HOLDING: u8 = 0x03;
/// Function code: read input registers.
pub const FC_READ_INPUT: u8 = 0x04;
/// Function code: write single register.
pub const FC_WRITE_SINGLE: u8 = 0x06;
/// Function code: write multiple registers.
pub const FC_WRITE_MULTIPLE: u8 = 0x10;
/// Longest RTU frame.
pub const MAX_RTU_FRAME_LEN: usize = 256;
/// Length of the MBAP header of Modbus TCP.
pub const MBAP_HEADER_LEN: usize = 7;

/// CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for byte in data {
        crc ^= u16::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// An RTU frame: unit id, PDU, CRC low byte first.
pub fn rtu_frame(unit_id: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(pdu.len() + 3);
    frame.push(unit_id);
    frame.extend_from_slice(pdu);
    let crc = crc16(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// A Modbus TCP frame: MBAP header and PDU.
pub fn tcp_frame(transaction_id: u16, unit_id: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MBAP_HEADER_LEN + pdu.len());
    frame.extend_from_slice(&transaction_id.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    frame.push(unit_id);
    frame.extend_from_slice(pdu);
    frame
}

/// The 3.5-character silent interval at `baud_rate` (11 bits a
/// character); the standard's fixed 1.75 ms above 19 200 baud.
pub fn silent_interval(baud_rate: u32) -> Duration {
    if baud_rate == 0 || baud_rate > 19_200 {
        Duration::from_micros(1750)
    } else {
        Duration::from_micros(38_500_000 / u64::from(baud_rate))
    }
}

/// The PDU reading `count` registers from `start` with `function`.
pub fn read_request(function: u8, start: u16, count: u16) -> Vec<u8> {
    let mut pdu = vec![function];
    pdu.extend_from_slice(&start.to_be_bytes());
    pdu.extend_from_slice(&count.to_be_bytes());
    pdu
}

/// The PDU writing `values` from `start`: function 6 for one register,
/// 16 for more.
pub fn write_request(start: u16, values: &[u16]) -> Vec<u8> {
    if let [value] = values {
        let mut pdu = vec![FC_WRITE_SINGLE];
        pdu.extend_from_slice(&start.to_be_bytes());
        pdu.extend_from_slice(&value.to_be_bytes());
        return pdu;
    }
    let mut pdu = vec![FC_WRITE_MULTIPLE];
    pdu.extend_from_slice(&start.to_be_bytes());
    pdu.extend_from_slice(&(values.len() as u16).to_be_bytes());
    pdu.push((2 * values.len()).min(usize::from(u8::MAX)) as u8);
    for v in values {
        pdu.extend_from_slice(&v.to_be_bytes());
    }
    pdu
}

/// The length of the RTU reply frame to a request with `function` that
/// starts `buf`, once enough of it has arrived to say; `None` while it
/// cannot be told yet or the frame does not look like a reply at all.
pub fn expected_reply_len(function: u8, buf: &[u8]) -> Option<usize> {
    let fc = *buf.get(1)?;
    if fc == function | 0x80 {
        Some(5)
    } else if fc != function {
        None
    } else if matches!(fc, FC_READ_HOLDING | FC_READ_INPUT) {
        buf.get(2).map(|n| 5 + usize::from(*n))
    } else {
        Some(8)
    }
}

/// The meaning of a Modbus exception code.
pub fn exception_message(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// Checks an RTU reply frame from `unit_id` and returns its PDU.
pub fn check_rtu_reply(unit_id: u8, frame: &[u8]) -> Result<&[u8], DriverError> {
    if frame.len() < 4 {
        return Err(DriverError::Protocol(format!(
            "short frame of {} bytes",
            frame.len()
        )));
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    let computed = crc16(body);
    let received = u16::from_le_bytes([crc[0], crc[1]]);
    if computed != received {
        return Err(DriverError::Protocol(format!(
            "bad CRC: computed {computed:#06x}, received {received:#06x}"
        )));
    }
    if body[0] != unit_id {
        return Err(DriverError::Protocol(format!(
            "reply from unit {}, expected {unit_id}",
            body[0]
        )));
    }
    Ok(&body[1..])
}

/// The MBAP header of a reply: transaction id, unit id, PDU length.
pub fn parse_mbap(header: &[u8; MBAP_HEADER_LEN]) -> Result<(u16, u8, usize), DriverError> {
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    if protocol != 0 {
        return Err(DriverError::Protocol(format!(
            "MBAP protocol id {protocol} is not Modbus"
        )));
    }
    let length = u16::from_be_bytes([header[4], header[5]]);
    if !(2..=254).contains(&length) {
        return Err(DriverError::Protocol(format!(
            "MBAP length {length} out of range"
        )));
    }
    Ok((
        u16::from_be_bytes([header[0], header[1]]),
        header[6],
        usize::from(length) - 1,
    ))
}

/// Checks a reply PDU against its request PDU: an exception is the inner
/// [`DeviceException`]; a read reply gives its registers, a write reply
/// (checked to echo the request) none.
pub fn check_reply_pdu(request: &[u8], reply: &[u8]) -> DriverResult<Vec<u16>> {
    let function = request.first().copied().unwrap_or(0);
    let protocol = |reason: String| Err(DriverError::Protocol(reason));
    match reply {
        [fc, code] if *fc == function | 0x80 => Ok(Err(DeviceException::modbus(*code))),
        [fc, ..] if *fc != function => protocol(format!(
            "reply to function {fc:#04x}, expected {function:#04x}"
        )),
        [_, byte_count, data @ ..] if matches!(function, FC_READ_HOLDING | FC_READ_INPUT) => {
            let count = request
                .get(3..5)
                .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
            if usize::from(*byte_count) != data.len() || data.len() != 2 * usize::from(count) {
                return protocol(format!(
                    "{} data bytes (byte count {byte_count}) for {count} registers",
                    data.len()
                ));
            }
            Ok(Ok(data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect()))
        }
        _ if request.len() >= 5 && reply.len() == 5 && reply[..5] == request[..5] => {
            Ok(Ok(Vec::new()))
        }
        _ => protocol(format!("malformed reply {reply:02x?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_reference() {
        assert_eq!(
            rtu_frame(1, &read_request(3, 0, 10)),
            vec![1, 3, 0, 0, 0, 10, 0xC5, 0xCD]
        );
        assert_eq!(
            tcp_frame(9, 2, &[3, 0, 0, 0, 1]),
            vec![0, 9, 0, 0, 0, 6, 2, 3, 0, 0, 0, 1]
        );
        assert_eq!(write_request(100, &[500]), vec![6, 0, 100, 1, 0xF4]);
        assert_eq!(
            write_request(100, &[1, 2]),
            vec![16, 0, 100, 0, 2, 4, 0, 1, 0, 2]
        );
        assert_eq!(silent_interval(9600), Duration::from_micros(4010));
    }

    #[test]
    fn reply_lengths_come_from_the_header() {
        assert_eq!(expected_reply_len(3, &[1]), None);
        assert_eq!(expected_reply_len(3, &[1, 3]), None);
        assert_eq!(expected_reply_len(3, &[1, 3, 4]), Some(9));
        assert_eq!(expected_reply_len(3, &[1, 0x83]), Some(5));
        assert_eq!(expected_reply_len(6, &[1, 6]), Some(8));
        assert_eq!(expected_reply_len(16, &[1, 16]), Some(8));
        assert_eq!(expected_reply_len(3, &[1, 0x42]), None);
    }

    #[test]
    fn rtu_replies_are_checked() {
        let frame = rtu_frame(4, &[3, 2, 0, 7]);
        assert_eq!(check_rtu_reply(4, &frame), Ok(&[3u8, 2, 0, 7][..]));
        let err = |r: Result<&[u8], DriverError>| match r {
            Err(DriverError::Protocol(reason)) => reason,
            other => panic!("{other:?}"),
        };
        assert!(err(check_rtu_reply(5, &frame)).contains("unit 4"));
        let mut bad = frame.clone();
        bad[4] ^= 1;
        assert!(err(check_rtu_reply(4, &bad)).contains("CRC"));
        assert!(err(check_rtu_reply(4, &frame[..3])).contains("short"));
    }

    #[test]
    fn reply_pdus_are_checked() {
        let read = read_request(3, 16, 2);
        assert_eq!(
            check_reply_pdu(&read, &[3, 4, 0, 1, 1, 0]),
            Ok(Ok(vec![1, 256]))
        );
        assert!(matches!(
            check_reply_pdu(&read, &[3, 2, 0, 1]),
            Err(DriverError::Protocol(_))
        ));
        assert!(matches!(
            check_reply_pdu(&read, &[4, 4, 0, 1, 1, 0]),
            Err(DriverError::Protocol(_))
        ));
        assert_eq!(
            check_reply_pdu(&read, &[0x83, 2]),
            Ok(Err(DeviceException {
                code: 2,
                message: "illegal data address".into()
            }))
        );
        let write = write_request(100, &[1, 2]);
        assert_eq!(check_reply_pdu(&write, &[16, 0, 100, 0, 2]), Ok(Ok(vec![])));
        assert!(check_reply_pdu(&write, &[16, 0, 101, 0, 2]).is_err());
        let single = write_request(100, &[7]);
        assert_eq!(check_reply_pdu(&single, &single), Ok(Ok(vec![])));
        assert!(check_reply_pdu(&single, &[]).is_err());
    }

    #[test]
    fn mbap_headers_are_checked() {
        assert_eq!(parse_mbap(&[0, 9, 0, 0, 0, 3, 2]), Ok((9, 2, 2)));
        assert!(parse_mbap(&[0, 9, 0, 1, 0, 3, 2]).is_err());
        assert!(parse_mbap(&[0, 9, 0, 0, 1, 0, 2]).is_err());
    }
}
