//! The framed serial link over a real pseudo-terminal, with a small test
//! framing: noise dropped, several frames in one answer, each failure told
//! apart by kind, stale bytes never taken for an answer, a flood bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use packgate_drivers::bms::{FrameError, FrameStatus, Framing, SerialFrameLink, SerialLineConfig};
use packgate_drivers::{BusLink, DriverError, DriverErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

/// `02 LEN PAYLOAD.. SUM`, SUM the low byte of the sum of LEN and PAYLOAD.
struct TestFraming;

impl Framing for TestFraming {
    const START: u8 = 0x02;
    const MAX_LEN: usize = 40;

    fn frame_len(buf: &[u8]) -> FrameStatus {
        let Some(&len) = buf.get(1) else {
            return FrameStatus::Incomplete;
        };
        let total = usize::from(len) + 3;
        if total > Self::MAX_LEN {
            return FrameStatus::Invalid(FrameError::Malformed(format!("length {len}")));
        }
        if buf.len() < total {
            return FrameStatus::Incomplete;
        }
        let sum = buf[1..total - 1]
            .iter()
            .fold(0u8, |acc, b| acc.wrapping_add(*b));
        if sum != buf[total - 1] {
            return FrameStatus::Invalid(FrameError::Checksum {
                computed: u32::from(sum),
                received: u32::from(buf[total - 1]),
            });
        }
        FrameStatus::Complete(total)
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, payload.len() as u8];
    f.extend_from_slice(payload);
    let sum = f[1..].iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    f.push(sum);
    f
}

fn line() -> (SerialFrameLink, SerialStream) {
    let (device, client) = SerialStream::pair().unwrap();
    let mut config = SerialLineConfig::new("/nonexistent/packgate-test-line", 9600);
    config.request_timeout = Duration::from_millis(300);
    config.inter_frame_gap = Duration::from_millis(1);
    (SerialFrameLink::with_port(config, client), device)
}

/// Reads the request the link sent, then answers with `answer` in pieces.
async fn answer_with(device: &mut SerialStream, answer: Vec<Vec<u8>>) -> Vec<u8> {
    let mut request = [0u8; 16];
    let n = device.read(&mut request).await.unwrap();
    for piece in answer {
        device.write_all(&piece).await.unwrap();
        device.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    request[..n].to_vec()
}

fn payloads(
    frames: &[Vec<u8>],
) -> Result<Result<Vec<Vec<u8>>, packgate_drivers::DeviceException>, FrameError> {
    Ok(Ok(frames
        .iter()
        .map(|f| f[2..f.len() - 1].to_vec())
        .collect()))
}

#[tokio::test]
async fn frames_are_found_behind_noise_and_split_across_reads() {
    let (mut link, mut device) = line();
    let mut first = vec![0xFF, 0x00, 0x13];
    let a = frame(&[1, 2, 3]);
    let b = frame(&[9; 7]);
    first.extend_from_slice(&a[..2]);
    let mut second = a[2..].to_vec();
    second.extend_from_slice(&b);
    let device_side = tokio::spawn(async move {
        let request = answer_with(&mut device, vec![first, second]).await;
        (request, device)
    });
    let got = link
        .request::<TestFraming, _>(&[0xAA, 0xBB], 2, payloads)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![vec![1, 2, 3], vec![9; 7]]);
    let (request, _device) = device_side.await.unwrap();
    assert_eq!(request, vec![0xAA, 0xBB]);
    let counts = link.error_counts().unwrap();
    assert_eq!((counts.requests, counts.errors()), (1, 0));
}

#[tokio::test]
async fn a_stray_start_byte_before_a_frame_costs_nothing() {
    let (mut link, mut device) = line();
    // A start byte whose "frame" fails its checksum, then the real frame
    // in the same burst.
    let mut answer = vec![0x02, 0x01, 0x55, 0x00];
    answer.extend(frame(&[6, 6, 6]));
    let server = tokio::spawn(async move {
        answer_with(&mut device, vec![answer]).await;
        device
    });
    let got = link
        .request::<TestFraming, _>(&[5], 1, payloads)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![vec![6, 6, 6]]);
    let _ = server.await.unwrap();
    assert_eq!(link.error_counts().unwrap().errors(), 0);
}

