//! The in-process simulated pack driver (being written).
