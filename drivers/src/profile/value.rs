//! Value types of register words: how one number is laid out in one or two
//! 16-bit registers, and the pure conversions between the two.

use serde::Deserialize;

use super::format::TypeName;

/// Which register of a 32-bit value comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WordOrder {
    /// High word first (the Modbus convention).
    #[default]
    Big,
    /// Low word first ("word swapped").
    Little,
}

/// A number stored in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberType {
    /// Unsigned 16-bit, one register.
    U16,
    /// Signed 16-bit (two's complement), one register.
    I16,
    /// Unsigned 32-bit, two registers.
    U32,
    /// Signed 32-bit, two registers.
    I32,
    /// IEEE 754 single precision, two registers.
    F32,
    /// The high byte of one register, unsigned.
    U8High,
    /// The low byte of one register, unsigned.
    U8Low,
}

impl NumberType {
    /// The number type a TOML `type` names, if it names one.
    pub(crate) fn from_name(name: TypeName) -> Option<NumberType> {
        match name {
            TypeName::U16 => Some(NumberType::U16),
            TypeName::I16 => Some(NumberType::I16),
            TypeName::U32 => Some(NumberType::U32),
            TypeName::I32 => Some(NumberType::I32),
            TypeName::F32 => Some(NumberType::F32),
            TypeName::U8High => Some(NumberType::U8High),
            TypeName::U8Low => Some(NumberType::U8Low),
            TypeName::Bits | TypeName::Ascii => None,
        }
    }

    /// The name used in profile files.
    pub(crate) fn name(self) -> &'static str {
        match self {
            NumberType::U16 => "u16",
            NumberType::I16 => "i16",
            NumberType::U32 => "u32",
            NumberType::I32 => "i32",
            NumberType::F32 => "f32",
            NumberType::U8High => "u8_high",
            NumberType::U8Low => "u8_low",
        }
    }

    /// Registers the value occupies.
    pub(crate) fn width(self) -> u16 {
        match self {
            NumberType::U32 | NumberType::I32 | NumberType::F32 => 2,
            _ => 1,
        }
    }

    /// Whether the raw value is an integer (everything but `f32`).
    pub(crate) fn is_integer(self) -> bool {
        self != NumberType::F32
    }

    /// Bits in the raw value.
    pub(crate) fn bit_width(self) -> u8 {
        match self {
            NumberType::U16 | NumberType::I16 => 16,
            NumberType::U32 | NumberType::I32 | NumberType::F32 => 32,
            NumberType::U8High | NumberType::U8Low => 8,
        }
    }

    /// Smallest and largest raw value of an integer type (`None` for f32).
    pub(crate) fn raw_range(self) -> Option<(f64, f64)> {
        match self {
            NumberType::U16 => Some((0.0, f64::from(u16::MAX))),
            NumberType::I16 => Some((f64::from(i16::MIN), f64::from(i16::MAX))),
            NumberType::U32 => Some((0.0, f64::from(u32::MAX))),
            NumberType::I32 => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            NumberType::U8High | NumberType::U8Low => Some((0.0, f64::from(u8::MAX))),
            NumberType::F32 => None,
        }
    }

    /// The raw value held by `words` (at least [`Self::width`] of them).
    ///
    /// Integers are exact in an `f64`; an f32 may be NaN or infinite, which
    /// the caller checks after scaling.
    pub(crate) fn read(self, words: &[u16], order: WordOrder) -> Option<f64> {
        let first = *words.first()?;
        Some(match self {
            NumberType::U16 => f64::from(first),
            NumberType::I16 => f64::from(first as i16),
            NumberType::U8High => f64::from(first >> 8),
            NumberType::U8Low => f64::from(first & 0xff),
            NumberType::U32 => f64::from(join32(words, order)?),
            NumberType::I32 => f64::from(join32(words, order)? as i32),
            NumberType::F32 => f64::from(f32::from_bits(join32(words, order)?)),
        })
    }

    /// The raw bits held by `words`, for bitfields and masks.
    pub(crate) fn read_bits(self, words: &[u16], order: WordOrder) -> Option<u32> {
        let first = *words.first()?;
        match self {
            NumberType::U16 | NumberType::I16 => Some(u32::from(first)),
            NumberType::U8High => Some(u32::from(first >> 8)),
            NumberType::U8Low => Some(u32::from(first & 0xff)),
            NumberType::U32 | NumberType::I32 | NumberType::F32 => join32(words, order),
        }
    }

    /// The registers holding `raw`, which the caller has checked fits the
    /// type (integers: whole and within [`Self::raw_range`]); `None` for
    /// the byte halves, which cannot be written without their neighbour.
    pub(crate) fn write(self, raw: f64, order: WordOrder) -> Option<Vec<u16>> {
        match self {
            NumberType::U16 => Some(vec![raw as u16]),
            NumberType::I16 => Some(vec![raw as i16 as u16]),
            NumberType::U32 => Some(split32(raw as u32, order).to_vec()),
            NumberType::I32 => Some(split32(raw as i32 as u32, order).to_vec()),
            NumberType::F32 => Some(split32((raw as f32).to_bits(), order).to_vec()),
            NumberType::U8High | NumberType::U8Low => None,
        }
    }
}

