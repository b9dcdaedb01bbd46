//! Decoding tables built from a validated profile, and the pure decode of
//! register blocks into a [`PackReading`].

use packgate_protocol::{AlarmFlags, BalancingState, CellVoltages, PackReading, Temperatures};

use super::error::RegisterDecodeError;
use super::value::{NumberType, WordOrder};
use super::RegisterBlock;

/// A register position: block index and offset in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    /// Index into the profile's blocks.
    pub(crate) block: usize,
    /// Offset from the block's start.
    pub(crate) offset: u16,
}

/// The registers of one poll, checked against the profile's blocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registers<'a> {
    blocks: &'a [Vec<u16>],
}

impl<'a> Registers<'a> {
    /// Checks that `blocks` holds one vector per profile block, each of
    /// the block's length.
    pub(crate) fn new(
        layout: &[RegisterBlock],
        blocks: &'a [Vec<u16>],
    ) -> Result<Self, RegisterDecodeError> {
        if layout.len() != blocks.len() {
            return Err(RegisterDecodeError::BlockCount {
                expected: layout.len(),
                got: blocks.len(),
            });
        }
        for (index, (spec, words)) in layout.iter().zip(blocks).enumerate() {
            if usize::from(spec.count) != words.len() {
                return Err(RegisterDecodeError::BlockLength {
                    block: index,
                    expected: usize::from(spec.count),
                    got: words.len(),
                });
            }
        }
        Ok(Registers { blocks })
    }

    /// `width` registers at `at`.
    fn words(
        &self,
        at: Location,
        width: u16,
        field: &str,
    ) -> Result<&'a [u16], RegisterDecodeError> {
        let start = usize::from(at.offset);
        self.blocks
            .get(at.block)
            .and_then(|block| block.get(start..start + usize::from(width)))
            .ok_or_else(|| RegisterDecodeError::OutOfBlock {
                field: field.to_owned(),
                block: at.block,
            })
    }

    /// The raw number of type `ty` at `at`.
    fn raw(
        &self,
        at: Location,
        ty: NumberType,
        order: WordOrder,
        field: &str,
    ) -> Result<f64, RegisterDecodeError> {
        let words = self.words(at, ty.width(), field)?;
        ty.read(words, order)
            .ok_or_else(|| RegisterDecodeError::OutOfBlock {
                field: field.to_owned(),
                block: at.block,
            })
    }

    /// The raw bits of type `ty` at `at`.
    fn bits(
        &self,
        at: Location,
        ty: NumberType,
        order: WordOrder,
        field: &str,
    ) -> Result<u32, RegisterDecodeError> {
        let words = self.words(at, ty.width(), field)?;
        ty.read_bits(words, order)
            .ok_or_else(|| RegisterDecodeError::OutOfBlock {
                field: field.to_owned(),
                block: at.block,
            })
    }
}

/// How a raw value is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    /// A constant factor.
    Fixed(f64),
    /// 10^sf, sf the i16 register at this location.
    PowerOfTen(Location),
}

/// Largest SunSpec-style scale factor exponent accepted.
const MAX_SCALE_FACTOR: i16 = 10;

impl Scale {
    fn factor(self, regs: &Registers<'_>, field: &str) -> Result<f64, RegisterDecodeError> {
        match self {
            Scale::Fixed(factor) => Ok(factor),
            Scale::PowerOfTen(at) => {
                let sf = regs.words(at, 1, field)?[0] as i16;
                if sf.unsigned_abs() > MAX_SCALE_FACTOR.unsigned_abs() {
                    return Err(RegisterDecodeError::ScaleFactor {
                        field: field.to_owned(),
                        sf,
                    });
                }
                Ok(10f64.powi(i32::from(sf)))
            }
        }
    }
}

/// A scaled number: `(raw * scale + value_offset)`, negated if `invert`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NumberField {
    /// Path for error messages (`fields.current_a`).
    pub(crate) path: String,
    /// Where it is.
    pub(crate) at: Location,
    /// Its type.
    pub(crate) ty: NumberType,
    /// Word order of a 32-bit value.
    pub(crate) order: WordOrder,
    /// Scale.
    pub(crate) scale: Scale,
    /// Added after scaling.
    pub(crate) value_offset: f64,
    /// Negate the result.
    pub(crate) invert: bool,
}

