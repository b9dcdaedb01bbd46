//! The packs to poll, each driver with a table of its own (a key that does
//! not belong to it, or a missing one it needs, is an error naming the
//! key), and the checks across packs and buses.

use std::collections::{HashMap, HashSet};

use packgate_drivers::bms::pylon_ascii::PylonAsciiLayout;
use packgate_protocol::PackId;
use packgate_sim::SimPackConfig;
use serde::{Deserialize, Deserializer, Serialize};

use super::bms::{
    BmsProtocol, DalyDriverConfig, JbdDriverConfig, JkDriverConfig, PylonAsciiDriverConfig,
};
use super::buses::{BusConfig, BusLinkConfig};
use super::tagged;
use super::ConfigError;

/// One pack to poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackConfig {
    /// The pack's identity: letters, digits, '-' and '_'. Samples, events
    /// and stores know the pack by this id alone, never by its address.
    pub id: PackId,
    /// How it is read (`driver`), with that driver's settings.
    #[serde(flatten)]
    pub driver: DriverConfig,
}

/// How a pack is read, chosen by `driver`, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "driver", rename_all = "snake_case")]
pub enum DriverConfig {
    /// `driver = "sim"`: the in-process simulator.
    Sim(SimDriverConfig),
    /// `driver = "modbus"`: Modbus RTU or Modbus TCP, through a device
    /// profile.
    Modbus(ModbusDriverConfig),
    /// `driver = "can"`: a BMS broadcasting the Pylontech/SMA-style CAN
    /// protocol.
    Can(CanDriverConfig),
    /// `driver = "sunspec"`: a SunSpec battery (model 802) on Modbus RTU
    /// or TCP, its models found by walking the SunSpec chain.
    Sunspec(SunSpecDriverConfig),
    /// `driver = "pylon_ascii"`: the Pylontech-style RS-485 ASCII protocol
    /// on a `bms_serial` bus.
    PylonAscii(PylonAsciiDriverConfig),
    /// `driver = "jbd"`: a JBD / Overkill BMS on a `bms_serial` bus.
    Jbd(JbdDriverConfig),
    /// `driver = "daly"`: a Daly BMS on a `bms_serial` bus.
    Daly(DalyDriverConfig),
    /// `driver = "jk"`: a JK B/BD-series BMS on a `bms_serial` bus.
    Jk(JkDriverConfig),
}

/// The `driver` values, as the configuration spells them.
const DRIVERS: &[&str] = &[
    "sim",
    "modbus",
    "can",
    "sunspec",
    "pylon_ascii",
    "jbd",
    "daly",
    "jk",
];

/// A simulated pack.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimDriverConfig {
    /// Settings of the simulated pack (`[packs.sim]`).
    #[serde(default)]
    pub sim: SimPackConfig,
}

/// A pack behind a Modbus unit id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDriverConfig {
    /// The bus it is on, by name: a `modbus_rtu` or `modbus_tcp` bus.
    pub bus: String,
    /// Its Modbus unit id on the bus, 1 to 247.
    pub unit_id: u8,
    /// Its device profile: a built-in name (see `packgate profiles list`)
    /// or the path of a profile file.
    pub profile: String,
}

/// A BMS on a CAN bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanDriverConfig {
    /// The bus it is on, by name: an `slcan` or `socketcan` bus.
    pub bus: String,
    /// Cells in series, for the average cell voltage when the BMS does not
    /// broadcast its min/max cell; 0 when unknown.
    #[serde(default)]
    pub cells_in_series: u8,
}

/// A SunSpec battery behind a Modbus unit id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SunSpecDriverConfig {
    /// The bus it is on, by name: a `modbus_rtu` or `modbus_tcp` bus.
    pub bus: String,
    /// Its Modbus unit id on the bus, 1 to 247.
    pub unit_id: u8,
    /// Addresses where the "SunS" marker is looked for, in order; each
    /// one of 0, 40000 and 50000.
    #[serde(default = "default_sunspec_bases")]
    pub bases: Vec<u16>,
    /// Flip the sign of the current (packgate: positive while charging)
    /// when the device's `ChaSt` does not say charging or discharging.
    #[serde(default)]
    pub invert_current: bool,
}

