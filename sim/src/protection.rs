//! The BMS's protection: thresholds with hysteresis that open the charge
//! or discharge switch and raise the matching alarm.

use packgate_protocol::AlarmFlags;

/// A cell above this (terminal volts) opens the charge switch.
pub const CELL_OVER_VOLTAGE_TRIP_V: f64 = 3.65;
/// Charging is allowed again once every cell is below this.
pub const CELL_OVER_VOLTAGE_RELEASE_V: f64 = 3.40;
/// A cell below this (terminal volts) opens the discharge switch.
pub const CELL_UNDER_VOLTAGE_TRIP_V: f64 = 2.80;
/// Discharging is allowed again once every cell is above this.
pub const CELL_UNDER_VOLTAGE_RELEASE_V: f64 = 3.10;
/// A sensor above this (°C) opens both switches.
pub const OVER_TEMPERATURE_TRIP_C: f64 = 55.0;
/// Both switches close again once every sensor is below this.
pub const OVER_TEMPERATURE_RELEASE_C: f64 = 50.0;
/// A sensor below this (°C) opens the charge switch (LFP must not be
/// charged below freezing).
pub const UNDER_TEMPERATURE_TRIP_C: f64 = 0.0;
/// Charging is allowed again once every sensor is above this.
pub const UNDER_TEMPERATURE_RELEASE_C: f64 = 3.0;

/// The latched protection conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Protection {
    pub(crate) over_voltage: bool,
    pub(crate) under_voltage: bool,
    pub(crate) over_temperature: bool,
    pub(crate) under_temperature: bool,
}

/// Sets `active` when `trip` holds, clears it when `release` holds, and
/// otherwise keeps it: the hysteresis.
fn latch(active: &mut bool, trip: bool, release: bool) {
    if trip {
        *active = true;
    } else if release {
        *active = false;
    }
}

impl Protection {
    /// Updates every latch from the extreme cell voltages and temperatures.
    pub(crate) fn update(&mut self, min_cell_v: f64, max_cell_v: f64, min_c: f64, max_c: f64) {
        latch(
            &mut self.over_voltage,
            max_cell_v > CELL_OVER_VOLTAGE_TRIP_V,
            max_cell_v < CELL_OVER_VOLTAGE_RELEASE_V,
        );
        latch(
            &mut self.under_voltage,
            min_cell_v < CELL_UNDER_VOLTAGE_TRIP_V,
            min_cell_v > CELL_UNDER_VOLTAGE_RELEASE_V,
        );
        latch(
            &mut self.over_temperature,
            max_c > OVER_TEMPERATURE_TRIP_C,
            max_c < OVER_TEMPERATURE_RELEASE_C,
        );
        latch(
            &mut self.under_temperature,
            min_c < UNDER_TEMPERATURE_TRIP_C,
            min_c > UNDER_TEMPERATURE_RELEASE_C,
        );
    }

    /// Whether the charge switch is closed.
    pub(crate) fn charge_enabled(&self) -> bool {
        !(self.over_voltage || self.over_temperature || self.under_temperature)
    }

    /// Whether the discharge switch is closed.
    pub(crate) fn discharge_enabled(&self) -> bool {
        !(self.under_voltage || self.over_temperature)
    }

    /// The alarms for the active conditions.
    pub(crate) fn alarms(&self) -> AlarmFlags {
        [
            (self.over_voltage, AlarmFlags::CELL_OVER_VOLTAGE),
            (self.under_voltage, AlarmFlags::CELL_UNDER_VOLTAGE),
            (self.over_temperature, AlarmFlags::OVER_TEMPERATURE),
            (self.under_temperature, AlarmFlags::UNDER_TEMPERATURE),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_voltage_trips_and_releases_with_hysteresis() {
        let mut p = Protection::default();
        p.update(3.3, 3.6, 25.0, 25.0);
        assert!(p.charge_enabled());
        p.update(3.3, 3.66, 25.0, 25.0);
        assert!(!p.charge_enabled());
        assert!(p.discharge_enabled());
        assert_eq!(p.alarms(), AlarmFlags::CELL_OVER_VOLTAGE);
        p.update(3.3, 3.5, 25.0, 25.0);
        assert!(!p.charge_enabled(), "inside the hysteresis band");
        p.update(3.3, 3.39, 25.0, 25.0);
        assert!(p.charge_enabled());
        assert_eq!(p.alarms(), AlarmFlags::NONE);
    }

    #[test]
    fn temperature_opens_the_right_switches() {
        let mut p = Protection::default();
        p.update(3.3, 3.3, 25.0, 56.0);
        assert!(!p.charge_enabled() && !p.discharge_enabled());
        p.update(3.3, 3.3, 25.0, 52.0);
        assert!(!p.charge_enabled() && !p.discharge_enabled());
        p.update(3.3, 3.3, 25.0, 49.0);
        assert!(p.charge_enabled() && p.discharge_enabled());
        p.update(3.3, 3.3, -1.0, 10.0);
        assert!(!p.charge_enabled() && p.discharge_enabled());
        assert_eq!(p.alarms(), AlarmFlags::UNDER_TEMPERATURE);
        p.update(2.7, 3.3, 4.0, 10.0);
        assert!(p.charge_enabled() && !p.discharge_enabled());
        assert_eq!(p.alarms(), AlarmFlags::CELL_UNDER_VOLTAGE);
    }
}
