//! Faults a test or the simulator CLI can inject into a simulated pack.

use serde::{Deserialize, Serialize};

/// Injected misbehaviour of one pack. The default is a healthy pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The pack stops answering polls and writes altogether (a dead BMS or
    /// a cut bus); its physics keeps running.
    pub unresponsive: bool,
    /// Extra delay before every answer, milliseconds (a slow BMS or a busy
    /// gateway on the far side of a bridge).
    pub response_delay_ms: u64,
    /// An outside heat source (a failing neighbour, a blocked fan) drives
    /// the temperatures past the over-temperature trip point, so the BMS
    /// raises the alarm and opens both switches; clearing it lets the pack
    /// cool back towards ambient.
    pub over_temperature: bool,
}