/// The SunSpec bases in the order to probe them: 40000, 0, 50000.
fn default_sunspec_bases() -> Vec<u16> {
    packgate_drivers::sunspec::DEFAULT_BASES.to_vec()
}

impl<'de> Deserialize<'de> for PackConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entry = tagged::split(
            toml::Table::deserialize(deserializer)?,
            "id",
            "driver",
            DRIVERS,
        )?;
        let id = entry.common("id")?;
        let driver = match entry.tag.as_str() {
            "sim" => DriverConfig::Sim(entry.variant("driver")?),
            "modbus" => DriverConfig::Modbus(entry.variant("driver")?),
            "sunspec" => DriverConfig::Sunspec(entry.variant("driver")?),
            "pylon_ascii" => DriverConfig::PylonAscii(entry.variant("driver")?),
            "jbd" => DriverConfig::Jbd(entry.variant("driver")?),
            "daly" => DriverConfig::Daly(entry.variant("driver")?),
            "jk" => DriverConfig::Jk(entry.variant("driver")?),
            _ => DriverConfig::Can(entry.variant("driver")?),
        };
        Ok(PackConfig { id, driver })
    }
}

impl PackConfig {
    /// A simulated pack.
    pub fn sim(id: PackId, sim: SimPackConfig) -> Self {
        Self {
            id,
            driver: DriverConfig::Sim(SimDriverConfig { sim }),
        }
    }

    /// A pack at `unit_id` on the Modbus bus `bus`, read with `profile`.
    pub fn modbus(id: PackId, bus: &str, unit_id: u8, profile: &str) -> Self {
        Self {
            id,
            driver: DriverConfig::Modbus(ModbusDriverConfig {
                bus: bus.to_owned(),
                unit_id,
                profile: profile.to_owned(),
            }),
        }
    }

    /// A CAN BMS on the bus `bus`.
    pub fn can(id: PackId, bus: &str, cells_in_series: u8) -> Self {
        Self {
            id,
            driver: DriverConfig::Can(CanDriverConfig {
                bus: bus.to_owned(),
                cells_in_series,
            }),
        }
    }

    /// A SunSpec battery at `unit_id` on the Modbus bus `bus`, the marker
    /// looked for at the default bases.
    pub fn sunspec(id: PackId, bus: &str, unit_id: u8) -> Self {
        Self {
            id,
            driver: DriverConfig::Sunspec(SunSpecDriverConfig {
                bus: bus.to_owned(),
                unit_id,
                bases: default_sunspec_bases(),
                invert_current: false,
            }),
        }
    }

    /// The bus it is on; none for a simulated pack.
    pub fn bus(&self) -> Option<&str> {
        match &self.driver {
            DriverConfig::Sim(_) => None,
            DriverConfig::Modbus(m) => Some(&m.bus),
            DriverConfig::Sunspec(s) => Some(&s.bus),
            DriverConfig::Can(c) => Some(&c.bus),
            DriverConfig::PylonAscii(p) => Some(&p.bus),
            DriverConfig::Jbd(j) => Some(&j.bus),
            DriverConfig::Daly(d) => Some(&d.bus),
            DriverConfig::Jk(j) => Some(&j.bus),
        }
    }

    /// The framed BMS protocol it speaks, and its address on the line
    /// where the protocol has one; none for the other drivers.
    pub fn bms_protocol(&self) -> Option<(BmsProtocol, Option<u8>)> {
        Some(match &self.driver {
            DriverConfig::PylonAscii(p) => (BmsProtocol::PylonAscii, Some(p.address)),
            DriverConfig::Jbd(_) => (BmsProtocol::Jbd, None),
            DriverConfig::Daly(_) => (BmsProtocol::Daly, None),
            DriverConfig::Jk(_) => (BmsProtocol::Jk, None),
            _ => return None,
        })
    }
}

