//! Server-side Modbus of the simulated devices: RTU request frames, MBAP
//! headers, request PDUs and the settings a write names.
//!
//! Input: `mode`, then an RTU frame (`mode` even) or an MBAP header and PDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packgate_sim::serve::modbus_rtu::{decode_frame, expected_request_len};
use packgate_sim::serve::modbus_tcp::{decode_mbap, MBAP_HEADER_LEN};
use packgate_sim::serve::registers::{parse_request, setting_writes, Request};

fn serve(pdu: &[u8]) {
    match parse_request(pdu) {
        Ok(Request::Read { .. }) => {}
        Ok(Request::Write { start, values, .. }) => {
            assert!(!values.is_empty());
            if let Ok(writes) = setting_writes(start, &values) {
                assert_eq!(writes.len(), values.len());
            }
        }
        Err(code) => assert_ne!(code, 0),
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, frame @ ..] = data else {
        return;
    };
    if mode % 2 == 0 {
        let _ = expected_request_len(frame);
        if let Ok((_, pdu)) = decode_frame(frame) {
            assert_eq!(pdu.len() + 3, frame.len());
            serve(pdu);
        }
    } else if let Some((header, pdu)) = frame.split_first_chunk::<MBAP_HEADER_LEN>() {
        if let Ok(header) = decode_mbap(header) {
            serve(&pdu[..header.pdu_len.min(pdu.len())]);
        }
    }
});
