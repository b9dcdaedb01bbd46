//! Validation of a parsed profile file and its compilation into decoding
//! tables. Every rejection names the key's path and why.

use std::collections::HashSet;

use packgate_protocol::{MAX_CELLS, MAX_TEMPERATURE_SENSORS};

use super::decode::{Decoder, FlagField, Location, MaskField, NumberField, Scale};
use super::format::{BlockFile, LocationFile, ProfileFile, TypeName, ValueFile};
use super::setting::{compile_setting, WritableSetting};
use super::value::{NumberType, WordOrder};
use super::{ReadFunction, RegisterBlock};

mod arrays;
mod overlaps;

/// Most registers one Modbus read returns.
pub(crate) const MAX_BLOCK_REGISTERS: u16 = 125;

/// A rejected key: its path and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    /// Path such as `fields.current_a.offset`.
    pub(crate) path: String,
    /// Why.
    pub(crate) reason: String,
}

pub(crate) fn invalid<T>(path: impl Into<String>, reason: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        path: path.into(),
        reason: reason.into(),
    })
}

/// Where a scaled number sits and how it is read: the keys a single value
/// and an array share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumberSpec {
    /// Index into `blocks`.
    pub(crate) block: usize,
    /// Register offset from the block's start.
    pub(crate) offset: u16,
    /// Value type.
    pub(crate) ty: TypeName,
    /// Fixed scale (default 1).
    pub(crate) scale: Option<f64>,
    /// Scale read at run time.
    pub(crate) scale_from: Option<LocationFile>,
    /// Added after scaling (default 0).
    pub(crate) value_offset: Option<f64>,
    /// Word order of a 32-bit value (default: the profile's).
    pub(crate) order: Option<WordOrder>,
    /// Negate the value.
    pub(crate) invert: bool,
}

impl NumberSpec {
    /// The number keys of a single value.
    fn of_value(f: &ValueFile) -> Self {
        Self {
            block: f.block,
            offset: f.offset,
            ty: f.ty,
            scale: f.scale,
            scale_from: f.scale_from,
            value_offset: f.value_offset,
            order: f.word_order,
            invert: f.invert,
        }
    }
}

/// A validated profile, in parts.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) blocks: Vec<RegisterBlock>,
    pub(crate) decoder: Decoder,
    pub(crate) settings: Vec<WritableSetting>,
}

/// Validates `file` and builds its tables.
pub(crate) fn compile(file: &ProfileFile) -> Result<Compiled, Invalid> {
    check_pack_figures(file)?;
    if file.blocks.is_empty() {
        return invalid("blocks", "a profile reads at least one block");
    }
    let blocks = file
        .blocks
        .iter()
        .enumerate()
        .map(|(index, block)| compile_block(&format!("blocks[{index}]"), block))
        .collect::<Result<Vec<_>, _>>()?;
    let cx = Context {
        blocks: &blocks,
        order: file.word_order,
    };
    let decoder = compile_decoder(&cx, file)?;
    let settings = compile_settings(file)?;
    overlaps::check_arrays(&blocks, &decoder.cells, &decoder.temperatures)?;
    overlaps::check_settings(&settings)?;
    Ok(Compiled {
        blocks,
        decoder,
        settings,
    })
}

/// The profile's name, and its currents and capacity where given.
fn check_pack_figures(file: &ProfileFile) -> Result<(), Invalid> {
    if file.name.trim().is_empty() {
        return invalid("name", "must not be empty");
    }
    let most = f64::from(packgate_protocol::sample::MAX_CURRENT_A);
    for (path, value, most) in [
        ("max_current_a", file.max_current_a, most),
        ("max_charge_a", file.max_charge_a, most),
        ("max_discharge_a", file.max_discharge_a, most),
        ("capacity_ah", file.capacity_ah, 1.0e6),
    ] {
        if let Some(value) = value {
            if !(value.is_finite() && value > 0.0 && value <= most) {
                return invalid(path, format!("must be above 0 and at most {most}"));
            }
        }
    }
    Ok(())
}

