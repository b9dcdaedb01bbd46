//! The command-line tools beside the workers: query, watch and rendering.

pub mod render;
pub mod watch;
