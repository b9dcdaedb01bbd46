//! Modbus RTU and TCP: the bus link ([`ModbusLink`]: transport, framing,
//! timeouts, reconnects, error counts) and the pack driver
//! ([`ModbusPackDriver`]: a device profile's register blocks read and
//! decoded, settings written and read back).

mod driver;
pub mod frame;
mod link;
mod sunspec;

pub use driver::ModbusPackDriver;
pub use link::{
    ModbusLink, RtuLinkConfig, TcpLinkConfig, INITIAL_RECONNECT_BACKOFF, MIN_RTU_INTER_FRAME_GAP,
};
pub use sunspec::{scan as sunspec_scan, SunSpecOptions, SUNSPEC_POLL_REQUESTS};
pub use tokio_serial::{DataBits, Parity, StopBits};
