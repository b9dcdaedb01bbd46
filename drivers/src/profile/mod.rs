//! Device profiles: register maps without recompiling.
//!
//! A profile is a TOML file that says which register blocks to read from a
//! BMS over Modbus, how to turn them into a [`PackReading`], and which
//! settings the control path may write. Four are built in (see
//! [`Profile::builtin_names`]); users add their own as files and name them
//! by path ([`resolve`]).
//!
//! The format, in short (`drivers/profiles/packgate-sim.toml` is a full
//! example):
//!
//! - `name`, `description`, `word_order` (`"big"`: high word first, the
//!   default; or `"little"`) for 32-bit values;
//! - `[[blocks]]`: `function` (3 holding, 4 input), `start`, `count`
//!   (1..=125), read in order at every poll;
//! - `[fields]`: `pack_voltage_v`, `current_a` (positive = charging; set
//!   `invert = true` for a BMS that counts discharge positive), `soc_pct`,
//!   and the optional `soh_pct` (absent when not mapped), `charge_enabled` and
//!   `discharge_enabled` (true when absent), `balancing_mask` (0 when
//!   absent). A value is `{ block, offset, type, scale, scale_from,
//!   value_offset, word_order, invert }`: `value = raw * scale +
//!   value_offset`; `scale_from = { block, offset }` reads an i16 `sf` and
//!   scales by 10^sf. Types: `u16`, `i16`, `u32`, `i32`, `f32`, `u8_high`,
//!   `u8_low`. A flag is `type = "bits"` with `bit`, or an integer that is
//!   true when non-zero (or when in `true_values`); `invert` negates it;
//! - `[cells]`, `[temperatures]`: a value spec plus `stride` (registers
//!   between values, default the type's width) and either `count` or
//!   `count_from = { block, offset, type }` with `max_count`;
//! - `[[alarms]]`: `{ block, offset, type, bits = { 0 = "cell_over_voltage" } }`
//!   mapping device bits onto packgate's alarm names;
//! - `[serial_number]`: `type = "ascii"` with `count` registers, or `u16`/`u32`;
//! - `[[settings]]`: `name`, `register`, `type`, `scale`, `value_offset`,
//!   `min`, `max`, `unit`, `read_back_register` (default `register`).

use std::path::Path;

use packgate_protocol::PackReading;

mod compile;
mod decode;
mod error;
mod format;
mod setting;
pub mod sunspec;
mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_robust;

pub use error::{ProfileError, RegisterDecodeError, SettingValueError};
pub use setting::WritableSetting;

use decode::{Decoder, Registers};

/// Modbus function used to read a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadFunction {
    /// Read holding registers (function code 3).
    Holding,
    /// Read input registers (function code 4).
    Input,
}

impl ReadFunction {
    /// The Modbus function code.
    pub fn code(self) -> u8 {
        match self {
            ReadFunction::Holding => 3,
            ReadFunction::Input => 4,
        }
    }
}

/// A run of registers read with one request at every poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegisterBlock {
    /// How to read it.
    pub function: ReadFunction,
    /// First register address.
    pub start: u16,
    /// Number of registers, 1..=125.
    pub count: u16,
}

/// A validated device profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Profile name.
    pub name: String,
    /// Free text description.
    pub description: String,
    /// Where the register map comes from (document and version); empty
    /// when the profile does not say.
    pub source: String,
    /// The firmware the map was checked against; empty when the profile
    /// does not say.
    pub checked_against: String,
    /// The largest current the pack can carry, amperes, when known.
    pub max_current_a: Option<f32>,
    /// The charge current the pack is rated for, amperes, when the
    /// profile says: its share of a bank's charge current limit.
    pub max_charge_a: Option<f64>,
    /// The discharge current the pack is rated for, amperes, when the
    /// profile says.
    pub max_discharge_a: Option<f64>,
    /// The pack's capacity, ampere-hours, when the profile says: its
    /// weight in a bank's state of charge.
    pub capacity_ah: Option<f64>,
    /// Whether the cell list is every series cell.
    pub cells_complete: bool,
    /// Blocks to read at each poll, in order; [`Profile::decode`] takes one
    /// register vector per block.
    pub blocks: Vec<RegisterBlock>,
    /// The only settings the control path may write.
    pub settings: Vec<WritableSetting>,
    decoder: Decoder,
}