/// Joins two registers into a 32-bit value.
pub(crate) fn join32(words: &[u16], order: WordOrder) -> Option<u32> {
    let (a, b) = (u32::from(*words.first()?), u32::from(*words.get(1)?));
    Some(match order {
        WordOrder::Big => (a << 16) | b,
        WordOrder::Little => (b << 16) | a,
    })
}

/// Splits a 32-bit value into two registers.
pub(crate) fn split32(value: u32, order: WordOrder) -> [u16; 2] {
    let (high, low) = ((value >> 16) as u16, value as u16);
    match order {
        WordOrder::Big => [high, low],
        WordOrder::Little => [low, high],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_types() {
        let big = WordOrder::Big;
        assert_eq!(NumberType::U16.read(&[0xfffe], big), Some(65534.0));
        assert_eq!(NumberType::I16.read(&[0xfffe], big), Some(-2.0));
        assert_eq!(NumberType::U8High.read(&[0x1234], big), Some(18.0));
        assert_eq!(NumberType::U8Low.read(&[0x1234], big), Some(52.0));
        assert_eq!(NumberType::U16.read(&[], big), None);
    }

    #[test]
    fn thirty_two_bit_types_in_both_word_orders() {
        let big = WordOrder::Big;
        let little = WordOrder::Little;
        assert_eq!(NumberType::U32.read(&[0x0001, 0x0002], big), Some(65538.0));
        assert_eq!(
            NumberType::U32.read(&[0x0002, 0x0001], little),
            Some(65538.0)
        );
        assert_eq!(NumberType::I32.read(&[0xffff, 0xfffe], big), Some(-2.0));
        assert_eq!(NumberType::I32.read(&[0xfffe, 0xffff], little), Some(-2.0));
        let [h, l] = split32(1.5f32.to_bits(), big);
        assert_eq!(NumberType::F32.read(&[h, l], big), Some(1.5));
        assert_eq!(NumberType::F32.read(&[l, h], little), Some(1.5));
        assert_eq!(NumberType::U32.read(&[1], big), None);
    }

    #[test]
    fn write_inverts_read() {
        for order in [WordOrder::Big, WordOrder::Little] {
            for (ty, raw) in [
                (NumberType::U16, 65535.0),
                (NumberType::I16, -32768.0),
                (NumberType::U32, 4_000_000_000.0),
                (NumberType::I32, -2_000_000_000.0),
                (NumberType::F32, -0.25),
            ] {
                let words = ty.write(raw, order).unwrap_or_default();
                assert_eq!(words.len(), usize::from(ty.width()));
                assert_eq!(ty.read(&words, order), Some(raw), "{ty:?} {order:?}");
            }
        }
        assert_eq!(NumberType::U8Low.write(1.0, WordOrder::Big), None);
    }
}
