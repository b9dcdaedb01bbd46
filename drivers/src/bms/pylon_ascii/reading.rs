//! The `0x42` and `0x44` replies made into one [`PackReading`]: units,
//! the current sign, SoC from the capacities, the state and status bits
//! onto [`AlarmFlags`], the switches.

use packgate_protocol::{
    AlarmFlags, BalancingState, CellVoltages, PackReading, Temperatures, MAX_CELLS,
    MAX_TEMPERATURE_SENSORS,
};

use super::info::{temperature_c, temperature_c_with_offset, AlarmInfo, AnalogValues, LimitState};
use crate::DriverError;

/// Status 1 bit 0: module (pack) over voltage.
pub const STATUS1_PACK_OVER_VOLTAGE: u8 = 1 << 0;
/// Status 1 bit 1: cell under voltage.
pub const STATUS1_CELL_UNDER_VOLTAGE: u8 = 1 << 1;
/// Status 1 bit 2: charge over current.
pub const STATUS1_CHARGE_OVER_CURRENT: u8 = 1 << 2;
/// Status 1 bit 4: discharge over current.
pub const STATUS1_DISCHARGE_OVER_CURRENT: u8 = 1 << 4;
/// Status 1 bit 5: discharge over temperature.
pub const STATUS1_DISCHARGE_OVER_TEMPERATURE: u8 = 1 << 5;
/// Status 1 bit 6: charge over temperature.
pub const STATUS1_CHARGE_OVER_TEMPERATURE: u8 = 1 << 6;
/// Status 1 bit 7: module (pack) under voltage.
pub const STATUS1_PACK_UNDER_VOLTAGE: u8 = 1 << 7;
/// Status 2 bit 0: pre-charge MOSFET on (reserved, unused).
pub const STATUS2_PRECHARGE_MOSFET: u8 = 1 << 0;
/// Status 2 bit 1: charge MOSFET on.
pub const STATUS2_CHARGE_MOSFET: u8 = 1 << 1;
/// Status 2 bit 2: discharge MOSFET on.
pub const STATUS2_DISCHARGE_MOSFET: u8 = 1 << 2;
/// Status 2 bit 3: the BMS runs on the module's own power.
pub const STATUS2_MODULE_POWER: u8 = 1 << 3;

/// Each status 1 bit with the flag it raises; bit 3 is undefined in
/// V3.3 and raises none.
pub const STATUS1_MAPPING: &[(u8, AlarmFlags)] = &[
    (STATUS1_PACK_OVER_VOLTAGE, AlarmFlags::PACK_OVER_VOLTAGE),
    (STATUS1_CELL_UNDER_VOLTAGE, AlarmFlags::CELL_UNDER_VOLTAGE),
    (STATUS1_CHARGE_OVER_CURRENT, AlarmFlags::CHARGE_OVER_CURRENT),
    (
        STATUS1_DISCHARGE_OVER_CURRENT,
        AlarmFlags::DISCHARGE_OVER_CURRENT,
    ),
    (
        STATUS1_DISCHARGE_OVER_TEMPERATURE,
        AlarmFlags::OVER_TEMPERATURE,
    ),
    (
        STATUS1_CHARGE_OVER_TEMPERATURE,
        AlarmFlags::OVER_TEMPERATURE,
    ),
    (STATUS1_PACK_UNDER_VOLTAGE, AlarmFlags::PACK_UNDER_VOLTAGE),
];

/// The flag a value's state raises: `below` or `above` its limit, a
/// BMS fault for "other error", nothing for normal or an undefined code.
fn state_flag(state: LimitState, below: AlarmFlags, above: AlarmFlags) -> AlarmFlags {
    match state {
        LimitState::BelowLower => below,
        LimitState::AboveUpper => above,
        LimitState::OtherError => AlarmFlags::BMS_FAULT,
        LimitState::Normal | LimitState::Unknown(_) => AlarmFlags::NONE,
    }
}

impl AlarmInfo {
    /// The active protections as packgate flags (see the module's
    /// table of every state and bit).
    pub fn alarm_flags(&self) -> AlarmFlags {
        let states = self
            .cell_states
            .iter()
            .map(|s| {
                state_flag(
                    *s,
                    AlarmFlags::CELL_UNDER_VOLTAGE,
                    AlarmFlags::CELL_OVER_VOLTAGE,
                )
            })
            .chain(self.temperature_states.iter().map(|s| {
                state_flag(
                    *s,
                    AlarmFlags::UNDER_TEMPERATURE,
                    AlarmFlags::OVER_TEMPERATURE,
                )
            }))
            .chain([
                state_flag(
                    self.charge_current_state,
                    AlarmFlags::NONE,
                    AlarmFlags::CHARGE_OVER_CURRENT,
                ),
                state_flag(
                    self.pack_voltage_state,
                    AlarmFlags::PACK_UNDER_VOLTAGE,
                    AlarmFlags::PACK_OVER_VOLTAGE,
                ),
                state_flag(
                    self.discharge_current_state,
                    AlarmFlags::NONE,
                    AlarmFlags::DISCHARGE_OVER_CURRENT,
                ),
            ])
            .fold(AlarmFlags::NONE, AlarmFlags::union);
        let status = STATUS1_MAPPING
            .iter()
            .filter(|(bit, _)| self.status1 & bit != 0)
            .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(*flag));
        let failed_cells = if self.cell_failure_bits.unwrap_or(0) != 0 {
            AlarmFlags::BMS_FAULT
        } else {
            AlarmFlags::NONE
        };
        states.union(status).union(failed_cells)
    }

    /// Whether the charge MOSFET is on (status 2 bit 1).
    pub fn charge_mosfet_on(&self) -> bool {
        self.status2 & STATUS2_CHARGE_MOSFET != 0
    }

    /// Whether the discharge MOSFET is on (status 2 bit 2).
    pub fn discharge_mosfet_on(&self) -> bool {
        self.status2 & STATUS2_DISCHARGE_MOSFET != 0
    }
}

