//! [`SerialFrameLink`]: one serial line (RS-485 or a BMS's UART) carrying
//! a framed BMS protocol, opened lazily, reopened with exponential
//! backoff, with a silent gap between exchanges and one deadline for each
//! request's whole answer.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::frame::{FrameError, FrameStatus, Framing};
use crate::modbus::INITIAL_RECONNECT_BACKOFF;
use crate::{BusLink, DeviceException, DriverError, DriverResult, LinkErrorCounts};

/// Longest wait for more bytes of a frame that has begun: a BMS sends a
/// frame in one go, so a pause this long means it was cut off.
const FRAME_SILENCE: Duration = Duration::from_millis(100);
/// Most reads spent dropping stale bytes before a request (a flooding
/// device costs this, then the request goes out regardless).
const MAX_DRAIN_READS: usize = 16;
/// Size of one read from the port.
const CHUNK_LEN: usize = 256;

/// A serial line to BMSs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialLineConfig {
    /// Serial device, such as `/dev/ttyUSB0`.
    pub path: String,
    /// Baud rate (8N1: every framed BMS protocol here uses it).
    pub baud_rate: u32,
    /// Longest wait for a request's whole answer.
    pub request_timeout: Duration,
    /// Least silence on the line between the end of one exchange and the
    /// next request.
    pub inter_frame_gap: Duration,
    /// Longest wait between attempts to reopen a failed port.
    pub reconnect_backoff_max: Duration,
}

impl SerialLineConfig {
    /// The gap between exchanges unless a protocol or the configuration
    /// asks for another: RS-485 converters need time to turn the line
    /// round.
    pub const DEFAULT_INTER_FRAME_GAP: Duration = Duration::from_millis(20);

    /// `path` at `baud_rate`, a 500 ms request timeout, the default gap
    /// and backoff up to 10 s.
    pub fn new(path: impl Into<String>, baud_rate: u32) -> Self {
        Self {
            path: path.into(),
            baud_rate,
            request_timeout: Duration::from_millis(500),
            inter_frame_gap: Self::DEFAULT_INTER_FRAME_GAP,
            reconnect_backoff_max: Duration::from_secs(10),
        }
    }
}

/// One serial line of BMSs. The bus owner holds it and lends it to each
/// pack's driver in turn, so requests never interleave on the wire.
pub struct SerialFrameLink {
    config: SerialLineConfig,
    port: Option<SerialStream>,
    /// Earliest start of the next request (the inter-frame gap).
    ready_at: Option<Instant>,
    /// Earliest next attempt to open after a failed one.
    retry_at: Option<Instant>,
    backoff: Duration,
    counts: LinkErrorCounts,
}

impl fmt::Debug for SerialFrameLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialFrameLink")
            .field("config", &self.config)
            .field("open", &self.port.is_some())
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl BusLink for SerialFrameLink {
    fn error_counts(&self) -> Option<LinkErrorCounts> {
        Some(self.counts)
    }
}

fn transport(e: impl fmt::Display) -> DriverError {
    DriverError::Transport(e.to_string())
}

impl SerialFrameLink {
    /// The line `config` describes, opened at the first request.
    pub fn new(config: SerialLineConfig) -> Self {
        Self {
            config,
            port: None,
            ready_at: None,
            retry_at: None,
            backoff: INITIAL_RECONNECT_BACKOFF,
            counts: LinkErrorCounts::default(),
        }
    }

    /// The line over an already open `port` (a pty end, say); after a
    /// failure it is reopened from `config.path`.
    pub fn with_port(config: SerialLineConfig, port: SerialStream) -> Self {
        let mut link = Self::new(config);
        link.port = Some(port);
        link
    }

