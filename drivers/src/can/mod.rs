//! CAN: the Pylontech-style BMS protocol, the slcan serial codec, candump
//! log replay, the transports and the CAN pack driver.
//!
//! Everything that looks at bytes is pure ([`pylontech`], [`slcan`],
//! [`candump`], [`state`]) and works on [`embedded_can::Frame`]s, so it is
//! tested without a socket; the transports ([`transport`], and
//! `socketcan` behind the feature of that name) only move frames.

pub mod candump;
pub mod driver;
pub mod frame;
pub mod inverter;
pub mod pylontech;
pub mod slcan;
#[cfg(feature = "socketcan")]
pub mod socketcan;
pub mod state;
pub use state::CanPackState;
pub mod transport;

pub use driver::{
    CanDriverConfig, CanPackDriver, CanPoll, CanTransportConfig, DEFAULT_CAN_BITRATE_BPS,
    DEFAULT_SLCAN_SERIAL_BAUD,
};
pub use frame::CanFrame;
pub use pylontech::{decode_frame, BmsFrame, FrameError};
