//! The command-line tools beside the workers: query, watch and rendering.

pub mod render;
pub mod sim;
pub mod status;
pub mod watch;
