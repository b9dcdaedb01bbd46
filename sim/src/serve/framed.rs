//! The simulated pack as a BMS speaking a framed serial protocol (JBD,
//! Daly, JK, Pylontech ASCII) on a line or a pty: one generic server
//! loop, the protocol's own request framing and answers behind
//! [`FramedDevice`], and the injected [`Faults`](crate::Faults) applied
//! per unit the same way for every protocol.
//!
//! Each protocol's device side is written from the vendor's document on
//! its own, apart from the gateway's codec, so a misreading in one is not
//! hidden by the same misreading in the other.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::ServerStats;
use crate::rng::Rng;
use crate::SimPack;

/// Longest request kept while waiting for its end; longer junk is dropped.
pub const MAX_REQUEST_LEN: usize = 512;
/// How long a request may pause between bytes before its bytes are taken
/// as junk and dropped.
const REQUEST_SILENCE: Duration = Duration::from_millis(100);
/// How long writing one answer may take before the line is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// One simulated pack behind a framed protocol.
#[derive(Debug, Clone)]
pub struct FramedUnit {
    /// Its address on the line, for the protocols that have one
    /// (Pylontech ASCII ADR); ignored by the others.
    pub address: u8,
    /// The pack.
    pub pack: SimPack,
    /// The serial number it reports, where the protocol carries one.
    pub serial_number: String,
}

impl FramedUnit {
    /// `pack` at `address`, its serial number derived from `seed`.
    pub fn new(address: u8, pack: SimPack, seed: u64) -> Self {
        Self {
            address,
            pack,
            serial_number: format!("PGSIM{seed:08}"),
        }
    }
}

/// What the bytes received so far hold, by the protocol's request framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestScan {
    /// Not enough bytes to tell.
    NeedMore,
    /// The first `n` bytes are one request frame (its checksum not yet
    /// checked).
    Frame(usize),
    /// The first `n` bytes cannot begin a request: drop them.
    Junk(usize),
}

/// One protocol's device side: how requests are delimited, which unit a
/// request is for, and the frames that answer it. Pure; the server loop
/// does the I/O and the faults.
pub trait FramedDevice: Send + Sync + 'static {
    /// What the bytes received so far hold.
    fn scan_request(buf: &[u8]) -> RequestScan;

    /// The unit a whole request frame addresses: `Ok(Some(address))` for
    /// a protocol with addresses, `Ok(None)` for one without (the line's
    /// first unit answers), `Err` for a frame with a bad checksum or
    /// layout (ignored and counted, as a real BMS does).
    fn address(request: &[u8]) -> Result<Option<u8>, BadRequest>;

    /// The frames that answer `request` (whose checksum is good) for
    /// `unit`, in order: one for most commands, several for Daly's cell
    /// and temperature lists, an error frame where the protocol has one,
    /// none where the BMS stays silent. Writes change the pack through
    /// [`SimPack::apply_setting`]; reads advance its model to now first.
    fn answer(unit: &FramedUnit, request: &[u8]) -> Vec<Vec<u8>>;

    /// Spoils `frame`'s checksum, for [`Faults::corrupt_crc`](crate::Faults).
    fn corrupt(frame: &mut [u8]);
}

/// Why a request frame was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Its checksum does not match.
    Checksum,
    /// It breaks the protocol's layout.
    Malformed,
}

/// How a framed server behaves.
#[derive(Debug, Clone, Default)]
pub struct FramedServerOptions {
    /// Counters (clone before passing to read them while serving).
    pub stats: ServerStats,
    /// Seed of the garbage answered under [`Faults::garbage`](crate::Faults::garbage).
    pub seed: u64,
}

/// Waits for the next request frame, dropping junk before it. `Ok(None)`
/// on shutdown or end of stream.
async fn read_request<D: FramedDevice, S: AsyncRead + Unpin>(
    port: &mut S,
    pending: &mut Vec<u8>,
    stats: &ServerStats,
    shutdown: &CancellationToken,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; 256];
    loop {
        match D::scan_request(pending) {
            RequestScan::Frame(n) => {
                let n = n.min(pending.len());
                let rest = pending.split_off(n);
                return Ok(Some(std::mem::replace(pending, rest)));
            }
            RequestScan::Junk(n) => {
                stats.count_malformed();
                let n = n.max(1).min(pending.len());
                pending.drain(..n);
                continue;
            }
            RequestScan::NeedMore if pending.len() >= MAX_REQUEST_LEN => {
                stats.count_malformed();
                pending.clear();
                continue;
            }
            RequestScan::NeedMore => {}
        }
        let read = async {
            if pending.is_empty() {
                port.read(&mut chunk).await.map(Some)
            } else {
                // A request cut off mid-way is junk once the line is quiet.
                match tokio::time::timeout(REQUEST_SILENCE, port.read(&mut chunk)).await {
                    Ok(read) => read.map(Some),
                    Err(_) => Ok(None),
                }
            }
        };
        let n = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            n = read => n?,
        };
        match n {
            Some(0) => return Ok(None),
            Some(n) => pending.extend_from_slice(&chunk[..n]),
            None => {
                stats.count_malformed();
                pending.clear();
            }
        }
    }
}

/// The bytes `unit` sends for `request` under its faults; `None` for
/// silence.
async fn respond<D: FramedDevice>(
    unit: &FramedUnit,
    request: &[u8],
    rng: &mut Rng,
    stats: &ServerStats,
) -> Option<Vec<u8>> {
    let faults = unit.pack.faults();
    if faults.unresponsive {
        return None;
    }
    if faults.response_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.response_delay_ms)).await;
    }
    stats.count_request();
    if faults.garbage {
        let len = 4 + (rng.next_u64() % 29) as usize;
        return Some((0..len).map(|_| rng.next_u64() as u8).collect());
    }
    let mut bytes = Vec::new();
    for mut frame in D::answer(unit, request) {
        if faults.corrupt_crc {
            D::corrupt(&mut frame);
        }
        bytes.extend_from_slice(&frame);
    }
    (!bytes.is_empty()).then_some(bytes)
}

/// Serves `units` as BMSs speaking protocol `D` on `port` until `shutdown`
/// (then `Ok`) or the port fails (its error). A request for an address
/// not served gets no answer, as on a real bus; a request with a bad
/// checksum or layout is ignored and counted.
pub async fn serve_framed<D: FramedDevice, S: AsyncRead + AsyncWrite + Unpin>(
    mut port: S,
    units: Vec<FramedUnit>,
    options: FramedServerOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stats = options.stats;
    let mut rng = Rng::new(options.seed, 0x4652_4D44);
    let mut pending = Vec::with_capacity(MAX_REQUEST_LEN);
    while let Some(request) =
        read_request::<D, _>(&mut port, &mut pending, &stats, &shutdown).await?
    {
        let unit = match D::address(&request) {
            Ok(Some(address)) => units.iter().find(|u| u.address == address),
            Ok(None) => units.first(),
            Err(BadRequest::Checksum) => {
                stats.count_crc_error();
                continue;
            }
            Err(BadRequest::Malformed) => {
                stats.count_malformed();
                continue;
            }
        };
        let Some(unit) = unit else { continue };
        let Some(bytes) = respond::<D>(unit, &request, &mut rng, &stats).await else {
            continue;
        };
        let write = async {
            port.write_all(&bytes).await?;
            port.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "BMS write stalled")
            })??;
    }
    Ok(())
}
