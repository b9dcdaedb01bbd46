//! packgate's pack drivers.
//!
//! A driver owns the conversation with one pack: it turns a poll into a
//! [`PackReading`] and a validated setting into a write that it reads back.
//! Drivers know nothing of NATS; the collector stamps readings into samples
//! and decides what to publish.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use packgate_protocol::{DataQuality, PackId, PackReading, SettingName};

pub mod can;
pub mod modbus;
pub mod profile;
#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "sim")]
pub use sim::SimDriver;

/// Why a poll or a write failed, by kind, so a timeout, a broken link, a
/// garbled answer and a refusal by the device are never confused.
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
    /// The device understood and refused (a Modbus exception, say).
    #[error("device exception {code:#04x}: {message}")]
    Exception {
        /// The device's exception code.
        code: u8,
        /// Its meaning.
        message: String,
    },
    /// The driver cannot write this setting.
    #[error("setting {0} is not writable on this pack")]
    UnsupportedSetting(String),
}

/// The kind of a [`DriverError`], for counters and backoff decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverErrorKind {
    /// See [`DriverError::Timeout`].
    Timeout,
    /// See [`DriverError::Transport`].
    Transport,
    /// See [`DriverError::Protocol`].
    Protocol,
    /// See [`DriverError::Exception`].
    Exception,
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
            DriverErrorKind::Exception => "exception",
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
            DriverError::Protocol(_) => DriverErrorKind::Protocol,
            DriverError::Exception { .. } => DriverErrorKind::Exception,
            DriverError::UnsupportedSetting(_) => DriverErrorKind::UnsupportedSetting,
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
/// Methods return boxed futures so drivers of different transports live
/// side by side in one bus task. Callers wrap every call in their own
/// timeout as well; a driver must still never wait forever on its own I/O.
pub trait PackDriver: Send + fmt::Debug {
    /// The pack this driver talks to.
    fn pack_id(&self) -> &PackId;

    /// Reads the pack once.
    fn poll(&mut self) -> BoxFuture<'_, Result<PackReading, DriverError>>;

    /// Quality of the reading the last successful [`poll`](Self::poll)
    /// returned: drivers that assemble a reading from broadcasts (CAN) can
    /// return one in which some values are old.
    fn last_quality(&self) -> DataQuality {
        DataQuality::Fresh
    }

    /// Writes a setting and returns the value read back from the pack.
    fn apply_setting<'a>(
        &'a mut self,
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, Result<f64, DriverError>>;
}
