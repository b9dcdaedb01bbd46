//! Pure decoder of the Pylontech low-voltage BMS CAN protocol (the one
//! Pylontech, and many BMSs copying it, speak to SMA and Victron
//! inverters): 11-bit ids, 500 kbit/s, little-endian fields, one burst of
//! frames about every second.
//!
//! | id      | content                                                       |
//! |---------|---------------------------------------------------------------|
//! | `0x351` | charge voltage limit u16 0.1 V, charge current limit i16 0.1 A, discharge current limit i16 0.1 A, discharge voltage limit u16 0.1 V (optional) |
//! | `0x355` | SoC u16 1 %, SoH u16 1 %                                      |
//! | `0x356` | pack voltage i16 0.01 V, current i16 0.1 A (+ = charging), temperature i16 0.1 °C |
//! | `0x359` | protection bits u16, warning bits u16, module count u8, `"PN"` |
//! | `0x35A` | SMA-style alarms (bytes 0-3) and warnings (4-7), two bits per condition |
//! | `0x35C` | request flags: bit 7 charge enable, 6 discharge enable, 5/4 force charge I/II, 3 full charge |
//! | `0x35E` | manufacturer name, ASCII, up to 8 bytes                        |
//! | `0x373` | extended set: min / max cell voltage u16 mV, min / max cell temperature u16 K |
//!
//! Length policy: each id has a minimum length (the fields packgate reads);
//! shorter frames are [`FrameError::Length`], bytes after the known fields
//! are ignored (BMSs differ in padding). `0x370` (a second name or vendor
//! data depending on the BMS) and every other id are
//! [`FrameError::UnknownId`]: no layout is guessed.

use embedded_can::{Frame, Id};
use packgate_protocol::AlarmFlags;

use super::frame::raw_id;

/// Charge / discharge limits.
pub const ID_LIMITS: u16 = 0x351;
/// State of charge and health.
pub const ID_SOC_SOH: u16 = 0x355;
/// Pack voltage, current and temperature.
pub const ID_MEASUREMENTS: u16 = 0x356;
/// Pylontech protection and warning bits.
pub const ID_PROTECTION: u16 = 0x359;
/// SMA-style alarm and warning bit pairs.
pub const ID_SMA_ALARMS: u16 = 0x35A;
/// Charge / discharge request flags.
pub const ID_REQUEST: u16 = 0x35C;
/// Manufacturer name.
pub const ID_MANUFACTURER: u16 = 0x35E;
/// Lowest and highest cell voltage and temperature (extended set).
pub const ID_CELL_EXTREMES: u16 = 0x373;

/// Every id [`decode_frame`] understands.
pub const KNOWN_IDS: &[u16] = &[
    ID_LIMITS,
    ID_SOC_SOH,
    ID_MEASUREMENTS,
    ID_PROTECTION,
    ID_SMA_ALARMS,
    ID_REQUEST,
    ID_MANUFACTURER,
    ID_CELL_EXTREMES,
];

/// Kelvin to degrees Celsius.
const KELVIN_OFFSET_C: f32 = 273.15;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer data bytes than the id's fields need.
    #[error("frame {id:#05x} has {len} data bytes, needs at least {min}")]
    Length {
        /// The frame's id.
        id: u16,
        /// Data bytes received.
        len: usize,
        /// Data bytes needed.
        min: usize,
    },
    /// An id this protocol does not define (or an extended id).
    #[error("unknown {} id {id:#x}", if *.extended { "extended" } else { "standard" })]
    UnknownId {
        /// The raw id.
        id: u32,
        /// Whether it is a 29-bit id.
        extended: bool,
    },
    /// A remote (request) frame: the BMS protocol carries no data in them.
    #[error("remote frame {id:#x} carries no data")]
    Remote {
        /// The raw id.
        id: u32,
    },
    /// The manufacturer name holds bytes that are not printable ASCII.
    #[error("frame {id:#05x}: name is not printable ASCII")]
    NotAscii {
        /// The frame's id.
        id: u16,
    },
}

/// `0x351`: what the BMS allows the inverter to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Highest charge voltage, volts.
    pub charge_voltage_limit_v: f32,
    /// Highest charge current, amperes.
    pub charge_current_limit_a: f32,
    /// Highest discharge current, amperes (a magnitude).
    pub discharge_current_limit_a: f32,
    /// Lowest discharge voltage, volts; `None` from BMSs that send 6 bytes.
    pub discharge_voltage_limit_v: Option<f32>,
}

/// `0x355`: state of charge and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocSoh {
    /// State of charge, percent.
    pub soc_pct: u16,
    /// State of health, percent.
    pub soh_pct: u16,
}

