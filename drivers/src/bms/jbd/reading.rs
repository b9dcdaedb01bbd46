//! The JBD replies as a packgate [`PackReading`].

use packgate_protocol::{BalancingState, CellVoltages, PackReading, Temperatures};

use super::codec::{BasicInfo, CellVoltagesMv};

/// The reading that `0x03` and `0x04` make together: current positive
/// while charging as the BMS sends it, no state of health (JBD reports
/// none), every NTC a temperature, protection bits as alarm flags (see
/// the module doc), the FET bits as the switch states. Balancing bits past
/// the cell count are dropped.
pub fn pack_reading(basic: &BasicInfo, cells: &CellVoltagesMv) -> PackReading {
    let cell_mask = u32::MAX
        .checked_shr(32 - u32::from(basic.cell_count.min(32)))
        .unwrap_or(0);
    PackReading {
        pack_voltage_v: f32::from(basic.pack_voltage_10mv) / 100.0,
        current_a: f32::from(basic.current_10ma) / 100.0,
        soc_pct: f32::from(basic.soc_pct),
        soh_pct: None,
        cell_voltages_v: CellVoltages(cells.0.iter().map(|mv| f32::from(*mv) / 1000.0).collect()),
        temperatures_c: Temperatures(basic.temperatures_c().collect()),
        balancing: BalancingState(basic.balancing_cells & cell_mask),
        alarms: basic.protection.alarm_flags(),
        charge_enabled: basic.charge_mos_on,
        discharge_enabled: basic.discharge_mos_on,
    }
}
