//! Building the drivers from the configuration, grouped by bus: every pack
//! on one serial line, TCP endpoint or CAN interface shares one link and
//! one owner task.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use packgate_drivers::can::{CanDriverConfig, CanPackDriver, CanTransportConfig};
use packgate_drivers::modbus::{
    DataBits, ModbusLink, ModbusPackDriver, Parity, RtuLinkConfig, StopBits, TcpLinkConfig,
};
use packgate_drivers::{profile, DriverError, PackDriver, SimDriver};
use packgate_protocol::PackId;
use packgate_sim::SimPack;

use crate::config::{BusConfig, BusKind, Config, DriverKind, SerialParity};

/// The packs of one bus: polled in turn by one owner task.
#[derive(Debug)]
pub struct Bus {
    /// A name for logs: the configured bus name, or `sim:<pack>`.
    pub name: String,
    /// The packs on it.
    pub drivers: Vec<Box<dyn PackDriver>>,
    /// Time one whole poll of one pack may take (all its requests).
    pub poll_timeout: Duration,
}

/// The drivers built from the configuration, grouped into buses, and the
/// simulated packs among them (so tests and the CLI can inject faults).
#[derive(Debug, Default)]
pub struct PackSet {
    /// The buses to poll.
    pub buses: Vec<Bus>,
    /// Handles of the simulated packs, by pack id.
    pub sims: HashMap<PackId, SimPack>,
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

fn modbus_link(bus: &BusConfig, default_timeout: Duration) -> ModbusLink {
    let timeout = bus
        .request_timeout_ms
        .map_or(default_timeout, Duration::from_millis);
    let backoff = Duration::from_millis(bus.reconnect_backoff_max_ms);
    if bus.kind == BusKind::ModbusTcp {
        let mut link = TcpLinkConfig::new(bus.address.clone().unwrap_or_default());
        link.request_timeout = timeout;
        link.reconnect_backoff_max = backoff;
        if let Some(gap) = bus.inter_frame_gap_ms {
            link.inter_frame_gap = Duration::from_millis(gap);
        }
        return ModbusLink::tcp(link);
    }
    let path = bus
        .port
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut link = RtuLinkConfig::new(path, bus.baud_rate.unwrap_or(9_600));
    link.parity = match bus.parity {
        SerialParity::None => Parity::None,
        SerialParity::Even => Parity::Even,
        SerialParity::Odd => Parity::Odd,
    };
    link.data_bits = DataBits::Eight;
    link.stop_bits = if bus.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    link.request_timeout = timeout;
    link.reconnect_backoff_max = backoff;
    if let Some(gap) = bus.inter_frame_gap_ms {
        link.inter_frame_gap = Duration::from_millis(gap);
    }
    ModbusLink::rtu(link)
}

fn can_transport(bus: &BusConfig) -> CanTransportConfig {
    match bus.kind {
        BusKind::Socketcan => CanTransportConfig::Socketcan {
            interface: bus.interface.clone().unwrap_or_default(),
        },
        _ => CanTransportConfig::Slcan {
            path: bus
                .port
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            serial_baud: bus.baud_rate.unwrap_or(115_200),
            bitrate_bps: bus.can_bitrate_bps.unwrap_or(500_000),
        },
    }
}

impl PackSet {
    /// Builds a driver per configured pack (call inside the runtime: CAN
    /// drivers start their receive task). A simulated pack has no shared
    /// wire, so each is a bus of its own.
    pub fn from_config(config: &Config) -> Result<Self, PackSetError> {
        let default_timeout = config.collect.request_timeout();
        let bus_configs: HashMap<&str, &BusConfig> =
            config.buses.iter().map(|b| (b.name.as_str(), b)).collect();
        let mut set = PackSet::default();
        // Modbus packs grouped by bus name, in configuration order.
        let mut modbus: BTreeMap<&str, (Arc<tokio::sync::Mutex<ModbusLink>>, Bus)> =
            BTreeMap::new();
        for pack in &config.packs {
            let bus_config = pack.bus.as_deref().and_then(|name| bus_configs.get(name));
            match (pack.driver, bus_config) {
                (DriverKind::Sim, _) => {
                    let sim = SimPack::new(&pack.sim.clone().unwrap_or_default());
                    set.sims.insert(pack.id.clone(), sim.clone());
                    set.buses.push(Bus {
                        name: format!("sim:{}", pack.id),
                        drivers: vec![Box::new(SimDriver::new(pack.id.clone(), sim))],
                        poll_timeout: default_timeout,
                    });
                }
                (DriverKind::Modbus, Some(bus)) => {
                    let profile = profile::resolve(pack.profile.as_deref().unwrap_or_default())
                        .map_err(|source| PackSetError::Profile {
                            pack: pack.id.clone(),
                            source,
                        })?;
                    let (link, group) = modbus.entry(bus.name.as_str()).or_insert_with(|| {
                        let link = modbus_link(bus, default_timeout);
                        (
                            Arc::new(tokio::sync::Mutex::new(link)),
                            Bus {
                                name: bus.name.clone(),
                                drivers: Vec::new(),
                                poll_timeout: Duration::ZERO,
                            },
                        )
                    });
                    let request_timeout = link
                        .try_lock()
                        .map_or(default_timeout, |l| l.request_timeout());
                    // Every block is one request; allow each its full
                    // timeout, plus one for the gap and the reopen.
                    let blocks = u32::try_from(profile.blocks.len()).unwrap_or(u32::MAX);
                    let needed = request_timeout.saturating_mul(blocks.saturating_add(1));
                    group.poll_timeout = group.poll_timeout.max(needed);
                    let unit = pack.unit_id.unwrap_or(1);
                    group.drivers.push(Box::new(ModbusPackDriver::new(
                        pack.id.clone(),
                        unit,
                        profile,
                        Arc::clone(link),
                    )));
                }
                (DriverKind::Can, Some(bus)) => {
                    let can = CanDriverConfig {
                        cells_in_series: pack.cells_in_series.unwrap_or(0),
                        stale_after_ms: (config.collect.poll_interval_ms * 5 / 2).max(2_500),
                        poll_wait_ms: config.collect.request_timeout_ms / 2,
                        io_timeout_ms: bus.request_timeout_ms.unwrap_or(1_000),
                        max_backoff_ms: bus.reconnect_backoff_max_ms,
                        transport: can_transport(bus),
                    };
                    let driver = CanPackDriver::new(pack.id.clone(), &can).map_err(|source| {
                        PackSetError::Driver {
                            pack: pack.id.clone(),
                            source,
                        }
                    })?;
                    set.buses.push(Bus {
                        name: bus.name.clone(),
                        drivers: vec![Box::new(driver)],
                        poll_timeout: default_timeout,
                    });
                }
                (_, None) => {
                    return Err(PackSetError::Config {
                        pack: pack.id.clone(),
                        reason: format!("bus {:?} is not defined", pack.bus),
                    })
                }
            }
        }
        set.buses.extend(modbus.into_values().map(|(_, bus)| bus));
        Ok(set)
    }

    /// Number of packs.
    pub fn pack_count(&self) -> usize {
        self.buses.iter().map(|b| b.drivers.len()).sum()
    }
}
