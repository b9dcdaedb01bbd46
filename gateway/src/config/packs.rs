//! The packs to poll and the buses they are reached on.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use packgate_protocol::PackId;
use packgate_sim::SimPackConfig;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How a pack is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// The in-process simulator.
    Sim,
    /// Modbus RTU or Modbus TCP, through a device profile.
    Modbus,
    /// A BMS broadcasting the Pylontech/SMA-style CAN protocol.
    Can,
}

/// The transport of a bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// Modbus RTU on a serial line (RS-485).
    ModbusRtu,
    /// Modbus TCP to a device or an RS-485-to-TCP converter.
    ModbusTcp,
    /// CAN through an slcan USB adapter on a serial port.
    Slcan,
    /// CAN through a SocketCAN interface (built with the `socketcan` feature).
    Socketcan,
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

/// One bus: exactly one task owns it, and polls and writes to the packs on
/// it are serialised by that task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Name the packs refer to.
    pub name: String,
    /// Its transport.
    pub kind: BusKind,
    /// Serial device (`modbus_rtu`, `slcan`), such as `/dev/ttyUSB0`.
    #[serde(default)]
    pub port: Option<PathBuf>,
    /// Serial baud rate; default 9600 for `modbus_rtu`, 115200 for `slcan`.
    #[serde(default)]
    pub baud_rate: Option<u32>,
    /// Serial parity (`modbus_rtu`).
    #[serde(default)]
    pub parity: SerialParity,
    /// Serial stop bits, 1 or 2 (`modbus_rtu`).
    #[serde(default = "one")]
    pub stop_bits: u8,
    /// `host:port` (`modbus_tcp`).
    #[serde(default)]
    pub address: Option<String>,
    /// CAN interface (`socketcan`), such as `can0`.
    #[serde(default)]
    pub interface: Option<String>,
    /// CAN bitrate, bits per second (`slcan`); default 500000.
    #[serde(default)]
    pub can_bitrate_bps: Option<u32>,
    /// Time one request may take on this bus, milliseconds; default
    /// `collect.request_timeout_ms`.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Least silence between the end of one exchange and the next request,
    /// milliseconds; default 3.5 characters at the baud rate (at least 2 ms)
    /// for RTU, 0 for TCP.
    #[serde(default)]
    pub inter_frame_gap_ms: Option<u64>,
    /// Longest wait between attempts to reopen a lost port or connection,
    /// milliseconds.
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_backoff_max_ms: u64,
}

fn one() -> u8 {
    1
}

fn default_reconnect_ms() -> u64 {
    10_000
}

/// One pack to poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackConfig {
    /// The pack's identity: letters, digits, '-' and '_'. Samples, events
    /// and stores know the pack by this id alone, never by its address.
    pub id: PackId,
    /// How it is read.
    pub driver: DriverKind,
    /// The bus it is on (`modbus`, `can`), by name.
    #[serde(default)]
    pub bus: Option<String>,
    /// Its Modbus unit id on the bus, 1 to 247 (`modbus`).
    #[serde(default)]
    pub unit_id: Option<u8>,
    /// Its device profile (`modbus`): a built-in name (see `packgate
    /// profiles list`) or the path of a profile file.
    #[serde(default)]
    pub profile: Option<String>,
    /// Cells in series, for the average cell voltage when the BMS does not
    /// broadcast its min/max cell (`can`).
    #[serde(default)]
    pub cells_in_series: Option<u8>,
    /// Settings of the simulated pack (`sim`).
    #[serde(default)]
    pub sim: Option<SimPackConfig>,
}

impl PackConfig {
    /// A simulated pack.
    pub fn sim(id: PackId, sim: SimPackConfig) -> Self {
        Self {
            id,
            driver: DriverKind::Sim,
            bus: None,
            unit_id: None,
            profile: None,
            cells_in_series: None,
            sim: Some(sim),
        }
    }
}

type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;

fn validate_bus(index: usize, bus: &BusConfig, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    let key = |field: &str| format!("buses[{index}].{field}");
    let needs = |present: bool, field: &str| {
        if present {
            Ok(())
        } else {
            Err(invalid(
                &key(field),
                format!("required for kind {:?}", bus.kind),
            ))
        }
    };
    match bus.kind {
        BusKind::ModbusRtu | BusKind::Slcan => needs(bus.port.is_some(), "port")?,
        BusKind::ModbusTcp => needs(bus.address.is_some(), "address")?,
        BusKind::Socketcan => needs(bus.interface.is_some(), "interface")?,
    }
    if !matches!(bus.stop_bits, 1 | 2) {
        return Err(invalid(&key("stop_bits"), "must be 1 or 2".into()));
    }
    if bus.baud_rate == Some(0) {
        return Err(invalid(&key("baud_rate"), "must be above 0".into()));
    }
    if bus.request_timeout_ms == Some(0) {
        return Err(invalid(
            &key("request_timeout_ms"),
            "must be above 0".into(),
        ));
    }
    Ok(())
}

