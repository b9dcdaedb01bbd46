//! Building the drivers from the configuration, grouped by bus: every pack
//! on one serial line, TCP endpoint or CAN interface shares one link and
//! one owner task.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use packgate_drivers::bms::{BmsPackDriver, SerialFrameLink, SerialLineConfig};
use packgate_drivers::can::{CanDriverConfig as CanConfig, CanPackDriver, CanTransportConfig};
use packgate_drivers::modbus::{
    DataBits, ModbusLink, ModbusPackDriver, Parity, RtuLinkConfig, StopBits, SunSpecOptions,
    TcpLinkConfig,
};
use packgate_drivers::{profile, DriverError, PackDriver, SimDriver};
use packgate_protocol::PackId;
use packgate_sim::SimPack;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::bus::{BusContext, BusOwner, WriteRequest};
use crate::config::{
    BmsProtocol, BusLinkConfig, CanDriverConfig, CollectConfig, DriverConfig, ModbusDriverConfig,
    PackConfig, SerialParity, SunSpecDriverConfig,
};
use crate::workers::control::validate::WriteCheck;

mod build;

/// The packs of one bus and the link they are reached on: polled in turn
/// by one owner task, which holds the link.
#[derive(Debug)]
pub struct Bus {
    /// A name for logs: the configured bus name, or `sim:<pack>`.
    pub name: String,
    /// Time one whole poll of one pack may take (all its requests).
    pub poll_timeout: Duration,
    packs: BusPacks,
}

/// A bus's link and drivers, by transport.
#[derive(Debug)]
enum BusPacks {
    /// Packs on one Modbus line or endpoint.
    Modbus(ModbusLink, Vec<ModbusPackDriver>),
    /// Packs on one serial line speaking a framed BMS protocol.
    Bms(SerialFrameLink, Vec<BmsPackDriver>),
    /// A CAN BMS (its driver's receive task holds the CAN link).
    Can(CanPackDriver),
    /// A simulated pack.
    Sim(SimDriver),
}

impl Bus {
    /// The packs on it, in polling order.
    pub fn pack_ids(&self) -> Vec<PackId> {
        match &self.packs {
            BusPacks::Modbus(_, drivers) => drivers.iter().map(|d| d.pack_id().clone()).collect(),
            BusPacks::Bms(_, drivers) => drivers.iter().map(|d| d.pack_id().clone()).collect(),
            BusPacks::Can(driver) => vec![driver.pack_id().clone()],
            BusPacks::Sim(driver) => vec![driver.pack_id().clone()],
        }
    }

    /// Number of packs on it.
    pub fn pack_count(&self) -> usize {
        match &self.packs {
            BusPacks::Modbus(_, drivers) => drivers.len(),
            BusPacks::Bms(_, drivers) => drivers.len(),
            BusPacks::Can(_) | BusPacks::Sim(_) => 1,
        }
    }

    /// Starts its owner task: the first round at `start`, then every
    /// period, serving `writes` between polls.
    pub(super) fn spawn(
        self,
        writes: mpsc::Receiver<WriteRequest>,
        start: Instant,
        cx: BusContext,
    ) -> JoinHandle<()> {
        let Bus {
            name,
            poll_timeout,
            packs,
        } = self;
        match packs {
            BusPacks::Modbus(link, drivers) => tokio::spawn(
                BusOwner::new(name, link, drivers, poll_timeout).run(writes, start, cx),
            ),
            BusPacks::Bms(link, drivers) => tokio::spawn(
                BusOwner::new(name, link, drivers, poll_timeout).run(writes, start, cx),
            ),
            BusPacks::Can(driver) => tokio::spawn(
                BusOwner::new(name, (), vec![driver], poll_timeout).run(writes, start, cx),
            ),
            BusPacks::Sim(driver) => tokio::spawn(
                BusOwner::new(name, (), vec![driver], poll_timeout).run(writes, start, cx),
            ),
        }
    }
}

/// The drivers built from the configuration, grouped into buses, and the
/// simulated packs among them (so tests and the CLI can inject faults).
#[derive(Debug, Default)]
pub struct PackSet {
    /// The buses to poll.
    pub buses: Vec<Bus>,
    /// Handles of the simulated packs, by pack id.
    pub sims: HashMap<PackId, SimPack>,
    /// What every write request is checked against before it is written:
    /// the packs' profile bounds and the `[control]` section's site limits
    /// and expiry rules (the default refuses every write).
    pub write_check: WriteCheck,
}

