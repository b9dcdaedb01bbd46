//! The workers on the stream. Each talks to the others only through NATS,
//! so each runs in the one `packgate run` process or as its own process.

mod batch;
pub mod cloud;
pub mod collect;
pub mod control;
pub mod data;
pub mod monitor;
mod retention;
