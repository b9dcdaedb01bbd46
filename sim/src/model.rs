//! The physics of one LFP pack: coulomb counting per cell, OCV plus I·R
//! terminal voltages, cell spread and passive balancing, first-order heat,
//! and the BMS's protection, limits and settings.

use packgate_protocol::{
    AlarmFlags, BalancingState, CellVoltages, PackReading, Temperatures, MAX_CELLS,
    MAX_TEMPERATURE_SENSORS,
};

use crate::config::{SimPackConfig, MAX_CURRENT_A};
use crate::load::{LoadContext, LoadProfile, LoadState};
use crate::ocv::lfp_ocv_v;
use crate::protection::Protection;
use crate::rng::Rng;

/// Longest physics sub-step, seconds: [`PackModel::step`] splits longer
/// steps so protection reacts within a second.
pub const MAX_SUBSTEP_S: f64 = 1.0;
/// Most sub-steps one [`PackModel::step`] call takes; longer steps use
/// longer sub-steps (the integration stays stable, protection just reacts
/// later), so a multi-hour step stays fast.
pub const MAX_SUBSTEPS: u32 = 2000;
/// Longest step honoured, seconds (about 31 years); longer ones are cut.
pub const MAX_STEP_S: f64 = 1e9;
/// Passive balancing works only on cells above this voltage, volts.
pub const BALANCE_START_V: f64 = 3.40;
/// A cell is bled while it is this much above the lowest cell, volts.
pub const BALANCE_THRESHOLD_V: f64 = 0.015;
/// Current of one cell's bleed resistor, amperes.
pub const BALANCE_CURRENT_A: f64 = 0.1;

/// Name of the writable charge current limit setting, amperes.
pub const CHARGE_CURRENT_LIMIT_A: &str = "charge_current_limit_a";
/// Name of the writable discharge current limit setting, amperes (a
/// magnitude).
pub const DISCHARGE_CURRENT_LIMIT_A: &str = "discharge_current_limit_a";
/// Every writable setting of a simulated pack; each takes 0 to
/// [`MAX_CURRENT_A`].
pub const SETTINGS: &[&str] = &[CHARGE_CURRENT_LIMIT_A, DISCHARGE_CURRENT_LIMIT_A];
/// Name of the charge switch (MOSFET) setting: 1 lets the BMS close it,
/// 0 holds it open whatever the BMS decides (what a JBD or JK BMS's
/// "charge MOS" control does).
pub const CHARGE_SWITCH_ON: &str = "charge_switch_on";
/// Name of the discharge switch (MOSFET) setting, as [`CHARGE_SWITCH_ON`].
pub const DISCHARGE_SWITCH_ON: &str = "discharge_switch_on";
/// The switch settings; each takes 0 (held open) or 1 (BMS decides).
pub const SWITCH_SETTINGS: &[&str] = &[CHARGE_SWITCH_ON, DISCHARGE_SWITCH_ON];

/// Cells are held within this state of charge (a fraction): far enough
/// past the ends for protection to trip, bounded so nothing runs away.
const CELL_SOC_MIN: f64 = -0.03;
const CELL_SOC_MAX: f64 = 1.03;
/// Seeded spread, as ± fractions: cell capacity, cell initial state of
/// charge (absolute), cell resistance, sensor gain; sensor offset in °C.
const CAPACITY_SPREAD: f64 = 0.02;
const SOC_SPREAD: f64 = 0.015;
const RESISTANCE_SPREAD: f64 = 0.10;
const SENSOR_GAIN_SPREAD: f64 = 0.15;
const SENSOR_OFFSET_SPREAD_C: f64 = 0.5;
/// Heat capacity of one cell per ampere-hour, J/K (a 100 Ah LFP prismatic
/// cell weighs about 2 kg at about 1 J/(g·K)).
const HEAT_CAPACITY_J_PER_K_AH: f64 = 20.0;
/// Where the over-temperature fault drives the sensors, °C, and how fast.
const FAULT_TEMPERATURE_C: f64 = 70.0;
const FAULT_HEATING_TAU_S: f64 = 60.0;

