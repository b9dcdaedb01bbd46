//! Index in [`SeplosAlarm::bytes`](super::SeplosAlarm::bytes) of each
//! named byte of a Seplos V2 telesignalling reply.

/// Alarm event 1 (faults).
pub const EVENT1: usize = 0;
/// Alarm event 2 (voltages).
pub const EVENT2: usize = 1;
/// Alarm event 3 (cell temperatures).
pub const EVENT3: usize = 2;
/// Alarm event 4 (environment and power temperatures).
pub const EVENT4: usize = 3;
/// Alarm event 5 (currents, short circuit).
pub const EVENT5: usize = 4;
/// Alarm event 6 (others).
pub const EVENT6: usize = 5;
/// On/off state (switches).
pub const ON_OFF: usize = 6;
/// Equilibrium state 1 (cells 1-8).
pub const EQUILIBRIUM1: usize = 7;
/// Equilibrium state 2 (cells 9-16).
pub const EQUILIBRIUM2: usize = 8;
/// System state.
pub const SYSTEM: usize = 9;
/// Disconnection state 1 (cells 1-8).
pub const DISCONNECTION1: usize = 10;
/// Disconnection state 2 (cells 9-16).
pub const DISCONNECTION2: usize = 11;
/// Alarm event 7.
pub const EVENT7: usize = 12;
/// Alarm event 8.
pub const EVENT8: usize = 13;
