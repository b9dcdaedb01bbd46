//! packgate's pack drivers.
//!
//! A driver owns the conversation with one pack: it turns a poll into a
//! [`Polled`] reading with its quality, and a validated setting into a
//! write that it reads back, on the [`BusLink`] its bus owner lends it.
//! What the device refuses ([`DeviceException`]) is kept apart from what
//! went wrong on the way ([`DriverError`]).
//! Drivers know nothing of NATS; the collector stamps readings into samples
//! and decides what to publish.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use packgate_protocol::{DataQuality, PackId, PackReading, SettingName};

pub mod bms;
pub mod can;
pub mod modbus;
pub mod plausible;
pub mod profile;
pub mod provenance;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sunspec;

#[cfg(feature = "sim")]
pub use sim::SimDriver;

/// Why a poll or a write failed on the way to or from the pack, by kind,
/// so a timeout, a broken link and a garbled answer are never confused. A
/// pack that answered with a refusal is no failure of the link: that is a
/// [`DeviceException`], kept apart in [`DriverResult`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    /// The pack did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The link itself failed (port gone, connection refused or reset).
    #[error("transport failure: {0}")]
    Transport(String),
    /// The pack answered with something that is not a valid reply (bad
    /// CRC, short frame, wrong unit, values out of their type).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The driver cannot write this setting.
    #[error("setting {0} is not writable on this pack")]
    UnsupportedSetting(String),
    /// A framed serial protocol's answer was no good frame, or not the
    /// awaited one (bad checksum, short, another unit's); a kind of
    /// [`DriverErrorKind::Protocol`], told apart for counters.
    #[error("protocol error: {0}")]
    Frame(bms::FrameError),
}

/// The device understood the request and refused it (a Modbus exception
/// response, a value the BMS will not take).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device exception {code:#04x}: {message}")]
pub struct DeviceException {
    /// The device's exception code (Modbus numbering).
    pub code: u8,
    /// Its meaning.
    pub message: String,
}

impl DeviceException {
    /// Modbus's "illegal data value": also what a driver reports, without
    /// a request, for a value the pack cannot take, as the device would.
    pub const ILLEGAL_DATA_VALUE: u8 = 0x03;

    /// The exception `code` with the standard meaning of a Modbus code.
    pub fn modbus(code: u8) -> Self {
        Self {
            code,
            message: modbus::frame::exception_message(code).to_owned(),
        }
    }
}

/// What a driver call gives: the outer error is the link's (no answer, a
/// broken or garbled one), the inner one the device's own refusal.
pub type DriverResult<T> = Result<Result<T, DeviceException>, DriverError>;

/// The kind of a [`DriverError`], for counters and backoff decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverErrorKind {
    /// See [`DriverError::Timeout`].
    Timeout,
    /// See [`DriverError::Transport`].
    Transport,
    /// See [`DriverError::Protocol`].
    Protocol,
    /// See [`DriverError::UnsupportedSetting`].
    UnsupportedSetting,
}

impl DriverErrorKind {
    /// Stable lower-case name, for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverErrorKind::Timeout => "timeout",
            DriverErrorKind::Transport => "transport",
            DriverErrorKind::Protocol => "protocol",
            DriverErrorKind::UnsupportedSetting => "unsupported_setting",
        }
    }
}

impl DriverError {
    /// The error's kind.
    pub fn kind(&self) -> DriverErrorKind {
        match self {
            DriverError::Timeout(_) => DriverErrorKind::Timeout,
            DriverError::Transport(_) => DriverErrorKind::Transport,
            DriverError::Protocol(_) | DriverError::Frame(_) => DriverErrorKind::Protocol,
            DriverError::UnsupportedSetting(_) => DriverErrorKind::UnsupportedSetting,
        }
    }
}

