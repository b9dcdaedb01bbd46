//! The framed serial BMS protocols most packs speak instead of Modbus:
//! the Pylontech-style RS-485 ASCII protocol (Pylontech; Seplos and Pace
//! share its framing), JBD/Overkill, Daly and JK's native "NW" frames.
//!
//! Each protocol is a pure codec (bytes in, typed frames out, no I/O)
//! next to a driver that runs its exchanges on a [`SerialFrameLink`]
//! lent by the bus owner. The link knows nothing of any protocol but how
//! its frames are delimited: a [`Framing`].

pub mod daly;
mod driver;
pub mod frame;
pub mod jbd;
pub mod jk;
mod link;
pub mod pylon_ascii;
pub mod switch;

pub use driver::BmsPackDriver;
pub use frame::{FrameError, FrameErrorKind, FrameStatus, Framing};
pub use jbd::JbdDriver;
pub use jk::JkDriver;
pub use link::{SerialFrameLink, SerialLineConfig};

/// The setting that holds a BMS's charge switch (MOSFET) open (0) or
/// leaves it to the BMS (1), on the protocols with a safe switch write
/// (JBD, JK).
pub const CHARGE_SWITCH_ON: &str = "charge_switch_on";
/// The discharge switch's setting, as [`CHARGE_SWITCH_ON`].
pub const DISCHARGE_SWITCH_ON: &str = "discharge_switch_on";
/// The switch settings; each takes only 0 or 1.
pub const SWITCH_SETTINGS: [&str; 2] = [CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON];