/// The decoding table of every field, array, alarm and the serial number.
fn compile_decoder(cx: &Context<'_>, file: &ProfileFile) -> Result<Decoder, Invalid> {
    let fields = &file.fields;
    Ok(Decoder {
        pack_voltage_v: cx.number("fields.pack_voltage_v", &fields.pack_voltage_v)?,
        current_a: cx.number("fields.current_a", &fields.current_a)?,
        soc_pct: cx.number("fields.soc_pct", &fields.soc_pct)?,
        soh_pct: fields
            .soh_pct
            .as_ref()
            .map(|f| cx.number("fields.soh_pct", f))
            .transpose()?,
        charge_enabled: fields
            .charge_enabled
            .as_ref()
            .map(|f| cx.flag("fields.charge_enabled", f))
            .transpose()?,
        discharge_enabled: fields
            .discharge_enabled
            .as_ref()
            .map(|f| cx.flag("fields.discharge_enabled", f))
            .transpose()?,
        balancing_mask: fields
            .balancing_mask
            .as_ref()
            .map(|f| cx.mask("fields.balancing_mask", f))
            .transpose()?,
        cells: cx.array("cells", &file.cells, MAX_CELLS)?,
        temperatures: cx.array("temperatures", &file.temperatures, MAX_TEMPERATURE_SENSORS)?,
        alarms: file
            .alarms
            .iter()
            .enumerate()
            .map(|(index, alarm)| cx.alarm(&format!("alarms[{index}]"), alarm))
            .collect::<Result<_, _>>()?,
        serial_number: file
            .serial_number
            .as_ref()
            .map(|s| cx.serial("serial_number", s))
            .transpose()?,
    })
}

/// The writable settings, each name once.
fn compile_settings(file: &ProfileFile) -> Result<Vec<WritableSetting>, Invalid> {
    let mut names = HashSet::new();
    let mut settings = Vec::with_capacity(file.settings.len());
    for (index, setting) in file.settings.iter().enumerate() {
        let path = format!("settings[{index}]");
        let setting = compile_setting(&path, setting, file.word_order)?;
        if !names.insert(setting.name.clone()) {
            return invalid(
                format!("{path}.name"),
                format!("duplicate setting {:?}", setting.name),
            );
        }
        settings.push(setting);
    }
    Ok(settings)
}

fn compile_block(path: &str, block: &BlockFile) -> Result<RegisterBlock, Invalid> {
    let function = match block.function {
        3 => ReadFunction::Holding,
        4 => ReadFunction::Input,
        other => {
            return invalid(
                format!("{path}.function"),
                format!("{other} is not a register read; use 3 (holding) or 4 (input)"),
            )
        }
    };
    if !(1..=MAX_BLOCK_REGISTERS).contains(&block.count) {
        return invalid(
            format!("{path}.count"),
            format!(
                "{} registers; one read returns 1 to {MAX_BLOCK_REGISTERS}",
                block.count
            ),
        );
    }
    if u32::from(block.start) + u32::from(block.count) > 0x1_0000 {
        return invalid(
            format!("{path}.count"),
            "the block runs past register 65535",
        );
    }
    Ok(RegisterBlock {
        function,
        start: block.start,
        count: block.count,
    })
}

/// The blocks and defaults a field is checked against.
struct Context<'a> {
    blocks: &'a [RegisterBlock],
    order: WordOrder,
}

