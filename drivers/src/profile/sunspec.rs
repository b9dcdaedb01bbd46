//! SunSpec discovery: pure helpers to find a model in a SunSpec register map.
//!
//! A SunSpec device starts its map with the marker "SunS" (0x5375 0x6e53)
//! at one of [`BASE_ADDRESSES`], followed by models, each a header (model
//! id, length `L` of the body in registers) and `L` registers; the id
//! 0xFFFF ends the list. The `sunspec-802` profile assumes a fixed layout
//! (see its file); [`find_sunspec_model`] finds a model in a map read from
//! the marker. The SunSpec driver walks the chain itself, header by header
//! (see [`crate::sunspec`]).

/// The "SunS" marker registers.
pub const MARKER: [u16; 2] = [0x5375, 0x6e53];
/// Addresses where the marker may start, in the order to probe them.
pub const BASE_ADDRESSES: [u16; 3] = [40000, 0, 50000];
/// The model id of the battery base model.
pub const BATTERY_BASE_MODEL: u16 = 802;
/// The model id that ends the model list.
pub const END_MODEL: u16 = 0xffff;

/// Why a model could not be located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SunSpecError {
    /// The registers do not start with "SunS".
    #[error("no SunS marker at the start of the registers")]
    NoMarker,
    /// The list ended (id 0xFFFF) without the model.
    #[error("model {0} is not in the device's model list")]
    ModelNotFound(u16),
    /// The registers end before the list does.
    #[error("the registers end inside the model list, at offset {0}")]
    Truncated(usize),
}

/// Offset, from the marker's first register, of model `model_id`'s header
/// (its id register), walking the model headers in `registers` (read from
/// the marker on).
pub fn find_sunspec_model(registers: &[u16], model_id: u16) -> Result<usize, SunSpecError> {
    if registers.get(..2) != Some(&MARKER[..]) {
        return Err(SunSpecError::NoMarker);
    }
    let mut offset = MARKER.len();
    loop {
        let Some(&id) = registers.get(offset) else {
            return Err(SunSpecError::Truncated(offset));
        };
        if id == END_MODEL {
            return Err(SunSpecError::ModelNotFound(model_id));
        }
        if id == model_id {
            return Ok(offset);
        }
        let Some(&length) = registers.get(offset + 1) else {
            return Err(SunSpecError::Truncated(offset + 1));
        };
        offset += 2 + usize::from(length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marker, common model (1, L=66), model 802 (L=62), model 803 (L=26), end.
    fn map() -> Vec<u16> {
        let mut regs = MARKER.to_vec();
        for (id, len) in [(1u16, 66u16), (802, 62), (803, 26)] {
            regs.push(id);
            regs.push(len);
            regs.extend(std::iter::repeat_n(0, usize::from(len)));
        }
        regs.extend([END_MODEL, 0]);
        regs
    }

    #[test]
    fn walks_the_headers() {
        assert_eq!(find_sunspec_model(&map(), BATTERY_BASE_MODEL), Ok(70));
        assert_eq!(find_sunspec_model(&map(), 803), Ok(134));
        assert_eq!(find_sunspec_model(&map(), 1), Ok(2));
    }

    #[test]
    fn reports_missing_marker_model_and_truncation() {
        assert_eq!(
            find_sunspec_model(&[0, 0, 1, 0], 802),
            Err(SunSpecError::NoMarker)
        );
        assert_eq!(find_sunspec_model(&[], 802), Err(SunSpecError::NoMarker));
        assert_eq!(
            find_sunspec_model(&map(), 804),
            Err(SunSpecError::ModelNotFound(804))
        );
        let regs = map();
        assert_eq!(
            find_sunspec_model(&regs[..100], 803),
            Err(SunSpecError::Truncated(134))
        );
        assert_eq!(
            find_sunspec_model(&regs[..3], 802),
            Err(SunSpecError::Truncated(3))
        );
        // A huge length jumps past the end without overflowing.
        assert_eq!(
            find_sunspec_model(&[MARKER[0], MARKER[1], 1, 0xfffe], 802),
            Err(SunSpecError::Truncated(0xfffe + 4))
        );
    }
}
