//! Modbus TCP: MBAP framing, pure and tested, and a server that stands in
//! for a Modbus TCP gateway in front of an RS-485 bus: the unit id of each
//! request picks the pack, several connections at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{answer, apply_broadcast, registers, Answer, ServerStats, SimUnit};
use crate::rng::Rng;

/// Length of the MBAP header.
pub const MBAP_HEADER_LEN: usize = 7;
/// Longest PDU.
pub const MAX_PDU_LEN: usize = 253;
/// Most connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long writing one response may take before the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reading the rest of a frame once its header arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(2);

/// The MBAP header of a Modbus TCP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbapHeader {
    /// Transaction id, echoed in the response.
    pub transaction_id: u16,
    /// Unit id.
    pub unit_id: u8,
    /// Length of the PDU that follows.
    pub pdu_len: usize,
}

/// Why bytes are not an MBAP header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MbapError {
    /// The protocol id is not 0 (Modbus).
    #[error("protocol id {0} is not Modbus")]
    ProtocolId(u16),
    /// The length field gives an empty or too long PDU.
    #[error("length field {0} out of range")]
    Length(u16),
}

/// Parses an MBAP header.
pub fn decode_mbap(header: &[u8; MBAP_HEADER_LEN]) -> Result<MbapHeader, MbapError> {
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    if protocol != 0 {
        return Err(MbapError::ProtocolId(protocol));
    }
    let length = u16::from_be_bytes([header[4], header[5]]);
    if !(2..=1 + MAX_PDU_LEN as u16).contains(&length) {
        return Err(MbapError::Length(length));
    }
    Ok(MbapHeader {
        transaction_id: u16::from_be_bytes([header[0], header[1]]),
        unit_id: header[6],
        pdu_len: usize::from(length) - 1,
    })
}

/// A Modbus TCP frame: MBAP header and PDU.
pub fn encode_mbap(transaction_id: u16, unit_id: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MBAP_HEADER_LEN + pdu.len());
    frame.extend_from_slice(&transaction_id.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    frame.push(unit_id);
    frame.extend_from_slice(pdu);
    frame
}

/// Serves `units` over Modbus TCP on `listener` until `shutdown` (then
/// `Ok`, with every connection closed) or accepting fails. Unit 0 (or 255)
/// on a write is a broadcast when no unit has that id; a unit not served
/// gets exception 0x0B (gateway target failed to respond).
pub async fn serve_modbus_tcp(
    listener: TcpListener,
    units: Vec<SimUnit>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let units: Arc<[SimUnit]> = units.into();
    let stats = ServerStats::default();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut seed = 0u64;
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            permit = slots.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            return Ok(());
        };
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        seed += 1;
        let (units, stats, shutdown) = (units.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = serve_connection(stream, &units, &stats, seed) => {}
            }
            drop(permit);
        });
    }
}

/// Serves one connection until the peer closes it, it idles out or it
/// sends something that is not Modbus TCP.
async fn serve_connection(
    mut stream: TcpStream,
    units: &[SimUnit],
    stats: &ServerStats,
    seed: u64,
) -> std::io::Result<()> {
    let mut rng = Rng::new(seed, 0x544350);
    let mut header = [0u8; MBAP_HEADER_LEN];
    let mut pdu = vec![0u8; MAX_PDU_LEN];
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut header)).await {
            Err(_) => return Ok(()),
            Ok(read) => read?,
        };
        let Ok(mbap) = decode_mbap(&header) else {
            stats.count_malformed();
            return Ok(());
        };
        let pdu = &mut pdu[..mbap.pdu_len];
        tokio::time::timeout(FRAME_TIMEOUT, stream.read_exact(pdu))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let response = match units.iter().find(|u| u.unit_id == mbap.unit_id) {
            Some(unit) => match answer(unit, pdu, &mut rng, stats).await {
                Answer::Silent => continue,
                Answer::Garbage(bytes) => bytes,
                Answer::Pdu(response) => encode_mbap(mbap.transaction_id, mbap.unit_id, &response),
            },
            None if matches!(mbap.unit_id, 0 | 255)
                && matches!(
                    registers::parse_request(pdu),
                    Ok(registers::Request::Write { .. })
                ) =>
            {
                apply_broadcast(units, pdu, stats);
                continue;
            }
            None => {
                stats.count_exception();
                let function = pdu.first().copied().unwrap_or(0);
                let exception = registers::exception_response(
                    function,
                    registers::EXCEPTION_GATEWAY_TARGET_FAILED,
                );
                encode_mbap(mbap.transaction_id, mbap.unit_id, &exception)
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&response))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimPack, SimPackConfig};

    #[test]
    fn mbap_round_trips_and_bad_headers_are_refused() {
        let frame = encode_mbap(0x1234, 7, &[3, 0, 0, 0, 1]);
        assert_eq!(frame, vec![0x12, 0x34, 0, 0, 0, 6, 7, 3, 0, 0, 0, 1]);
        let header: [u8; 7] = frame[..7].try_into().unwrap();
        assert_eq!(
            decode_mbap(&header),
            Ok(MbapHeader {
                transaction_id: 0x1234,
                unit_id: 7,
                pdu_len: 5
            })
        );
        assert_eq!(
            decode_mbap(&[0, 1, 0, 1, 0, 6, 7]),
            Err(MbapError::ProtocolId(1))
        );
        assert_eq!(
            decode_mbap(&[0, 1, 0, 0, 0, 1, 7]),
            Err(MbapError::Length(1))
        );
        assert_eq!(
            decode_mbap(&[0, 1, 0, 0, 1, 0, 7]),
            Err(MbapError::Length(256))
        );
    }

    #[tokio::test]
    async fn serves_units_and_refuses_unknown_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let unit = SimUnit::new(3, SimPack::new(&SimPackConfig::default()), 1);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_modbus_tcp(listener, vec![unit], shutdown.clone()));
        let mut client = TcpStream::connect(address).await.unwrap();
        let mut buf = [0u8; 64];
        client
            .write_all(&encode_mbap(1, 3, &[3, 0, 4, 0, 1]))
            .await
            .unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &encode_mbap(1, 3, &[3, 2, 0, 16])[..]);
        client
            .write_all(&encode_mbap(2, 9, &[3, 0, 4, 0, 1]))
            .await
            .unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &encode_mbap(2, 9, &[0x83, 0x0B])[..]);
        shutdown.cancel();
        server.await.unwrap().unwrap();
        // The connection was closed by the shutdown.
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    }
}
