//! Modbus RTU: the framing (CRC-16/MODBUS, frames delimited by the
//! 3.5-character silent interval or by their known length), pure and
//! tested, and a slave server answering for several units on one line.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{answer, apply_broadcast, Answer, ServerStats, SimUnit};
use crate::rng::Rng;

/// Longest RTU frame: unit id, 253 bytes of PDU, CRC.
pub const MAX_FRAME_LEN: usize = 256;
/// Shortest RTU frame: unit id, function code, CRC.
pub const MIN_FRAME_LEN: usize = 4;
/// The unit id every slave obeys and none answers.
pub const BROADCAST_UNIT: u8 = 0;
/// How long writing one response may take before the line is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

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

/// A frame: unit id, PDU, CRC low byte first.
pub fn encode_frame(unit_id: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(pdu.len() + 3);
    frame.push(unit_id);
    frame.extend_from_slice(pdu);
    let crc = crc16(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// Why bytes on the line are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtuFrameError {
    /// Fewer than [`MIN_FRAME_LEN`] or more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {0} bytes")]
    BadLength(usize),
    /// The CRC does not match the contents.
    #[error("bad CRC: computed {computed:#06x}, received {received:#06x}")]
    BadCrc {
        /// The CRC of the contents.
        computed: u16,
        /// The CRC in the frame.
        received: u16,
    },
}

/// Splits a frame into its unit id and PDU, checking length and CRC.
pub fn decode_frame(frame: &[u8]) -> Result<(u8, &[u8]), RtuFrameError> {
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()) {
        return Err(RtuFrameError::BadLength(frame.len()));
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    let computed = crc16(body);
    let received = u16::from_le_bytes([crc[0], crc[1]]);
    if computed != received {
        return Err(RtuFrameError::BadCrc { computed, received });
    }
    Ok((body[0], &body[1..]))
}

/// The length of the request frame that starts `buf`, when its function
/// code says (reads and single writes: 8 bytes; write multiple: 9 plus its
/// byte count, once that byte has arrived). `None` for an unknown function:
/// the silent interval alone ends that frame.
pub fn expected_request_len(buf: &[u8]) -> Option<usize> {
    match buf.get(1)? {
        1..=6 => Some(8),
        15 | 16 => buf.get(6).map(|n| 9 + usize::from(*n)),
        _ => None,
    }
}

/// The 3.5-character silent interval ending a frame at `baud_rate` (11 bits
/// a character); the standard's fixed 1.75 ms above 19 200 baud.
pub fn silent_interval(baud_rate: u32) -> Duration {
    if baud_rate == 0 || baud_rate > 19_200 {
        Duration::from_micros(1750)
    } else {
        Duration::from_micros(38_500_000 / u64::from(baud_rate))
    }
}

/// How an RTU server listens.
#[derive(Debug, Clone)]
pub struct RtuServerOptions {
    /// The line's baud rate, which sets the silent interval.
    pub baud_rate: u32,
    /// Counters (clone before passing to read them while serving).
    pub stats: ServerStats,
    /// Seed of the garbage answered under [`Faults::garbage`](crate::Faults::garbage).
    pub seed: u64,
}

impl Default for RtuServerOptions {
    fn default() -> Self {
        Self {
            baud_rate: 9600,
            stats: ServerStats::default(),
            seed: 0,
        }
    }
}

/// Reads one request frame: waits for its first byte (until `shutdown`),
/// then takes bytes until the frame's known length or the silent interval.
/// Bytes past the known length stay in `pending` for the next frame.
/// `Ok(None)` on shutdown or end of stream.
async fn read_frame<S: AsyncRead + Unpin>(
    port: &mut S,
    pending: &mut Vec<u8>,
    silence: Duration,
    shutdown: &CancellationToken,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; MAX_FRAME_LEN];
    if pending.is_empty() {
        let n = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            n = port.read(&mut chunk) => n?,
        };
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&chunk[..n]);
    }
    loop {
        if let Some(len) = expected_request_len(pending) {
            if pending.len() >= len {
                let rest = pending.split_off(len);
                return Ok(Some(std::mem::replace(pending, rest)));
            }
        }
        if pending.len() > MAX_FRAME_LEN {
            return Ok(Some(std::mem::take(pending)));
        }
        match tokio::time::timeout(silence, port.read(&mut chunk)).await {
            Err(_) => return Ok(Some(std::mem::take(pending))),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => pending.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Serves `units` as Modbus RTU slaves on `port` until `shutdown` (then
/// `Ok`) or the port fails (its error). A request for a unit not served
/// gets no answer, as on a real bus; a broadcast write (unit 0) is applied
/// and not answered; a frame with a bad CRC is ignored and counted.
/// Faults apply per unit (see [`Faults`](crate::Faults)).
pub async fn serve_modbus_rtu<S: AsyncRead + AsyncWrite + Unpin>(
    mut port: S,
    units: Vec<SimUnit>,
    options: RtuServerOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let silence = silent_interval(options.baud_rate);
    let stats = options.stats;
    let mut rng = Rng::new(options.seed, 0x525455);
    let mut pending = Vec::with_capacity(2 * MAX_FRAME_LEN);
    while let Some(frame) = read_frame(&mut port, &mut pending, silence, &shutdown).await? {
        let (unit_id, pdu) = match decode_frame(&frame) {
            Ok(parts) => parts,
            Err(RtuFrameError::BadCrc { .. }) => {
                stats.count_crc_error();
                continue;
            }
            Err(RtuFrameError::BadLength(_)) => {
                stats.count_malformed();
                continue;
            }
        };
        if unit_id == BROADCAST_UNIT {
            apply_broadcast(&units, pdu, &stats);
            continue;
        }
        let Some(unit) = units.iter().find(|u| u.unit_id == unit_id) else {
            continue;
        };
        let bytes = match answer(unit, pdu, &mut rng, &stats).await {
            Answer::Silent => continue,
            Answer::Garbage(bytes) => bytes,
            Answer::Pdu(pdu) => {
                let mut frame = encode_frame(unit_id, &pdu);
                if unit.pack.faults().corrupt_crc {
                    if let Some(last) = frame.last_mut() {
                        *last ^= 0x5A;
                    }
                }
                frame
            }
        };
        let write = async {
            port.write_all(&bytes).await?;
            port.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "RTU write stalled")
            })??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Faults, SimPack, SimPackConfig};

    #[test]
    fn crc_matches_the_reference() {
        // Read 10 holding registers from 0 at unit 1: 01 03 00 00 00 0A C5 CD.
        assert_eq!(
            encode_frame(1, &[3, 0, 0, 0, 10]),
            vec![1, 3, 0, 0, 0, 10, 0xC5, 0xCD]
        );
        assert_eq!(crc16(b"123456789"), 0x4B37);
    }

    #[test]
    fn frames_decode_and_bad_ones_are_told_apart() {
        let frame = encode_frame(7, &[3, 2, 0, 42]);
        assert_eq!(decode_frame(&frame), Ok((7, &[3u8, 2, 0, 42][..])));
        let mut bad = frame.clone();
        bad[3] ^= 1;
        assert!(matches!(
            decode_frame(&bad),
            Err(RtuFrameError::BadCrc { .. })
        ));
        assert_eq!(decode_frame(&frame[..3]), Err(RtuFrameError::BadLength(3)));
        assert_eq!(decode_frame(&[0; 300]), Err(RtuFrameError::BadLength(300)));
    }

    #[test]
    fn request_lengths_and_silence() {
        assert_eq!(expected_request_len(&[1, 3]), Some(8));
        assert_eq!(expected_request_len(&[1, 16, 0, 100, 0, 2]), None);
        assert_eq!(expected_request_len(&[1, 16, 0, 100, 0, 2, 4]), Some(13));
        assert_eq!(expected_request_len(&[1, 0x2B]), None);
        assert_eq!(expected_request_len(&[1]), None);
        assert_eq!(silent_interval(9600), Duration::from_micros(4010));
        assert_eq!(silent_interval(115_200), Duration::from_micros(1750));
    }

    #[tokio::test]
    async fn serves_units_on_a_duplex_line() {
        let (mut master, slave) = tokio::io::duplex(1024);
        let a = SimUnit::new(1, SimPack::new(&SimPackConfig::default()), 1);
        let b = SimUnit::new(2, SimPack::new(&SimPackConfig::default()), 2);
        b.pack.set_faults(Faults {
            corrupt_crc: true,
            ..Faults::default()
        });
        let options = RtuServerOptions::default();
        let stats = options.stats.clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_modbus_rtu(
            slave,
            vec![a, b],
            options,
            shutdown.clone(),
        ));
        let mut buf = [0u8; 64];
        // Two requests in one write: split by their known length.
        let mut two = encode_frame(1, &[3, 0, 4, 0, 1]);
        two.extend(encode_frame(9, &[3, 0, 4, 0, 1]));
        master.write_all(&two).await.unwrap();
        let n = master.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &encode_frame(1, &[3, 2, 0, 16])[..]);
        // Bad CRC: ignored and counted; then unit 2 answers with a bad CRC.
        let mut bad = encode_frame(1, &[3, 0, 4, 0, 1]);
        bad[7] ^= 1;
        master.write_all(&bad).await.unwrap();
        master
            .write_all(&encode_frame(2, &[3, 0, 4, 0, 1]))
            .await
            .unwrap();
        let n = master.read(&mut buf).await.unwrap();
        assert!(matches!(
            decode_frame(&buf[..n]),
            Err(RtuFrameError::BadCrc { .. })
        ));
        assert_eq!(stats.crc_errors(), 1);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
