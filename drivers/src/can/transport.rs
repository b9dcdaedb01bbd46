//! Transports: what moves CAN frames between a bus and the driver, with no
//! knowledge of what the frames mean. [`CanConnector`] opens a link,
//! [`CanLink`] receives frames; the driver reconnects with backoff when a
//! link fails.
//!
//! slcan over a serial port lives here; SocketCAN is in `can::socketcan`
//! behind the `socketcan` feature.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use super::frame::CanFrame;
use super::slcan::{Bitrate, SlcanCommand, SlcanDecoder, SlcanEvent};

/// Frames decoded from one read but not yet handed out, at most this many;
/// more are dropped and counted (a read is at most 256 bytes, so 64 frames
/// is more than one read can hold).
pub const PENDING_FRAMES_MAX: usize = 64;
/// Bytes asked of the port per read.
const READ_CHUNK_BYTES: usize = 256;

/// Why a link could not be opened or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The device could not be opened.
    #[error("cannot open {device}: {reason}")]
    Open {
        /// Port path or interface name.
        device: String,
        /// The system's reason.
        reason: String,
    },
    /// A read or write failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// Nothing arrived (or a write did not complete) in time.
    #[error("nothing within {0:?}")]
    Timeout(Duration),
    /// The adapter answered a command with BEL, or with no ack in time.
    #[error("adapter refused {0}")]
    Refused(String),
    /// The port or socket reached its end (device gone).
    #[error("link closed")]
    Closed,
    /// This build or transport cannot do it.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl TransportError {
    /// Whether the link is broken and must be reopened (anything but a
    /// receive timeout: a quiet bus is not a dead port).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, TransportError::Timeout(_))
    }
}

/// An open link to one CAN bus.
pub trait CanLink: Send + fmt::Debug {
    /// The next frame, waiting at most `limit`.
    fn recv(&mut self, limit: Duration) -> BoxFuture<'_, Result<CanFrame, TransportError>>;

    /// Sends one frame, the write done within `limit`; a link that only
    /// receives refuses.
    fn send<'a>(
        &'a mut self,
        frame: &'a CanFrame,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        let _ = (frame, limit);
        Box::pin(async { Err(TransportError::Unsupported("sending frames".into())) })
    }
}

/// Opens (and reopens) links to one bus.
pub trait CanConnector: Send + fmt::Debug {
    /// Opens a link; the caller bounds the call with its own timeout too.
    fn connect(&mut self) -> BoxFuture<'_, Result<Box<dyn CanLink>, TransportError>>;
}

/// A byte stream a link can run on.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}

/// slcan over any byte stream (a serial port, a pty).
pub struct SlcanLink<S> {
    stream: S,
    decoder: SlcanDecoder,
    pending: VecDeque<CanFrame>,
    io_timeout: Duration,
    dropped_frames: u64,
    bad_lines: u64,
}

impl<S> fmt::Debug for SlcanLink<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlcanLink")
            .field("pending", &self.pending.len())
            .field("dropped_frames", &self.dropped_frames)
            .field("bad_lines", &self.bad_lines)
            .field("overlong_lines", &self.decoder.overlong_lines())
            .finish()
    }
}

fn io_error(e: std::io::Error) -> TransportError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => TransportError::Closed,
        _ => TransportError::Io(e.to_string()),
    }
}

impl<S: ByteStream> SlcanLink<S> {
    /// Brings the adapter on `stream` up: `C` (close, whatever state it was
    /// in), `S<n>` (bitrate), `O` (open), each answered within
    /// `io_timeout`.
    pub async fn open(
        stream: S,
        bitrate: Bitrate,
        io_timeout: Duration,
    ) -> Result<Self, TransportError> {
        let mut link = Self {
            stream,
            decoder: SlcanDecoder::new(),
            pending: VecDeque::new(),
            io_timeout,
            dropped_frames: 0,
            bad_lines: 0,
        };
        // A closed adapter answers `C` with BEL: either answer will do.
        link.command(SlcanCommand::Close, true).await?;
        link.command(SlcanCommand::Bitrate(bitrate), false).await?;
        link.command(SlcanCommand::Open, false).await?;
        Ok(link)
    }

    /// Frames dropped because [`PENDING_FRAMES_MAX`] were waiting.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Lines that were not valid slcan (including overlong ones).
    pub fn bad_lines(&self) -> u64 {
        self.bad_lines
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let limit = self.io_timeout;
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        timeout(limit, write)
            .await
            .map_err(|_| TransportError::Timeout(limit))?
            .map_err(io_error)
    }