/// Builtin profiles: name and TOML source.
const BUILTINS: &[(&str, &str)] = &[
    (
        "packgate-sim",
        include_str!("../../profiles/packgate-sim.toml"),
    ),
    (
        "sunspec-802",
        include_str!("../../profiles/sunspec-802.toml"),
    ),
    ("jk-bms-pb", include_str!("../../profiles/jk-bms-pb.toml")),
    ("seplos-v3", include_str!("../../profiles/seplos-v3.toml")),
];

/// Builtin profile names, in [`BUILTINS`] order.
const BUILTIN_NAMES: &[&str] = &["packgate-sim", "sunspec-802", "jk-bms-pb", "seplos-v3"];

impl Profile {
    /// Parses and validates a profile; `origin` (a path or builtin name)
    /// prefixes every error.
    pub fn from_toml(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let file: format::ProfileFile = toml::from_str(text).map_err(|err| {
            let (line, column) = err
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ProfileError::Syntax {
                origin: origin.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        let compiled = compile::compile(&file).map_err(|invalid| ProfileError::Invalid {
            origin: origin.to_owned(),
            path: invalid.path,
            reason: invalid.reason,
        })?;
        Ok(Profile {
            name: file.name,
            description: file.description,
            source: file.source,
            checked_against: file.checked_against,
            max_current_a: file.max_current_a.map(|a| a as f32),
            max_charge_a: file.max_charge_a,
            max_discharge_a: file.max_discharge_a,
            capacity_ah: file.capacity_ah,
            cells_complete: file.cells_complete,
            blocks: compiled.blocks,
            settings: compiled.settings,
            decoder: compiled.decoder,
        })
    }

    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ProfileError::Read {
            origin: origin.clone(),
            message: err.to_string(),
        })?;
        Profile::from_toml(&text, &origin)
    }

    /// A builtin profile by name (every builtin is tested to load).
    pub fn builtin(name: &str) -> Option<Profile> {
        let text = Profile::builtin_source(name)?;
        Profile::from_toml(text, name).ok()
    }

    /// Names of the builtin profiles.
    pub fn builtin_names() -> &'static [&'static str] {
        BUILTIN_NAMES
    }

    /// The TOML text of a builtin profile.
    pub fn builtin_source(name: &str) -> Option<&'static str> {
        BUILTINS
            .iter()
            .find(|(builtin, _)| *builtin == name)
            .map(|(_, text)| *text)
    }

    /// Decodes one poll: `blocks[i]` holds the `self.blocks[i].count`
    /// registers read for block `i`. The reading passes
    /// [`PackReading::validate`].
    pub fn decode(&self, blocks: &[Vec<u16>]) -> Result<PackReading, RegisterDecodeError> {
        let regs = Registers::new(&self.blocks, blocks)?;
        self.decoder.decode(&regs)
    }

    /// The pack's serial number from one poll's blocks, if the profile has
    /// one and the registers hold one.
    pub fn serial_number(&self, blocks: &[Vec<u16>]) -> Option<String> {
        let regs = Registers::new(&self.blocks, blocks).ok()?;
        self.decoder.serial_number(&regs).ok().flatten()
    }

    /// A writable setting by name.
    pub fn setting(&self, name: &str) -> Option<&WritableSetting> {
        self.settings.iter().find(|setting| setting.name == name)
    }
}

/// A profile named in a config: a builtin name, else a path to a TOML file.
pub fn resolve(name_or_path: &str) -> Result<Profile, ProfileError> {
    if let Some(text) = Profile::builtin_source(name_or_path) {
        return Profile::from_toml(text, name_or_path);
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(ProfileError::NotFound {
            name: name_or_path.to_owned(),
            builtins: BUILTIN_NAMES.join(", "),
        });
    }
    Profile::load(path)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