type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;

/// A Modbus-read pack (`driver`) is on a Modbus bus, at a unit id.
fn check_modbus_unit<'a>(
    driver: &str,
    name: &str,
    unit_id: u8,
    key: &dyn Fn(&str) -> String,
    bus: impl Fn(&str) -> Result<&'a BusLinkConfig, ConfigError>,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    let link = bus(name)?;
    if !link.is_modbus() {
        return Err(invalid(
            &key("bus"),
            format!(
                "driver = \"{driver}\" needs a modbus_rtu or modbus_tcp bus; {name:?} is kind = \"{}\"",
                link.kind()
            ),
        ));
    }
    if !(1..=247).contains(&unit_id) {
        return Err(invalid(
            &key("unit_id"),
            format!("{unit_id} is not a Modbus unit id (1 to 247)"),
        ));
    }
    Ok(())
}

/// SunSpec bases: one to three of 0, 40000 and 50000, none twice.
fn check_sunspec_bases(bases: &[u16]) -> Result<(), String> {
    let allowed = packgate_drivers::sunspec::DEFAULT_BASES;
    if bases.is_empty() {
        return Err("at least one base is needed (0, 40000 or 50000)".into());
    }
    for (i, base) in bases.iter().enumerate() {
        if !allowed.contains(base) {
            return Err(format!("{base} is not a SunSpec base (0, 40000 or 50000)"));
        }
        if bases[..i].contains(base) {
            return Err(format!("base {base} is listed twice"));
        }
    }
    Ok(())
}

/// A framed-protocol pack is on a `bms_serial` bus, at an address where
/// its protocol has one.
fn check_bms_pack<'a>(
    pack: &PackConfig,
    key: &dyn Fn(&str) -> String,
    bus: impl Fn(&str) -> Result<&'a BusLinkConfig, ConfigError>,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    let (Some(name), Some((protocol, address))) = (pack.bus(), pack.bms_protocol()) else {
        return Ok(());
    };
    let link = bus(name)?;
    if !matches!(link, BusLinkConfig::BmsSerial(_)) {
        return Err(invalid(
            &key("bus"),
            format!(
                "driver = \"{}\" needs a bms_serial bus; {name:?} is kind = \"{}\"",
                protocol.name(),
                link.kind()
            ),
        ));
    }
    let layout = match &pack.driver {
        DriverConfig::PylonAscii(p) => p.layout,
        _ => PylonAsciiLayout::Pylontech,
    };
    match address {
        Some(address) if !layout.addresses().contains(&address) => Err(invalid(
            &key("address"),
            format!(
                "{address} is no {} pack's address: must be {} to {}",
                layout.vendor(),
                layout.addresses().start(),
                layout.addresses().end()
            ),
        )),
        _ => Ok(()),
    }
}

/// One protocol per `bms_serial` bus, and one pack per bus for a protocol
/// without addresses; `protocols` holds what each bus carries so far.
fn check_bms_line(
    index: usize,
    pack: &PackConfig,
    protocols: &mut HashMap<String, (BmsProtocol, usize)>,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    let (Some(bus), Some((protocol, _))) = (pack.bus(), pack.bms_protocol()) else {
        return Ok(());
    };
    let Some(&(other, first)) = protocols.get(bus) else {
        protocols.insert(bus.to_owned(), (protocol, index));
        return Ok(());
    };
    let key = format!("packs[{index}].driver");
    if other != protocol {
        return Err(invalid(
            &key,
            format!(
                "bus {bus:?} already carries packs[{first}] with driver = \"{}\": one protocol per line",
                other.name()
            ),
        ));
    }
    if !protocol.multi_drop() {
        return Err(invalid(
            &key,
            format!(
                "bus {bus:?} already carries packs[{first}]: driver = \"{}\" has no addresses, so one pack per line",
                protocol.name()
            ),
        ));
    }
    Ok(())
}