impl Context<'_> {
    /// Checks that `width` registers at `block`/`offset` lie inside the block.
    fn location(
        &self,
        path: &str,
        block: usize,
        offset: u16,
        width: u16,
    ) -> Result<Location, Invalid> {
        let Some(spec) = self.blocks.get(block) else {
            return invalid(
                format!("{path}.block"),
                format!(
                    "block {block} does not exist (the profile reads {} blocks)",
                    self.blocks.len()
                ),
            );
        };
        if u32::from(offset) + u32::from(width) > u32::from(spec.count) {
            return invalid(
                format!("{path}.offset"),
                format!(
                    "{width} register(s) at offset {offset} fall outside block {block} ({} registers)",
                    spec.count
                ),
            );
        }
        Ok(Location { block, offset })
    }

    fn scale(
        &self,
        path: &str,
        scale: Option<f64>,
        from: Option<LocationFile>,
    ) -> Result<Scale, Invalid> {
        match (scale, from) {
            (Some(_), Some(_)) => invalid(
                format!("{path}.scale_from"),
                "give scale or scale_from, not both",
            ),
            (None, Some(at)) => Ok(Scale::PowerOfTen(self.location(
                &format!("{path}.scale_from"),
                at.block,
                at.offset,
                1,
            )?)),
            (scale, None) => {
                let scale = scale.unwrap_or(1.0);
                if !scale.is_finite() || scale == 0.0 {
                    return invalid(format!("{path}.scale"), "must be a finite, non-zero number");
                }
                Ok(Scale::Fixed(scale))
            }
        }
    }

    fn scaled(&self, path: &str, spec: NumberSpec) -> Result<NumberField, Invalid> {
        let ty = number_type(path, spec.ty)?;
        let value_offset = spec.value_offset.unwrap_or(0.0);
        if !value_offset.is_finite() {
            return invalid(format!("{path}.value_offset"), "must be a finite number");
        }
        Ok(NumberField {
            path: path.to_owned(),
            at: self.location(path, spec.block, spec.offset, ty.width())?,
            ty,
            order: spec.order.unwrap_or(self.order),
            scale: self.scale(path, spec.scale, spec.scale_from)?,
            value_offset,
            invert: spec.invert,
        })
    }

    fn number(&self, path: &str, f: &ValueFile) -> Result<NumberField, Invalid> {
        number_type(path, f.ty)?;
        if f.bit.is_some() {
            return invalid(format!("{path}.bit"), "only for flags of type \"bits\"");
        }
        if f.true_values.is_some() {
            return invalid(format!("{path}.true_values"), "only for flags");
        }
        self.scaled(path, NumberSpec::of_value(f))
    }

    fn no_scaling(path: &str, f: &ValueFile) -> Result<(), Invalid> {
        if f.scale.is_some() || f.scale_from.is_some() || f.value_offset.is_some() {
            return invalid(
                path,
                "a flag or mask takes no scale, scale_from or value_offset",
            );
        }
        Ok(())
    }

    fn flag(&self, path: &str, f: &ValueFile) -> Result<FlagField, Invalid> {
        Self::no_scaling(path, f)?;
        if f.ty == TypeName::Bits {
            let Some(bit) = f.bit else {
                return invalid(
                    format!("{path}.bit"),
                    "type \"bits\" needs the bit number, 0 to 15",
                );
            };
            if bit > 15 {
                return invalid(
                    format!("{path}.bit"),
                    format!("bit {bit} is not in a 16-bit register"),
                );
            }
            if f.true_values.is_some() {
                return invalid(format!("{path}.true_values"), "not with type \"bits\"");
            }
            return Ok(FlagField::Bit {
                path: path.to_owned(),
                at: self.location(path, f.block, f.offset, 1)?,
                bit,
                invert: f.invert,
            });
        }
        if f.bit.is_some() {
            return invalid(format!("{path}.bit"), "only with type \"bits\"");
        }
        let ty = integer_type(path, f.ty)?;
        Ok(FlagField::Integer {
            path: path.to_owned(),
            at: self.location(path, f.block, f.offset, ty.width())?,
            ty,
            order: f.word_order.unwrap_or(self.order),
            true_values: f.true_values.clone(),
            invert: f.invert,
        })
    }

    fn mask(&self, path: &str, f: &ValueFile) -> Result<MaskField, Invalid> {
        Self::no_scaling(path, f)?;
        if f.bit.is_some() || f.true_values.is_some() || f.invert {
            return invalid(path, "a mask takes no bit, true_values or invert");
        }
        let ty = integer_type(path, f.ty)?;
        Ok(MaskField {
            at: self.location(path, f.block, f.offset, ty.width())?,
            ty,
            order: f.word_order.unwrap_or(self.order),
        })
    }
}

fn number_type(path: &str, ty: TypeName) -> Result<NumberType, Invalid> {
    NumberType::from_name(ty).map_or_else(
        || {
            invalid(
                format!("{path}.type"),
                "a number: u16, i16, u32, i32, f32, u8_high or u8_low",
            )
        },
        Ok,
    )
}

fn integer_type(path: &str, ty: TypeName) -> Result<NumberType, Invalid> {
    match NumberType::from_name(ty) {
        Some(ty) if ty.is_integer() => Ok(ty),
        _ => invalid(
            format!("{path}.type"),
            "an integer: u16, i16, u32, i32, u8_high or u8_low",
        ),
    }
}