impl NumberField {
    fn value(&self, regs: &Registers<'_>) -> Result<f32, RegisterDecodeError> {
        let raw = regs.raw(self.at, self.ty, self.order, &self.path)?;
        let scale = self.scale.factor(regs, &self.path)?;
        let value = raw * scale + self.value_offset;
        let value = if self.invert { -value } else { value } as f32;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(RegisterDecodeError::NotFinite {
                field: self.path.clone(),
            })
        }
    }
}

/// A flag.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FlagField {
    /// One bit of one register.
    Bit {
        /// Path for error messages.
        path: String,
        /// Where.
        at: Location,
        /// Which bit, 0..=15.
        bit: u8,
        /// Logical not.
        invert: bool,
    },
    /// An integer: true when non-zero, or when one of `true_values`.
    Integer {
        /// Path for error messages.
        path: String,
        /// Where.
        at: Location,
        /// Integer type.
        ty: NumberType,
        /// Word order.
        order: WordOrder,
        /// Raw values meaning true (`None`: any non-zero value).
        true_values: Option<Vec<i64>>,
        /// Logical not.
        invert: bool,
    },
}

impl FlagField {
    fn value(&self, regs: &Registers<'_>) -> Result<bool, RegisterDecodeError> {
        match self {
            FlagField::Bit {
                path,
                at,
                bit,
                invert,
            } => {
                let word = regs.words(*at, 1, path)?[0];
                Ok(((word >> bit) & 1 == 1) != *invert)
            }
            FlagField::Integer {
                path,
                at,
                ty,
                order,
                true_values,
                invert,
            } => {
                let raw = regs.raw(*at, *ty, *order, path)?;
                let set = match true_values {
                    None => raw != 0.0,
                    Some(values) => values.iter().any(|v| *v as f64 == raw),
                };
                Ok(set != *invert)
            }
        }
    }
}

/// An integer read as a bit mask.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MaskField {
    /// Where.
    pub(crate) at: Location,
    /// Integer type.
    pub(crate) ty: NumberType,
    /// Word order.
    pub(crate) order: WordOrder,
}

/// How many values an array holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArrayCount {
    /// Always this many.
    Fixed(u16),
    /// Read from a register, 1..=max.
    From {
        /// Where.
        at: Location,
        /// Integer type.
        ty: NumberType,
        /// Word order.
        order: WordOrder,
        /// Largest count accepted.
        max: u16,
    },
}

/// Evenly spaced values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArrayField {
    /// `cells` or `temperatures`.
    pub(crate) path: &'static str,
    /// The first value; the others follow every `stride` registers.
    pub(crate) value: NumberField,
    /// Registers from one value to the next.
    pub(crate) stride: u16,
    /// How many values.
    pub(crate) count: ArrayCount,
}

impl ArrayField {
    fn values(&self, regs: &Registers<'_>) -> Result<Vec<f32>, RegisterDecodeError> {
        let count = match &self.count {
            ArrayCount::Fixed(count) => *count,
            ArrayCount::From { at, ty, order, max } => {
                let raw = regs.bits(*at, *ty, *order, self.path)?;
                if raw == 0 || raw > u32::from(*max) {
                    return Err(RegisterDecodeError::CountOutOfRange {
                        field: self.path,
                        count: raw,
                        max: *max,
                    });
                }
                raw as u16
            }
        };
        (0..count)
            .map(|index| {
                let offset =
                    u32::from(self.value.at.offset) + u32::from(index) * u32::from(self.stride);
                let Ok(offset) = u16::try_from(offset) else {
                    return Err(RegisterDecodeError::OutOfBlock {
                        field: self.path.to_owned(),
                        block: self.value.at.block,
                    });
                };
                let mut element = self.value.clone();
                element.at.offset = offset;
                element.value(regs).map_err(|err| match err {
                    RegisterDecodeError::NotFinite { .. } => RegisterDecodeError::NotFinite {
                        field: format!("{}[{index}]", self.path),
                    },
                    other => other,
                })
            })
            .collect()
    }
}

