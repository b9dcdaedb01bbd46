//! The buses packs are reached on: each kind (`kind = "modbus_rtu"`, ...)
//! with a table of its own, so a key that does not belong to it, or a
//! missing one it needs, is an error naming the key.

use std::path::PathBuf;

use packgate_drivers::can::{DEFAULT_CAN_BITRATE_BPS, DEFAULT_SLCAN_SERIAL_BAUD};
use serde::{Deserialize, Deserializer, Serialize};

use super::tagged;

/// One bus: exactly one task owns it, and polls and writes to the packs on
/// it are serialised by that task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusConfig {
    /// Name the packs refer to.
    pub name: String,
    /// Its transport (`kind`) with that transport's settings.
    #[serde(flatten)]
    pub link: BusLinkConfig,
}

/// The transport of a bus, chosen by `kind`, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusLinkConfig {
    /// `kind = "modbus_rtu"`: Modbus RTU on a serial line (RS-485).
    ModbusRtu(ModbusRtuBusConfig),
    /// `kind = "modbus_tcp"`: Modbus TCP to a device or an RS-485-to-TCP
    /// converter.
    ModbusTcp(ModbusTcpBusConfig),
    /// `kind = "slcan"`: CAN through an slcan USB adapter on a serial port.
    Slcan(SlcanBusConfig),
    /// `kind = "socketcan"`: CAN through a SocketCAN interface (built with
    /// the `socketcan` feature).
    Socketcan(SocketcanBusConfig),
}

/// The `kind` values, as the configuration spells them.
const BUS_KINDS: &[&str] = &["modbus_rtu", "modbus_tcp", "slcan", "socketcan"];

/// A Modbus RTU line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusRtuBusConfig {
    /// Serial device, such as `/dev/ttyUSB0`.
    pub port: PathBuf,
    /// Serial baud rate.
    #[serde(default = "default_rtu_baud_rate")]
    pub baud_rate: u32,
    /// Serial parity.
    #[serde(default)]
    pub parity: SerialParity,
    /// Serial stop bits, 1 or 2.
    #[serde(default = "one")]
    pub stop_bits: u8,
    /// Time one request may take, milliseconds; default
    /// `collect.request_timeout_ms`.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Least silence between the end of one exchange and the next request,
    /// milliseconds; default 3.5 characters at the baud rate (at least
    /// 2 ms).
    #[serde(default)]
    pub inter_frame_gap_ms: Option<u64>,
    /// Longest wait between attempts to reopen a lost port, milliseconds.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_backoff_max_ms: u64,
}

/// A Modbus TCP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusTcpBusConfig {
    /// `host:port`.
    pub address: String,
    /// Time one request may take, milliseconds; default
    /// `collect.request_timeout_ms`.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Least time between the end of one exchange and the next request,
    /// milliseconds (some converters need it to turn their RS-485 side
    /// round); default 0.
    #[serde(default)]
    pub inter_frame_gap_ms: Option<u64>,
    /// Longest wait between attempts to reconnect, milliseconds.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_backoff_max_ms: u64,
}

/// An slcan USB-CAN adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlcanBusConfig {
    /// Serial device, such as `/dev/ttyACM0`.
    pub port: PathBuf,
    /// Serial baud rate (USB adapters ignore it).
    #[serde(default = "default_slcan_baud_rate")]
    pub baud_rate: u32,
    /// CAN bitrate, bits per second (one of slcan's `S0`..`S8`).
    #[serde(default = "default_can_bitrate_bps")]
    pub can_bitrate_bps: u32,
    /// Limit of every open, command and write on the adapter,
    /// milliseconds.
    #[serde(default = "default_can_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Longest wait between attempts to reopen a lost adapter,
    /// milliseconds.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_backoff_max_ms: u64,
}

/// A SocketCAN interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketcanBusConfig {
    /// Interface name, such as `can0`.
    pub interface: String,
    /// Limit of every open and receive wait on the interface,
    /// milliseconds.
    #[serde(default = "default_can_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Longest wait between attempts to reopen a lost interface,
    /// milliseconds.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_backoff_max_ms: u64,
}

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialParity {
    /// No parity bit.
    #[default]
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

fn one() -> u8 {
    1
}

fn default_rtu_baud_rate() -> u32 {
    9_600
}

fn default_slcan_baud_rate() -> u32 {
    DEFAULT_SLCAN_SERIAL_BAUD
}

fn default_can_bitrate_bps() -> u32 {
    DEFAULT_CAN_BITRATE_BPS
}

fn default_can_request_timeout_ms() -> u64 {
    1_000
}

fn default_reconnect_ms() -> u64 {
    10_000
}

impl<'de> Deserialize<'de> for BusConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entry = tagged::split(
            toml::Table::deserialize(deserializer)?,
            "name",
            "kind",
            BUS_KINDS,
        )?;
        let name = entry.common("name")?;
        let link = match entry.tag.as_str() {
            "modbus_rtu" => BusLinkConfig::ModbusRtu(entry.variant("kind")?),
            "modbus_tcp" => BusLinkConfig::ModbusTcp(entry.variant("kind")?),
            "slcan" => BusLinkConfig::Slcan(entry.variant("kind")?),
            _ => BusLinkConfig::Socketcan(entry.variant("kind")?),
        };
        Ok(BusConfig { name, link })
    }
}

impl BusLinkConfig {
    /// The `kind` as the configuration spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            BusLinkConfig::ModbusRtu(_) => "modbus_rtu",
            BusLinkConfig::ModbusTcp(_) => "modbus_tcp",
            BusLinkConfig::Slcan(_) => "slcan",
            BusLinkConfig::Socketcan(_) => "socketcan",
        }
    }

    /// Whether Modbus packs are reached on it.
    pub fn is_modbus(&self) -> bool {
        matches!(
            self,
            BusLinkConfig::ModbusRtu(_) | BusLinkConfig::ModbusTcp(_)
        )
    }
}
