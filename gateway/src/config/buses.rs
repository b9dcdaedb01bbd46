//! The buses packs are reached on: each kind (`kind = "modbus_rtu"`, ...)
//! with a table of its own, so a key that does not belong to it, or a
//! missing one it needs, is an error naming the key.

use std::collections::HashMap;
use std::path::PathBuf;

use packgate_drivers::can::slcan::Bitrate;
use packgate_drivers::can::{DEFAULT_CAN_BITRATE_BPS, DEFAULT_SLCAN_SERIAL_BAUD};
use serde::{Deserialize, Deserializer, Serialize};

use super::bms::BmsSerialBusConfig;
use super::{tagged, ConfigError};

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
    /// `kind = "bms_serial"`: a serial line of BMSs speaking a framed
    /// protocol of their own (Pylontech-style ASCII, JBD, Daly, JK).
    BmsSerial(BmsSerialBusConfig),
}

/// The `kind` values, as the configuration spells them.
const BUS_KINDS: &[&str] = &[
    "modbus_rtu",
    "modbus_tcp",
    "slcan",
    "socketcan",
    "bms_serial",
];

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
            "bms_serial" => BusLinkConfig::BmsSerial(entry.variant("kind")?),
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
            BusLinkConfig::BmsSerial(_) => "bms_serial",
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

type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;
/// Checks that the value of a key is in `min..=max`: (key, value, min, max).
type InRange<'a> = &'a dyn Fn(&str, u64, u64, u64) -> Result<(), ConfigError>;

/// Longest request timeout of a bus, milliseconds (ten minutes).
const MAX_REQUEST_TIMEOUT_MS: u64 = 600_000;
/// Longest reconnect backoff of a bus, milliseconds (a day).
const MAX_RECONNECT_BACKOFF_MS: u64 = 86_400_000;
/// Shortest reconnect backoff of a bus, milliseconds: less reopens a lost
/// port in a busy loop.
const MIN_RECONNECT_BACKOFF_MS: u64 = 10;
/// Longest inter-frame gap, milliseconds.
const MAX_INTER_FRAME_GAP_MS: u64 = 10_000;
/// Fastest serial line, baud.
const MAX_BAUD_RATE: u32 = 4_000_000;
/// Longest bus name.
const MAX_NAME_LEN: usize = 64;

/// Why `address` is not a `host:port` a TCP connection can be opened to;
/// none when it is. The host is not resolved here.
fn address_problem(address: &str) -> Option<&'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Some("is not host:port (such as 10.0.0.5:502)");
    };
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_err() => {
            return Some("has no valid IPv6 address in its brackets");
        }
        Some(_) => {}
        None if host.contains(':') => {
            return Some("is not host:port (an IPv6 address goes in brackets: [::1]:502)");
        }
        None if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Some("has no valid host before the port");
        }
        None => {}
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Some("has no port 1 to 65535 after the host"),
        Ok(_) => None,
    }
}

