//! The JK read-all reply as a packgate [`PackReading`].

use packgate_protocol::{BalancingState, CellVoltages, PackReading, Temperatures};

use super::codec::ReadAll;

/// The reading a read-all makes: current positive while charging, no
/// state of health and no per-cell balancing (JK reports neither),
/// sensors 1 and 2 as the temperatures (as many as `86` counts), the `8B`
/// alarm bits as alarm flags, the `8C` MOS bits as the switch states.
pub fn pack_reading(values: &ReadAll) -> PackReading {
    let sensors = usize::from(values.temperature_sensor_count.unwrap_or(2));
    PackReading {
        pack_voltage_v: f32::from(values.pack_voltage_10mv) / 100.0,
        current_a: values.current_10ma as f32 / 100.0,
        soc_pct: f32::from(values.soc_pct),
        soh_pct: None,
        cell_voltages_v: CellVoltages(
            values
                .cell_voltages_mv
                .iter()
                .map(|mv| f32::from(*mv) / 1000.0)
                .collect(),
        ),
        temperatures_c: Temperatures(
            [values.sensor_1_temperature_c, values.sensor_2_temperature_c]
                .into_iter()
                .take(sensors)
                .flatten()
                .map(f32::from)
                .collect(),
        ),
        balancing: BalancingState(0),
        alarms: values.warnings.alarm_flags(),
        charge_enabled: values.status.charge_mos_on(),
        discharge_enabled: values.status.discharge_mos_on(),
    }
}
