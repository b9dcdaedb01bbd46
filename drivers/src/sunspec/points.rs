//! SunSpec point types and their "not implemented" values, pure.
//!
//! A device that does not implement an optional point fills it with the
//! type's not-implemented value: 0xFFFF for `uint16`, `enum16` and
//! `bitfield16`, 0x8000 for `int16` and `sunssf`, 0xFFFFFFFF for `uint32`,
//! `enum32` and `bitfield32`, 0x80000000 for `int32`, NaN for `float32`.
//! Each reader below gives `None` for that value, so an unimplemented
//! point is absent and never taken for a number.

/// Largest scale-factor exponent accepted: the SunSpec definitions allow
/// -10..=10.
pub const MAX_SCALE_EXPONENT: i16 = 10;

/// The register at `offset` of `regs`, `None` past the end.
fn reg(regs: &[u16], offset: usize) -> Option<u16> {
    regs.get(offset).copied()
}

/// Two registers at `offset`, high word first.
fn reg32(regs: &[u16], offset: usize) -> Option<u32> {
    let high = reg(regs, offset)?;
    let low = reg(regs, offset.checked_add(1)?)?;
    Some((u32::from(high) << 16) | u32::from(low))
}

/// A `uint16` point (also `enum16` and `bitfield16`): absent when 0xFFFF.
pub fn uint16(regs: &[u16], offset: usize) -> Option<u16> {
    reg(regs, offset).filter(|&v| v != 0xFFFF)
}

/// An `int16` point: absent when 0x8000.
pub fn int16(regs: &[u16], offset: usize) -> Option<i16> {
    reg(regs, offset).filter(|&v| v != 0x8000).map(|v| v as i16)
}

/// A `sunssf` scale factor: absent when 0x8000 or outside
/// -[`MAX_SCALE_EXPONENT`]..=[`MAX_SCALE_EXPONENT`].
pub fn sunssf(regs: &[u16], offset: usize) -> Option<i16> {
    int16(regs, offset).filter(|sf| sf.abs() <= MAX_SCALE_EXPONENT)
}

/// A `uint32` point (also `enum32` and `bitfield32`): absent when
/// 0xFFFFFFFF.
pub fn uint32(regs: &[u16], offset: usize) -> Option<u32> {
    reg32(regs, offset).filter(|&v| v != 0xFFFF_FFFF)
}

/// An `int32` point: absent when 0x80000000.
pub fn int32(regs: &[u16], offset: usize) -> Option<i32> {
    reg32(regs, offset)
        .filter(|&v| v != 0x8000_0000)
        .map(|v| v as i32)
}

/// A `float32` point: absent when NaN.
pub fn float32(regs: &[u16], offset: usize) -> Option<f32> {
    reg32(regs, offset)
        .map(f32::from_bits)
        .filter(|v| !v.is_nan())
}

/// A `string` point of `len` registers: two ASCII bytes a register, high
/// byte first, ended by the first NUL; absent when empty or not text.
pub fn string(regs: &[u16], offset: usize, len: usize) -> Option<String> {
    let words = regs.get(offset..offset.checked_add(len)?)?;
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .take_while(|&b| b != 0)
        .collect();
    let text = String::from_utf8(bytes).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .then(|| text.to_owned())
}

/// `value * 10^sf`, absent when either is (a negative exponent divides,
/// so 523 at -1 is 52.3 as written).
pub fn scaled(value: Option<f64>, sf: Option<i16>) -> Option<f64> {
    let (value, sf) = (value?, i32::from(sf?));
    Some(if sf < 0 {
        value / 10f64.powi(-sf)
    } else {
        value * 10f64.powi(sf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_implemented_values_are_absent() {
        let regs = [0xFFFF, 0x8000, 0xFFFF, 0xFFFF, 0x8000, 0x0000, 0x7FC0, 0];
        assert_eq!(uint16(&regs, 0), None);
        assert_eq!(int16(&regs, 1), None);
        assert_eq!(sunssf(&regs, 1), None);
        assert_eq!(uint32(&regs, 2), None);
        assert_eq!(int32(&regs, 4), None);
        assert_eq!(float32(&regs, 6), None);
        assert_eq!(uint16(&regs, 99), None);
        assert_eq!(uint32(&regs, 7), None);
    }

    #[test]
    fn implemented_values_read() {
        let regs = [523, 0xFF83, 0xFFFE, 0x0001, 0x0002, 0x4148, 0x0000];
        assert_eq!(uint16(&regs, 0), Some(523));
        assert_eq!(int16(&regs, 1), Some(-125));
        assert_eq!(sunssf(&regs, 2), Some(-2));
        assert_eq!(uint32(&regs, 3), Some(0x0001_0002));
        assert_eq!(int32(&regs, 3), Some(0x0001_0002));
        assert_eq!(float32(&regs, 5), Some(12.5));
        assert_eq!(scaled(Some(523.0), Some(-1)), Some(52.3));
        assert_eq!(scaled(Some(523.0), None), None);
    }

    #[test]
    fn out_of_range_scale_factors_are_absent() {
        assert_eq!(sunssf(&[11], 0), None);
        assert_eq!(sunssf(&[(-11i16) as u16], 0), None);
        assert_eq!(sunssf(&[10], 0), Some(10));
    }

    #[test]
    fn strings_end_at_nul_and_need_text() {
        let regs = [0x5341, 0x2D31, 0x0000, 0x4142];
        assert_eq!(string(&regs, 0, 4), Some("SA-1".to_owned()));
        assert_eq!(string(&[0, 0], 0, 2), None);
        assert_eq!(string(&[0x01FF], 0, 1), None);
        assert_eq!(string(&regs, 3, 4), None);
    }
}
