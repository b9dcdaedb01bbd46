//! Compilation of the repeated parts of a profile: the cell and
//! temperature arrays, the alarm words and the serial number.

use packgate_protocol::AlarmFlags;

use super::{integer_type, invalid, Context, Invalid, NumberSpec};
use crate::profile::decode::{AlarmField, ArrayCount, ArrayField, SerialField};
use crate::profile::format::{AlarmFile, ArrayFile, CountFile, SerialFile, TypeName};
use crate::profile::value::NumberType;

impl Context<'_> {
    pub(super) fn array(
        &self,
        path: &'static str,
        a: &ArrayFile,
        most: usize,
    ) -> Result<ArrayField, Invalid> {
        let spec = NumberSpec {
            block: a.block,
            offset: a.offset,
            ty: a.ty,
            scale: a.scale,
            scale_from: a.scale_from,
            value_offset: a.value_offset,
            order: a.word_order,
            invert: false,
        };
        let value = self.scaled(path, spec)?;
        let width = value.ty.width();
        let stride = a.stride.unwrap_or(width);
        if stride < width {
            return invalid(
                format!("{path}.stride"),
                format!("less than the {width} register(s) of a value"),
            );
        }
        let in_range = |n: u16| (1..=most).contains(&usize::from(n));
        let (count, largest) = match (a.count, &a.count_from) {
            (Some(_), Some(_)) => {
                return invalid(
                    format!("{path}.count_from"),
                    "give count or count_from, not both",
                )
            }
            (None, None) => return invalid(format!("{path}.count"), "give count or count_from"),
            (Some(count), None) => {
                if a.max_count.is_some() {
                    return invalid(format!("{path}.max_count"), "only with count_from");
                }
                if !in_range(count) {
                    return invalid(
                        format!("{path}.count"),
                        format!("{count}; accepted 1 to {most}"),
                    );
                }
                (ArrayCount::Fixed(count), count)
            }
            (None, Some(from)) => {
                let max = a.max_count.unwrap_or(most as u16);
                if !in_range(max) {
                    return invalid(
                        format!("{path}.max_count"),
                        format!("{max}; accepted 1 to {most}"),
                    );
                }
                (
                    self.count_from(&format!("{path}.count_from"), from, max)?,
                    max,
                )
            }
        };
        let last = u32::from(a.offset) + u32::from(largest - 1) * u32::from(stride);
        let fits = u16::try_from(last)
            .ok()
            .and_then(|last| self.location(path, a.block, last, width).ok());
        if fits.is_none() {
            return invalid(
                format!("{path}.offset"),
                format!(
                    "{largest} values from offset {} do not fit in block {}",
                    a.offset, a.block
                ),
            );
        }
        Ok(ArrayField {
            path,
            value,
            stride,
            count,
        })
    }

    fn count_from(&self, path: &str, c: &CountFile, max: u16) -> Result<ArrayCount, Invalid> {
        let ty = integer_type(path, c.ty.unwrap_or(TypeName::U16))?;
        Ok(ArrayCount::From {
            at: self.location(path, c.block, c.offset, ty.width())?,
            ty,
            order: c.word_order.unwrap_or(self.order),
            max,
        })
    }

    pub(super) fn alarm(&self, path: &str, a: &AlarmFile) -> Result<AlarmField, Invalid> {
        let ty = integer_type(path, a.ty)?;
        if a.bits.is_empty() {
            return invalid(format!("{path}.bits"), "maps no bit");
        }
        let mut bits = Vec::with_capacity(a.bits.len());
        for (key, name) in &a.bits {
            let bit_path = format!("{path}.bits.{key}");
            let bit = match key.parse::<u8>() {
                Ok(bit) if bit < ty.bit_width() => bit,
                _ => {
                    return invalid(
                        bit_path,
                        format!(
                            "not a bit number of a {} (0 to {})",
                            ty.name(),
                            ty.bit_width() - 1
                        ),
                    )
                }
            };
            let Some((flag, _)) = AlarmFlags::ALL.iter().find(|(_, known)| known == name) else {
                let known: Vec<&str> = AlarmFlags::ALL.iter().map(|(_, n)| *n).collect();
                return invalid(
                    bit_path,
                    format!("unknown alarm {name:?}; known: {}", known.join(", ")),
                );
            };
            bits.push((bit, *flag));
        }
        Ok(AlarmField {
            at: self.location(path, a.block, a.offset, ty.width())?,
            ty,
            order: a.word_order.unwrap_or(self.order),
            bits,
        })
    }

    pub(super) fn serial(&self, path: &str, s: &SerialFile) -> Result<SerialField, Invalid> {
        if s.ty == TypeName::Ascii {
            let Some(count) = s.count.filter(|c| *c > 0) else {
                return invalid(
                    format!("{path}.count"),
                    "type \"ascii\" needs a register count of 1 or more",
                );
            };
            return Ok(SerialField::Ascii {
                at: self.location(path, s.block, s.offset, count)?,
                count,
            });
        }
        if s.count.is_some() {
            return invalid(format!("{path}.count"), "only with type \"ascii\"");
        }
        let ty = match s.ty {
            TypeName::U16 => NumberType::U16,
            TypeName::U32 => NumberType::U32,
            _ => return invalid(format!("{path}.type"), "use \"ascii\", \"u16\" or \"u32\""),
        };
        Ok(SerialField::Number {
            at: self.location(path, s.block, s.offset, ty.width())?,
            ty,
            order: s.word_order.unwrap_or(self.order),
        })
    }
}
