//! packgate: an edge gateway for battery packs.
//!
//! It polls each pack's BMS, publishes typed samples into NATS JetStream on
//! the same box, and runs small workers on that stream. The binary's CLI
//! lives in `main.rs`; this library holds everything it runs, so tests and
//! benchmarks drive the same code in-process.

pub mod bank;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod health;
pub mod kinds;
pub mod platform;
pub mod retry;
pub mod runtime;
pub mod sd_notify;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod text;
pub mod watchdog;
pub mod workers;

pub use workers::outputs;
#[cfg(test)]
mod module_graph_tests;
