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
    /// Modbus RTU: every answer goes out with a wrong CRC (line noise, a
    /// bad termination resistor). Other transports ignore it.
    pub corrupt_crc: bool,
    /// Modbus: every request is answered with this exception code instead
    /// of being served (a BMS in a state where it refuses everything).
    pub exception: Option<u8>,
    /// Modbus: every answer is replaced by random bytes (a second master
    /// on the bus, a baud rate mismatch).
    pub garbage: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_default_and_unknown_fields_are_refused() {
        let f: Faults = toml::from_str("exception = 4\ngarbage = true").unwrap();
        assert_eq!(
            f,
            Faults {
                exception: Some(4),
                garbage: true,
                ..Faults::default()
            }
        );
        assert!(toml::from_str::<Faults>("nonsense = 1").is_err());
    }
}