    /// Reads once (within `deadline`) and decodes what came. Returns the
    /// command answers seen (`Some(true)` ack, `Some(false)` refused).
    async fn read_some(&mut self, deadline: Instant) -> Result<Option<bool>, TransportError> {
        let mut buf = [0u8; READ_CHUNK_BYTES];
        let n = timeout_at(deadline, self.stream.read(&mut buf))
            .await
            .map_err(|_| TransportError::Timeout(self.io_timeout))?
            .map_err(io_error)?;
        if n == 0 {
            return Err(TransportError::Closed);
        }
        let mut answer = None;
        let (pending, dropped, bad) = (
            &mut self.pending,
            &mut self.dropped_frames,
            &mut self.bad_lines,
        );
        self.decoder.feed_with(&buf[..n], |event| match event {
            Ok(SlcanEvent::Frame { frame, .. }) => {
                if pending.len() < PENDING_FRAMES_MAX {
                    pending.push_back(frame);
                } else {
                    *dropped += 1;
                }
            }
            Ok(SlcanEvent::Ack) => answer = Some(true),
            Ok(SlcanEvent::Refused) => answer = Some(false),
            Ok(SlcanEvent::Reply(_)) => {}
            Err(_) => *bad += 1,
        });
        Ok(answer)
    }

    async fn command(
        &mut self,
        command: SlcanCommand,
        any_answer: bool,
    ) -> Result<(), TransportError> {
        self.write_all(&command.encode()).await?;
        let deadline = Instant::now() + self.io_timeout;
        let refused = || TransportError::Refused(format!("{command:?}"));
        loop {
            match self.read_some(deadline).await {
                Ok(Some(true)) => return Ok(()),
                Ok(Some(false)) if any_answer => return Ok(()),
                Ok(Some(false)) => return Err(refused()),
                Ok(None) => {}
                Err(TransportError::Timeout(_)) => return Err(refused()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `frame` as one slcan line, the write done within `limit`.
    /// What the adapter sent meanwhile (its `z` acks, the bus's frames) is
    /// read as far as it is already there and dropped, so a link that only
    /// sends never lets its input fill up.
    pub async fn send_frame(
        &mut self,
        frame: &CanFrame,
        limit: Duration,
    ) -> Result<(), TransportError> {
        let line = super::slcan::encode_frame(frame);
        let write = async {
            self.stream.write_all(&line).await?;
            self.stream.flush().await
        };
        timeout(limit, write)
            .await
            .map_err(|_| TransportError::Timeout(limit))?
            .map_err(io_error)?;
        self.discard_input().await
    }

    /// Reads what is already waiting and drops the frames received.
    async fn discard_input(&mut self) -> Result<(), TransportError> {
        for _ in 0..4 {
            match self.read_some(Instant::now()).await {
                Ok(_) => {}
                Err(TransportError::Timeout(_)) => break,
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// The next frame, waiting at most `limit`.
    pub async fn recv_frame(&mut self, limit: Duration) -> Result<CanFrame, TransportError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Ok(frame);
            }
            match self.read_some(deadline).await {
                Err(TransportError::Timeout(_)) => return Err(TransportError::Timeout(limit)),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
    }
}

impl<S: ByteStream> CanLink for SlcanLink<S> {
    fn recv(&mut self, limit: Duration) -> BoxFuture<'_, Result<CanFrame, TransportError>> {
        Box::pin(self.recv_frame(limit))
    }

    fn send<'a>(
        &'a mut self,
        frame: &'a CanFrame,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.send_frame(frame, limit))
    }
}

/// Opens an slcan adapter on a serial port by path, again after every
/// failure (a USB adapter that was unplugged and comes back).
#[derive(Debug, Clone, PartialEq)]
pub struct SlcanSerialConnector {
    /// Serial port path (`/dev/ttyACM0`).
    pub path: String,
    /// Serial line rate, bits per second (USB adapters ignore it).
    pub serial_baud: u32,
    /// CAN bitrate.
    pub bitrate: Bitrate,
    /// Limit of every command's answer and every write.
    pub io_timeout: Duration,
}

impl CanConnector for SlcanSerialConnector {
    fn connect(&mut self) -> BoxFuture<'_, Result<Box<dyn CanLink>, TransportError>> {
        Box::pin(async move {
            let builder = tokio_serial::new(&self.path, self.serial_baud);
            let port =
                tokio_serial::SerialStream::open(&builder).map_err(|e| TransportError::Open {
                    device: self.path.clone(),
                    reason: e.to_string(),
                })?;
            let link = SlcanLink::open(port, self.bitrate, self.io_timeout).await?;
            Ok(Box::new(link) as Box<dyn CanLink>)
        })
    }
}

/// slcan on a stream that is already open (a pty in tests, a port opened
/// by the caller). It connects once; after the link fails there is
/// nothing to reopen and every later connect is [`TransportError::Closed`].
pub struct SlcanStreamConnector<S> {
    stream: Option<S>,
    bitrate: Bitrate,
    io_timeout: Duration,
}

impl<S> fmt::Debug for SlcanStreamConnector<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlcanStreamConnector")
            .field("has_stream", &self.stream.is_some())
            .field("bitrate", &self.bitrate)
            .finish()
    }
}

impl<S: ByteStream> SlcanStreamConnector<S> {
    /// A connector that brings up the adapter on `stream`.
    pub fn new(stream: S, bitrate: Bitrate, io_timeout: Duration) -> Self {
        Self {
            stream: Some(stream),
            bitrate,
            io_timeout,
        }
    }
}

impl<S: ByteStream> CanConnector for SlcanStreamConnector<S> {
    fn connect(&mut self) -> BoxFuture<'_, Result<Box<dyn CanLink>, TransportError>> {
        Box::pin(async move {
            let stream = self.stream.take().ok_or(TransportError::Closed)?;
            let link = SlcanLink::open(stream, self.bitrate, self.io_timeout).await?;
            Ok(Box::new(link) as Box<dyn CanLink>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_can::Frame;
    use tokio::io::duplex;

    /// A fake adapter: acks every command, then sends `after_open`.
    async fn adapter(mut end: tokio::io::DuplexStream, after_open: &'static [u8]) {
        let mut buf = [0u8; 64];
        loop {
            let Ok(n) = end.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            for line in buf[..n].split(|b| *b == b'\r').filter(|l| !l.is_empty()) {
                let _ = end.write_all(b"\r").await;
                if line == b"O" {
                    let _ = end.write_all(after_open).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn opens_the_adapter_and_receives_frames_skipping_garbage() {
        let (ours, theirs) = duplex(1024);
        tokio::spawn(adapter(theirs, b"t3552FF00\rgarbage\rt1230\r"));
        let mut link = SlcanLink::open(ours, Bitrate::Kbps500, Duration::from_secs(1))
            .await
            .unwrap();
        let f = link.recv_frame(Duration::from_secs(1)).await.unwrap();
        assert_eq!(f.data(), &[0xFF, 0x00]);
        let f = link.recv_frame(Duration::from_secs(1)).await.unwrap();
        assert_eq!(f.standard_id(), Some(0x123));
        assert_eq!(link.bad_lines(), 1);
        assert_eq!(
            link.recv_frame(Duration::from_millis(50)).await,
            Err(TransportError::Timeout(Duration::from_millis(50)))
        );
    }

    #[tokio::test]
    async fn a_silent_adapter_is_refused_a_vanished_one_is_closed() {
        let (ours, _theirs) = duplex(1024);
        let err = SlcanLink::open(ours, Bitrate::Kbps500, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Refused(_)), "{err:?}");
        let (ours, theirs) = duplex(1024);
        drop(theirs);
        let err = SlcanLink::open(ours, Bitrate::Kbps500, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.is_fatal());
        let mut c = SlcanSerialConnector {
            path: "/dev/packgate-no-such-port".into(),
            serial_baud: 115_200,
            bitrate: Bitrate::Kbps500,
            io_timeout: Duration::from_millis(50),
        };
        assert!(matches!(
            c.connect().await,
            Err(TransportError::Open { .. })
        ));
    }

    #[tokio::test]
    async fn sends_frames_as_slcan_lines_and_drops_what_comes_back() {
        let (ours, mut theirs) = duplex(1024);
        let bringup = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut seen = Vec::new();
            while seen.iter().filter(|b| **b == b'\r').count() < 3 {
                let n = theirs.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                for _ in buf[..n].iter().filter(|b| **b == b'\r') {
                    theirs.write_all(b"\r").await.unwrap();
                }
            }
            theirs
        });
        let mut link = SlcanLink::open(ours, Bitrate::Kbps500, Duration::from_secs(1))
            .await
            .unwrap();
        let mut theirs = bringup.await.unwrap();
        theirs.write_all(b"z\rt3052AABB\r").await.unwrap();
        let frame = CanFrame::standard(0x351, &[1, 2, 3]).unwrap();
        link.send_frame(&frame, Duration::from_secs(1))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = theirs.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"t3513010203\r");
        // The inverter's frame that came back was read and dropped.
        assert_eq!(
            link.recv_frame(Duration::from_millis(20)).await,
            Err(TransportError::Timeout(Duration::from_millis(20)))
        );
    }
}