/// Why a setting was not written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// The pack has no such writable setting (see [`SETTINGS`]).
    #[error("unknown setting {0:?}")]
    Unknown(String),
    /// The value is not finite or outside the setting's range.
    #[error("{name} = {value} is outside {min} to {max}")]
    OutOfRange {
        /// The setting.
        name: String,
        /// The refused value.
        value: f64,
        /// Lowest value accepted.
        min: f64,
        /// Highest value accepted.
        max: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Cell {
    /// State of charge, a fraction of this cell's own capacity.
    soc: f64,
    capacity_ah: f64,
    resistance_ohm: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Sensor {
    /// Calibration offset, °C.
    offset_c: f64,
    /// Share of the pack's heating this spot sees (near a busbar: more).
    gain: f64,
    /// Temperature above ambient, °C (before the offset).
    rise_c: f64,
}

/// The state of one simulated pack. Pure and deterministic: the same
/// config and the same sequence of [`step`](Self::step)s and settings give
/// the same readings; time only moves when the caller says so.
#[derive(Debug, Clone)]
pub struct PackModel {
    cells: Vec<Cell>,
    sensors: Vec<Sensor>,
    /// The BMS's coulomb-counted state of charge, a fraction of the usable
    /// capacity.
    soc: f64,
    usable_capacity_ah: f64,
    soh_pct: f64,
    ambient_c: f64,
    thermal_tau_s: f64,
    heat_capacity_j_per_k: f64,
    current_a: f64,
    charge_limit_a: f64,
    discharge_limit_a: f64,
    charge_switch_on: bool,
    discharge_switch_on: bool,
    protection: Protection,
    balancing: u32,
    load: LoadState,
    over_temperature_fault: bool,
    elapsed_s: f64,
}

/// `value` clamped to `lo..=hi`, or `default` when it is not finite.
fn sane(value: f64, default: f64, lo: f64, hi: f64) -> f64 {
    if value.is_finite() {
        value.clamp(lo, hi)
    } else {
        default
    }
}

impl PackModel {
    /// Builds the pack `config` describes, drawing the cell and sensor
    /// spread from its seed. Call [`SimPackConfig::validate`] first to
    /// report mistakes; here out-of-range values are clamped into range so
    /// the model always stays finite.
    pub fn new(config: &SimPackConfig) -> Self {
        let defaults = SimPackConfig::default();
        let cells = config.cells.clamp(1, MAX_CELLS);
        let sensors = config.temperature_sensors.clamp(1, MAX_TEMPERATURE_SENSORS);
        let capacity_ah = sane(config.capacity_ah, defaults.capacity_ah, 0.1, 10_000.0);
        let soh_pct = sane(config.soh_pct, defaults.soh_pct, 1.0, 100.0);
        let usable_capacity_ah = capacity_ah * soh_pct / 100.0;
        let soc = sane(config.initial_soc_pct, defaults.initial_soc_pct, 0.0, 100.0) / 100.0;
        let resistance_ohm = sane(
            config.cell_resistance_mohm,
            defaults.cell_resistance_mohm,
            0.01,
            100.0,
        ) / 1000.0;

        let mut rng = Rng::new(config.seed, 0);
        let cells = (0..cells)
            .map(|_| Cell {
                capacity_ah: usable_capacity_ah * (1.0 + rng.spread(CAPACITY_SPREAD)),
                soc: (soc + rng.spread(SOC_SPREAD)).clamp(0.0, 1.0),
                resistance_ohm: resistance_ohm * (1.0 + rng.spread(RESISTANCE_SPREAD)),
            })
            .collect::<Vec<_>>();
        let sensors = (0..sensors)
            .map(|_| Sensor {
                offset_c: rng.spread(SENSOR_OFFSET_SPREAD_C),
                gain: 1.0 + rng.spread(SENSOR_GAIN_SPREAD),
                rise_c: 0.0,
            })
            .collect();
        let mut model = Self {
            heat_capacity_j_per_k: cells.len() as f64 * capacity_ah * HEAT_CAPACITY_J_PER_K_AH,
            cells,
            sensors,
            soc,
            usable_capacity_ah,
            soh_pct,
            ambient_c: sane(config.ambient_c, defaults.ambient_c, -40.0, 45.0),
            thermal_tau_s: sane(
                config.thermal_time_constant_s,
                defaults.thermal_time_constant_s,
                1.0,
                1e6,
            ),
            current_a: 0.0,
            charge_limit_a: sane(config.charge_current_limit_a, 0.0, 0.0, MAX_CURRENT_A),
            discharge_limit_a: sane(config.discharge_current_limit_a, 0.0, 0.0, MAX_CURRENT_A),
            charge_switch_on: true,
            discharge_switch_on: true,
            protection: Protection::default(),
            balancing: 0,
            load: LoadState::new(config.load.clone(), Rng::new(config.seed, 1)),
            over_temperature_fault: false,
            elapsed_s: 0.0,
        };
        model.update_bms();
        model
    }

    /// Advances the physics by `dt_s` seconds of simulated time, in
    /// sub-steps of at most [`MAX_SUBSTEP_S`] (at most [`MAX_SUBSTEPS`] of
    /// them). A step that is zero, negative or not finite does nothing;
    /// one longer than [`MAX_STEP_S`] is cut to it.
    pub fn step(&mut self, dt_s: f64) {
        if !dt_s.is_finite() || dt_s <= 0.0 {
            return;
        }
        let dt_s = dt_s.min(MAX_STEP_S);
        let n = (dt_s / MAX_SUBSTEP_S)
            .ceil()
            .clamp(1.0, f64::from(MAX_SUBSTEPS));
        let h = dt_s / n;
        // `n` is a whole number in 1..=MAX_SUBSTEPS.
        for _ in 0..n as u32 {
            self.substep(h);
        }
    }

    fn substep(&mut self, h: f64) {
        let ctx = LoadContext {
            soc: self.soc,
            charge_enabled: self.charge_enabled(),
            discharge_enabled: self.discharge_enabled(),
        };
        let requested = self.load.requested_a(h, ctx);
        let current = self.switched(requested.clamp(-self.discharge_limit_a, self.charge_limit_a));

        // Coulomb counting: the BMS's counter and every cell's own charge.
        self.soc = (self.soc + current * h / (3600.0 * self.usable_capacity_ah)).clamp(0.0, 1.0);
        let mut heat_w = 0.0;
        for (i, cell) in self.cells.iter_mut().enumerate() {
            let bleed = if self.balancing & (1 << i) != 0 {
                heat_w += BALANCE_CURRENT_A * lfp_ocv_v(cell.soc);
                BALANCE_CURRENT_A
            } else {
                0.0
            };
            let delta = (current - bleed) * h / (3600.0 * cell.capacity_ah);
            cell.soc = (cell.soc + delta).clamp(CELL_SOC_MIN, CELL_SOC_MAX);
            heat_w += current * current * cell.resistance_ohm;
        }

        // First-order heating and cooling, integrated exactly so any step
        // length is stable.
        let decay = (-h / self.thermal_tau_s).exp();
        let fault_decay = (-h / FAULT_HEATING_TAU_S).exp();
        for sensor in &mut self.sensors {
            let steady = sensor.gain * heat_w * self.thermal_tau_s / self.heat_capacity_j_per_k;
            sensor.rise_c = steady + (sensor.rise_c - steady) * decay;
            if self.over_temperature_fault {
                let target = FAULT_TEMPERATURE_C - self.ambient_c - sensor.offset_c;
                if sensor.rise_c < target {
                    sensor.rise_c = target + (sensor.rise_c - target) * fault_decay;
                }
            }
        }

        self.current_a = current;
        self.elapsed_s += h;
        self.update_bms();
    }

    /// `current` with the switches applied: nothing flows into a pack whose
    /// charge switch is open, nor out of one whose discharge switch is.
    fn switched(&self, current: f64) -> f64 {
        if (current > 0.0 && !self.charge_enabled()) || (current < 0.0 && !self.discharge_enabled())
        {
            0.0
        } else {
            current
        }
    }

    /// The BMS's decisions from the present state: protection latches,
    /// switches, recalibration of its counter at the ends, balancing.
    fn update_bms(&mut self) {
        let before = self.protection;
        let (min_v, max_v) = self.min_max_cell_v();
        let (min_c, max_c) = self.min_max_temperature_c();
        self.protection.update(min_v, max_v, min_c, max_c);
        self.current_a = self.switched(self.current_a);
        // A real BMS resets its coulomb counter when a cell hits a limit.
        if self.protection.over_voltage && !before.over_voltage {
            self.soc = 1.0;
        }
        if self.protection.under_voltage && !before.under_voltage {
            self.soc = 0.0;
        }

        self.balancing = 0;
        if self.current_a >= 0.0 && !self.protection.over_temperature {
            let min_v = self.min_max_cell_v().0;
            for i in 0..self.cells.len() {
                let v = self.cell_v(i);
                if v > BALANCE_START_V && v > min_v + BALANCE_THRESHOLD_V {
                    self.balancing |= 1 << i;
                }
            }
        }
    }

    /// Terminal voltage of cell `i`: OCV plus the I·R drop (a rise while
    /// charging).
    fn cell_v(&self, i: usize) -> f64 {
        self.cells.get(i).map_or(0.0, |c| {
            (lfp_ocv_v(c.soc) + self.current_a * c.resistance_ohm).max(0.0)
        })
    }

    fn min_max_cell_v(&self) -> (f64, f64) {
        (0..self.cells.len())
            .map(|i| self.cell_v(i))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    }

    fn sensor_c(&self, sensor: &Sensor) -> f64 {
        self.ambient_c + sensor.offset_c + sensor.rise_c
    }

    fn min_max_temperature_c(&self) -> (f64, f64) {
        self.sensors
            .iter()
            .map(|s| self.sensor_c(s))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                (lo.min(t), hi.max(t))
            })
    }

    /// What the BMS reports now. Always passes [`PackReading::validate`].
    pub fn reading(&self) -> PackReading {
        let cell_voltages: Vec<f32> = (0..self.cells.len())
            .map(|i| self.cell_v(i) as f32)
            .collect();
        PackReading {
            pack_voltage_v: cell_voltages.iter().sum(),
            current_a: self.current_a as f32,
            soc_pct: (self.soc * 100.0).clamp(0.0, 100.0) as f32,
            soh_pct: Some(self.soh_pct as f32),
            cell_voltages_v: CellVoltages(cell_voltages),
            temperatures_c: Temperatures(
                self.sensors
                    .iter()
                    .map(|s| self.sensor_c(s) as f32)
                    .collect(),
            ),
            balancing: BalancingState(self.balancing),
            alarms: self.alarms(),
            charge_enabled: self.charge_enabled(),
            discharge_enabled: self.discharge_enabled(),
        }
    }

    /// The active protection alarms.
    pub fn alarms(&self) -> AlarmFlags {
        self.protection.alarms()
    }

    /// Writes a setting (see [`SETTINGS`]) and returns the value read back.
    /// The new limit applies from the next step on.
    pub fn set_setting(&mut self, name: &str, value: f64) -> Result<f64, SettingError> {
        if let Some(switch) = match name {
            CHARGE_SWITCH_ON => Some(&mut self.charge_switch_on),
            DISCHARGE_SWITCH_ON => Some(&mut self.discharge_switch_on),
            _ => None,
        } {
            if value != 0.0 && value != 1.0 {
                return Err(SettingError::OutOfRange {
                    name: name.to_owned(),
                    value,
                    min: 0.0,
                    max: 1.0,
                });
            }
            *switch = value == 1.0;
            return Ok(value);
        }
        let slot = match name {
            CHARGE_CURRENT_LIMIT_A => &mut self.charge_limit_a,
            DISCHARGE_CURRENT_LIMIT_A => &mut self.discharge_limit_a,
            _ => return Err(SettingError::Unknown(name.to_owned())),
        };
        if !(value.is_finite() && (0.0..=MAX_CURRENT_A).contains(&value)) {
            return Err(SettingError::OutOfRange {
                name: name.to_owned(),
                value,
                min: 0.0,
                max: MAX_CURRENT_A,
            });
        }
        *slot = value;
        Ok(value)
    }

    /// The present value of a setting, `None` if there is no such setting.
    pub fn setting(&self, name: &str) -> Option<f64> {
        match name {
            CHARGE_CURRENT_LIMIT_A => Some(self.charge_limit_a),
            DISCHARGE_CURRENT_LIMIT_A => Some(self.discharge_limit_a),
            CHARGE_SWITCH_ON => Some(f64::from(u8::from(self.charge_switch_on))),
            DISCHARGE_SWITCH_ON => Some(f64::from(u8::from(self.discharge_switch_on))),
            _ => None,
        }
    }

    /// Whether the charge switch is closed: the BMS's protection allows it
    /// and no write holds it open.
    pub fn charge_enabled(&self) -> bool {
        self.charge_switch_on && self.protection.charge_enabled()
    }

    /// Whether the discharge switch is closed, as [`Self::charge_enabled`].
    pub fn discharge_enabled(&self) -> bool {
        self.discharge_switch_on && self.protection.discharge_enabled()
    }

    /// Replaces the load profile, starting it from its beginning.
    pub fn set_load(&mut self, profile: LoadProfile) {
        self.load.set_profile(profile);
    }

    /// Turns the outside heat source of [`Faults::over_temperature`]
    /// on or off.
    ///
    /// [`Faults::over_temperature`]: crate::Faults::over_temperature
    pub fn set_over_temperature_fault(&mut self, on: bool) {
        self.over_temperature_fault = on;
    }

    /// Whether the outside heat source is on.
    pub fn over_temperature_fault(&self) -> bool {
        self.over_temperature_fault
    }

    /// Simulated time since the model was built, seconds.
    pub fn elapsed_s(&self) -> f64 {
        self.elapsed_s
    }
}
