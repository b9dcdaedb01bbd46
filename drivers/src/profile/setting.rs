//! Writable settings: the only registers the control path may write, with
//! their bounds and the pure encode/decode of their values.

use super::compile::{invalid, Invalid};
use super::error::SettingValueError;
use super::format::SettingFile;
use super::value::{NumberType, WordOrder};

/// A setting the control path may write, as the profile declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct WritableSetting {
    /// Name, as commands refer to it (`charge_current_limit_a`).
    pub name: String,
    /// First holding register written.
    pub register: u16,
    /// First holding register read back to verify the write.
    pub read_back_register: u16,
    /// Smallest value accepted, in `unit`.
    pub min: f64,
    /// Largest value accepted, in `unit`.
    pub max: f64,
    /// Unit of the value (`A`, `V`...).
    pub unit: String,
    pub(crate) ty: NumberType,
    pub(crate) order: WordOrder,
    pub(crate) scale: f64,
    pub(crate) value_offset: f64,
}

impl WritableSetting {
    /// Registers the value occupies: 1 or 2.
    pub fn register_count(&self) -> u16 {
        self.ty.width()
    }

    /// The registers to write for `value`: checks `min..=max`, scales
    /// (`raw = (value - value_offset) / scale`, rounded to the nearest
    /// integer for integer types) and checks the raw value fits the type.
    pub fn encode(&self, value: f64) -> Result<Vec<u16>, SettingValueError> {
        if !value.is_finite() {
            return Err(SettingValueError::NotFinite {
                setting: self.name.clone(),
                value,
            });
        }
        if value < self.min || value > self.max {
            return Err(SettingValueError::OutOfBounds {
                setting: self.name.clone(),
                value,
                min: self.min,
                max: self.max,
            });
        }
        let exact = (value - self.value_offset) / self.scale;
        let raw = if self.ty.is_integer() {
            exact.round()
        } else {
            exact
        };
        let fits = match self.ty.raw_range() {
            Some((low, high)) => raw >= low && raw <= high,
            None => (raw as f32).is_finite(),
        };
        let words = if fits {
            self.ty.write(raw, self.order)
        } else {
            None
        };
        words.ok_or_else(|| SettingValueError::DoesNotFit {
            setting: self.name.clone(),
            value,
            raw,
            ty: self.ty.name(),
        })
    }

    /// The value held by read-back `registers` ([`Self::register_count`]
    /// of them).
    pub fn decode(&self, registers: &[u16]) -> Result<f64, SettingValueError> {
        let count_error = || SettingValueError::RegisterCount {
            setting: self.name.clone(),
            expected: self.register_count(),
            got: registers.len(),
        };
        if registers.len() != usize::from(self.register_count()) {
            return Err(count_error());
        }
        let raw = self
            .ty
            .read(registers, self.order)
            .ok_or_else(count_error)?;
        let value = raw * self.scale + self.value_offset;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(SettingValueError::NotFinite {
                setting: self.name.clone(),
                value,
            })
        }
    }
}

/// Validates one `[[settings]]` entry (`path` is `settings[i]`): name,
/// type, scale, `min < max`, registers in range and both bounds encodable.
pub(crate) fn compile_setting(
    path: &str,
    s: &SettingFile,
    order: WordOrder,
) -> Result<WritableSetting, Invalid> {
    let name_ok = !s.name.is_empty()
        && s.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return invalid(
            format!("{path}.name"),
            "lower-case letters, digits and _ only, not empty",
        );
    }
    let ty = match NumberType::from_name(s.ty) {
        Some(NumberType::U8High | NumberType::U8Low) | None => {
            return invalid(
                format!("{path}.type"),
                "a writable number: u16, i16, u32, i32 or f32",
            )
        }
        Some(ty) => ty,
    };
    let scale = s.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        return invalid(format!("{path}.scale"), "must be a finite, non-zero number");
    }
    let value_offset = s.value_offset.unwrap_or(0.0);
    if !value_offset.is_finite() {
        return invalid(format!("{path}.value_offset"), "must be a finite number");
    }
    if !s.min.is_finite() || !s.max.is_finite() || s.min >= s.max {
        return invalid(
            format!("{path}.min"),
            format!("min {} must be below max {}", s.min, s.max),
        );
    }
    let read_back_register = s.read_back_register.unwrap_or(s.register);
    for (key, register) in [
        ("register", s.register),
        ("read_back_register", read_back_register),
    ] {
        if u32::from(register) + u32::from(ty.width()) > 0x1_0000 {
            return invalid(
                format!("{path}.{key}"),
                "the value runs past register 65535",
            );
        }
    }
    let setting = WritableSetting {
        name: s.name.clone(),
        register: s.register,
        read_back_register,
        min: s.min,
        max: s.max,
        unit: s.unit.clone(),
        ty,
        order: s.word_order.unwrap_or(order),
        scale,
        value_offset,
    };
    for (key, bound) in [("min", s.min), ("max", s.max)] {
        if let Err(err) = setting.encode(bound) {
            return invalid(format!("{path}.{key}"), format!("not encodable: {err}"));
        }
    }
    Ok(setting)
}