fn validate_pack(
    index: usize,
    pack: &PackConfig,
    buses: &HashMap<&str, &BusLinkConfig>,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    let key = |field: &str| format!("packs[{index}].{field}");
    let bus = |name: &str| {
        buses
            .get(name)
            .copied()
            .ok_or_else(|| invalid(&key("bus"), format!("no bus named {name:?} in [[buses]]")))
    };
    match &pack.driver {
        DriverConfig::Sim(sim) => sim
            .sim
            .validate()
            .map_err(|e| invalid(&key("sim"), e.to_string())),
        DriverConfig::Modbus(modbus) => {
            check_modbus_unit("modbus", &modbus.bus, modbus.unit_id, &key, bus, invalid)?;
            packgate_drivers::profile::resolve(&modbus.profile)
                .map(drop)
                .map_err(|e| invalid(&key("profile"), e.to_string()))
        }
        DriverConfig::Sunspec(sunspec) => {
            check_modbus_unit("sunspec", &sunspec.bus, sunspec.unit_id, &key, bus, invalid)?;
            check_sunspec_bases(&sunspec.bases).map_err(|e| invalid(&key("bases"), e))
        }
        DriverConfig::PylonAscii(_)
        | DriverConfig::Jbd(_)
        | DriverConfig::Daly(_)
        | DriverConfig::Jk(_) => check_bms_pack(pack, &key, bus, invalid),
        DriverConfig::Can(can) => {
            let link = bus(&can.bus)?;
            if !matches!(link, BusLinkConfig::Slcan(_) | BusLinkConfig::Socketcan(_)) {
                return Err(invalid(
                    &key("bus"),
                    format!(
                        "driver = \"can\" needs an slcan or socketcan bus; {:?} is kind = \"{}\"",
                        can.bus,
                        link.kind()
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// Checks the buses and packs: unique names and ids, values in range,
/// references that resolve to a bus of the right kind, one pack per unit
/// id and per CAN bus.
pub(super) fn validate(
    buses: &[BusConfig],
    packs: &[PackConfig],
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    let links = super::buses::validate(buses, invalid)?;
    let mut ids = HashSet::new();
    let mut addresses = HashSet::new();
    let mut protocols = HashMap::new();
    for (index, pack) in packs.iter().enumerate() {
        if !ids.insert(pack.id.clone()) {
            return Err(invalid(
                &format!("packs[{index}].id"),
                format!("pack id {} is used twice", pack.id),
            ));
        }
        validate_pack(index, pack, &links, invalid)?;
        check_bms_line(index, pack, &mut protocols, invalid)?;
        // Two packs at one address would be read as one: refuse it.
        let (bus, unit) = match &pack.driver {
            DriverConfig::Sim(_) => continue,
            DriverConfig::Modbus(m) => (&m.bus, Some(m.unit_id)),
            DriverConfig::Sunspec(s) => (&s.bus, Some(s.unit_id)),
            DriverConfig::Can(c) => (&c.bus, None),
            DriverConfig::PylonAscii(p) => (&p.bus, Some(p.address)),
            // One pack per line, checked above.
            DriverConfig::Jbd(_) | DriverConfig::Daly(_) | DriverConfig::Jk(_) => continue,
        };
        if !addresses.insert((bus.clone(), unit)) {
            let (field, what) = match (&pack.driver, unit) {
                (DriverConfig::PylonAscii(_), Some(address)) => (
                    "address",
                    format!("address {address} on bus {bus:?} already belongs to another pack"),
                ),
                (_, Some(unit)) => (
                    "unit_id",
                    format!("unit id {unit} on bus {bus:?} already belongs to another pack"),
                ),
                (_, None) => (
                    "bus",
                    format!("bus {bus:?} already carries another CAN pack"),
                ),
            };
            return Err(invalid(&format!("packs[{index}].{field}"), what));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "packs_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "packs_sunspec_tests.rs"]
mod sunspec_tests;
