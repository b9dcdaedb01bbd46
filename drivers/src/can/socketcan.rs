//! SocketCAN transport (Linux `can0`, `vcan0`), behind the `socketcan`
//! feature. Error frames from the kernel are skipped; every other frame is
//! copied into a [`CanFrame`].

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::{timeout_at, Instant};

use super::frame::CanFrame;
use super::transport::{CanConnector, CanLink, TransportError};

/// Opens a SocketCAN interface by name, again after every failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketCanConnector {
    /// Interface name (`can0`, `vcan0`).
    pub interface: String,
}

/// An open SocketCAN socket.
#[derive(Debug)]
pub struct SocketCanLink {
    socket: socketcan::tokio::CanSocket,
}

impl SocketCanLink {
    /// Opens `interface`.
    pub fn open(interface: &str) -> Result<Self, TransportError> {
        let socket =
            socketcan::tokio::CanSocket::open(interface).map_err(|e| TransportError::Open {
                device: interface.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self { socket })
    }

    /// Sends one frame within `limit` (for tests and tools).
    pub async fn send(&self, frame: &CanFrame, limit: Duration) -> Result<(), TransportError> {
        use embedded_can::Frame;
        let out = if frame.is_remote_frame() {
            <socketcan::CanFrame as Frame>::new_remote(frame.id(), frame.dlc())
        } else {
            <socketcan::CanFrame as Frame>::new(frame.id(), frame.data())
        }
        .ok_or_else(|| TransportError::Io("frame does not fit".into()))?;
        tokio::time::timeout(limit, self.socket.write_frame(out))
            .await
            .map_err(|_| TransportError::Timeout(limit))?
            .map_err(|e| TransportError::Io(e.to_string()))
    }

    /// The next data or remote frame, waiting at most `limit`.
    pub async fn recv_frame(&mut self, limit: Duration) -> Result<CanFrame, TransportError> {
        let deadline = Instant::now() + limit;
        loop {
            let frame = timeout_at(deadline, self.socket.read_frame())
                .await
                .map_err(|_| TransportError::Timeout(limit))?
                .map_err(|e| TransportError::Io(e.to_string()))?;
            if matches!(frame, socketcan::CanFrame::Error(_)) {
                continue;
            }
            if let Some(frame) = CanFrame::from_frame(&frame) {
                return Ok(frame);
            }
        }
    }
}

impl CanLink for SocketCanLink {
    fn recv(&mut self, limit: Duration) -> BoxFuture<'_, Result<CanFrame, TransportError>> {
        Box::pin(self.recv_frame(limit))
    }

    fn send<'a>(
        &'a mut self,
        frame: &'a CanFrame,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(SocketCanLink::send(self, frame, limit))
    }
}

impl CanConnector for SocketCanConnector {
    fn connect(&mut self) -> BoxFuture<'_, Result<Box<dyn CanLink>, TransportError>> {
        Box::pin(
            async move { Ok(Box::new(SocketCanLink::open(&self.interface)?) as Box<dyn CanLink>) },
        )
    }
}
