//! One poll's Daly replies made into a [`PackReading`].

use packgate_protocol::{AlarmFlags, BalancingState, CellVoltages, PackReading, Temperatures};

use super::codec::{Failures, PackStatus, Switches, SystemStatus};
use crate::DriverError;

/// Each `0x98` failure bit (byte × 8 + bit) that raises a flag: the
/// level-2 (protection) bit of each pair, the MOSFET and module faults
/// and short circuit. Every other bit raises none (see the module's
/// table).
pub const FAILURE_MAPPING: &[(usize, AlarmFlags)] = &[
    (1, AlarmFlags::CELL_OVER_VOLTAGE),
    (3, AlarmFlags::CELL_UNDER_VOLTAGE),
    (5, AlarmFlags::PACK_OVER_VOLTAGE),
    (7, AlarmFlags::PACK_UNDER_VOLTAGE),
    (9, AlarmFlags::OVER_TEMPERATURE),
    (11, AlarmFlags::UNDER_TEMPERATURE),
    (13, AlarmFlags::OVER_TEMPERATURE),
    (15, AlarmFlags::UNDER_TEMPERATURE),
    (17, AlarmFlags::CHARGE_OVER_CURRENT),
    (19, AlarmFlags::DISCHARGE_OVER_CURRENT),
    (25, AlarmFlags::CELL_IMBALANCE),
    (32, AlarmFlags::OVER_TEMPERATURE),
    (33, AlarmFlags::OVER_TEMPERATURE),
    (34, AlarmFlags::BMS_FAULT),
    (35, AlarmFlags::BMS_FAULT),
    (36, AlarmFlags::BMS_FAULT),
    (37, AlarmFlags::BMS_FAULT),
    (38, AlarmFlags::BMS_FAULT),
    (39, AlarmFlags::BMS_FAULT),
    (40, AlarmFlags::BMS_FAULT),
    (41, AlarmFlags::BMS_FAULT),
    (42, AlarmFlags::BMS_FAULT),
    (43, AlarmFlags::BMS_FAULT),
    (44, AlarmFlags::BMS_FAULT),
    (45, AlarmFlags::BMS_FAULT),
    (47, AlarmFlags::BMS_FAULT),
    (48, AlarmFlags::BMS_FAULT),
    (49, AlarmFlags::BMS_FAULT),
    (50, AlarmFlags::SHORT_CIRCUIT),
];

impl Failures {
    /// The active protections and faults as packgate flags; warnings
    /// (level 1) stay out.
    pub fn alarm_flags(&self) -> AlarmFlags {
        FAILURE_MAPPING
            .iter()
            .filter(|(index, _)| self.is_set(*index))
            .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(*flag))
    }
}

/// Everything one poll reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DalyPoll {
    /// `0x90`.
    pub status: PackStatus,
    /// `0x93`.
    pub switches: Switches,
    /// `0x94`.
    pub system: SystemStatus,
    /// `0x95`, millivolts.
    pub cell_voltages_mv: Vec<u16>,
    /// `0x96`, °C.
    pub temperatures_c: Vec<i16>,
    /// `0x97`, bit 0 cell 1.
    pub balancing_bits: u64,
    /// `0x98`.
    pub failures: Failures,
}

/// The reading of one poll. More cells or sensors than a reading carries
/// is an error; balancing bits past the last cell are dropped.
pub fn pack_reading(p: &DalyPoll) -> Result<PackReading, DriverError> {
    let cells = p.cell_voltages_mv.len();
    if cells > packgate_protocol::MAX_CELLS {
        return Err(DriverError::Protocol(format!(
            "{cells} cells; a reading carries at most {}",
            packgate_protocol::MAX_CELLS
        )));
    }
    let mask = if cells >= 64 {
        u64::MAX
    } else {
        (1u64 << cells) - 1
    };
    Ok(PackReading {
        pack_voltage_v: f32::from(p.status.pack_voltage_dv) / 10.0,
        current_a: p.status.current_da as f32 / 10.0,
        soc_pct: f32::from(p.status.soc_permille) / 10.0,
        soh_pct: None,
        cell_voltages_v: CellVoltages(
            p.cell_voltages_mv
                .iter()
                .map(|mv| f32::from(*mv) / 1000.0)
                .collect(),
        ),
        temperatures_c: Temperatures(p.temperatures_c.iter().map(|c| f32::from(*c)).collect()),
        balancing: BalancingState((p.balancing_bits & mask) as u32),
        alarms: p.failures.alarm_flags(),
        charge_enabled: p.switches.charge_mosfet_on,
        discharge_enabled: p.switches.discharge_mosfet_on,
    })
}
