//! Pure encoder of the frames packgate sends to an inverter as a
//! low-voltage CAN BMS: the Pylontech/SMA frame set that
//! [`pylontech`](super::pylontech) decodes, so one battery made of many
//! packs looks to the inverter like one Pylontech stack.
//!
//! | id      | sent                                                          |
//! |---------|---------------------------------------------------------------|
//! | `0x351` | CVL u16 0.1 V, CCL i16 0.1 A, DCL i16 0.1 A, discharge voltage limit u16 0.1 V |
//! | `0x355` | SoC u16 1 %, SoH u16 1 %                                      |
//! | `0x356` | voltage i16 0.01 V, current i16 0.1 A (+ = charging), temperature i16 0.1 °C |
//! | `0x359` | protection bits u16, warning bits u16, module count u8, `"PN"` |
//! | `0x35C` | request flags: bit 7 charge enable, 6 discharge enable, 5 force charge I, 4 force charge II, 3 full charge |
//! | `0x35E` | name, ASCII, 8 bytes padded with spaces                       |
//!
//! Values outside a field's range saturate at its end, never wrap: a
//! charge current limit of 5,000 A is sent as 3,276.7 A, not as a
//! negative number; a negative limit is sent as zero; a value that is not
//! a number is sent as zero (the inverter stops), never as garbage.
//!
//! [`AlarmFlags`] onto the protection word: cell and pack over-voltage onto
//! bit 1, cell and pack under-voltage onto bit 2, over-temperature bit 3,
//! under-temperature bit 4, discharge over-current and short circuit bit
//! 7, charge over-current bit 8, BMS fault bit 11. Cell imbalance has no
//! Pylontech protection bit and is not sent.

use packgate_protocol::AlarmFlags;

use super::frame::CanFrame;
use super::pylontech::{
    PylonFlags, Request, ID_LIMITS, ID_MANUFACTURER, ID_MEASUREMENTS, ID_PROTECTION, ID_REQUEST,
    ID_SOC_SOH,
};

/// Bytes of the name frame.
pub const NAME_LEN: usize = 8;

/// Everything the inverter is told each second.
#[derive(Debug, Clone, PartialEq)]
pub struct InverterReport {
    /// Charge voltage limit, V.
    pub charge_voltage_limit_v: f64,
    /// Charge current limit, A.
    pub charge_current_limit_a: f64,
    /// Discharge current limit, A (a magnitude).
    pub discharge_current_limit_a: f64,
    /// Discharge voltage limit, V.
    pub discharge_voltage_limit_v: f64,
    /// State of charge, %.
    pub soc_pct: f64,
    /// State of health, %.
    pub soh_pct: f64,
    /// Battery voltage, V.
    pub voltage_v: f64,
    /// Battery current, A, positive while charging.
    pub current_a: f64,
    /// Battery temperature, °C.
    pub temperature_c: f64,
    /// Active protections.
    pub alarms: AlarmFlags,
    /// Conditions near a limit (sent as warnings).
    pub warnings: AlarmFlags,
    /// Packs the battery counts now.
    pub module_count: u8,
    /// Charge / discharge enables and charge requests.
    pub request: Request,
    /// The name shown by the inverter (ASCII; other characters become
    /// `?`, longer names are cut at 8 bytes).
    pub name: String,
}

/// `value / resolution` rounded, saturated to `[min, max]`; not a number
/// is zero.
fn scaled(value: f64, resolution: f64, min: f64, max: f64) -> f64 {
    let raw = (value / resolution).round();
    if raw.is_nan() {
        0.0
    } else {
        raw.clamp(min, max)
    }
}

/// An unsigned 16-bit field (limits that cannot be negative).
fn u16_field(value: f64, resolution: f64) -> [u8; 2] {
    // In range by the clamp: the cast is exact.
    (scaled(value, resolution, 0.0, f64::from(u16::MAX)) as u16).to_le_bytes()
}

/// A signed 16-bit field.
fn i16_field(value: f64, resolution: f64) -> [u8; 2] {
    (scaled(value, resolution, f64::from(i16::MIN), f64::from(i16::MAX)) as i16).to_le_bytes()
}

/// A current limit: a magnitude in a signed field, never negative.
fn limit_field(value: f64, resolution: f64) -> [u8; 2] {
    (scaled(value, resolution, 0.0, f64::from(i16::MAX)) as i16).to_le_bytes()
}

