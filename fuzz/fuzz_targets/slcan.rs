//! slcan, the serial-line CAN protocol: the line decoder over chunks cut
//! anywhere, and frames that re-encode to what they were decoded from.
//!
//! Input: `cut` (where the stream is split into two chunks), then the
//! bytes as they come from the adapter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packgate_drivers::can::slcan::{decode_line, encode_frame, SlcanDecoder, SlcanEvent};

fuzz_target!(|data: &[u8]| {
    let [cut, stream @ ..] = data else {
        return;
    };
    let mut whole = SlcanDecoder::new();
    let events = whole.feed(stream);

    // Chunk boundaries do not change what is decoded.
    let (a, b) = stream.split_at(usize::from(*cut).min(stream.len()));
    let mut chunked = SlcanDecoder::new();
    let mut events2 = chunked.feed(a);
    events2.extend(chunked.feed(b));
    assert_eq!(events, events2);
    assert_eq!(whole.overlong_lines(), chunked.overlong_lines());

    for event in events {
        if let Ok(SlcanEvent::Frame { frame, .. }) = event {
            let line = encode_frame(&frame);
            assert_eq!(line.last(), Some(&b'\r'));
            match decode_line(&line[..line.len() - 1]) {
                Ok(SlcanEvent::Frame {
                    frame: back,
                    timestamp_ms: None,
                }) => {
                    assert_eq!(back, frame)
                }
                other => panic!("{frame:?} encoded as {line:?} decodes as {other:?}"),
            }
        }
    }
});