impl AnalogValues {
    /// State of charge, percent: remaining over total capacity (the
    /// protocol has no SoC field; the decoder has checked that the total
    /// is not zero and the remaining not above it).
    pub fn soc_pct(&self) -> f32 {
        if self.total_capacity_mah == 0 {
            return 0.0;
        }
        (f64::from(self.remaining_capacity_mah) * 100.0 / f64::from(self.total_capacity_mah))
            .clamp(0.0, 100.0) as f32
    }

    /// The BMS board's temperature, °C (the first temperature), if sent.
    pub fn bms_temperature_c(&self) -> Option<f32> {
        self.temperatures_dk
            .first()
            .and_then(|t| temperature_c(*t).ok())
    }
}

/// A poll's two replies must agree on the cell and temperature counts;
/// `replies` names them as the vendor's document does.
pub(super) fn check_reply_counts(
    replies: (&str, &str),
    analog: (usize, usize),
    alarm: (usize, usize),
) -> Result<(), DriverError> {
    if analog == alarm {
        return Ok(());
    }
    Err(DriverError::Protocol(format!(
        "{} list {} cells and {} temperatures, {} {} and {}",
        replies.0, analog.0, analog.1, replies.1, alarm.0, alarm.1
    )))
}

/// Volts of the cells sent in millivolts.
pub(super) fn cell_voltages_v(cell_voltages_mv: &[u16]) -> CellVoltages {
    CellVoltages(
        cell_voltages_mv
            .iter()
            .map(|mv| f32::from(*mv) / 1000.0)
            .collect(),
    )
}

/// The cells' temperatures, °C, of a Seplos or Pace pack: every sensor
/// but the last two (MOSFET and ambient), sent as 0.1 K above
/// `offset_dk`.
pub(super) fn cell_temperatures_c(
    temperatures_dk: &[i16],
    offset_dk: i16,
) -> Result<Temperatures, DriverError> {
    let cell_sensors = temperatures_dk.len().saturating_sub(2);
    temperatures_dk[..cell_sensors]
        .iter()
        .map(|t| temperature_c_with_offset(*t, offset_dk))
        .collect::<Result<Vec<f32>, _>>()
        .map(Temperatures)
        .map_err(DriverError::Frame)
}

/// One poll's reading from its `0x42` and `0x44` replies, which must
/// agree on the cell and temperature counts.
pub fn pack_reading(analog: &AnalogValues, alarm: &AlarmInfo) -> Result<PackReading, DriverError> {
    let cells = analog.cell_voltages_mv.len();
    if cells > MAX_CELLS {
        return Err(DriverError::Protocol(format!(
            "{cells} cells; a reading carries at most {MAX_CELLS}"
        )));
    }
    check_reply_counts(
        ("analog values", "alarm info"),
        (cells, analog.temperatures_dk.len()),
        (alarm.cell_states.len(), alarm.temperature_states.len()),
    )?;
    let temperatures_c = analog
        .temperatures_dk
        .iter()
        .skip(1)
        .map(|t| temperature_c(*t))
        .collect::<Result<Vec<f32>, _>>()
        .map_err(DriverError::Frame)?;
    if temperatures_c.len() > MAX_TEMPERATURE_SENSORS {
        return Err(DriverError::Protocol(format!(
            "{} cell temperatures; a reading carries at most {MAX_TEMPERATURE_SENSORS}",
            temperatures_c.len()
        )));
    }
    Ok(PackReading {
        pack_voltage_v: f32::from(analog.pack_voltage_mv) / 1000.0,
        current_a: f32::from(analog.current_100ma) / 10.0,
        soc_pct: analog.soc_pct(),
        soh_pct: None,
        cell_voltages_v: cell_voltages_v(&analog.cell_voltages_mv),
        temperatures_c: Temperatures(temperatures_c),
        balancing: BalancingState(0),
        alarms: alarm.alarm_flags(),
        charge_enabled: alarm.charge_mosfet_on(),
        discharge_enabled: alarm.discharge_mosfet_on(),
    })
}