/// `0x356`: the pack's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurements {
    /// Pack voltage, volts (0.01 V resolution).
    pub pack_voltage_v: f32,
    /// Pack current, amperes, positive while charging (0.1 A resolution).
    pub current_a: f32,
    /// Battery temperature, degrees Celsius (0.1 °C resolution).
    pub temperature_c: f32,
}

/// The Pylontech condition bits of `0x359`, the same layout for the
/// protection word (bytes 0-1) and the warning word (bytes 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PylonFlags(pub u16);

impl PylonFlags {
    /// Cell or module over voltage (byte 0 bit 1).
    pub const CELL_OVER_VOLTAGE: u16 = 1 << 1;
    /// Cell or module under voltage (byte 0 bit 2).
    pub const CELL_UNDER_VOLTAGE: u16 = 1 << 2;
    /// Cell over temperature (byte 0 bit 3).
    pub const OVER_TEMPERATURE: u16 = 1 << 3;
    /// Cell under temperature (byte 0 bit 4).
    pub const UNDER_TEMPERATURE: u16 = 1 << 4;
    /// Discharge over current (byte 0 bit 7).
    pub const DISCHARGE_OVER_CURRENT: u16 = 1 << 7;
    /// Charge over current (byte 1 bit 0).
    pub const CHARGE_OVER_CURRENT: u16 = 1 << 8;
    /// System error / internal communication failure (byte 1 bit 3).
    pub const SYSTEM_ERROR: u16 = 1 << 11;

    /// Each Pylontech bit with the packgate flag it maps onto.
    pub const MAPPING: &'static [(u16, AlarmFlags)] = &[
        (Self::CELL_OVER_VOLTAGE, AlarmFlags::CELL_OVER_VOLTAGE),
        (Self::CELL_UNDER_VOLTAGE, AlarmFlags::CELL_UNDER_VOLTAGE),
        (Self::OVER_TEMPERATURE, AlarmFlags::OVER_TEMPERATURE),
        (Self::UNDER_TEMPERATURE, AlarmFlags::UNDER_TEMPERATURE),
        (
            Self::DISCHARGE_OVER_CURRENT,
            AlarmFlags::DISCHARGE_OVER_CURRENT,
        ),
        (Self::CHARGE_OVER_CURRENT, AlarmFlags::CHARGE_OVER_CURRENT),
        (Self::SYSTEM_ERROR, AlarmFlags::BMS_FAULT),
    ];

    /// The packgate flags for these bits; unknown bits are dropped.
    pub fn alarm_flags(self) -> AlarmFlags {
        Self::MAPPING
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(*flag))
    }
}

/// `0x359`: protection (the BMS has acted) and warning bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// Active protections: these are mapped onto [`AlarmFlags`].
    pub protection: PylonFlags,
    /// Warnings (a limit is near): kept here, not mapped, since
    /// [`AlarmFlags`] means the condition is active.
    pub warning: PylonFlags,
    /// Number of battery modules in the stack.
    pub module_count: u8,
}

/// One condition of the SMA-style `0x35A` frame, in bit-pair order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmaCondition {
    /// Summary of all others.
    General = 0,
    /// Battery voltage high.
    HighVoltage,
    /// Battery voltage low.
    LowVoltage,
    /// Temperature high.
    HighTemperature,
    /// Temperature low.
    LowTemperature,
    /// Temperature too high to charge.
    HighTemperatureCharge,
    /// Temperature too low to charge.
    LowTemperatureCharge,
    /// Discharge current high.
    HighDischargeCurrent,
    /// Charge current high.
    HighChargeCurrent,
    /// Contactor failure.
    Contactor,
    /// Short circuit.
    ShortCircuit,
    /// BMS internal failure.
    BmsInternal,
    /// Cell imbalance.
    CellImbalance,
}

impl SmaCondition {
    /// Every condition with the packgate flag it maps onto (`General` is a
    /// summary and maps onto nothing).
    pub const MAPPING: &'static [(SmaCondition, AlarmFlags)] = &[
        (Self::HighVoltage, AlarmFlags::PACK_OVER_VOLTAGE),
        (Self::LowVoltage, AlarmFlags::PACK_UNDER_VOLTAGE),
        (Self::HighTemperature, AlarmFlags::OVER_TEMPERATURE),
        (Self::LowTemperature, AlarmFlags::UNDER_TEMPERATURE),
        (Self::HighTemperatureCharge, AlarmFlags::OVER_TEMPERATURE),
        (Self::LowTemperatureCharge, AlarmFlags::UNDER_TEMPERATURE),
        (
            Self::HighDischargeCurrent,
            AlarmFlags::DISCHARGE_OVER_CURRENT,
        ),
        (Self::HighChargeCurrent, AlarmFlags::CHARGE_OVER_CURRENT),
        (Self::Contactor, AlarmFlags::BMS_FAULT),
        (Self::ShortCircuit, AlarmFlags::SHORT_CIRCUIT),
        (Self::BmsInternal, AlarmFlags::BMS_FAULT),
        (Self::CellImbalance, AlarmFlags::CELL_IMBALANCE),
    ];

    /// Byte index and bit shift of the condition's pair in a 4-byte group.
    fn position(self) -> (usize, u32) {
        let index = self as usize;
        (index / 4, (index % 4) as u32 * 2)
    }
}

