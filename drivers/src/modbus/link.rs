//! [`ModbusLink`]: one bus (a serial line speaking Modbus RTU, or a
//! Modbus TCP endpoint), opened lazily, reopened with exponential backoff
//! after a failure, with a silent gap between exchanges and a timeout on
//! every request.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_serial::{DataBits, Parity, SerialPortBuilderExt, SerialStream, StopBits};

use super::frame;
use crate::profile::ReadFunction;
use crate::{BusLink, DriverError, DriverResult, LinkErrorCounts};

/// Wait before the first reopen attempt after a failed one; it doubles up
/// to the link's `reconnect_backoff_max`.
pub const INITIAL_RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// Shortest default inter-frame gap on an RTU line.
pub const MIN_RTU_INTER_FRAME_GAP: Duration = Duration::from_millis(2);
/// How long an RTU reply may pause between bytes before the frame is
/// taken as ended (USB adapters deliver in bursts, so more than 3.5
/// characters).
const RTU_REPLY_SILENCE: Duration = Duration::from_millis(50);
/// Most stale bytes dropped from an RTU line before a request.
const MAX_DRAIN_READS: usize = 16;

/// A Modbus RTU line.
#[derive(Debug, Clone, PartialEq)]
pub struct RtuLinkConfig {
    /// Serial device, e.g. `/dev/ttyUSB0`.
    pub path: String,
    /// Baud rate.
    pub baud_rate: u32,
    /// Parity.
    pub parity: Parity,
    /// Data bits.
    pub data_bits: DataBits,
    /// Stop bits.
    pub stop_bits: StopBits,
    /// Longest wait for a reply.
    pub request_timeout: Duration,
    /// Least silence on the line between the end of one exchange and the
    /// next request.
    pub inter_frame_gap: Duration,
    /// Longest wait between attempts to reopen a failed port.
    pub reconnect_backoff_max: Duration,
}

impl RtuLinkConfig {
    /// `path` at `baud_rate`, 8N1, 500 ms request timeout, an inter-frame
    /// gap of 3.5 characters (at least 2 ms), backoff up to 10 s.
    pub fn new(path: impl Into<String>, baud_rate: u32) -> Self {
        Self {
            path: path.into(),
            baud_rate,
            parity: Parity::None,
            data_bits: DataBits::Eight,
            stop_bits: StopBits::One,
            request_timeout: Duration::from_millis(500),
            inter_frame_gap: frame::silent_interval(baud_rate).max(MIN_RTU_INTER_FRAME_GAP),
            reconnect_backoff_max: Duration::from_secs(10),
        }
    }
}

/// A Modbus TCP endpoint (a device, or a gateway to an RS-485 bus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpLinkConfig {
    /// `host:port`.
    pub address: String,
    /// Longest wait for a reply.
    pub request_timeout: Duration,
    /// Least time between the end of one exchange and the next request
    /// (some gateways need it to switch their RS-485 side).
    pub inter_frame_gap: Duration,
    /// Longest wait for the connection.
    pub connect_timeout: Duration,
    /// Longest wait between attempts to reconnect.
    pub reconnect_backoff_max: Duration,
}