#[tokio::test]
async fn each_failure_has_its_kind_and_the_line_recovers() {
    let (mut link, mut device) = line();
    // Silence: a timeout.
    let err = link
        .request::<TestFraming, _>(&[1], 1, payloads)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Timeout);
    let mut stale = [0u8; 8];
    let _ = device.read(&mut stale).await.unwrap();

    // A bad checksum.
    let mut bad = frame(&[5, 5]);
    *bad.last_mut().unwrap() ^= 0xFF;
    let server = tokio::spawn(async move {
        answer_with(&mut device, vec![bad]).await;
        device
    });
    let err = link
        .request::<TestFraming, _>(&[2], 1, payloads)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::Frame(FrameError::Checksum { .. })),
        "{err:?}"
    );
    let mut device = server.await.unwrap();

    // Cut off after half a frame: short.
    let half = frame(&[7; 10])[..5].to_vec();
    let server = tokio::spawn(async move {
        answer_with(&mut device, vec![half]).await;
        device
    });
    let err = link
        .request::<TestFraming, _>(&[3], 1, payloads)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DriverError::Frame(FrameError::Short { got: 5, .. })),
        "{err:?}"
    );
    let mut device = server.await.unwrap();

    // A late answer to an earlier request waits on the line: it is dropped
    // before the next request, whose own answer is taken.
    device.write_all(&frame(&[0xEE])).await.unwrap();
    device.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let server = tokio::spawn(async move {
        answer_with(&mut device, vec![frame(&[4, 4])]).await;
        device
    });
    let got = link
        .request::<TestFraming, _>(&[4], 1, payloads)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![vec![4, 4]]);
    let _device = server.await.unwrap();
    let counts = link.error_counts().unwrap();
    assert_eq!(counts.requests, 4);
    assert_eq!((counts.timeouts, counts.protocol), (1, 2));
    assert_eq!((counts.checksum, counts.short_frames), (1, 1));
}

#[tokio::test]
async fn a_flooding_device_costs_one_bounded_request() {
    let (mut link, mut device) = line();
    let server = tokio::spawn(async move {
        let mut request = [0u8; 8];
        let _ = device.read(&mut request).await.unwrap();
        // A frame start followed by a length the framing refuses, then
        // endless start bytes with no end.
        let flood = vec![0x02; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(400), device.write_all(&flood)).await;
        device
    });
    let err = link
        .request::<TestFraming, _>(&[9], 1, payloads)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Protocol);
    let _ = server.await.unwrap();
}

#[tokio::test]
async fn a_slow_loris_device_costs_one_request_timeout_at_most() {
    let (mut link, mut device) = line();
    let server = tokio::spawn(async move {
        let mut request = [0u8; 8];
        let _ = device.read(&mut request).await.unwrap();
        // A frame announcing 36 bytes, dribbled one byte every 90 ms
        // (3.5 s in all): never quiet for long enough to be cut short.
        let frame = frame(&[1; 36]);
        for byte in frame {
            if device.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(90)).await;
        }
        device
    });
    let started = std::time::Instant::now();
    let err = link
        .request::<TestFraming, _>(&[9], 1, payloads)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, DriverError::Frame(FrameError::Short { .. })),
        "{err:?}"
    );
    // Bounded by the request's own timeout (300 ms) and the drain that
    // follows a broken answer (at most 16 reads of 100 ms), never by the
    // device's pace.
    assert!(took < Duration::from_millis(3_000), "{took:?}");
    let _ = server.await.unwrap();
}

#[tokio::test]
async fn a_decoder_refusal_is_counted_as_its_kind() {
    let (mut link, mut device) = line();
    let server = tokio::spawn(async move {
        answer_with(&mut device, vec![frame(&[1])]).await;
        device
    });
    let err = link
        .request::<TestFraming, ()>(&[1], 1, |_| {
            Err(FrameError::WrongAddress {
                expected: 2,
                found: 3,
            })
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        DriverError::Frame(FrameError::WrongAddress { .. })
    ));
    let _ = server.await.unwrap();
    assert_eq!(link.error_counts().unwrap().wrong_address, 1);
}
