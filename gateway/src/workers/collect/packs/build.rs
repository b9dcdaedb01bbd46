//! The pack set assembled from the configuration, one pack at a time.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use packgate_drivers::can::CanPackDriver;
use packgate_drivers::SimDriver;
use packgate_protocol::PackId;
use packgate_sim::SimPack;

use super::{
    add_bms_pack, add_modbus_pack, add_sunspec_pack, can_driver, modbus_link, BmsGroup, Bus,
    BusPacks, ModbusGroup, PackSet, PackSetError,
};
use crate::config::{BusLinkConfig, CanDriverConfig, Config, DriverConfig, PackConfig};
use crate::workers::control::validate::{pack_settings, PackTable, Policy, WriteCheck};

impl PackSet {
    /// Builds a driver per configured pack (call inside the runtime: CAN
    /// drivers start their receive task). A simulated pack has no shared
    /// wire, so each is a bus of its own.
    pub fn from_config(config: &Config) -> Result<Self, PackSetError> {
        let mut builder = PackSetBuilder::new(config);
        for pack in &config.packs {
            builder.add(pack)?;
        }
        Ok(builder.finish())
    }
}

/// A configuration error of the pack `id`.
fn pack_config_error(id: &PackId, what: &str) -> PackSetError {
    PackSetError::Config {
        pack: id.clone(),
        reason: what.to_owned(),
    }
}

/// A pack set being built from the configuration: the Modbus and
/// framed-protocol packs gathered by bus name (in configuration order)
/// until every pack is in, and what each pack may be written.
struct PackSetBuilder<'a> {
    config: &'a Config,
    default_timeout: Duration,
    links: HashMap<&'a str, &'a BusLinkConfig>,
    set: PackSet,
    modbus: BTreeMap<&'a str, ModbusGroup>,
    bms: BTreeMap<&'a str, BmsGroup>,
    writable: PackTable,
}

impl<'a> PackSetBuilder<'a> {
    fn new(config: &'a Config) -> Self {
        Self {
            config,
            default_timeout: config.collect.request_timeout(),
            links: config
                .buses
                .iter()
                .map(|b| (b.name.as_str(), &b.link))
                .collect(),
            set: PackSet::default(),
            modbus: BTreeMap::new(),
            bms: BTreeMap::new(),
            writable: PackTable::with_capacity(config.packs.len()),
        }
    }

    /// Adds one configured pack: its settings, and its driver on its bus.
    fn add(&mut self, pack: &'a PackConfig) -> Result<(), PackSetError> {
        let id = &pack.id;
        let settings = pack_settings(pack).map_err(|source| PackSetError::Profile {
            pack: id.clone(),
            source,
        })?;
        self.writable.insert(id.clone(), settings);
        let link = match pack.bus() {
            Some(name) => Some((
                name,
                *self.links.get(name).ok_or_else(|| {
                    pack_config_error(id, &format!("bus {name:?} is not defined"))
                })?,
            )),
            None => None,
        };
        match (&pack.driver, link) {
            (DriverConfig::Modbus(_) | DriverConfig::Sunspec(_), Some((name, bus))) => {
                self.add_modbus_family(pack, name, bus)?;
            }
            (
                DriverConfig::PylonAscii(_)
                | DriverConfig::Jbd(_)
                | DriverConfig::Daly(_)
                | DriverConfig::Jk(_),
                Some((name, bus)),
            ) => add_bms_pack(&mut self.bms, name, bus, pack, self.default_timeout)?,
            (DriverConfig::Can(can), Some((name, bus))) => self.add_can(id, can, name, bus)?,
            (DriverConfig::Sim(sim), _) => {
                let pack = SimPack::new(&sim.sim);
                self.set.sims.insert(id.clone(), pack.clone());
                self.set.buses.push(Bus {
                    name: format!("sim:{id}"),
                    poll_timeout: self.default_timeout,
                    packs: BusPacks::Sim(SimDriver::new(id.clone(), pack)),
                });
            }
            (_, None) => return Err(pack_config_error(id, "no bus configured")),
        }
        Ok(())
    }

    /// Adds a Modbus or SunSpec pack to its bus's group, opening the
    /// group with the bus's link for its first pack.
    fn add_modbus_family(
        &mut self,
        pack: &PackConfig,
        name: &'a str,
        bus: &BusLinkConfig,
    ) -> Result<(), PackSetError> {
        let id = &pack.id;
        let group = match self.modbus.entry(name) {
            Entry::Occupied(group) => group.into_mut(),
            Entry::Vacant(slot) => {
                let link = modbus_link(bus, self.default_timeout).ok_or_else(|| {
                    pack_config_error(id, &format!("bus {name:?} is not a Modbus bus"))
                })?;
                slot.insert((link, Vec::new(), Duration::ZERO))
            }
        };
        match &pack.driver {
            DriverConfig::Modbus(m) => add_modbus_pack(group, id, m)?,
            DriverConfig::Sunspec(s) => add_sunspec_pack(group, id, s),
            _ => {}
        }
        Ok(())
    }

    /// Adds a CAN pack: a bus of its own (its driver holds the link).
    fn add_can(
        &mut self,
        id: &PackId,
        can: &CanDriverConfig,
        name: &str,
        bus: &BusLinkConfig,
    ) -> Result<(), PackSetError> {
        let can_config = can_driver(bus, can, &self.config.collect)
            .ok_or_else(|| pack_config_error(id, &format!("bus {name:?} is not a CAN bus")))?;
        let driver =
            CanPackDriver::new(id.clone(), &can_config).map_err(|source| PackSetError::Driver {
                pack: id.clone(),
                source,
            })?;
        self.set.buses.push(Bus {
            name: name.to_owned(),
            poll_timeout: self.default_timeout,
            packs: BusPacks::Can(driver),
        });
        Ok(())
    }

    /// The pack set: the Modbus buses, then the framed-protocol buses,
    /// after the CAN and simulated ones.
    fn finish(self) -> PackSet {
        let mut set = self.set;
        set.buses.extend(
            self.modbus
                .into_iter()
                .map(|(name, (link, drivers, timeout))| Bus {
                    name: name.to_owned(),
                    poll_timeout: timeout,
                    packs: BusPacks::Modbus(link, drivers),
                }),
        );
        set.buses.extend(
            self.bms
                .into_iter()
                .map(|(name, (link, drivers, timeout))| Bus {
                    name: name.to_owned(),
                    poll_timeout: timeout,
                    packs: BusPacks::Bms(link, drivers),
                }),
        );
        set.write_check = WriteCheck::new(self.writable, Policy::of(&self.config.control));
        set
    }
}