    /// The longest wait for one request's answer.
    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }

    /// Time one poll of `requests` exchanges may take: each its full
    /// timeout and gap, plus one for a reopen.
    pub fn poll_timeout(&self, requests: usize) -> Duration {
        let requests = u32::try_from(requests).unwrap_or(u32::MAX);
        (self.config.request_timeout + self.config.inter_frame_gap)
            .saturating_mul(requests.saturating_add(1))
    }

    /// Whether the port is open now.
    pub fn is_open(&self) -> bool {
        self.port.is_some()
    }

    /// Sends `request` and reads `frames` reply frames of protocol `F`,
    /// all within one request timeout, then gives them to `decode`. Stale
    /// input is dropped before the request and noise before each frame's
    /// start byte; the outcome is counted by kind.
    pub async fn request<F: Framing, T>(
        &mut self,
        request: &[u8],
        frames: usize,
        decode: impl FnOnce(&[Vec<u8>]) -> Result<Result<T, DeviceException>, FrameError>,
    ) -> DriverResult<T> {
        if let Some(at) = self.ready_at {
            sleep_until(at).await;
        }
        let received = self.exchange::<F>(request, frames).await;
        self.ready_at = Some(Instant::now() + self.config.inter_frame_gap);
        let result = match received {
            Ok(frames) => decode(&frames).map_err(DriverError::Frame),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.backoff = INITIAL_RECONNECT_BACKOFF,
            Err(DriverError::Transport(_)) => self.port = None,
            Err(_) => {}
        }
        self.counts.count(&result);
        result
    }

    async fn exchange<F: Framing>(
        &mut self,
        request: &[u8],
        frames: usize,
    ) -> Result<Vec<Vec<u8>>, DriverError> {
        let limit = self.config.request_timeout;
        let port = self.connect()?;
        drain(port, Duration::ZERO).await?;
        let write = async {
            port.write_all(request).await?;
            port.flush().await
        };
        match timeout(limit, write).await {
            Err(_) => return Err(DriverError::Timeout(limit)),
            Ok(result) => result.map_err(transport)?,
        }
        let deadline = Instant::now() + limit;
        let mut received = Vec::with_capacity(frames);
        let mut buf = Vec::with_capacity(CHUNK_LEN);
        while received.len() < frames {
            match read_frame::<F>(port, &mut buf, deadline, limit).await {
                Ok(frame) => received.push(frame),
                Err(e) => {
                    if matches!(e, DriverError::Frame(_)) {
                        // Whatever else is on its way belongs to this
                        // broken answer, not to the next request.
                        drain(port, FRAME_SILENCE).await?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(received)
    }

    /// The open port, opening it if the backoff allows.
    fn connect(&mut self) -> Result<&mut SerialStream, DriverError> {
        if self.port.is_none() {
            let now = Instant::now();
            if let Some(at) = self.retry_at.filter(|at| now < *at) {
                return Err(DriverError::Transport(format!(
                    "line down, next attempt in {:?}",
                    at - now
                )));
            }
            let opened = tokio_serial::new(&self.config.path, self.config.baud_rate)
                .open_native_async()
                .map_err(|e| DriverError::Transport(format!("open {}: {e}", self.config.path)));
            match opened {
                Ok(port) => {
                    self.port = Some(port);
                    self.retry_at = None;
                    self.counts.opens += 1;
                }
                Err(e) => {
                    let max = self.config.reconnect_backoff_max;
                    self.retry_at = Some(now + self.backoff.min(max));
                    self.backoff = (self.backoff * 2).min(max);
                    return Err(e);
                }
            }
        }
        self.port
            .as_mut()
            .ok_or_else(|| DriverError::Transport("line not open".into()))
    }
}

/// Reads one frame of `F` into `buf` and takes it out (bytes after it
/// stay for the next frame of the same answer). Noise before the start
/// byte is dropped; so is a start byte that begins no valid frame (a stray
/// `N` before a JK frame), the search going on from the next byte. When
/// no valid frame follows before the line goes quiet, the first such error
/// is the answer's error; otherwise a frame that stops arriving for
/// [`FRAME_SILENCE`] or at the deadline is short.
async fn read_frame<F: Framing>(
    port: &mut SerialStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    limit: Duration,
) -> Result<Vec<u8>, DriverError> {
    let mut chunk = [0u8; CHUNK_LEN];
    let mut first_error: Option<FrameError> = None;
    loop {
        let mut scanned_to_end = false;
        while !scanned_to_end {
            match buf.iter().position(|b| *b == F::START) {
                Some(start) => {
                    buf.drain(..start);
                }
                None => buf.clear(),
            }
            if buf.is_empty() {
                break;
            }
            match F::frame_len(buf) {
                FrameStatus::Complete(len) if len <= buf.len() => {
                    let rest = buf.split_off(len);
                    return Ok(std::mem::replace(buf, rest));
                }
                FrameStatus::Invalid(e) => {
                    first_error.get_or_insert(e);
                    buf.drain(..1);
                }
                FrameStatus::Complete(_) | FrameStatus::Incomplete => scanned_to_end = true,
            }
        }
        if buf.len() >= F::MAX_LEN {
            return Err(DriverError::Frame(FrameError::Malformed(format!(
                "no frame end within {} bytes",
                F::MAX_LEN
            ))));
        }
        let until = if buf.is_empty() && first_error.is_none() {
            deadline
        } else {
            deadline.min(Instant::now() + FRAME_SILENCE)
        };
        match timeout_at(until, port.read(&mut chunk)).await {
            Err(_) => {
                return Err(match first_error {
                    // What broke first says most: a frame with a bad
                    // checksum leaves bytes that may look like the start of
                    // another.
                    Some(e) => DriverError::Frame(e),
                    None if buf.is_empty() => DriverError::Timeout(limit),
                    _ => DriverError::Frame(FrameError::Short {
                        got: buf.len(),
                        expected: match F::frame_len(buf) {
                            FrameStatus::Complete(len) => len,
                            _ => buf.len() + 1,
                        },
                    }),
                });
            }
            Ok(Ok(0)) => return Err(DriverError::Transport("serial port closed".into())),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(transport(e)),
        }
    }
}

/// Drops what is waiting on the line: a late answer to an earlier request
/// must not be taken for this one's. `settle` is how long the line must
/// stay quiet (zero: only what has already arrived).
async fn drain(port: &mut SerialStream, settle: Duration) -> Result<(), DriverError> {
    let mut chunk = [0u8; CHUNK_LEN];
    for _ in 0..MAX_DRAIN_READS {
        match timeout(settle, port.read(&mut chunk)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => return Err(DriverError::Transport("serial port closed".into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(transport(e)),
        }
    }
    Ok(())
}