/// Why the drivers could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PackSetError {
    /// A pack's profile could not be loaded.
    #[error("pack {pack}: {source}")]
    Profile {
        /// The pack.
        pack: PackId,
        /// The profile error.
        source: profile::ProfileError,
    },
    /// A driver could not start.
    #[error("pack {pack}: {source}")]
    Driver {
        /// The pack.
        pack: PackId,
        /// The driver error.
        source: DriverError,
    },
    /// The configuration refers to something it does not define (a
    /// configuration that passed validation never does).
    #[error("pack {pack}: {reason}")]
    Config {
        /// The pack.
        pack: PackId,
        /// What is missing.
        reason: String,
    },
}

fn modbus_link(bus: &BusLinkConfig, default_timeout: Duration) -> Option<ModbusLink> {
    let millis = Duration::from_millis;
    match bus {
        BusLinkConfig::ModbusTcp(tcp) => {
            let mut link = TcpLinkConfig::new(tcp.address.clone());
            link.request_timeout = tcp.request_timeout_ms.map_or(default_timeout, millis);
            link.reconnect_backoff_max = millis(tcp.reconnect_backoff_max_ms);
            if let Some(gap) = tcp.inter_frame_gap_ms {
                link.inter_frame_gap = millis(gap);
            }
            Some(ModbusLink::tcp(link))
        }
        BusLinkConfig::ModbusRtu(rtu) => {
            let mut link = RtuLinkConfig::new(rtu.port.display().to_string(), rtu.baud_rate);
            link.parity = match rtu.parity {
                SerialParity::None => Parity::None,
                SerialParity::Even => Parity::Even,
                SerialParity::Odd => Parity::Odd,
            };
            link.data_bits = DataBits::Eight;
            link.stop_bits = if rtu.stop_bits == 2 {
                StopBits::Two
            } else {
                StopBits::One
            };
            link.request_timeout = rtu.request_timeout_ms.map_or(default_timeout, millis);
            link.reconnect_backoff_max = millis(rtu.reconnect_backoff_max_ms);
            if let Some(gap) = rtu.inter_frame_gap_ms {
                link.inter_frame_gap = millis(gap);
            }
            Some(ModbusLink::rtu(link))
        }
        BusLinkConfig::Slcan(_) | BusLinkConfig::Socketcan(_) | BusLinkConfig::BmsSerial(_) => None,
    }
}

/// The serial line of a `bms_serial` bus whose packs speak `protocol`;
/// none for another kind of bus.
fn bms_link(
    bus: &BusLinkConfig,
    protocol: BmsProtocol,
    default_timeout: Duration,
) -> Option<SerialFrameLink> {
    let BusLinkConfig::BmsSerial(line) = bus else {
        return None;
    };
    let millis = Duration::from_millis;
    let baud_rate = line
        .baud_rate
        .unwrap_or_else(|| protocol.default_baud_rate());
    let mut config = SerialLineConfig::new(line.port.display().to_string(), baud_rate);
    config.request_timeout = line.request_timeout_ms.map_or(default_timeout, millis);
    config.reconnect_backoff_max = millis(line.reconnect_backoff_max_ms);
    config.inter_frame_gap = line
        .inter_frame_gap_ms
        .map_or_else(|| protocol.default_inter_frame_gap(), millis);
    Some(SerialFrameLink::new(config))
}

/// The driver of a framed-protocol pack; none for the other drivers.
fn bms_driver(pack: &PackConfig) -> Option<BmsPackDriver> {
    let id = pack.id.clone();
    Some(match &pack.driver {
        DriverConfig::PylonAscii(p) => {
            BmsPackDriver::pylon_ascii_with_layout(id, p.address, p.layout)
        }
        DriverConfig::Jbd(_) => BmsPackDriver::jbd(id),
        DriverConfig::Daly(d) => BmsPackDriver::daly(id, d.host_address),
        DriverConfig::Jk(_) => BmsPackDriver::jk(id),
        _ => return None,
    })
}

/// A serial BMS line being assembled: its link, drivers and poll timeout.
type BmsGroup = (SerialFrameLink, Vec<BmsPackDriver>, Duration);

