//! The command-line tools beside the workers: query, watch, status, the
//! simulator, rendering, and the kinds of worker the commands run.

pub mod banks;
pub use crate::store::render;
pub mod sim;
pub mod sim_inverter;
pub mod sim_loop;
pub mod status;
pub mod sunspec;
pub mod watch;
