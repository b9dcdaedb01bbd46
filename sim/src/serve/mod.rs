//! The simulator served as real devices (being written).
