//! What the bank tells its inverter: a [`BankState`] as the
//! [`InverterReport`] of the Pylontech/SMA frame set, so the packs in
//! parallel look to the inverter like one low-voltage CAN BMS.
//!
//! A stopped bank (no pack fresh, too few packs) sends both current
//! limits as zero and both enables off; its voltage limits stay as the
//! rules give them, so the inverter never reads a charge voltage of 0 V.

use packgate_drivers::can::inverter::InverterReport;
use packgate_drivers::can::pylontech::Request;
use packgate_protocol::{AlarmFlags, BankState};

/// State of health sent while no counted pack reports one, %.
pub const UNKNOWN_SOH_PCT: f64 = 100.0;

/// The report of `state`, with `name` in 0x35E.
///
/// Charge is enabled while the charge current limit is above zero,
/// discharge while the discharge limit is; the temperature is the hottest
/// sensor of the counted packs (0 °C with none), the module count the
/// packs online.
pub fn report(state: &BankState, name: &str) -> InverterReport {
    let stopped = state.stop.is_some();
    let current = |limit: f32| {
        if stopped || !limit.is_finite() {
            0.0
        } else {
            f64::from(limit.max(0.0))
        }
    };
    let charge_current_limit_a = current(state.charge_current_a);
    let discharge_current_limit_a = current(state.discharge_current_a);
    InverterReport {
        charge_voltage_limit_v: f64::from(state.charge_voltage_v),
        charge_current_limit_a,
        discharge_current_limit_a,
        discharge_voltage_limit_v: f64::from(state.discharge_voltage_v),
        soc_pct: f64::from(state.soc_pct),
        soh_pct: state.soh_pct.map_or(UNKNOWN_SOH_PCT, f64::from),
        voltage_v: f64::from(state.voltage_v),
        current_a: f64::from(state.current_a),
        temperature_c: state
            .max_temperature
            .as_ref()
            .map_or(0.0, |t| f64::from(t.value)),
        alarms: state.alarms,
        warnings: AlarmFlags::NONE,
        module_count: u8::try_from(state.packs_online).unwrap_or(u8::MAX),
        request: Request {
            charge_enable: charge_current_limit_a > 0.0,
            discharge_enable: discharge_current_limit_a > 0.0,
            ..Request::default()
        },
        name: name.to_owned(),
    }
}

/// `report` with both currents zero and both enables off: the last burst
/// before the link falls silent.
pub fn stopped(mut report: InverterReport) -> InverterReport {
    report.charge_current_limit_a = 0.0;
    report.discharge_current_limit_a = 0.0;
    report.request = Request::default();
    report
}

#[cfg(test)]
#[path = "inverter_tests.rs"]
mod tests;