/// Adds the framed-protocol `pack` to the line of bus `name`, opening the
/// group at its first pack; the line's poll timeout grows to what one of
/// its packs' polls may need.
fn add_bms_pack<'a>(
    groups: &mut BTreeMap<&'a str, BmsGroup>,
    name: &'a str,
    bus: &BusLinkConfig,
    pack: &PackConfig,
    default_timeout: Duration,
) -> Result<(), PackSetError> {
    let missing = |what: String| PackSetError::Config {
        pack: pack.id.clone(),
        reason: what,
    };
    let (protocol, _) = pack
        .bms_protocol()
        .ok_or_else(|| missing("not a framed BMS protocol".into()))?;
    let driver = bms_driver(pack).ok_or_else(|| missing("not a framed BMS protocol".into()))?;
    let (link, drivers, poll_timeout) = match groups.entry(name) {
        Entry::Occupied(group) => group.into_mut(),
        Entry::Vacant(slot) => {
            let link = bms_link(bus, protocol, default_timeout)
                .ok_or_else(|| missing(format!("bus {name:?} is not a bms_serial bus")))?;
            slot.insert((link, Vec::new(), Duration::ZERO))
        }
    };
    *poll_timeout = (*poll_timeout).max(link.poll_timeout(driver.poll_requests()));
    drivers.push(driver);
    Ok(())
}

/// How old a CAN BMS's frames may be before its reading is stale: two and
/// a half poll periods, at least 2.5 s (BMSs broadcast about once a
/// second); saturating, whatever the period.
fn can_stale_after_ms(poll_interval_ms: u64) -> u64 {
    (poll_interval_ms.saturating_mul(5) / 2).max(2_500)
}

/// The CAN driver's settings for a pack on `bus`; none for a Modbus bus.
fn can_driver(
    bus: &BusLinkConfig,
    pack: &CanDriverConfig,
    collect: &CollectConfig,
) -> Option<CanConfig> {
    let (transport, io_timeout_ms, max_backoff_ms) = match bus {
        BusLinkConfig::Socketcan(can) => (
            CanTransportConfig::Socketcan {
                interface: can.interface.clone(),
            },
            can.request_timeout_ms,
            can.reconnect_backoff_max_ms,
        ),
        BusLinkConfig::Slcan(slcan) => (
            CanTransportConfig::Slcan {
                path: slcan.port.display().to_string(),
                serial_baud: slcan.baud_rate,
                bitrate_bps: slcan.can_bitrate_bps,
            },
            slcan.request_timeout_ms,
            slcan.reconnect_backoff_max_ms,
        ),
        BusLinkConfig::ModbusRtu(_) | BusLinkConfig::ModbusTcp(_) | BusLinkConfig::BmsSerial(_) => {
            return None
        }
    };
    Some(CanConfig {
        cells_in_series: pack.cells_in_series,
        stale_after_ms: can_stale_after_ms(collect.poll_interval_ms),
        poll_wait_ms: collect.request_timeout_ms / 2,
        io_timeout_ms,
        max_backoff_ms,
        transport,
    })
}

/// A Modbus bus being assembled: its link, drivers and poll timeout.
type ModbusGroup = (ModbusLink, Vec<ModbusPackDriver>, Duration);

/// Adds the pack `id` to its Modbus bus, whose poll timeout grows to what
/// a poll of the pack's profile needs.
fn add_modbus_pack(
    group: &mut ModbusGroup,
    id: &PackId,
    config: &ModbusDriverConfig,
) -> Result<(), PackSetError> {
    let profile = profile::resolve(&config.profile).map_err(|source| PackSetError::Profile {
        pack: id.clone(),
        source,
    })?;
    push_modbus_driver(
        group,
        ModbusPackDriver::new(id.clone(), config.unit_id, profile),
    );
    Ok(())
}

/// Adds the SunSpec battery `id` to its Modbus bus.
fn add_sunspec_pack(group: &mut ModbusGroup, id: &PackId, config: &SunSpecDriverConfig) {
    let options = SunSpecOptions {
        bases: config.bases.clone(),
        invert_current: config.invert_current,
    };
    push_modbus_driver(
        group,
        ModbusPackDriver::sunspec(id.clone(), config.unit_id, options),
    );
}

/// Adds `driver` to the bus, whose poll timeout grows to what one of its
/// polls may need.
fn push_modbus_driver(group: &mut ModbusGroup, driver: ModbusPackDriver) {
    let (link, drivers, poll_timeout) = group;
    *poll_timeout = (*poll_timeout).max(link.poll_timeout(driver.poll_requests()));
    drivers.push(driver);
}

impl PackSet {
    /// Number of packs.
    pub fn pack_count(&self) -> usize {
        self.buses.iter().map(Bus::pack_count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_can_staleness_never_overflows() {
        assert_eq!(can_stale_after_ms(1_000), 2_500);
        assert_eq!(can_stale_after_ms(2_000), 5_000);
        assert_eq!(can_stale_after_ms(9_000_000_000_000_000_000), u64::MAX / 2);
        assert_eq!(can_stale_after_ms(u64::MAX), u64::MAX / 2);
    }
}
