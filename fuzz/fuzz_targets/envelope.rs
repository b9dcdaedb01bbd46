//! The wire envelope: version and kind bytes, then postcard. Any bytes must
//! give a typed error or a message that re-encodes to a stable form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packgate_protocol::{
    decode, encode, BankState, Command, CommandReply, Event, MetricsSnapshot, Sample,
    WireMessage,
};

fn check<M: WireMessage>(bytes: &[u8]) {
    let Ok(message) = decode::<M>(bytes) else {
        return;
    };
    // What decoded re-encodes, and that encoding is a fixed point (the input
    // itself may differ: postcard accepts non-minimal varints).
    let once = encode(&message);
    let again = match decode::<M>(&once) {
        Ok(m) => encode(&m),
        Err(e) => panic!("re-encoded message does not decode: {e}"),
    };
    assert_eq!(once, again);
}

fuzz_target!(|data: &[u8]| {
    check::<Sample>(data);
    check::<Event>(data);
    check::<Command>(data);
    check::<CommandReply>(data);
    check::<MetricsSnapshot>(data);
    check::<BankState>(data);
});