fn validate_pack(
    index: usize,
    pack: &PackConfig,
    buses: &HashMap<&str, BusKind>,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    let key = |field: &str| format!("packs[{index}].{field}");
    let forbid = |present: bool, field: &str| {
        if present {
            Err(invalid(
                &key(field),
                format!("not used with driver {:?}", pack.driver),
            ))
        } else {
            Ok(())
        }
    };
    let bus_kind =
        match (&pack.bus, pack.driver) {
            (Some(_), DriverKind::Sim) => {
                return Err(invalid(&key("bus"), "a simulated pack has no bus".into()))
            }
            (None, DriverKind::Sim) => None,
            (None, _) => {
                return Err(invalid(
                    &key("bus"),
                    format!("required for driver {:?}", pack.driver),
                ))
            }
            (Some(name), _) => Some(*buses.get(name.as_str()).ok_or_else(|| {
                invalid(&key("bus"), format!("no bus named {name:?} in [[buses]]"))
            })?),
        };
    match pack.driver {
        DriverKind::Sim => {
            forbid(pack.unit_id.is_some(), "unit_id")?;
            forbid(pack.profile.is_some(), "profile")?;
            forbid(pack.cells_in_series.is_some(), "cells_in_series")?;
            if let Some(sim) = &pack.sim {
                sim.validate()
                    .map_err(|e| invalid(&key("sim"), e.to_string()))?;
            }
        }
        DriverKind::Modbus => {
            forbid(pack.sim.is_some(), "sim")?;
            forbid(pack.cells_in_series.is_some(), "cells_in_series")?;
            if !matches!(bus_kind, Some(BusKind::ModbusRtu | BusKind::ModbusTcp)) {
                return Err(invalid(
                    &key("bus"),
                    "a modbus pack needs a modbus_rtu or modbus_tcp bus".into(),
                ));
            }
            match pack.unit_id {
                Some(1..=247) => {}
                Some(other) => {
                    return Err(invalid(
                        &key("unit_id"),
                        format!("{other} is not a Modbus unit id (1 to 247)"),
                    ))
                }
                None => {
                    return Err(invalid(
                        &key("unit_id"),
                        "required for driver Modbus".into(),
                    ))
                }
            }
            let profile = pack
                .profile
                .as_deref()
                .ok_or_else(|| invalid(&key("profile"), "required for driver Modbus".into()))?;
            packgate_drivers::profile::resolve(profile)
                .map_err(|e| invalid(&key("profile"), e.to_string()))?;
        }
        DriverKind::Can => {
            forbid(pack.sim.is_some(), "sim")?;
            forbid(pack.unit_id.is_some(), "unit_id")?;
            forbid(pack.profile.is_some(), "profile")?;
            if !matches!(bus_kind, Some(BusKind::Slcan | BusKind::Socketcan)) {
                return Err(invalid(
                    &key("bus"),
                    "a can pack needs an slcan or socketcan bus".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Checks the buses and packs: unique names and ids, what each kind needs,
/// references that resolve, one pack per unit id and per CAN bus.
pub(super) fn validate(
    buses: &[BusConfig],
    packs: &[PackConfig],
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    let mut kinds = HashMap::new();
    for (index, bus) in buses.iter().enumerate() {
        validate_bus(index, bus, invalid)?;
        if kinds.insert(bus.name.as_str(), bus.kind).is_some() {
            return Err(invalid(
                &format!("buses[{index}].name"),
                format!("bus name {:?} is used twice", bus.name),
            ));
        }
    }
    let mut ids = HashSet::new();
    let mut addresses = HashSet::new();
    for (index, pack) in packs.iter().enumerate() {
        if !ids.insert(pack.id.clone()) {
            return Err(invalid(
                &format!("packs[{index}].id"),
                format!("pack id {} is used twice", pack.id),
            ));
        }
        validate_pack(index, pack, &kinds, invalid)?;
        // Two packs at one address would be read as one: refuse it.
        if let Some(bus) = &pack.bus {
            if !addresses.insert((bus.clone(), pack.unit_id)) {
                let what = match pack.unit_id {
                    Some(unit) => {
                        format!("unit id {unit} on bus {bus:?} already belongs to another pack")
                    }
                    None => format!("bus {bus:?} already carries another CAN pack"),
                };
                return Err(invalid(&format!("packs[{index}].unit_id"), what));
            }
        }
    }
    Ok(())
}
