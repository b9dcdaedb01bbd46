//! The Pylontech CAN decoders and the pack state they feed: any sequence
//! of frames gives typed errors or a reading that passes the sample rules.
//!
//! Input: `cells in series`, then frames, each `flags` (bit 0 extended id,
//! bit 1 remote, bits 4-7 milliseconds x 64 since the previous frame), the
//! id (2 bytes, or 4 when extended, little-endian), `length`, data.
#![no_main]

use std::time::{Duration, Instant};

use embedded_can::{ExtendedId, Frame, Id, StandardId};
use libfuzzer_sys::fuzz_target;
use packgate_drivers::can::{decode_frame, CanFrame, CanPackState};

fn next_frame(data: &mut &[u8]) -> Option<(u8, Option<CanFrame>)> {
    let (&flags, rest) = data.split_first()?;
    let id_len = if flags & 1 != 0 { 4 } else { 2 };
    let (id_bytes, rest) = rest.split_at_checked(id_len)?;
    let (&len, rest) = rest.split_first()?;
    let mut raw = [0u8; 4];
    raw[..id_len].copy_from_slice(id_bytes);
    let raw = u32::from_le_bytes(raw);
    let id: Option<Id> = if flags & 1 != 0 {
        ExtendedId::new(raw & 0x1FFF_FFFF).map(Id::from)
    } else {
        StandardId::new((raw & 0x7FF) as u16).map(Id::from)
    };
    let len = usize::from(len & 0x0F);
    let frame = if flags & 2 != 0 {
        *data = rest;
        id.and_then(|id| CanFrame::new_remote(id, len))
    } else {
        let (bytes, rest) = rest.split_at_checked(len.min(8))?;
        *data = rest;
        id.and_then(|id| CanFrame::new(id, bytes))
    };
    Some((flags, frame))
}

fuzz_target!(|data: &[u8]| {
    let Some((&cells, mut rest)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut at = start;
    let mut state = CanPackState::new(cells);
    while let Some((flags, frame)) = next_frame(&mut rest) {
        at += Duration::from_millis(u64::from(flags >> 4) * 64);
        let Some(frame) = frame else { continue };
        if let Ok(message) = decode_frame(&frame) {
            assert!(!message.to_string().is_empty());
            assert_eq!(u32::from(message.id()), frame.raw_id());
        }
        let _ = state.feed(&frame, at);
    }
    for window in [Duration::from_millis(100), Duration::from_secs(5)] {
        if let Some((reading, _)) = state.sample(at, window) {
            assert_eq!(reading.validate(), Ok(()), "{reading:?}");
        }
        let _ = state.stale_ids(at, window);
    }
});
