//! The cloud worker (being written).
