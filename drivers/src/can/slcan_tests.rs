//! Unit tests of the slcan codec.

use super::*;

fn frame_event(frame: CanFrame) -> Result<SlcanEvent, SlcanError> {
    Ok(SlcanEvent::Frame {
        frame,
        timestamp_ms: None,
    })
}

#[test]
fn known_lines_both_ways() {
    let f = CanFrame::standard(0x356, &[0x14, 0x15, 0xE6, 0xFF, 0xF0, 0x00]).unwrap();
    assert_eq!(encode_frame(&f), b"t35661415E6FFF000\r");
    assert_eq!(decode_line(b"t35661415E6FFF000"), frame_event(f));
    assert_eq!(
        decode_line(b"t35661415e6fff000"),
        frame_event(f),
        "lower-case hex"
    );

    let e = CanFrame::extended(0x1ABC_DEF0, &[0xAA]).unwrap();
    assert_eq!(encode_frame(&e), b"T1ABCDEF01AA\r");
    assert_eq!(decode_line(b"T1ABCDEF01AA"), frame_event(e));

    let empty = CanFrame::standard(0x7FF, &[]).unwrap();
    assert_eq!(encode_frame(&empty), b"t7FF0\r");

    let r = CanFrame::new_remote(StandardId::new(0x123).unwrap(), 4).unwrap();
    assert_eq!(encode_frame(&r), b"r1234\r");
    assert_eq!(decode_line(b"r1234"), frame_event(r));
    let rx = CanFrame::new_remote(ExtendedId::new(0x42).unwrap(), 0).unwrap();
    assert_eq!(encode_frame(&rx), b"R000000420\r");
    assert_eq!(decode_line(b"R000000420"), frame_event(rx));

    assert_eq!(
        decode_line(b"t355122EA5F"),
        Ok(SlcanEvent::Frame {
            frame: CanFrame::standard(0x355, &[0x22]).unwrap(),
            timestamp_ms: Some(0xEA5F),
        })
    );
}

#[test]
fn commands_and_replies() {
    assert_eq!(SlcanCommand::Bitrate(Bitrate::Kbps500).encode(), b"S6\r");
    assert_eq!(SlcanCommand::Open.encode(), b"O\r");
    assert_eq!(SlcanCommand::Close.encode(), b"C\r");
    assert_eq!(SlcanCommand::Version.encode(), b"V\r");
    assert_eq!(Bitrate::from_bps(500_000), Some(Bitrate::Kbps500));
    assert_eq!(Bitrate::from_bps(333_000), None);
    assert_eq!(Bitrate::from_index(8).map(Bitrate::bps), Some(1_000_000));
    assert_eq!(Bitrate::from_index(9), None);

    let mut d = SlcanDecoder::new();
    assert_eq!(
        d.feed(b"\rV1013\r\x07z\r"),
        vec![
            Ok(SlcanEvent::Ack),
            Ok(SlcanEvent::Reply("V1013".into())),
            Ok(SlcanEvent::Refused),
            Ok(SlcanEvent::Reply("z".into())),
        ]
    );
}

fn frames(n: usize) -> Vec<CanFrame> {
    let mut state: u32 = 12345;
    let mut next = move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        state >> 8
    };
    (0..n)
        .map(|i| {
            let len = (next() % 9) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            match i % 4 {
                0 => CanFrame::standard((next() % 0x800) as u16, &bytes).unwrap(),
                1 => CanFrame::extended(next() % 0x2000_0000, &bytes).unwrap(),
                2 => CanFrame::new_remote(StandardId::new((next() % 0x800) as u16).unwrap(), len)
                    .unwrap(),
                _ => CanFrame::new_remote(ExtendedId::new(next() % 0x2000_0000).unwrap(), len)
                    .unwrap(),
            }
        })
        .collect()
}

#[test]
fn round_trip_over_many_frames() {
    let all = frames(2000);
    let mut bytes = Vec::new();
    for f in &all {
        encode_frame_into(f, &mut bytes);
    }
    let mut d = SlcanDecoder::new();
    let decoded: Vec<_> = d.feed(&bytes);
    assert_eq!(decoded.len(), all.len());
    for (f, e) in all.iter().zip(decoded) {
        assert_eq!(e, frame_event(*f));
    }
}

#[test]
fn chunks_split_at_every_position() {
    let all = frames(6);
    let mut bytes = b"\r".to_vec();
    for f in &all {
        encode_frame_into(f, &mut bytes);
    }
    bytes.extend_from_slice(b"\x07V1\r");
    let mut whole = SlcanDecoder::new();
    let expected = whole.feed(&bytes);
    assert_eq!(expected.len(), all.len() + 3);
    for a in 0..=bytes.len() {
        for b in a..=bytes.len() {
            let mut d = SlcanDecoder::new();
            let mut got = d.feed(&bytes[..a]);
            got.extend(d.feed(&bytes[a..b]));
            got.extend(d.feed(&bytes[b..]));
            assert_eq!(got, expected, "split at {a}, {b}");
        }
    }
}

#[test]
fn garbage_gives_errors_and_decoding_goes_on() {
    let mut d = SlcanDecoder::new();
    let events =
        d.feed(b"t35\rt3569\rt356G\rt3561AZ\rt8001AA\rT200000000\rt3561AA0\rq\r\xff\xfe\rt1230\r");
    assert!(matches!(events[0], Err(SlcanError::Length(_))));
    assert!(matches!(events[1], Err(SlcanError::Dlc(_))));
    assert!(matches!(events[2], Err(SlcanError::Hex(_))));
    assert!(matches!(events[3], Err(SlcanError::Hex(_))));
    assert!(matches!(events[4], Err(SlcanError::Id(_))));
    assert!(matches!(events[5], Err(SlcanError::Id(_))));
    assert!(matches!(events[6], Err(SlcanError::Length(_))));
    assert!(matches!(events[7], Err(SlcanError::Unknown(_))));
    assert!(matches!(events[8], Err(SlcanError::NotAscii(_))));
    assert_eq!(
        events[9],
        frame_event(CanFrame::standard(0x123, &[]).unwrap())
    );
    assert_eq!(events.len(), 10);
}

#[test]
fn overlong_lines_are_discarded_and_counted() {
    let mut d = SlcanDecoder::new();
    let mut bytes = vec![b'A'; 1000];
    bytes.push(CR);
    bytes.extend_from_slice(b"t1230\r");
    bytes.extend(vec![b'7'; MAX_LINE_LEN + 1]);
    let events = d.feed(&bytes);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], Err(SlcanError::Overlong));
    assert_eq!(
        events[1],
        frame_event(CanFrame::standard(0x123, &[]).unwrap())
    );
    assert_eq!(d.overlong_lines(), 2);
    assert!(d.line.is_empty(), "the partial overlong line is not kept");
    assert_eq!(d.feed(b"\x07"), vec![Err(SlcanError::Overlong)]);
}

#[test]
fn random_bytes_never_panic() {
    let mut state: u64 = 7;
    let mut d = SlcanDecoder::new();
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let alphabet = b"tTrR0123456789ABCDEFabcdefG\r\x07\n V";
        let chunk: Vec<u8> = state
            .to_le_bytes()
            .iter()
            .map(|b| alphabet[usize::from(*b) % alphabet.len()])
            .collect();
        let _ = d.feed(&chunk);
        let _ = d.feed(&state.to_be_bytes());
    }
}
