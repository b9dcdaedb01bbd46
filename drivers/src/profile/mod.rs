//! Device profiles: register maps without recompiling (being written).
