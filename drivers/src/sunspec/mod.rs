//! SunSpec batteries read as SunSpec: the "SunS" marker found at a base
//! address, the model chain walked by ID and length, and the battery
//! models (802, 803 when present) decoded where the chain puts them.
//!
//! Everything here is pure (registers in, typed values out); the Modbus
//! driver ([`crate::modbus::ModbusPackDriver::sunspec`]) does the reads.

pub mod chain;
pub mod decode;
pub mod events;
pub mod points;

pub use chain::{
    battery_models, walk_image, BatteryModels, ChainWalk, DiscoveryError, ModelEntry, ModelMap,
    Step, DEFAULT_BASES, MARKER,
};
pub use decode::{decode, serial_number, Bank, Battery, DecodeError, SunSpecReading};
