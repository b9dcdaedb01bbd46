//! The serde shape of a profile TOML file, exactly as written. Nothing here
//! is checked beyond its type: `compile` validates and turns it into the
//! decoding tables.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::value::WordOrder;

/// The `type` of a register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TypeName {
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit, two registers.
    U32,
    /// Signed 32-bit, two registers.
    I32,
    /// IEEE 754 float, two registers.
    F32,
    /// High byte of a register.
    U8High,
    /// Low byte of a register.
    U8Low,
    /// One bit of a register (`bit` says which).
    Bits,
    /// ASCII text, two characters per register, high byte first.
    Ascii,
}

/// A whole profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileFile {
    /// Profile name, as configs refer to it.
    pub(crate) name: String,
    /// Free text for `packgate profiles list`.
    #[serde(default)]
    pub(crate) description: String,
    /// Where the register map comes from: the document and its version.
    #[serde(default)]
    pub(crate) source: String,
    /// The firmware the map was checked against, or that it was not
    /// checked on hardware.
    #[serde(default)]
    pub(crate) checked_against: String,
    /// The largest current the pack can carry, amperes; a reading past it
    /// is marked suspect.
    #[serde(default)]
    pub(crate) max_current_a: Option<f64>,
    /// The charge current the pack is rated for, amperes: its share of a
    /// bank's charge current limit.
    #[serde(default)]
    pub(crate) max_charge_a: Option<f64>,
    /// The discharge current the pack is rated for, amperes.
    #[serde(default)]
    pub(crate) max_discharge_a: Option<f64>,
    /// The pack's capacity, ampere-hours: its weight in a bank's state of
    /// charge.
    #[serde(default)]
    pub(crate) capacity_ah: Option<f64>,
    /// Whether `[cells]` lists every series cell (so the pack voltage is
    /// checked against their sum); false when it holds only the highest
    /// and lowest.
    #[serde(default = "yes")]
    pub(crate) cells_complete: bool,
    /// Default word order of 32-bit values (`big`: high word first).
    #[serde(default)]
    pub(crate) word_order: WordOrder,
    /// Register blocks read at each poll, in order.
    pub(crate) blocks: Vec<BlockFile>,
    /// Scalar fields of the reading.
    pub(crate) fields: FieldsFile,
    /// Cell voltages, volts.
    pub(crate) cells: ArrayFile,
    /// Temperatures, degrees Celsius.
    pub(crate) temperatures: ArrayFile,
    /// Alarm bitfields mapped onto packgate's alarm names.
    #[serde(default)]
    pub(crate) alarms: Vec<AlarmFile>,
    /// Where the pack's serial number is, if anywhere.
    #[serde(default)]
    pub(crate) serial_number: Option<SerialFile>,
    /// The only registers the control path may write.
    #[serde(default)]
    pub(crate) settings: Vec<SettingFile>,
}

/// One `[[blocks]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockFile {
    /// Modbus read function: 3 (holding) or 4 (input registers).
    pub(crate) function: u8,
    /// First register address.
    pub(crate) start: u16,
    /// Registers read, 1..=125.
    pub(crate) count: u16,
}

/// The `[fields]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldsFile {
    /// Pack voltage, volts.
    pub(crate) pack_voltage_v: ValueFile,
    /// Current, amperes, positive while charging.
    pub(crate) current_a: ValueFile,
    /// State of charge, percent.
    pub(crate) soc_pct: ValueFile,
    /// State of health, percent; 100 when absent.
    #[serde(default)]
    pub(crate) soh_pct: Option<ValueFile>,
    /// Charge switch state; `true` when absent.
    #[serde(default)]
    pub(crate) charge_enabled: Option<ValueFile>,
    /// Discharge switch state; `true` when absent.
    #[serde(default)]
    pub(crate) discharge_enabled: Option<ValueFile>,
    /// Balancing bitmask (bit n = cell n + 1); 0 when absent.
    #[serde(default)]
    pub(crate) balancing_mask: Option<ValueFile>,
}

/// Where a register (or two) is: block index and offset inside the block.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationFile {
    /// Index into `blocks`.
    pub(crate) block: usize,
    /// Register offset from the block's start.
    pub(crate) offset: u16,
}