impl TcpLinkConfig {
    /// `address` with a 1 s request timeout, no gap, a 2 s connect
    /// timeout and backoff up to 10 s.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            request_timeout: Duration::from_secs(1),
            inter_frame_gap: Duration::ZERO,
            connect_timeout: Duration::from_secs(2),
            reconnect_backoff_max: Duration::from_secs(10),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

#[derive(Debug, Clone)]
enum Endpoint {
    Rtu(RtuLinkConfig),
    Tcp(TcpLinkConfig),
}

/// One Modbus bus and its transport. The bus's owner holds it and lends it
/// to each pack's driver in turn, so requests never interleave on the
/// wire.
pub struct ModbusLink {
    endpoint: Endpoint,
    stream: Option<Box<dyn Stream>>,
    /// Earliest start of the next request (the inter-frame gap).
    ready_at: Option<Instant>,
    /// Earliest next attempt to open after a failed one.
    retry_at: Option<Instant>,
    backoff: Duration,
    transaction_id: u16,
    counts: LinkErrorCounts,
}

impl fmt::Debug for ModbusLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModbusLink")
            .field("endpoint", &self.endpoint)
            .field("open", &self.stream.is_some())
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl BusLink for ModbusLink {
    fn error_counts(&self) -> Option<LinkErrorCounts> {
        Some(self.counts)
    }
}

fn transport(e: impl fmt::Display) -> DriverError {
    DriverError::Transport(e.to_string())
}

impl ModbusLink {
    fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            stream: None,
            ready_at: None,
            retry_at: None,
            backoff: INITIAL_RECONNECT_BACKOFF,
            transaction_id: 0,
            counts: LinkErrorCounts::default(),
        }
    }

    /// A Modbus RTU line, opened at the first request.
    pub fn rtu(config: RtuLinkConfig) -> Self {
        Self::new(Endpoint::Rtu(config))
    }

    /// A Modbus RTU line over an already open `port` (a pty end, say);
    /// after a failure it is reopened from `config.path`.
    pub fn rtu_with_port(config: RtuLinkConfig, port: SerialStream) -> Self {
        let mut link = Self::new(Endpoint::Rtu(config));
        link.stream = Some(Box::new(port));
        link
    }

    /// A Modbus TCP endpoint, connected at the first request.
    pub fn tcp(config: TcpLinkConfig) -> Self {
        Self::new(Endpoint::Tcp(config))
    }

    /// The longest wait for one reply.
    pub fn request_timeout(&self) -> Duration {
        match &self.endpoint {
            Endpoint::Rtu(c) => c.request_timeout,
            Endpoint::Tcp(c) => c.request_timeout,
        }
    }

    /// Whether the port is open (or the connection up) now.
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Requests and failures by kind, for the caller's metrics and logs.
    pub fn error_counts(&self) -> LinkErrorCounts {
        self.counts
    }

    /// Time one whole poll of a pack with `blocks` register blocks may
    /// take on this link: each block is one request with its full timeout,
    /// plus one for the gap and a reopen.
    pub fn poll_timeout(&self, blocks: usize) -> Duration {
        let blocks = u32::try_from(blocks).unwrap_or(u32::MAX);
        self.request_timeout()
            .saturating_mul(blocks.saturating_add(1))
    }

    /// Reads `count` registers from `start` of unit `unit_id`.
    pub async fn read_registers(
        &mut self,
        unit_id: u8,
        function: ReadFunction,
        start: u16,
        count: u16,
    ) -> DriverResult<Vec<u16>> {
        let pdu = frame::read_request(function.code(), start, count);
        self.exchange(unit_id, &pdu).await
    }

    /// Writes `values` from `start` of unit `unit_id` (function 6 for one
    /// register, 16 for more).
    pub async fn write_registers(
        &mut self,
        unit_id: u8,
        start: u16,
        values: &[u16],
    ) -> DriverResult<()> {
        let pdu = frame::write_request(start, values);
        Ok(self.exchange(unit_id, &pdu).await?.map(drop))
    }

    async fn exchange(&mut self, unit_id: u8, pdu: &[u8]) -> DriverResult<Vec<u16>> {
        if let Some(at) = self.ready_at {
            sleep_until(at).await;
        }
        let result = self.exchange_on_stream(unit_id, pdu).await;
        let (gap, is_tcp) = match &self.endpoint {
            Endpoint::Rtu(c) => (c.inter_frame_gap, false),
            Endpoint::Tcp(c) => (c.inter_frame_gap, true),
        };
        self.ready_at = Some(Instant::now() + gap);
        match &result {
            Ok(_) => self.backoff = INITIAL_RECONNECT_BACKOFF,
            Err(DriverError::Transport(_)) => self.stream = None,
            // A TCP stream out of step cannot be trusted for the next reply.
            Err(DriverError::Protocol(_)) if is_tcp => self.stream = None,
            Err(_) => {}
        }
        self.counts.count(&result);
        result
    }

    async fn exchange_on_stream(&mut self, unit_id: u8, pdu: &[u8]) -> DriverResult<Vec<u16>> {
        let request_timeout = self.request_timeout();
        self.transaction_id = self.transaction_id.wrapping_add(1);
        let transaction_id = self.transaction_id;
        let is_tcp = matches!(self.endpoint, Endpoint::Tcp(_));
        let stream = self.connect().await?;
        if is_tcp {
            tcp_exchange(stream, transaction_id, unit_id, pdu, request_timeout).await
        } else {
            rtu_exchange(stream, unit_id, pdu, request_timeout).await
        }
    }

    /// The open stream, opening it if the backoff allows.
    async fn connect(&mut self) -> Result<&mut Box<dyn Stream>, DriverError> {
        if self.stream.is_none() {
            let now = Instant::now();
            if let Some(at) = self.retry_at.filter(|at| now < *at) {
                return Err(DriverError::Transport(format!(
                    "link down, next attempt in {:?}",
                    at - now
                )));
            }
            match self.open().await {
                Ok(stream) => {
                    self.stream = Some(stream);
                    self.retry_at = None;
                    self.counts.opens += 1;
                }
                Err(e) => {
                    let max = match &self.endpoint {
                        Endpoint::Rtu(c) => c.reconnect_backoff_max,
                        Endpoint::Tcp(c) => c.reconnect_backoff_max,
                    };
                    self.retry_at = Some(now + self.backoff.min(max));
                    self.backoff = (self.backoff * 2).min(max);
                    return Err(e);
                }
            }
        }
        self.stream
            .as_mut()
            .ok_or_else(|| DriverError::Transport("link not open".into()))
    }

    async fn open(&self) -> Result<Box<dyn Stream>, DriverError> {
        match &self.endpoint {
            Endpoint::Rtu(c) => {
                let port = tokio_serial::new(&c.path, c.baud_rate)
                    .parity(c.parity)
                    .data_bits(c.data_bits)
                    .stop_bits(c.stop_bits)
                    .open_native_async()
                    .map_err(|e| DriverError::Transport(format!("open {}: {e}", c.path)))?;
                Ok(Box::new(port))
            }
            Endpoint::Tcp(c) => {
                let stream = timeout(c.connect_timeout, TcpStream::connect(&c.address))
                    .await
                    .map_err(|_| {
                        DriverError::Transport(format!(
                            "connect {}: no answer within {:?}",
                            c.address, c.connect_timeout
                        ))
                    })?
                    .map_err(|e| DriverError::Transport(format!("connect {}: {e}", c.address)))?;
                stream.set_nodelay(true).map_err(transport)?;
                Ok(Box::new(stream))
            }
        }
    }
}