/// Requests and failures of a link, by kind, since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkErrorCounts {
    /// Requests attempted.
    pub requests: u64,
    /// No answer in time.
    pub timeouts: u64,
    /// Port or connection failures, refused opens included.
    pub transport: u64,
    /// Bad CRC, short frames, wrong unit, garbage.
    pub protocol: u64,
    /// Of `protocol`: framed-protocol answers with a bad checksum.
    pub checksum: u64,
    /// Of `protocol`: framed-protocol answers cut short.
    pub short_frames: u64,
    /// Of `protocol`: framed-protocol answers from another address.
    pub wrong_address: u64,
    /// Exception replies from the devices.
    pub exceptions: u64,
    /// Times the port was opened or the connection made.
    pub opens: u64,
}

impl LinkErrorCounts {
    /// Total failed requests.
    pub fn errors(&self) -> u64 {
        self.timeouts + self.transport + self.protocol + self.exceptions
    }

    /// Counts one request's outcome.
    pub fn count<T>(&mut self, result: &DriverResult<T>) {
        self.requests += 1;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => self.exceptions += 1,
            Err(DriverError::Frame(frame)) => {
                self.protocol += 1;
                match frame.kind() {
                    bms::FrameErrorKind::Checksum => self.checksum += 1,
                    bms::FrameErrorKind::Short => self.short_frames += 1,
                    bms::FrameErrorKind::WrongAddress => self.wrong_address += 1,
                    bms::FrameErrorKind::Unexpected | bms::FrameErrorKind::Malformed => {}
                }
            }
            Err(e) => match e.kind() {
                DriverErrorKind::Timeout => self.timeouts += 1,
                DriverErrorKind::Transport => self.transport += 1,
                DriverErrorKind::Protocol => self.protocol += 1,
                DriverErrorKind::UnsupportedSetting => {}
            },
        }
    }
}

/// The wire a bus owner holds and lends to each of its packs' drivers in
/// turn: a Modbus line or endpoint, or `()` where a driver keeps its own
/// link (a CAN receiver, the simulator).
pub trait BusLink: Send + fmt::Debug {
    /// Requests and failures on the wire so far; `None` for a link that
    /// keeps no counts.
    fn error_counts(&self) -> Option<LinkErrorCounts> {
        None
    }
}

impl BusLink for () {}

/// One poll's answer: the reading and how far it can be trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    /// The values read.
    pub reading: PackReading,
    /// Fresh, or stale when the driver assembled the reading from
    /// broadcasts of which some are old (CAN).
    pub quality: DataQuality,
    /// The pack's serial number, where the driver can read it (a Modbus
    /// profile that maps one).
    pub serial_number: Option<String>,
}

impl Polled {
    /// A fresh reading without a serial number.
    pub fn fresh(reading: PackReading) -> Self {
        Self {
            reading,
            quality: DataQuality::Fresh,
            serial_number: None,
        }
    }
}

/// A setting write that has passed validation (writable in the pack's
/// profile, within bounds, not expired). Drivers trust it and only check
/// that they know the setting.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSetting {
    /// The setting.
    pub name: SettingName,
    /// The value, in the setting's unit.
    pub value: f64,
}

/// One pack behind one transport.
///
/// The bus owner holds the [`Link`](Self::Link) outright and lends it to
/// each driver for one call, so the packs on one wire are served in turn
/// and no lock is needed. Methods return boxed futures so every driver of
/// a bus is one type in one task. Callers wrap every call in their own
/// timeout as well; a driver must still never wait forever on its own I/O.
pub trait PackDriver: Send + fmt::Debug {
    /// The wire this driver is reached on.
    type Link: BusLink;

    /// The pack this driver talks to.
    fn pack_id(&self) -> &PackId;

    /// Reads the pack once, on `link`.
    fn poll<'a>(&'a mut self, link: &'a mut Self::Link) -> BoxFuture<'a, DriverResult<Polled>>;

    /// Writes a setting on `link` and returns the value read back from the
    /// pack.
    fn apply_setting<'a>(
        &'a mut self,
        link: &'a mut Self::Link,
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, DriverResult<f64>>;

    /// What bounds this pack's readings, for the plausibility check;
    /// by default nothing beyond the physics of a cell.
    fn plausibility(&self) -> plausible::PlausibilityLimits {
        plausible::PlausibilityLimits::default()
    }
}