/// One scalar field: a number, a flag or a mask.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueFile {
    /// Index into `blocks`.
    pub(crate) block: usize,
    /// Register offset from the block's start.
    pub(crate) offset: u16,
    /// Value type.
    #[serde(rename = "type")]
    pub(crate) ty: TypeName,
    /// value = raw * scale + value_offset (default 1).
    #[serde(default)]
    pub(crate) scale: Option<f64>,
    /// Scale read at run time: 10^sf, sf an i16 register (SunSpec style).
    #[serde(default)]
    pub(crate) scale_from: Option<LocationFile>,
    /// Added after scaling (default 0).
    #[serde(default)]
    pub(crate) value_offset: Option<f64>,
    /// Word order of a 32-bit value (default: the profile's).
    #[serde(default)]
    pub(crate) word_order: Option<WordOrder>,
    /// Numbers: negate; flags: logical not.
    #[serde(default)]
    pub(crate) invert: bool,
    /// For `type = "bits"`: the bit, 0..=15.
    #[serde(default)]
    pub(crate) bit: Option<u8>,
    /// For flags read from an integer: raw values meaning `true` (default:
    /// any non-zero value).
    #[serde(default)]
    pub(crate) true_values: Option<Vec<i64>>,
}

/// `[cells]` or `[temperatures]`: evenly spaced values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArrayFile {
    /// Index into `blocks`.
    pub(crate) block: usize,
    /// Register offset of the first value.
    pub(crate) offset: u16,
    /// Value type.
    #[serde(rename = "type")]
    pub(crate) ty: TypeName,
    /// value = raw * scale + value_offset (default 1).
    #[serde(default)]
    pub(crate) scale: Option<f64>,
    /// Scale read at run time: 10^sf, sf an i16 register.
    #[serde(default)]
    pub(crate) scale_from: Option<LocationFile>,
    /// Added after scaling (default 0).
    #[serde(default)]
    pub(crate) value_offset: Option<f64>,
    /// Word order of 32-bit values (default: the profile's).
    #[serde(default)]
    pub(crate) word_order: Option<WordOrder>,
    /// Registers from one value to the next (default: the type's width).
    #[serde(default)]
    pub(crate) stride: Option<u16>,
    /// Fixed number of values.
    #[serde(default)]
    pub(crate) count: Option<u16>,
    /// Number of values read from a register.
    #[serde(default)]
    pub(crate) count_from: Option<CountFile>,
    /// Largest count accepted from `count_from`.
    #[serde(default)]
    pub(crate) max_count: Option<u16>,
}

/// A register holding a count.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountFile {
    /// Index into `blocks`.
    pub(crate) block: usize,
    /// Register offset from the block's start.
    pub(crate) offset: u16,
    /// Integer type (default `u16`).
    #[serde(default, rename = "type")]
    pub(crate) ty: Option<TypeName>,
    /// Word order of a 32-bit count (default: the profile's).
    #[serde(default)]
    pub(crate) word_order: Option<WordOrder>,
}

/// One `[[alarms]]` bitfield.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlarmFile {
    /// Index into `blocks`.
    pub(crate) block: usize,
    /// Register offset from the block's start.
    pub(crate) offset: u16,
    /// Integer type of the bitfield.
    #[serde(rename = "type")]
    pub(crate) ty: TypeName,
    /// Word order of a 32-bit field (default: the profile's).
    #[serde(default)]
    pub(crate) word_order: Option<WordOrder>,
    /// Bit number (as a key) to packgate alarm name.
    pub(crate) bits: BTreeMap<String, String>,
}

/// `[serial_number]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SerialFile {
    /// Index into `blocks`.
    pub(crate) block: usize,
    /// Register offset from the block's start.
    pub(crate) offset: u16,
    /// `ascii`, or an unsigned integer type shown in decimal.
    #[serde(rename = "type")]
    pub(crate) ty: TypeName,
    /// Registers of text, for `ascii`.
    #[serde(default)]
    pub(crate) count: Option<u16>,
    /// Word order of a 32-bit number (default: the profile's).
    #[serde(default)]
    pub(crate) word_order: Option<WordOrder>,
}

/// One `[[settings]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingFile {
    /// Setting name, as commands refer to it.
    pub(crate) name: String,
    /// Register written (with function 6 or 16).
    pub(crate) register: u16,
    /// Value type.
    #[serde(rename = "type")]
    pub(crate) ty: TypeName,
    /// value = raw * scale + value_offset (default 1).
    #[serde(default)]
    pub(crate) scale: Option<f64>,
    /// Added after scaling (default 0).
    #[serde(default)]
    pub(crate) value_offset: Option<f64>,
    /// Word order of a 32-bit value (default: the profile's).
    #[serde(default)]
    pub(crate) word_order: Option<WordOrder>,
    /// Smallest value accepted, in `unit`.
    pub(crate) min: f64,
    /// Largest value accepted, in `unit`.
    pub(crate) max: f64,
    /// Unit of the value, for people.
    #[serde(default)]
    pub(crate) unit: String,
    /// Holding register read back to verify (default: `register`).
    #[serde(default)]
    pub(crate) read_back_register: Option<u16>,
}

fn yes() -> bool {
    true
}