/// Drops what is waiting on the line: a late reply to an earlier request
/// must not be taken for this one's. `settle` is how long the line must
/// stay quiet (zero: only what has already arrived).
async fn drain(stream: &mut Box<dyn Stream>, settle: Duration) -> Result<(), DriverError> {
    let mut chunk = [0u8; frame::MAX_RTU_FRAME_LEN];
    for _ in 0..MAX_DRAIN_READS {
        match timeout(settle, stream.read(&mut chunk)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => return Err(DriverError::Transport("serial port closed".into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(transport(e)),
        }
    }
    Ok(())
}

async fn write_frame(
    stream: &mut Box<dyn Stream>,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), DriverError> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match timeout(limit, write).await {
        Err(_) => Err(DriverError::Timeout(limit)),
        Ok(result) => result.map_err(transport),
    }
}

async fn rtu_exchange(
    stream: &mut Box<dyn Stream>,
    unit_id: u8,
    pdu: &[u8],
    request_timeout: Duration,
) -> DriverResult<Vec<u16>> {
    drain(stream, Duration::ZERO).await?;
    write_frame(stream, &frame::rtu_frame(unit_id, pdu), request_timeout).await?;
    let function = pdu.first().copied().unwrap_or(0);
    let deadline = Instant::now() + request_timeout;
    let mut reply = Vec::with_capacity(frame::MAX_RTU_FRAME_LEN);
    let mut chunk = [0u8; frame::MAX_RTU_FRAME_LEN];
    loop {
        let expected = frame::expected_reply_len(function, &reply);
        if expected.is_some_and(|len| reply.len() >= len) || reply.len() >= frame::MAX_RTU_FRAME_LEN
        {
            break;
        }
        let until = if reply.is_empty() {
            deadline
        } else {
            deadline.min(Instant::now() + RTU_REPLY_SILENCE)
        };
        match timeout_at(until, stream.read(&mut chunk)).await {
            Err(_) if reply.is_empty() => return Err(DriverError::Timeout(request_timeout)),
            Err(_) => break,
            Ok(Ok(0)) => return Err(DriverError::Transport("serial port closed".into())),
            Ok(Ok(n)) => reply.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(transport(e)),
        }
    }
    let checked = match frame::expected_reply_len(function, &reply) {
        Some(len) if reply.len() >= len => frame::check_rtu_reply(unit_id, &reply[..len])
            .and_then(|reply_pdu| frame::check_reply_pdu(pdu, reply_pdu)),
        Some(len) => Err(DriverError::Protocol(format!(
            "short frame: {} of {len} bytes",
            reply.len()
        ))),
        None => Err(DriverError::Protocol(format!(
            "garbage: {} bytes that are no reply to function {function:#04x}",
            reply.len()
        ))),
    };
    if matches!(checked, Err(DriverError::Protocol(_))) {
        drain(stream, RTU_REPLY_SILENCE).await?;
    }
    checked
}

async fn tcp_exchange(
    stream: &mut Box<dyn Stream>,
    transaction_id: u16,
    unit_id: u8,
    pdu: &[u8],
    request_timeout: Duration,
) -> DriverResult<Vec<u16>> {
    write_frame(
        stream,
        &frame::tcp_frame(transaction_id, unit_id, pdu),
        request_timeout,
    )
    .await?;
    let deadline = Instant::now() + request_timeout;
    let read_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            DriverError::Transport("connection closed by the server".into())
        }
        _ => transport(e),
    };
    loop {
        let mut header = [0u8; frame::MBAP_HEADER_LEN];
        let mut got = 0;
        while got < header.len() {
            match timeout_at(deadline, stream.read(&mut header[got..])).await {
                Err(_) if got == 0 => return Err(DriverError::Timeout(request_timeout)),
                Err(_) => {
                    return Err(DriverError::Protocol(format!(
                        "short frame: {got} of {} header bytes",
                        frame::MBAP_HEADER_LEN
                    )))
                }
                Ok(Ok(0)) => return Err(read_err(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(n)) => got += n,
                Ok(Err(e)) => return Err(read_err(e)),
            }
        }
        let (reply_id, reply_unit, len) = frame::parse_mbap(&header)?;
        let mut reply = vec![0u8; len];
        timeout_at(deadline, stream.read_exact(&mut reply))
            .await
            .map_err(|_| DriverError::Protocol(format!("short frame: PDU of {len} bytes cut off")))?
            .map_err(read_err)?;
        if reply_id != transaction_id {
            // A late reply to a request that already timed out.
            continue;
        }
        if reply_unit != unit_id {
            return Err(DriverError::Protocol(format!(
                "reply from unit {reply_unit}, expected {unit_id}"
            )));
        }
        return frame::check_reply_pdu(pdu, &reply);
    }
}