impl BusConfig {
    /// Checks this bus's own values; `index` is its place in `[[buses]]`.
    fn validate(&self, index: usize, invalid: Invalid<'_>) -> Result<(), ConfigError> {
        let key = |field: &str| format!("buses[{index}].{field}");
        let name = &self.name;
        if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(invalid(
                &key("name"),
                format!("{name:?}: a bus needs a name of 1 to {MAX_NAME_LEN} printable characters"),
            ));
        }
        let in_range = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    &key(field),
                    format!("{value} is out of range: must be {min} to {max}"),
                ))
            }
        };
        let (timeout, backoff, gap) = self.check_link(&key, &in_range, invalid)?;
        if let Some(timeout) = timeout {
            in_range("request_timeout_ms", timeout, 1, MAX_REQUEST_TIMEOUT_MS)?;
        }
        if let Some(gap) = gap {
            in_range("inter_frame_gap_ms", gap, 0, MAX_INTER_FRAME_GAP_MS)?;
        }
        in_range(
            "reconnect_backoff_max_ms",
            backoff,
            MIN_RECONNECT_BACKOFF_MS,
            MAX_RECONNECT_BACKOFF_MS,
        )
    }

    /// Checks the values only this kind of bus has; returns its request
    /// timeout, reconnect backoff and inter-frame gap, for the checks all
    /// kinds share.
    fn check_link(
        &self,
        key: &dyn Fn(&str) -> String,
        in_range: InRange<'_>,
        invalid: Invalid<'_>,
    ) -> Result<(Option<u64>, u64, Option<u64>), ConfigError> {
        Ok(match &self.link {
            BusLinkConfig::ModbusRtu(rtu) => {
                if !matches!(rtu.stop_bits, 1 | 2) {
                    return Err(invalid(&key("stop_bits"), "must be 1 or 2".into()));
                }
                in_range("baud_rate", rtu.baud_rate.into(), 1, MAX_BAUD_RATE.into())?;
                (
                    rtu.request_timeout_ms,
                    rtu.reconnect_backoff_max_ms,
                    rtu.inter_frame_gap_ms,
                )
            }
            BusLinkConfig::ModbusTcp(tcp) => {
                if let Some(problem) = address_problem(&tcp.address) {
                    return Err(invalid(
                        &key("address"),
                        format!("{:?} {problem}", tcp.address),
                    ));
                }
                (
                    tcp.request_timeout_ms,
                    tcp.reconnect_backoff_max_ms,
                    tcp.inter_frame_gap_ms,
                )
            }
            BusLinkConfig::Slcan(slcan) => {
                in_range("baud_rate", slcan.baud_rate.into(), 1, MAX_BAUD_RATE.into())?;
                if Bitrate::from_bps(slcan.can_bitrate_bps).is_none() {
                    let known: Vec<String> = Bitrate::ALL
                        .iter()
                        .map(|(_, bps)| bps.to_string())
                        .collect();
                    return Err(invalid(
                        &key("can_bitrate_bps"),
                        format!(
                            "{} is not an slcan bitrate; one of {}",
                            slcan.can_bitrate_bps,
                            known.join(", ")
                        ),
                    ));
                }
                (
                    Some(slcan.request_timeout_ms),
                    slcan.reconnect_backoff_max_ms,
                    None,
                )
            }
            BusLinkConfig::BmsSerial(line) => {
                if let Some(baud_rate) = line.baud_rate {
                    in_range("baud_rate", baud_rate.into(), 1, MAX_BAUD_RATE.into())?;
                }
                (
                    line.request_timeout_ms,
                    line.reconnect_backoff_max_ms,
                    line.inter_frame_gap_ms,
                )
            }
            BusLinkConfig::Socketcan(can) => {
                if can.interface.trim().is_empty() {
                    return Err(invalid(&key("interface"), "must name an interface".into()));
                }
                (
                    Some(can.request_timeout_ms),
                    can.reconnect_backoff_max_ms,
                    None,
                )
            }
        })
    }

    /// What only one bus may hold, with the key that names it: a serial
    /// port (the device itself, when it exists: `/dev/serial/by-id/...` and
    /// `/dev/ttyUSB0` may be one), a CAN interface, a TCP endpoint.
    fn resource(&self) -> (&'static str, String) {
        match &self.link {
            BusLinkConfig::ModbusRtu(ModbusRtuBusConfig { port, .. })
            | BusLinkConfig::Slcan(SlcanBusConfig { port, .. })
            | BusLinkConfig::BmsSerial(BmsSerialBusConfig { port, .. }) => {
                let device = std::fs::canonicalize(port).unwrap_or_else(|_| port.clone());
                ("port", device.display().to_string())
            }
            BusLinkConfig::ModbusTcp(tcp) => ("address", tcp.address.to_ascii_lowercase()),
            BusLinkConfig::Socketcan(can) => ("interface", can.interface.clone()),
        }
    }
}

/// Checks every bus, that no two share a name, and that no two hold one
/// serial port, CAN interface or TCP endpoint (the second could never open
/// it, or two owners would talk over each other on one wire). Returns the
/// links by name.
pub(super) fn validate<'a>(
    buses: &'a [BusConfig],
    invalid: Invalid<'_>,
) -> Result<HashMap<&'a str, &'a BusLinkConfig>, ConfigError> {
    let mut links = HashMap::new();
    let mut held: HashMap<String, usize> = HashMap::new();
    for (index, bus) in buses.iter().enumerate() {
        bus.validate(index, invalid)?;
        if links.insert(bus.name.as_str(), &bus.link).is_some() {
            return Err(invalid(
                &format!("buses[{index}].name"),
                format!("bus name {:?} is used twice", bus.name),
            ));
        }
        let (field, resource) = bus.resource();
        if let Some(first) = held.insert(format!("{field}={resource}"), index) {
            return Err(invalid(
                &format!("buses[{index}].{field}"),
                format!(
                    "{resource:?} is already buses[{first}] ({:?}): one bus per {field}; \
                     put all its packs on that bus",
                    buses[first].name
                ),
            ));
        }
    }
    Ok(links)
}
