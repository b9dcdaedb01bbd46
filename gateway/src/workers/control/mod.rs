//! The control worker (being written).