/// The Pylontech protection bits of `flags`.
pub fn pylon_flags(flags: AlarmFlags) -> PylonFlags {
    const MAP: &[(AlarmFlags, u16)] = &[
        (AlarmFlags::CELL_OVER_VOLTAGE, PylonFlags::CELL_OVER_VOLTAGE),
        (AlarmFlags::PACK_OVER_VOLTAGE, PylonFlags::CELL_OVER_VOLTAGE),
        (
            AlarmFlags::CELL_UNDER_VOLTAGE,
            PylonFlags::CELL_UNDER_VOLTAGE,
        ),
        (
            AlarmFlags::PACK_UNDER_VOLTAGE,
            PylonFlags::CELL_UNDER_VOLTAGE,
        ),
        (AlarmFlags::OVER_TEMPERATURE, PylonFlags::OVER_TEMPERATURE),
        (AlarmFlags::UNDER_TEMPERATURE, PylonFlags::UNDER_TEMPERATURE),
        (
            AlarmFlags::DISCHARGE_OVER_CURRENT,
            PylonFlags::DISCHARGE_OVER_CURRENT,
        ),
        (
            AlarmFlags::SHORT_CIRCUIT,
            PylonFlags::DISCHARGE_OVER_CURRENT,
        ),
        (
            AlarmFlags::CHARGE_OVER_CURRENT,
            PylonFlags::CHARGE_OVER_CURRENT,
        ),
        (AlarmFlags::BMS_FAULT, PylonFlags::SYSTEM_ERROR),
    ];
    PylonFlags(
        MAP.iter()
            .filter(|(flag, _)| flags.contains(*flag))
            .fold(0, |bits, (_, bit)| bits | bit),
    )
}

/// A frame of this set. Infallible: every id here is a constant below
/// 0x800 and every payload is built at most 8 bytes long.
#[allow(clippy::expect_used)]
fn frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::standard(id, data).expect("a standard id and at most 8 data bytes")
}

/// The six frames of one report, in the order they are sent.
pub fn encode_report(report: &InverterReport) -> [CanFrame; 6] {
    let mut limits = [0u8; 8];
    limits[0..2].copy_from_slice(&u16_field(report.charge_voltage_limit_v, 0.1));
    limits[2..4].copy_from_slice(&limit_field(report.charge_current_limit_a, 0.1));
    limits[4..6].copy_from_slice(&limit_field(report.discharge_current_limit_a, 0.1));
    limits[6..8].copy_from_slice(&u16_field(report.discharge_voltage_limit_v, 0.1));

    let mut soc = [0u8; 4];
    soc[0..2].copy_from_slice(&(scaled(report.soc_pct, 1.0, 0.0, 100.0) as u16).to_le_bytes());
    soc[2..4].copy_from_slice(&(scaled(report.soh_pct, 1.0, 0.0, 100.0) as u16).to_le_bytes());

    let mut measurements = [0u8; 6];
    measurements[0..2].copy_from_slice(&i16_field(report.voltage_v, 0.01));
    measurements[2..4].copy_from_slice(&i16_field(report.current_a, 0.1));
    measurements[4..6].copy_from_slice(&i16_field(report.temperature_c, 0.1));

    let mut protection = [0u8; 7];
    protection[0..2].copy_from_slice(&pylon_flags(report.alarms).0.to_le_bytes());
    protection[2..4].copy_from_slice(&pylon_flags(report.warnings).0.to_le_bytes());
    protection[4] = report.module_count;
    protection[5..7].copy_from_slice(b"PN");

    let r = report.request;
    let request = [u8::from(r.charge_enable) << 7
        | u8::from(r.discharge_enable) << 6
        | u8::from(r.force_charge_1) << 5
        | u8::from(r.force_charge_2) << 4
        | u8::from(r.full_charge) << 3];

    let mut name = [b' '; NAME_LEN];
    for (slot, c) in name.iter_mut().zip(report.name.chars()) {
        *slot = if (' '..='~').contains(&c) {
            c as u8
        } else {
            b'?'
        };
    }

    [
        frame(ID_LIMITS, &limits),
        frame(ID_SOC_SOH, &soc),
        frame(ID_MEASUREMENTS, &measurements),
        frame(ID_PROTECTION, &protection),
        frame(ID_REQUEST, &request),
        frame(ID_MANUFACTURER, &name),
    ]
}

#[cfg(test)]
#[path = "inverter_tests.rs"]
mod tests;
