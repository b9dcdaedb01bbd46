//! The simulator's packs served as SunSpec batteries, pure: a
//! [`PackReading`] encoded into a SunSpec register map (the "SunS" marker
//! at 40000, then models 1, 802 and 803 per the public SunSpec model
//! definitions) in one of the [`SunSpecLayout`]s installers meet.
//!
//! Choices of the simulated device (SunSpec leaves them open):
//! - `A` is positive while **discharging**, the opposite of packgate's
//!   sign; `ChaSt` says CHARGING (4), DISCHARGING (3) or HOLDING (6), so a
//!   reader that follows `ChaSt` gets the direction right.
//! - `State` is CONNECTED (3) when both switches are closed, else
//!   STANDBY (4).
//! - `CellVMax`, `CellVMin` and `CellVAvg` come from the cells; 803's
//!   `ModTmpMax`, `ModTmpMin` and `ModTmpAvg` from the sensors.
//! - Evt1 carries the alarms listed in [`EVT1_ALARM_BITS`]; the others
//!   (cell over/under-voltage, short circuit) have no Evt1 bit and are not
//!   served; cell imbalance is served as VOLTAGE_IMBALANCE_WARNING.
//! - Points the simulator has no value for hold the type's
//!   "not implemented" value (0xFFFF, 0x8000, 0xFFFFFFFF).
//! - The map is read-only: every write is an illegal data address.

use std::fmt;
use std::str::FromStr;

use packgate_protocol::{AlarmFlags, PackReading};

use super::registers::{
    EXCEPTION_ILLEGAL_DATA_ADDRESS, EXCEPTION_ILLEGAL_DATA_VALUE, MAX_READ_COUNT,
};

/// Where the marker is.
pub const SUNSPEC_BASE: u16 = 40000;
/// The vendor model the `vendor-first` layout puts before 802.
pub const VENDOR_MODEL: u16 = 64_900;
/// packgate alarms and the Evt1 alarm bit each is served as.
pub const EVT1_ALARM_BITS: [(AlarmFlags, u8); 7] = [
    (AlarmFlags::OVER_TEMPERATURE, 1),
    (AlarmFlags::UNDER_TEMPERATURE, 3),
    (AlarmFlags::CHARGE_OVER_CURRENT, 5),
    (AlarmFlags::DISCHARGE_OVER_CURRENT, 7),
    (AlarmFlags::PACK_OVER_VOLTAGE, 9),
    (AlarmFlags::PACK_UNDER_VOLTAGE, 11),
    (AlarmFlags::BMS_FAULT, 25),
];
/// Evt1 bit VOLTAGE_IMBALANCE_WARNING.
const VOLTAGE_IMBALANCE_WARNING: u8 = 17;

/// The model chains the simulator can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SunSpecLayout {
    /// Model 1 (L=66), 802, 803, end.
    #[default]
    Standard,
    /// Model 1 with L=65 (no Pad), 802, 803, end.
    Common65,
    /// Model 1, a vendor model, 802, 803, end.
    VendorFirst,
    /// Model 1, 802, end: no 803.
    No803,
}

impl SunSpecLayout {
    /// Every layout.
    pub const ALL: [SunSpecLayout; 4] = [
        SunSpecLayout::Standard,
        SunSpecLayout::Common65,
        SunSpecLayout::VendorFirst,
        SunSpecLayout::No803,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SunSpecLayout::Standard => "standard",
            SunSpecLayout::Common65 => "common65",
            SunSpecLayout::VendorFirst => "vendor-first",
            SunSpecLayout::No803 => "no803",
        }
    }

    /// The models of the chain: (ID, L), the end marker not included.
    pub fn models(self) -> Vec<(u16, u16)> {
        let common = match self {
            SunSpecLayout::Common65 => 65,
            _ => 66,
        };
        let mut models = vec![(1, common)];
        if self == SunSpecLayout::VendorFirst {
            models.push((VENDOR_MODEL, 12));
        }
        models.push((802, 62));
        if self != SunSpecLayout::No803 {
            models.push((803, 26 + 32));
        }
        models
    }
}

impl fmt::Display for SunSpecLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SunSpec layout {0:?}; expected standard, common65, vendor-first or no803")]
pub struct UnknownLayout(pub String);

impl FromStr for SunSpecLayout {
    type Err = UnknownLayout;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SunSpecLayout::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLayout(s.to_owned()))
    }
}

/// A SunSpec register map at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SunSpecImage {
    regs: Vec<u16>,
}

/// `value / 10^-sf` rounded into `u16` (NaN and overflow clamp).
fn fixed_u16(value: f64, sf: i32) -> u16 {
    let raw = (value * 10f64.powi(-sf)).round();
    if raw.is_nan() {
        0
    } else {
        raw.clamp(0.0, 65534.0) as u16
    }
}

/// `value / 10^-sf` rounded into `i16`, as register bits.
fn fixed_i16(value: f64, sf: i32) -> u16 {
    let raw = (value * 10f64.powi(-sf)).round();
    let v = if raw.is_nan() {
        0
    } else {
        raw.clamp(-32767.0, 32767.0) as i16
    };
    v as u16
}

/// Text into `len` registers, two bytes each, NUL padded.
fn text(s: &str, len: usize) -> Vec<u16> {
    let mut bytes: Vec<u8> = s.bytes().take(2 * len).collect();
    bytes.resize(2 * len, 0);
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// The Evt1 value of `alarms`.
pub fn evt1(alarms: AlarmFlags) -> u32 {
    let mut bits = 0u32;
    for (flag, bit) in EVT1_ALARM_BITS {
        if alarms.contains(flag) {
            bits |= 1 << bit;
        }
    }
    if alarms.contains(AlarmFlags::CELL_IMBALANCE) {
        bits |= 1 << VOLTAGE_IMBALANCE_WARNING;
    }
    bits
}

/// The alarms a SunSpec reader can get back from `alarms`.
pub fn served_alarms(alarms: AlarmFlags) -> AlarmFlags {
    EVT1_ALARM_BITS
        .iter()
        .filter(|(flag, _)| alarms.contains(*flag))
        .fold(AlarmFlags::NONE, |acc, (flag, _)| acc.union(*flag))
}

#[path = "sunspec_models.rs"]
mod models;

impl SunSpecImage {
    /// `reading` and `serial_number` in `layout`.
    pub fn encode(reading: &PackReading, serial_number: u32, layout: SunSpecLayout) -> Self {
        let mut regs = vec![0x5375, 0x6e53];
        for (id, length) in layout.models() {
            regs.extend([id, length]);
            let body = match id {
                1 => models::common(serial_number, length),
                802 => models::battery(reading),
                803 => models::bank(reading),
                _ => models::vendor(length),
            };
            regs.extend(body);
        }
        regs.extend([0xFFFF, 0]);
        Self { regs }
    }

    /// Registers `start..start + count`, or the exception code when the
    /// range is empty, too long or not entirely in the map.
    pub fn read(&self, start: u16, count: u16) -> Result<Vec<u16>, u8> {
        if count == 0 || count > MAX_READ_COUNT {
            return Err(EXCEPTION_ILLEGAL_DATA_VALUE);
        }
        let from = usize::from(start)
            .checked_sub(usize::from(SUNSPEC_BASE))
            .ok_or(EXCEPTION_ILLEGAL_DATA_ADDRESS)?;
        self.regs
            .get(from..from + usize::from(count))
            .map(<[u16]>::to_vec)
            .ok_or(EXCEPTION_ILLEGAL_DATA_ADDRESS)
    }
}

#[cfg(test)]
#[path = "sunspec_tests.rs"]
mod tests;
