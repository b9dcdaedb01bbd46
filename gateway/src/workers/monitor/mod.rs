//! The monitor worker (being written).
