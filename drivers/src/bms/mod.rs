//! The framed serial BMS protocols most packs speak instead of Modbus:
//! the Pylontech-style RS-485 ASCII protocol (Pylontech, Seplos, Pace),
//! JBD/Overkill, Daly and JK's native "NW" frames.
//!
//! Each protocol is a pure codec (bytes in, typed frames out, no I/O)
//! next to a driver that runs its exchanges on a [`SerialFrameLink`]
//! lent by the bus owner. The link knows nothing of any protocol but how
//! its frames are delimited: a [`Framing`].

pub mod frame;
pub mod jbd;
pub mod jk;
mod link;
pub mod switch;

pub use frame::{FrameError, FrameErrorKind, FrameStatus, Framing};
pub use jbd::JbdDriver;
pub use jk::JkDriver;
pub use link::{SerialFrameLink, SerialLineConfig};
pub use switch::{CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON};
