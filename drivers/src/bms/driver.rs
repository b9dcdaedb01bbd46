//! [`BmsPackDriver`]: every framed-protocol driver as one type, so the
//! packs of one serial line are one bus owner's drivers.

use futures_util::future::BoxFuture;
use packgate_protocol::PackId;

use super::daly::DalyDriver;
use super::jbd::JbdDriver;
use super::jk::JkDriver;
use super::pylon_ascii::{PylonAsciiDriver, PylonAsciiLayout};
use super::SerialFrameLink;
use crate::plausible::PlausibilityLimits;
use crate::{DriverResult, PackDriver, Polled, ValidatedSetting};

/// One pack on a serial line of framed-protocol BMSs.
#[derive(Debug)]
pub enum BmsPackDriver {
    /// Pylontech-style RS-485 ASCII.
    PylonAscii(PylonAsciiDriver),
    /// JBD / Overkill.
    Jbd(JbdDriver),
    /// Daly.
    Daly(DalyDriver),
    /// JK B/BD series ("NW" frames).
    Jk(JkDriver),
}

impl BmsPackDriver {
    /// A Pylontech-style pack at ADR `address`.
    pub fn pylon_ascii(pack_id: PackId, address: u8) -> Self {
        Self::PylonAscii(PylonAsciiDriver::new(pack_id, address))
    }

    /// A Pylontech-style pack at ADR `address` that answers in `layout`
    /// (Pylontech, Seplos V2 or Pace).
    pub fn pylon_ascii_with_layout(pack_id: PackId, address: u8, layout: PylonAsciiLayout) -> Self {
        Self::PylonAscii(PylonAsciiDriver::with_layout(pack_id, address, layout))
    }

    /// A JBD BMS (one per line).
    pub fn jbd(pack_id: PackId) -> Self {
        Self::Jbd(JbdDriver::new(pack_id))
    }

    /// A Daly BMS (one per line) asked with `host_address`.
    pub fn daly(pack_id: PackId, host_address: u8) -> Self {
        Self::Daly(DalyDriver::new(pack_id, host_address))
    }

    /// A JK BMS (one per line).
    pub fn jk(pack_id: PackId) -> Self {
        Self::Jk(JkDriver::new(pack_id))
    }

    /// Requests one poll (or one write with its read-back) may take at
    /// most, for the poll timeout.
    pub fn poll_requests(&self) -> usize {
        match self {
            // Analog values, alarm info and, once, Pylontech's serial
            // number.
            Self::PylonAscii(d) if d.layout() == PylonAsciiLayout::Pylontech => 3,
            Self::PylonAscii(_) => 2,
            // Basic info, cell voltages and, once, the hardware version.
            Self::Jbd(_) => 3,
            // 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98.
            Self::Daly(_) => 7,
            // A write and the read-all that reads it back.
            Self::Jk(_) => 2,
        }
    }
}

impl PackDriver for BmsPackDriver {
    type Link = SerialFrameLink;

    fn pack_id(&self) -> &PackId {
        match self {
            Self::PylonAscii(d) => d.pack_id(),
            Self::Jbd(d) => d.pack_id(),
            Self::Daly(d) => d.pack_id(),
            Self::Jk(d) => d.pack_id(),
        }
    }

    fn poll<'a>(
        &'a mut self,
        link: &'a mut SerialFrameLink,
    ) -> BoxFuture<'a, DriverResult<Polled>> {
        match self {
            Self::PylonAscii(d) => d.poll(link),
            Self::Jbd(d) => d.poll(link),
            Self::Daly(d) => d.poll(link),
            Self::Jk(d) => d.poll(link),
        }
    }

    fn apply_setting<'a>(
        &'a mut self,
        link: &'a mut SerialFrameLink,
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, DriverResult<f64>> {
        match self {
            Self::PylonAscii(d) => d.apply_setting(link, setting),
            Self::Jbd(d) => d.apply_setting(link, setting),
            Self::Daly(d) => d.apply_setting(link, setting),
            Self::Jk(d) => d.apply_setting(link, setting),
        }
    }

    /// Every one of these protocols lists each series cell; none gives the
    /// pack's maximum current.
    fn plausibility(&self) -> PlausibilityLimits {
        PlausibilityLimits {
            max_current_a: None,
            cells_complete: true,
        }
    }
}
