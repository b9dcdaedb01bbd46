//! Serial lines of BMSs that speak a framed protocol of their own
//! (`kind = "bms_serial"`), and the packs on them: `driver =
//! "pylon_ascii"`, `"jbd"`, `"daly"` or `"jk"`. One line carries one
//! protocol; only the Pylontech-style protocol has addresses, so the
//! others take one pack per line.

use std::path::PathBuf;

use packgate_drivers::bms::pylon_ascii::PylonAsciiLayout;
use serde::{Deserialize, Serialize};

/// A serial line (RS-485, or a BMS's UART through a USB adapter) whose
/// packs speak one framed BMS protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmsSerialBusConfig {
    /// Serial device, such as `/dev/ttyUSB0`.
    pub port: PathBuf,
    /// Serial baud rate (8N1); default the protocol's usual rate: 9600
    /// for Pylontech-style, JBD and Daly, 115200 for JK.
    #[serde(default)]
    pub baud_rate: Option<u32>,
    /// Time one request's whole answer may take, milliseconds; default
    /// `collect.request_timeout_ms`.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Least silence between the end of one exchange and the next
    /// request, milliseconds (RS-485 converters need time to turn the
    /// line round); default 20, 100 on a JK line (its document asks for
    /// 100 ms between frames).
    #[serde(default)]
    pub inter_frame_gap_ms: Option<u64>,
    /// Longest wait between attempts to reopen a lost port, milliseconds.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_backoff_max_ms: u64,
}

fn default_reconnect_ms() -> u64 {
    10_000
}

/// A pack speaking the Pylontech-style RS-485 ASCII protocol (Pylontech
/// US/Force, Seplos V1/V2, Pace and the rack packs that copy them), in
/// its vendor's layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PylonAsciiDriverConfig {
    /// The `bms_serial` bus it is on, by name.
    pub bus: String,
    /// Its address (ADR) on the line, set by the pack's DIP switches: 1 to
    /// 254 for Pylontech (its first pack is usually 2), 0 to 15 for
    /// Seplos, 1 to 15 for Pace.
    pub address: u8,
    /// The reply layout the pack speaks: "pylontech" (the default),
    /// "seplos_v2" (Seplos V1/V2, VER 20) or "pace" (Pace boards, VER
    /// 25). A reply in another layout is refused, naming the one it
    /// looks like.
    #[serde(default)]
    pub layout: PylonAsciiLayout,
}

/// A JBD / Overkill / Xiaoxiang BMS on its UART or RS-485 port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JbdDriverConfig {
    /// The `bms_serial` bus it is on, by name (one JBD pack per line).
    pub bus: String,
}

/// A Daly BMS on its UART or RS-485 port (the 13-byte 0xA5 protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DalyDriverConfig {
    /// The `bms_serial` bus it is on, by name (one Daly pack per line).
    pub bus: String,
    /// The host address byte of every request: 0x40 (64) on the UART and
    /// most RS-485 boards, 0x80 (128) on some.
    #[serde(default = "default_daly_host_address")]
    pub host_address: u8,
}

fn default_daly_host_address() -> u8 {
    0x40
}

/// A JK BMS of the older B/BD series on its RS-485 port (the "NW" frame
/// protocol; the newer PB series speaks Modbus: `driver = "modbus"` with
/// profile `jk-bms-pb`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JkDriverConfig {
    /// The `bms_serial` bus it is on, by name (one JK pack per line).
    pub bus: String,
}

/// A framed BMS protocol, as the `driver` key spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BmsProtocol {
    /// `pylon_ascii`.
    PylonAscii,
    /// `jbd`.
    Jbd,
    /// `daly`.
    Daly,
    /// `jk`.
    Jk,
}

impl BmsProtocol {
    /// The `driver` value.
    pub fn name(self) -> &'static str {
        match self {
            BmsProtocol::PylonAscii => "pylon_ascii",
            BmsProtocol::Jbd => "jbd",
            BmsProtocol::Daly => "daly",
            BmsProtocol::Jk => "jk",
        }
    }

    /// The line's usual baud rate.
    pub fn default_baud_rate(self) -> u32 {
        match self {
            BmsProtocol::Jk => 115_200,
            BmsProtocol::PylonAscii | BmsProtocol::Jbd | BmsProtocol::Daly => 9_600,
        }
    }

    /// The silence the protocol needs between exchanges by default.
    pub fn default_inter_frame_gap(self) -> std::time::Duration {
        match self {
            BmsProtocol::Jk => packgate_drivers::bms::jk::MIN_INTER_FRAME_GAP,
            BmsProtocol::PylonAscii | BmsProtocol::Jbd | BmsProtocol::Daly => {
                packgate_drivers::bms::SerialLineConfig::DEFAULT_INTER_FRAME_GAP
            }
        }
    }

    /// Whether several packs can share one line (the protocol has
    /// addresses).
    pub fn multi_drop(self) -> bool {
        matches!(self, BmsProtocol::PylonAscii)
    }
}

#[cfg(test)]
#[path = "bms_tests.rs"]
mod tests;