/// The state of one SMA bit pair: `01` active, `10` inactive, `00` and `11`
/// not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairState {
    /// The condition is present.
    Active,
    /// The condition is reported absent.
    Inactive,
    /// The BMS does not report this condition.
    NotAvailable,
}

/// `0x35A`: the raw alarm (bytes 0-3) and warning (bytes 4-7) bit pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmaAlarms(pub [u8; 8]);

impl SmaAlarms {
    fn pair(&self, group: usize, condition: SmaCondition) -> PairState {
        let (byte, shift) = condition.position();
        match (self.0[group + byte] >> shift) & 0b11 {
            0b01 => PairState::Active,
            0b10 => PairState::Inactive,
            _ => PairState::NotAvailable,
        }
    }

    /// The alarm state of `condition`.
    pub fn alarm(&self, condition: SmaCondition) -> PairState {
        self.pair(0, condition)
    }

    /// The warning state of `condition`.
    pub fn warning(&self, condition: SmaCondition) -> PairState {
        self.pair(4, condition)
    }

    /// The packgate flags of the active alarms (warnings are not mapped).
    pub fn alarm_flags(&self) -> AlarmFlags {
        SmaCondition::MAPPING
            .iter()
            .filter(|(c, _)| self.alarm(*c) == PairState::Active)
            .fold(AlarmFlags::NONE, |acc, (_, flag)| acc.union(*flag))
    }
}

/// `0x35C`: what the BMS asks of the inverter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    /// Charging allowed (bit 7).
    pub charge_enable: bool,
    /// Discharging allowed (bit 6).
    pub discharge_enable: bool,
    /// Force charge request I (bit 5).
    pub force_charge_1: bool,
    /// Force charge request II (bit 4).
    pub force_charge_2: bool,
    /// Full charge request (bit 3).
    pub full_charge: bool,
}

/// `0x373`: the extremes over the cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellExtremes {
    /// Lowest cell voltage, volts (1 mV resolution).
    pub min_cell_v: f32,
    /// Highest cell voltage, volts.
    pub max_cell_v: f32,
    /// Lowest cell temperature, degrees Celsius (1 K resolution).
    pub min_cell_temperature_c: f32,
    /// Highest cell temperature, degrees Celsius.
    pub max_cell_temperature_c: f32,
}

/// One decoded BMS frame.
#[derive(Debug, Clone, PartialEq)]
pub enum BmsFrame {
    /// `0x351`.
    Limits(Limits),
    /// `0x355`.
    SocSoh(SocSoh),
    /// `0x356`.
    Measurements(Measurements),
    /// `0x359`.
    Protection(Protection),
    /// `0x35A`.
    SmaAlarms(SmaAlarms),
    /// `0x35C`.
    Request(Request),
    /// `0x35E`: the name, trailing NULs and spaces removed.
    Manufacturer(String),
    /// `0x373`.
    CellExtremes(CellExtremes),
}

impl BmsFrame {
    /// The CAN id this message travels in.
    pub fn id(&self) -> u16 {
        match self {
            BmsFrame::Limits(_) => ID_LIMITS,
            BmsFrame::SocSoh(_) => ID_SOC_SOH,
            BmsFrame::Measurements(_) => ID_MEASUREMENTS,
            BmsFrame::Protection(_) => ID_PROTECTION,
            BmsFrame::SmaAlarms(_) => ID_SMA_ALARMS,
            BmsFrame::Request(_) => ID_REQUEST,
            BmsFrame::Manufacturer(_) => ID_MANUFACTURER,
            BmsFrame::CellExtremes(_) => ID_CELL_EXTREMES,
        }
    }
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}

fn i16_at(d: &[u8], at: usize) -> i16 {
    i16::from_le_bytes([d[at], d[at + 1]])
}

fn need(id: u16, data: &[u8], min: usize) -> Result<(), FrameError> {
    if data.len() < min {
        return Err(FrameError::Length {
            id,
            len: data.len(),
            min,
        });
    }
    Ok(())
}

