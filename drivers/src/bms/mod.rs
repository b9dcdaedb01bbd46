//! The framed serial BMS protocols most packs speak instead of Modbus:
//! the Pylontech-style RS-485 ASCII protocol (Pylontech, Seplos, Pace),
//! JBD/Overkill, Daly and JK's native "NW" frames.
//!
//! Each protocol is a pure codec (bytes in, typed frames out, no I/O)
//! next to a driver that runs its exchanges on a [`SerialFrameLink`]
//! lent by the bus owner. The link knows nothing of any protocol but how
//! its frames are delimited: a [`Framing`].

pub mod daly;
pub mod frame;
mod link;
pub mod pylon_ascii;

pub use frame::{FrameError, FrameErrorKind, FrameStatus, Framing};
pub use link::{SerialFrameLink, SerialLineConfig};
