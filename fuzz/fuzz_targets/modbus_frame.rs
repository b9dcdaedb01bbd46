//! Master-side Modbus framing: RTU reply frames (length, CRC, unit), MBAP
//! headers and reply PDUs checked against their request.
//!
//! Input: `mode`, `unit`, `request length`, the request PDU, then the reply
//! (an RTU frame when `mode` is even, an MBAP header and PDU when odd).
#![no_main]

use libfuzzer_sys::fuzz_target;
use packgate_drivers::modbus::frame::{
    check_reply_pdu, check_rtu_reply, crc16, expected_reply_len, parse_mbap, FC_READ_HOLDING,
    FC_READ_INPUT, MBAP_HEADER_LEN,
};

fn check_pdu(request: &[u8], pdu: &[u8]) {
    match check_reply_pdu(request, pdu) {
        Ok(Ok(registers)) => {
            let function = request.first().copied().unwrap_or(0);
            if matches!(function, FC_READ_HOLDING | FC_READ_INPUT) {
                let count = request
                    .get(3..5)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                assert_eq!(registers.len(), usize::from(count));
            } else {
                assert!(registers.is_empty());
            }
        }
        // A device's refusal keeps its code, which is never 0, and says
        // what it means.
        Ok(Err(exception)) => {
            assert!(!exception.message.is_empty());
            assert_eq!(pdu.get(1), Some(&exception.code));
        }
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, unit, request_len, rest @ ..] = data else {
        return;
    };
    let (request, reply) = rest.split_at(usize::from(*request_len).min(rest.len()));
    let function = request.first().copied().unwrap_or(0);
    if mode % 2 == 0 {
        let _ = expected_reply_len(function, reply);
        if let Ok(pdu) = check_rtu_reply(*unit, reply) {
            assert_eq!(pdu.len() + 3, reply.len());
            assert_eq!(reply[0], *unit);
            assert_eq!(
                crc16(&reply[..reply.len() - 2]).to_le_bytes(),
                reply[reply.len() - 2..]
            );
            check_pdu(request, pdu);
        }
    } else if let Some((header, pdu)) = reply.split_first_chunk::<MBAP_HEADER_LEN>() {
        if let Ok((_, _, pdu_len)) = parse_mbap(header) {
            assert!((1..=253).contains(&pdu_len));
            check_pdu(request, &pdu[..pdu_len.min(pdu.len())]);
        }
    }
});