/// Decodes one frame. Never panics, whatever the bytes.
pub fn decode_frame(frame: &impl Frame) -> Result<BmsFrame, FrameError> {
    let raw = raw_id(frame.id());
    if frame.is_remote_frame() {
        return Err(FrameError::Remote { id: raw });
    }
    let id = match frame.id() {
        Id::Standard(id) => id.as_raw(),
        Id::Extended(_) => {
            return Err(FrameError::UnknownId {
                id: raw,
                extended: true,
            })
        }
    };
    let d = frame.data();
    match id {
        ID_LIMITS => decode_limits(id, d),
        ID_SOC_SOH => {
            need(id, d, 4)?;
            Ok(BmsFrame::SocSoh(SocSoh {
                soc_pct: u16_at(d, 0),
                soh_pct: u16_at(d, 2),
            }))
        }
        ID_MEASUREMENTS => decode_measurements(id, d),
        ID_PROTECTION => {
            need(id, d, 5)?;
            Ok(BmsFrame::Protection(Protection {
                protection: PylonFlags(u16_at(d, 0)),
                warning: PylonFlags(u16_at(d, 2)),
                module_count: d[4],
            }))
        }
        ID_SMA_ALARMS => {
            need(id, d, 8)?;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&d[..8]);
            Ok(BmsFrame::SmaAlarms(SmaAlarms(raw)))
        }
        ID_REQUEST => decode_request(id, d),
        ID_MANUFACTURER => decode_manufacturer(id, d),
        ID_CELL_EXTREMES => decode_cell_extremes(id, d),
        _ => Err(FrameError::UnknownId {
            id: raw,
            extended: false,
        }),
    }
}

/// `0x351`: the discharge voltage limit only where the frame has 8 bytes.
fn decode_limits(id: u16, d: &[u8]) -> Result<BmsFrame, FrameError> {
    need(id, d, 6)?;
    Ok(BmsFrame::Limits(Limits {
        charge_voltage_limit_v: f32::from(u16_at(d, 0)) / 10.0,
        charge_current_limit_a: f32::from(i16_at(d, 2)) / 10.0,
        discharge_current_limit_a: f32::from(i16_at(d, 4)) / 10.0,
        discharge_voltage_limit_v: (d.len() >= 8).then(|| f32::from(u16_at(d, 6)) / 10.0),
    }))
}

/// `0x356`.
fn decode_measurements(id: u16, d: &[u8]) -> Result<BmsFrame, FrameError> {
    need(id, d, 6)?;
    Ok(BmsFrame::Measurements(Measurements {
        pack_voltage_v: f32::from(i16_at(d, 0)) / 100.0,
        current_a: f32::from(i16_at(d, 2)) / 10.0,
        temperature_c: f32::from(i16_at(d, 4)) / 10.0,
    }))
}

/// `0x35C`: the request flags of the first byte.
fn decode_request(id: u16, d: &[u8]) -> Result<BmsFrame, FrameError> {
    need(id, d, 1)?;
    let bit = |n: u8| d[0] & (1 << n) != 0;
    Ok(BmsFrame::Request(Request {
        charge_enable: bit(7),
        discharge_enable: bit(6),
        force_charge_1: bit(5),
        force_charge_2: bit(4),
        full_charge: bit(3),
    }))
}

/// `0x35E`: printable ASCII, trailing NULs and spaces removed.
fn decode_manufacturer(id: u16, d: &[u8]) -> Result<BmsFrame, FrameError> {
    let name = d
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(&d[..0], |last| &d[..=last]);
    if !name.iter().all(|b| (0x20..0x7F).contains(b)) {
        return Err(FrameError::NotAscii { id });
    }
    Ok(BmsFrame::Manufacturer(
        name.iter().map(|&b| char::from(b)).collect(),
    ))
}

/// `0x373`: temperatures in kelvin on the wire.
fn decode_cell_extremes(id: u16, d: &[u8]) -> Result<BmsFrame, FrameError> {
    need(id, d, 8)?;
    Ok(BmsFrame::CellExtremes(CellExtremes {
        min_cell_v: f32::from(u16_at(d, 0)) / 1000.0,
        max_cell_v: f32::from(u16_at(d, 2)) / 1000.0,
        min_cell_temperature_c: f32::from(u16_at(d, 4)) - KELVIN_OFFSET_C,
        max_cell_temperature_c: f32::from(u16_at(d, 6)) - KELVIN_OFFSET_C,
    }))
}

#[path = "pylontech_display.rs"]
mod display;

#[cfg(test)]
#[path = "pylontech_tests.rs"]
mod tests;