/// One alarm bitfield.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlarmField {
    /// Where.
    pub(crate) at: Location,
    /// Integer type.
    pub(crate) ty: NumberType,
    /// Word order.
    pub(crate) order: WordOrder,
    /// Device bit to packgate flag.
    pub(crate) bits: Vec<(u8, AlarmFlags)>,
}

/// Where the serial number is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SerialField {
    /// An unsigned integer, shown in decimal.
    Number {
        /// Where.
        at: Location,
        /// Integer type.
        ty: NumberType,
        /// Word order.
        order: WordOrder,
    },
    /// ASCII, two characters a register, high byte first; NULs and spaces
    /// at the ends trimmed.
    Ascii {
        /// Where.
        at: Location,
        /// Registers.
        count: u16,
    },
}

/// Everything needed to turn a poll's registers into a reading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoder {
    /// Pack voltage.
    pub(crate) pack_voltage_v: NumberField,
    /// Current.
    pub(crate) current_a: NumberField,
    /// State of charge.
    pub(crate) soc_pct: NumberField,
    /// State of health (`None`: 100).
    pub(crate) soh_pct: Option<NumberField>,
    /// Charge switch (`None`: true).
    pub(crate) charge_enabled: Option<FlagField>,
    /// Discharge switch (`None`: true).
    pub(crate) discharge_enabled: Option<FlagField>,
    /// Balancing mask (`None`: 0).
    pub(crate) balancing_mask: Option<MaskField>,
    /// Cell voltages.
    pub(crate) cells: ArrayField,
    /// Temperatures.
    pub(crate) temperatures: ArrayField,
    /// Alarm bitfields.
    pub(crate) alarms: Vec<AlarmField>,
    /// Serial number.
    pub(crate) serial_number: Option<SerialField>,
}

impl Decoder {
    /// Decodes one poll.
    pub(crate) fn decode(&self, regs: &Registers<'_>) -> Result<PackReading, RegisterDecodeError> {
        let flag = |field: &Option<FlagField>| field.as_ref().map_or(Ok(true), |f| f.value(regs));
        let balancing = match &self.balancing_mask {
            None => 0,
            Some(mask) => regs.bits(mask.at, mask.ty, mask.order, "fields.balancing_mask")?,
        };
        let mut alarms = AlarmFlags::NONE;
        for (index, field) in self.alarms.iter().enumerate() {
            let raw = regs.bits(field.at, field.ty, field.order, &format!("alarms[{index}]"))?;
            for (bit, flag) in &field.bits {
                if raw & (1 << bit) != 0 {
                    alarms = alarms.union(*flag);
                }
            }
        }
        let reading = PackReading {
            pack_voltage_v: self.pack_voltage_v.value(regs)?,
            current_a: self.current_a.value(regs)?,
            soc_pct: self.soc_pct.value(regs)?,
            soh_pct: match &self.soh_pct {
                None => None,
                Some(field) => Some(field.value(regs)?),
            },
            cell_voltages_v: CellVoltages(self.cells.values(regs)?),
            temperatures_c: Temperatures(self.temperatures.values(regs)?),
            balancing: BalancingState(balancing),
            alarms,
            charge_enabled: flag(&self.charge_enabled)?,
            discharge_enabled: flag(&self.discharge_enabled)?,
        };
        reading.validate()?;
        Ok(reading)
    }

    /// The serial number, `None` when the profile has none or it is blank.
    pub(crate) fn serial_number(
        &self,
        regs: &Registers<'_>,
    ) -> Result<Option<String>, RegisterDecodeError> {
        const FIELD: &str = "serial_number";
        let text = match &self.serial_number {
            None => return Ok(None),
            Some(SerialField::Number { at, ty, order }) => {
                regs.bits(*at, *ty, *order, FIELD)?.to_string()
            }
            Some(SerialField::Ascii { at, count }) => {
                let bytes: Vec<u8> = regs
                    .words(*at, *count, FIELD)?
                    .iter()
                    .flat_map(|word| word.to_be_bytes())
                    .collect();
                let text = String::from_utf8(bytes)
                    .map_err(|_| RegisterDecodeError::NotText { field: FIELD })?;
                if text.chars().any(|c| c.is_control() && c != '\0') {
                    return Err(RegisterDecodeError::NotText { field: FIELD });
                }
                text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_owned()
            }
        };
        Ok(Some(text).filter(|text| !text.is_empty()))
    }
}
